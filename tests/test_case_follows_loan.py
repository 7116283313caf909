"""The case follows the loan (issue 15), rule by rule, without Temporal: episodes in the case's keys, the
servicer's figures (``loan_update``), value-dated and reversible payments, the residual tolerance, promises
judged after holds, bounded payloads and no event let go before the ledger has it. Each test fails on the
engine as it was before (keys without the episode, DPD counted from intake only, ``paid_at`` ignored, ...)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.case import MAX_EVENTS, CaseState, open_case, tick
from domain.commands import MAX_PAYLOAD_BYTES, handle, parse
from domain.decide import Wait, decide
from domain.episodes import FOLLOWS_LOAN, episode_of, next_episode, same_delinquency
from domain.errors import Rejected
from domain.stages import Outcome, Stage
from domain.status import status
from tests.conftest import NO_RULES, make_loan, strategy

UTC = timezone.utc
DAY = timedelta(days=1)
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DEFAULT = strategy()


def new_case(*, features=(FOLLOWS_LOAN,), episode: str = "2026-02-25", at: datetime = T0, **loan: Any) -> CaseState:
    return open_case(make_loan(**loan), DEFAULT, at, NO_RULES, features=features, episode=episode)


def send(case: CaseState, name: str, payload: dict[str, Any] | None = None, *, at: datetime) -> bool:
    return handle(name, payload or {}, case, DEFAULT, at)


def refusal(case: CaseState, name: str, payload: dict[str, Any], *, at: datetime) -> Rejected:
    tick(case, DEFAULT, at)
    with pytest.raises(Rejected) as caught:
        parse(name, payload, case, DEFAULT, at)
    return caught.value


def last(case: CaseState, kind: str):
    return next(e for e in reversed(case.events) if e.kind == kind)


# -- 1. episodes ---------------------------------------------------------------------------------------

def test_an_episode_is_the_loan_and_the_day_it_became_delinquent():
    assert episode_of(date(2026, 3, 2), 5) == "2026-02-25"
    assert next_episode("2026-02-25", None) == "2026-02-25"
    assert next_episode("2026-04-01", "2026-02-25") == "2026-04-01"  # a later delinquency: its own date
    assert next_episode("2026-02-25", "2026-02-25") == "2026-02-25.2"  # the same one reopened
    assert next_episode("2026-02-25", "2026-02-25.9") == "2026-02-25.10"
    assert same_delinquency("2026-02-25.2", "2026-02-25") and not same_delinquency("", "2026-02-25")


def test_every_idempotency_key_carries_the_episode_so_a_second_episode_never_meets_the_first_ones_keys():
    first, second = new_case(loan_id="L-EP"), new_case(loan_id="L-EP", episode="2026-06-01")
    assert first.next_key(Stage.REMINDER, "sms") == "L-EP/2026-02-25/00001/reminder/sms"
    assert second.next_key(Stage.REMINDER, "sms") == "L-EP/2026-06-01/00001/reminder/sms"
    legacy = new_case(loan_id="L-EP", features=(), episode="")  # a case from before episodes keeps its keys
    assert legacy.next_key(Stage.REMINDER, "sms") == "L-EP/00001/reminder/sms"


# -- 2. the servicer's figures win -----------------------------------------------------------------------

def test_a_loan_update_lowering_dpd_moves_the_stage_clocks_dpd_based_exit():
    case = new_case(days_past_due=20)  # reminder ends at DPD 31: 11 days on
    assert send(case, "loan_update", {"as_of": "2026-03-03", "amount_past_due": "150.00", "outstanding": "4700.00",
                                      "days_past_due": 3}, at=T0 + DAY)
    assert case.days_past_due(T0 + DAY) == 3 and case.amount_past_due == Decimal("150.00")
    drive_until = T0 + 12 * DAY  # where the old exit was: the case stays on the reminder stage now
    tick(case, DEFAULT, drive_until)
    step = decide(case, DEFAULT, drive_until)
    assert case.stage is Stage.REMINDER and not (hasattr(step, "to") and step.to is Stage.CONTACT)
    exit_at = datetime(2026, 3, 31, tzinfo=UTC)  # DPD 31 counted from 2026-02-28 (as of 03-03 less 3 days)
    assert [s for s in _waits_until(case, exit_at + DAY) if s.to is Stage.CONTACT][0].at == exit_at
    event = last(case, "loan_update")
    assert event.detail["previous_days_past_due"] == 21 and event.detail["days_past_due_now"] == 3


def _waits_until(case: CaseState, until: datetime):
    """Drive the case (contacts done at once) and report each stage change with its moment."""
    from tests.test_compliance_second_pass import Run, drive

    run = drive(case, until, start=T0 + DAY, strat=DEFAULT, run=Run())

    class Change:
        def __init__(self, stage, at):
            self.to, self.at = stage, at
    return [Change(stage, at) for stage, at in run.stages]


def test_the_same_figures_twice_are_a_duplicate_and_older_ones_are_refused_naming_as_of():
    case = new_case()
    update = {"as_of": "2026-03-02", "amount_past_due": "300.00", "outstanding": "4800.00", "days_past_due": 6}
    assert send(case, "loan_update", update, at=T0)
    send(case, "loan_update", update, at=T0 + timedelta(hours=1))
    assert last(case, "loan_update").status == "duplicate" and case.amount_past_due == Decimal("300.00")
    err = refusal(case, "loan_update", {**update, "as_of": "2026-03-01"}, at=T0 + DAY)
    assert err.field == "as_of" and "older" in err.reason
    err = refusal(case, "loan_update", {"as_of": "2026-03-03"}, at=T0 + DAY)
    assert err.field == "amount_past_due" and "required" in err.reason


def test_payments_valued_after_the_figures_count_on_top_of_them():
    case = new_case()
    assert send(case, "payment_received", {"amount": "100.00", "reference": "P1",
                                           "paid_at": (T0 + DAY).isoformat()}, at=T0 + DAY)
    # The servicer's file of 03-02 does not have the payment of 03-03 yet.
    assert send(case, "loan_update", {"as_of": "2026-03-02", "amount_past_due": "450.00", "outstanding": "5000.00",
                                      "days_past_due": 5}, at=T0 + DAY + timedelta(hours=2))
    assert case.amount_past_due == Decimal("350.00") and case.outstanding == Decimal("4900.00")


@pytest.mark.parametrize("update, why", [
    ({"current": True, "reason": "absent from the servicer's complete file of 2026-03-03"}, "absent from"),
    ({"amount_past_due": "0.00", "outstanding": "4500.00", "days_past_due": 0}, "nothing past due"),
    ({"amount_past_due": "0.40", "outstanding": "4500.40", "days_past_due": 2}, "below the tolerance of 1.00 USD"),
])
def test_a_loan_current_again_or_only_a_residual_past_due_closes_cured_with_the_reason(update, why):
    case = new_case()
    assert send(case, "loan_update", {"as_of": "2026-03-03", **update}, at=T0 + DAY)
    assert case.outcome is Outcome.CURED and why in (case.close_note or "")


# -- 3. payments as they happen --------------------------------------------------------------------------

def _promise_due(case: CaseState, due: date, at: datetime) -> None:
    assert send(case, "promise_to_pay", {"amount": "450.00", "due_date": due.isoformat()}, at=at)


def test_a_payment_valued_before_the_due_date_and_posted_after_the_promise_was_judged_keeps_it():
    case = new_case()
    due = date(2026, 3, 6)
    _promise_due(case, due, T0)
    judged = datetime(2026, 3, 9, 1, tzinfo=UTC)  # the deadline (end of the 6th + 2 days grace) has passed
    tick(case, DEFAULT, judged)
    assert case.promise.state == "broken" and case.promises_broken == 1
    # Paid on the 5th, posted on the 10th: within the five days' posting lag.
    assert send(case, "payment_received", {"amount": "450.00", "reference": "P-5TH",
                                           "paid_at": "2026-03-05T10:00:00+00:00"}, at=datetime(2026, 3, 10, 9, tzinfo=UTC))
    assert case.promise.state == "kept" and case.promises_broken == 0 and case.promises_kept == 1
    assert "posted after it was judged" in last(case, "promise_kept").reason


def test_a_payment_valued_after_the_deadline_does_not_keep_a_broken_promise():
    case = new_case(amount_past_due="900.00")
    _promise_due(case, date(2026, 3, 6), T0)
    tick(case, DEFAULT, datetime(2026, 3, 9, 1, tzinfo=UTC))
    assert send(case, "payment_received", {"amount": "450.00", "reference": "P-LATE",
                                           "paid_at": "2026-03-09T08:00:00+00:00"}, at=datetime(2026, 3, 9, 9, tzinfo=UTC))
    assert case.promise.state == "broken" and case.promises_broken == 1


def test_a_value_date_in_the_future_is_refused_naming_paid_at():
    err = refusal(new_case(), "payment_received", {"amount": "10.00", "reference": "P",
                                                   "paid_at": "2026-03-04T15:00:00+00:00"}, at=T0)
    assert err.field == "paid_at" and "in the future" in err.reason


def test_a_value_date_beyond_the_posting_lag_counts_the_money_but_not_for_a_promise_judged_long_ago():
    case = new_case(amount_past_due="900.00")
    _promise_due(case, date(2026, 3, 6), T0)
    tick(case, DEFAULT, datetime(2026, 3, 9, 1, tzinfo=UTC))
    posted = datetime(2026, 3, 20, 9, tzinfo=UTC)  # paid "on the 5th", posted 15 days later
    assert send(case, "payment_received", {"amount": "450.00", "reference": "OLD",
                                           "paid_at": "2026-03-05T10:00:00+00:00"}, at=posted)
    assert case.amount_past_due == Decimal("450.00") and case.promise.state == "broken"
    event = last(case, "payment_received")
    assert "more than the posting lag (5 days)" in event.detail["note"] and event.detail["paid_at"].startswith("2026-03-15")


def test_a_reversed_payment_no_longer_counts_and_the_promise_it_kept_is_broken_again():
    case = new_case(amount_past_due="900.00")
    _promise_due(case, date(2026, 3, 6), T0)
    assert send(case, "payment_received", {"amount": "450.00", "reference": "DD-1"}, at=T0 + DAY)
    assert case.promise.state == "kept" and case.amount_past_due == Decimal("450.00")
    assert send(case, "payment_reversed", {"reference": "DD-1", "reason": "returned unpaid: insufficient funds"},
                at=T0 + 3 * DAY)
    assert case.amount_past_due == Decimal("900.00") and case.paid_total == 0
    assert case.promise.state == "broken" and case.promises_broken == 1 and case.promises_kept == 0
    assert "was reversed" in last(case, "promise_broken").reason
    reversed_event = last(case, "payment_reversed")
    assert reversed_event.status == "accepted" and reversed_event.reason.startswith("returned unpaid")
    send(case, "payment_reversed", {"reference": "DD-1", "reason": "again"}, at=T0 + 4 * DAY)
    assert last(case, "payment_reversed").status == "duplicate" and case.amount_past_due == Decimal("900.00")
    err = refusal(case, "payment_reversed", {"reference": "NOPE", "reason": "x"}, at=T0 + 4 * DAY)
    assert err.field == "reference"
    assert status(case, DEFAULT, T0 + 4 * DAY)["payments"][0]["reversed"] is True


def test_a_reversed_payment_opens_the_instalment_it_paid_again():
    case = new_case(amount_past_due="600.00")
    due1, due2 = date(2026, 3, 20), date(2026, 4, 20)
    assert send(case, "propose_arrangement", {"kind": "instalments", "instalments": [
        {"due_date": due1.isoformat(), "amount": "300.00"}, {"due_date": due2.isoformat(), "amount": "300.00"}]},
        at=T0)
    assert send(case, "payment_received", {"amount": "300.00", "reference": "I-1"}, at=T0 + DAY)
    assert case.arrangement.schedule[0].state == "paid"
    assert send(case, "payment_reversed", {"reference": "I-1", "reason": "chargeback"}, at=T0 + 2 * DAY)
    assert case.arrangement.schedule[0].state == "pending" and case.arrangement.schedule[0].remaining == Decimal("300.00")
    assert last(case, "instalment_reopened").detail["due_dates"] == [due1.isoformat()]


@pytest.mark.parametrize("paid, cured", [("449.99", True), ("449.00", False)])
def test_a_residual_below_the_tolerance_cures_and_one_at_it_does_not(paid, cured):
    case = new_case()
    assert send(case, "payment_received", {"amount": paid, "reference": "P"}, at=T0 + DAY)
    assert (case.outcome is Outcome.CURED) is cured
    if cured:
        assert "residual 0.01 USD is below the tolerance of 1.00 USD" in case.close_note


def test_the_tolerance_is_per_currency():
    strat = DEFAULT.model_copy(update={"payments": DEFAULT.payments.model_copy(
        update={"residual_tolerance": {"USD": Decimal("0.01")}})})
    case = new_case()
    assert handle("payment_received", {"amount": "449.99", "reference": "P"}, case, strat, T0 + DAY)
    assert case.outcome is None


# -- 4. promises and holds -----------------------------------------------------------------------------

@pytest.mark.parametrize("hold, payload, release, release_payload", [
    ("hardship", {"reason": "lost job"}, "hardship_resolved", {}),
    ("dispute", {"reason": "not mine"}, "dispute_resolved", {"upheld": False}),
    ("hold", {"reason": "complaint review"}, "release", {}),
])
def test_a_promise_falling_due_on_hold_is_judged_the_time_held_later(hold, payload, release, release_payload):
    case = new_case()
    _promise_due(case, date(2026, 3, 6), T0)  # deadline 2026-03-09 00:00
    assert send(case, hold, payload, at=T0 + DAY)  # held from 03-03 15:00 ...
    tick(case, DEFAULT, datetime(2026, 3, 12, tzinfo=UTC))
    assert case.promise.state == "pending" and case.promises_broken == 0  # ... never broken on hold
    wait = decide(case, DEFAULT, datetime(2026, 3, 12, tzinfo=UTC))
    assert not (isinstance(wait, Wait) and wait.until is not None and wait.until < datetime(2026, 3, 12, tzinfo=UTC))
    assert send(case, release, release_payload, at=T0 + 10 * DAY)  # ... to 03-12 15:00: 9 days held
    assert case.promise.deadline == datetime(2026, 3, 18, tzinfo=UTC)
    tick(case, DEFAULT, datetime(2026, 3, 17, 23, tzinfo=UTC))
    assert case.promise.state == "pending"
    tick(case, DEFAULT, datetime(2026, 3, 18, tzinfo=UTC))
    assert case.promise.state == "broken"


def test_before_this_change_a_hold_broke_the_promise_at_its_deadline():
    case = new_case(features=(), episode="")
    _promise_due(case, date(2026, 3, 6), T0)
    send(case, "hardship", {"reason": "lost job"}, at=T0 + DAY)
    tick(case, DEFAULT, datetime(2026, 3, 9, 1, tzinfo=UTC))
    assert case.promise.state == "broken"  # what running cases from before keep doing


# -- 5. limits that keep a case alive ----------------------------------------------------------------------

def _visiting(case: CaseState) -> None:
    from domain.case import FieldVisit

    case.visit = FieldVisit(visit_id="V1", started_at=T0, treatment_key="visit")


@pytest.mark.parametrize("payload, field, words", [
    ({"outcome": "met", "agents": ["a", "b", "c", "d", "e"]}, "agents", "at most 4"),
    ({"outcome": "met", "agents": ["x" * 65]}, "agents.0", "at most 64"),
    ({"outcome": "met", "unknown": ["y"] * 101}, "unknown", "at most 100"),
])
def test_lists_in_a_payload_are_bounded_naming_the_field_and_the_limit(payload, field, words):
    case = new_case()
    _visiting(case)
    err = refusal(case, "field_visit_report", payload, at=T0)
    assert err.field == field and words in err.reason


def test_a_whole_payload_is_bounded_and_a_refusal_leaves_the_case_working():
    case = new_case()
    big = {"reason": "x" * 900, "by": "agent-1", "extra": {f"k{i}": "y" * 900 for i in range(20)}}
    err = refusal(case, "hold", big, at=T0)
    assert err.field == "" and f"at most {MAX_PAYLOAD_BYTES} bytes" in err.reason
    assert not send(case, "hold", big, at=T0)
    assert last(case, "hold").status == "rejected" and not case.paused
    assert send(case, "hold", {"reason": "complaint review"}, at=T0)  # the next good command is taken
    text = refusal(case, "release", {"note": "z" * 1001}, at=T0)
    assert text.field == "note" and "at most 1000" in text.reason


def test_a_case_from_before_keeps_its_old_bounds():
    case = new_case(features=(), episode="")
    _visiting(case)
    assert send(case, "field_visit_report", {"outcome": "met", "agents": ["a", "b", "c", "d", "e"]}, at=T0)


def test_no_event_is_let_go_before_the_ledger_has_it():
    case = new_case()
    for n in range(MAX_EVENTS + 100):
        case.record(T0, "assign", "accepted", n=n)
    assert case.events_dropped == 0 and case.ledger_behind == MAX_EVENTS + 102  # opened, profile
    case.ledger_seq = case.total_events  # the ledger has them all now
    case.record(T0, "assign", "accepted")
    assert len(case.events) == MAX_EVENTS and case.events_dropped == 103
    legacy = new_case(features=(), episode="")
    for _ in range(MAX_EVENTS + 10):
        legacy.record(T0, "assign", "accepted")
    assert len(legacy.events) == MAX_EVENTS  # before: the oldest went, ledger or not


def test_a_case_opened_on_a_residual_below_the_tolerance_cures_at_once():
    case = new_case(amount_past_due="0.50")
    tick(case, DEFAULT, T0)
    assert case.outcome is Outcome.CURED and "only a residual is past due" in case.close_note


def _plan(case: CaseState, strat=DEFAULT) -> tuple[date, date]:
    due1, due2 = date(2026, 3, 10), date(2026, 4, 10)
    assert handle("propose_arrangement", {"kind": "instalments", "instalments": [
        {"due_date": due1.isoformat(), "amount": "300.00"}, {"due_date": due2.isoformat(), "amount": "300.00"}]},
        case, strat, T0)
    return due1, due2


def test_an_instalment_paid_in_time_and_posted_after_the_plan_broke_puts_the_plan_back_in_force():
    case = new_case(amount_past_due="600.00")
    _plan(case)
    tick(case, DEFAULT, datetime(2026, 3, 14, 1, tzinfo=UTC))  # end of the 10th + 3 days grace: missed
    assert case.arrangement.state == "broken" and case.arrangements_broken == 1
    assert send(case, "payment_received", {"amount": "300.00", "reference": "I-1",
                                           "paid_at": "2026-03-10T12:00:00+00:00"}, at=datetime(2026, 3, 15, 9, tzinfo=UTC))
    plan = case.arrangement
    assert plan.state == "active" and case.arrangements_broken == 0 and case.hold("arrangement") is not None
    assert [i.state for i in plan.schedule] == ["paid", "pending"]
    assert last(case, "arrangement_reinstated").detail["due_date"] == "2026-03-10"


def test_a_payment_valued_after_the_missed_instalments_deadline_leaves_the_plan_broken():
    case = new_case(amount_past_due="600.00")
    _plan(case)
    tick(case, DEFAULT, datetime(2026, 3, 14, 1, tzinfo=UTC))
    assert send(case, "payment_received", {"amount": "300.00", "reference": "I-1",
                                           "paid_at": "2026-03-14T08:00:00+00:00"}, at=datetime(2026, 3, 15, 9, tzinfo=UTC))
    assert case.arrangement.state == "broken" and case.arrangements_broken == 1


def test_a_late_instalment_paid_in_time_takes_its_shortfall_back_from_the_next():
    strat = DEFAULT.model_copy(update={"arrangements": DEFAULT.arrangements.model_copy(update={"tolerated_late": 1})})
    case = new_case(amount_past_due="600.00")
    _plan(case, strat)
    tick(case, strat, datetime(2026, 3, 14, 1, tzinfo=UTC))
    first, second = case.arrangement.schedule
    assert first.state == "late" and second.amount == Decimal("600.00")
    assert handle("payment_received", {"amount": "300.00", "reference": "I-1", "paid_at": "2026-03-11T12:00:00+00:00"},
                  case, strat, datetime(2026, 3, 15, 9, tzinfo=UTC))
    assert first.state == "paid" and first.carried_forward == 0 and second.amount == Decimal("300.00")
    assert second.paid == 0 and case.arrangement.late_count == 0


def test_a_promise_made_on_hold_is_judged_the_time_held_later():
    case = new_case()
    assert send(case, "hardship", {"reason": "lost job"}, at=T0)
    _promise_due(case, date(2026, 3, 6), T0 + timedelta(hours=1))
    tick(case, DEFAULT, datetime(2026, 3, 10, tzinfo=UTC))
    assert case.promise.state == "pending"
    assert send(case, "hardship_resolved", {}, at=T0 + 10 * DAY)
    assert case.promise.deadline > datetime(2026, 3, 9, tzinfo=UTC) + 9 * DAY


def test_a_hold_that_ends_before_the_promise_falls_due_leaves_its_deadline():
    case = new_case()
    _promise_due(case, date(2026, 3, 6), T0)
    assert send(case, "hold", {"reason": "review"}, at=T0 + DAY)
    assert send(case, "release", {}, at=T0 + 2 * DAY)
    assert case.promise.deadline == datetime(2026, 3, 9, tzinfo=UTC)
    assert not [e for e in case.events if e.kind == "promise_rescheduled"]


def test_a_reversal_leaves_a_later_promise_alone():
    case = new_case(amount_past_due="900.00")
    _promise_due(case, date(2026, 3, 6), T0)
    assert send(case, "payment_received", {"amount": "450.00", "reference": "A"}, at=T0 + DAY)  # keeps it
    assert send(case, "promise_to_pay", {"amount": "450.00", "due_date": "2026-03-12"}, at=T0 + 2 * DAY)
    assert send(case, "payment_received", {"amount": "100.00", "reference": "B"}, at=T0 + 3 * DAY)
    assert send(case, "payment_reversed", {"reference": "A", "reason": "returned unpaid"}, at=T0 + 4 * DAY)
    assert case.promise.paid == Decimal("100.00") and case.promise.state == "pending"


def test_a_plan_paid_in_time_through_two_late_instalments_owes_what_is_past_due():
    strat = DEFAULT.model_copy(update={"arrangements": DEFAULT.arrangements.model_copy(update={"tolerated_late": 2})})
    case = new_case(amount_past_due="900.00")
    assert handle("propose_arrangement", {"kind": "instalments", "instalments": [
        {"due_date": d, "amount": "300.00"} for d in ("2026-03-10", "2026-03-12", "2026-04-10")]}, case, strat, T0)
    tick(case, strat, datetime(2026, 3, 16, 1, tzinfo=UTC))  # the first two judged late: 300 / 600 / 900
    plan = case.arrangement
    assert [i.state for i in plan.schedule] == ["late", "late", "pending"] and plan.schedule[2].amount == 900
    # Paid on the 11th (in time for the first), posted on the 16th.
    assert handle("payment_received", {"amount": "300.00", "reference": "I-1", "paid_at": "2026-03-11T12:00:00+00:00"},
                  case, strat, datetime(2026, 3, 16, 9, tzinfo=UTC))
    assert [i.state for i in plan.schedule] == ["paid", "late", "pending"]
    assert [i.amount for i in plan.schedule] == [300, 300, 600] and plan.late_count == 1
    assert plan.amount_remaining == case.amount_past_due == Decimal("600.00")


def test_a_reversal_of_the_payment_that_completed_a_plan_puts_the_plan_back_in_force():
    case = new_case(amount_past_due="600.00", outstanding_amount="5000.00")
    _plan(case)
    # The servicer adds a missed payment of this month to the arrears while the plan runs.
    assert send(case, "loan_update", {"as_of": "2026-03-03", "amount_past_due": "700.00", "outstanding": "5000.00",
                                      "days_past_due": 8}, at=T0 + DAY)
    assert send(case, "payment_received", {"amount": "600.00", "reference": "ALL"}, at=T0 + DAY)
    assert case.arrangement.state == "completed" and case.outcome is None  # 100.00 still past due
    assert send(case, "payment_reversed", {"reference": "ALL", "reason": "chargeback"}, at=T0 + 2 * DAY)
    assert case.arrangement.state == "active" and case.hold("arrangement") is not None
    assert [i.state for i in case.arrangement.schedule] == ["pending", "pending"]


def test_the_servicer_reporting_nothing_past_due_ends_a_running_plan_and_cures():
    case = new_case(amount_past_due="600.00")
    _plan(case)
    assert send(case, "loan_update", {"as_of": "2026-03-03", "current": True, "reason": "paid at the branch"},
                at=T0 + DAY)
    assert case.outcome is Outcome.CURED and case.arrangement.state == "cancelled"


def test_a_correction_of_the_same_days_figures_is_applied_and_a_repeat_is_not():
    case = new_case()
    update = {"as_of": "2026-03-02", "amount_past_due": "300.00", "outstanding": "4800.00", "days_past_due": 6}
    assert send(case, "loan_update", update, at=T0)
    assert send(case, "loan_update", {**update, "amount_past_due": "250.00"}, at=T0 + timedelta(hours=1))
    assert last(case, "loan_update").status == "accepted" and case.amount_past_due == Decimal("250.00")


def test_a_reopened_case_owes_what_the_payment_had_cleared_and_knows_the_other_payments():
    """A payment of 500 against 300 past due cleared 300 of the arrears: the reopened case owes 300 again
    (not 500); the closed case's other payment may come back too, on the reopened case."""
    from domain.case import reopen
    from workflows.inputs import CaseInput, reopened_case

    loan = make_loan(amount_past_due="350.00", outstanding_amount="5000.00", days_past_due=5)
    case = new_case(loan_id=loan.loan_id, amount_past_due="350.00", outstanding_amount="5000.00", days_past_due=5)
    assert send(case, "payment_received", {"amount": "50.00", "reference": "P1"}, at=T0)
    assert send(case, "payment_received", {"amount": "500.00", "reference": "P9"}, at=T0 + DAY)
    assert case.outcome is Outcome.CURED
    closed = status(case, DEFAULT, T0 + DAY)
    previous = CaseInput(loan=loan, strategy=DEFAULT, compliance=NO_RULES, episode=case.episode)
    again = reopened_case(previous, closed, "P9", "returned unpaid", "payments-1", case.episode + ".2", "run-1",
                          now=T0 + 3 * DAY)
    assert again.loan.amount_past_due == Decimal("300.00") and again.loan.outstanding_amount == Decimal("4950.00")
    reopened = open_case(again.loan, DEFAULT, T0 + 3 * DAY, NO_RULES, features=(FOLLOWS_LOAN,), episode=again.episode)
    reopen(reopened, again.reopened, T0 + 3 * DAY)
    assert handle("payment_reversed", {"reference": "P1", "reason": "returned unpaid"}, reopened, DEFAULT, T0 + 4 * DAY)
    assert reopened.amount_past_due == Decimal("350.00")
    handle("payment_reversed", {"reference": "P9", "reason": "again"}, reopened, DEFAULT, T0 + 4 * DAY)
    assert last(reopened, "payment_reversed").status == "duplicate"
