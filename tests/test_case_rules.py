"""Case rules without Temporal: decide, the stage clock and holds, promises, payments, commands, status."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.case import CallTask, CaseState, open_case, promise_deadline, tick
from domain.commands import handle, parse
from domain.decide import Act, Advance, Block, Finish, Step, Wait, decide, mark_done
from domain.errors import Rejected
from domain.stages import Channel, Outcome, Stage
from domain.status import status
from domain.strategy import Strategy
from tests.conftest import make_loan, strategy

UTC = timezone.utc
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _dwell_only(base: Strategy) -> Strategy:
    """The default ladder with stages ending on their dwell alone and no DPD-bucket wake-ups,
    so a Wait shows only the stage clock's own timers."""
    stages = {stage: config.model_copy(update={"leave_at_dpd": None, "min_dwell": timedelta(0)})
              for stage, config in base.stages.items()}
    return base.model_copy(update={"dpd_buckets": [], "stages": stages})


QUIET = _dwell_only(strategy())
DEFAULT = strategy()


def new_case(strat: Strategy = QUIET, now: datetime = T0, **loan: Any) -> CaseState:
    return open_case(make_loan(**loan), strat, now)


def send(case: CaseState, name: str, payload: Any = None, *, at: datetime = T0,
         strat: Strategy = QUIET) -> bool:
    return handle(name, payload if payload is not None else {}, case, strat, at)


def refusal(case: CaseState, name: str, payload: Any, *, at: datetime = T0, strat: Strategy = QUIET) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse(name, payload, case, strat, at)
    return caught.value


def run_due(case: CaseState, now: datetime, strat: Strategy = QUIET, limit: int = 50) -> tuple[list[Step], Step]:
    """Carry out every due treatment the way the workflow does; return them and the step that stopped."""
    done: list[Step] = []
    for _ in range(limit):
        tick(case, strat, now)
        step = decide(case, strat, now)
        if isinstance(step, (Act, Block)):
            if isinstance(step, Act) and step.channel is Channel.CALL:
                case.calls.append(CallTask(task_id=f"call-{len(case.calls) + 1}", created_at=now))
            mark_done(case, step.key)
            done.append(step)
            continue
        return done, step
    raise AssertionError("decide never settled")


def last_event(case: CaseState):
    return case.events[-1]


def ladder_case_at(stage: Stage) -> CaseState:
    case = new_case()
    case.enter_stage(stage, T0, "test")
    return case


# -- decide: what is due, and how long to sleep -----------------------------------------

def test_a_new_case_opens_in_its_segment_stage_and_records_it():
    case = new_case(days_past_due=45)
    assert case.stage is Stage.CONTACT
    assert case.events[0].kind == "case_opened" and case.events[0].detail["stage"] == "contact"
    assert case.stage_clock(T0 + DAY) == DAY


def test_a_new_reminder_case_sends_the_day_zero_sms_at_once():
    case = new_case()
    assert decide(case, QUIET, T0) == Act(Channel.SMS, "reminder_soft", "0:sms:0")


def test_due_treatments_come_in_ladder_order_each_once():
    case = new_case()
    acts, stop = run_due(case, T0 + 10 * DAY)
    assert [(a.channel, a.key) for a in acts] == [
        (Channel.SMS, "0:sms:0"), (Channel.SMS, "0:sms:172800"), (Channel.SMS, "0:sms:518400"),
        (Channel.EMAIL, "1:email:86400"), (Channel.EMAIL, "1:email:777600"),
    ]
    assert all(isinstance(a, Act) for a in acts)
    assert stop == Wait(T0 + 30 * DAY, "reminder ends")


def test_decide_waits_until_the_exact_time_of_the_next_treatment():
    case = new_case()
    run_due(case, T0)
    assert decide(case, QUIET, T0) == Wait(T0 + DAY, "email due")
    # the same target from any later moment: one timer, not a daily wake-up
    assert decide(case, QUIET, T0 + timedelta(hours=17, minutes=3)) == Wait(T0 + DAY, "email due")
    run_due(case, T0 + DAY)
    assert decide(case, QUIET, T0 + DAY) == Wait(T0 + 2 * DAY, "sms due")
    run_due(case, T0 + 2 * DAY)
    assert decide(case, QUIET, T0 + 2 * DAY) == Wait(T0 + 6 * DAY, "sms due")


def test_decide_waits_for_the_stage_end_once_every_treatment_ran():
    case = new_case()
    _, stop = run_due(case, T0 + 9 * DAY)
    assert stop == Wait(T0 + 30 * DAY, "reminder ends")
    assert decide(case, QUIET, T0 + 29 * DAY) == Wait(T0 + 30 * DAY, "reminder ends")


def test_decide_advances_when_the_dwell_is_over():
    case = new_case()
    run_due(case, T0 + 9 * DAY)
    assert isinstance(decide(case, QUIET, T0 + 30 * DAY - timedelta(seconds=1)), Wait)
    step = decide(case, QUIET, T0 + 30 * DAY)
    assert isinstance(step, Advance) and step.to is Stage.CONTACT and "dwell" in step.reason


def test_entering_a_stage_resets_its_clock_and_treatments():
    case = new_case()
    run_due(case, T0 + 30 * DAY)
    case.enter_stage(Stage.CONTACT, T0 + 30 * DAY, "dwell over")
    assert case.stage is Stage.CONTACT and case.done == [] and case.stage_clock(T0 + 30 * DAY) == timedelta(0)
    assert decide(case, QUIET, T0 + 30 * DAY) == Act(Channel.CALL, None, "0:call:0")


def test_entering_a_skipped_stage_moves_on_to_the_next_one():
    case = new_case(days_past_due=40, outstanding_amount="200.00", amount_past_due="100.00")
    assert case.stage is Stage.CONTACT and case.skip == [Stage.FIELD_VISIT]
    case.enter_stage(Stage.FIELD_VISIT, T0 + 30 * DAY, "dwell over")
    assert case.stage is Stage.LEGAL_LETTER
    assert [e.kind for e in case.events[-2:]] == ["stage_skipped", "stage_entered"]


def test_litigation_waits_for_an_operator_after_the_hand_off():
    case = ladder_case_at(Stage.LITIGATION)
    acts, stop = run_due(case, T0 + 400 * DAY)
    assert acts == [Act(Channel.LEGAL_HANDOFF, None, "0:legal_handoff:0")]
    assert stop == Wait(None, "waiting for an operator")


def test_a_case_wakes_when_days_past_due_reach_the_next_bucket():
    buckets = QUIET.model_copy(update={"dpd_buckets": [31, 61]})  # stages end on dwell alone
    case = new_case(buckets, days_past_due=5)
    _, stop = run_due(case, T0 + 10 * DAY, buckets)
    # DPD 5 on 3 March: DPD 31 on 29 March, at midnight UTC, before the reminder stage ends.
    assert stop == Wait(datetime(2025, 3, 29, tzinfo=UTC), "DPD reaches 31")
    assert case.days_past_due(datetime(2025, 3, 29, tzinfo=UTC)) == 31


def test_decide_finishes_a_closed_case():
    case = new_case()
    assert send(case, "close", {"outcome": "written_off", "note": "uncollectable"})
    assert case.outcome is Outcome.WRITTEN_OFF
    assert decide(case, QUIET, T0) == Finish()


# -- the stage clock and holds -------------------------------------------------------------

def test_hardship_stops_the_stage_clock():
    case = new_case()
    assert send(case, "hardship", {"reason": "lost job"}, at=T0 + 5 * DAY)
    assert case.paused and case.pause_reason == "hardship: hardship reported"  # the words stay in the ledger
    assert case.stage_clock(T0 + 12 * DAY) == 5 * DAY
    assert decide(case, QUIET, T0 + 12 * DAY) == Wait(None, "paused (hardship: hardship reported)")


def test_after_a_ten_day_hardship_the_reminder_stage_ends_forty_calendar_days_after_entry():
    case = new_case()
    run_due(case, T0 + 5 * DAY)
    assert send(case, "hardship", {"reason": "medical"}, at=T0 + 5 * DAY)
    assert send(case, "hardship_resolved", {}, at=T0 + 15 * DAY)
    assert not case.paused
    assert case.stage_clock(T0 + 15 * DAY) == 5 * DAY
    _, stop = run_due(case, T0 + 39 * DAY)
    assert stop == Wait(T0 + 40 * DAY, "reminder ends")
    assert isinstance(decide(case, QUIET, T0 + 40 * DAY), Advance)


def test_treatments_due_during_a_hardship_wait_for_the_clock():
    case = new_case()
    run_due(case, T0)
    send(case, "hardship", {"reason": "medical"}, at=T0 + timedelta(hours=12))
    send(case, "hardship_resolved", {}, at=T0 + 10 * DAY)
    # e-mail at day 1 of the stage clock: 12 active hours before, 12 after the pause
    assert decide(case, QUIET, T0 + 10 * DAY) == Wait(T0 + 10 * DAY + timedelta(hours=12), "email due")


def test_a_hardship_until_expiring_via_tick_resumes_the_clock():
    case = new_case()
    run_due(case, T0 + 9 * DAY)
    until = T0 + 15 * DAY
    assert send(case, "hardship", {"reason": "flood", "until": until.isoformat()}, at=T0 + 9 * DAY)
    assert decide(case, QUIET, T0 + 10 * DAY) == Wait(until, "hardship hold ends")
    tick(case, QUIET, until - timedelta(seconds=1))
    assert case.paused
    tick(case, QUIET, until)
    assert not case.paused
    assert last_event(case).kind == "hardship_ended"
    assert case.stage_clock(until) == 9 * DAY
    assert decide(case, QUIET, until) == Wait(T0 + 36 * DAY, "reminder ends")


def test_a_hardship_until_given_as_a_date_ends_at_midnight_utc():
    case = new_case()
    assert send(case, "hardship", {"reason": "flood", "until": "2025-03-10"})
    assert case.hold("hardship").until == datetime(2025, 3, 10, tzinfo=UTC)


@pytest.mark.parametrize(("until", "why"), [
    ("2025-03-03T08:00:00+00:00", "not in the future"),
    ("2025-03-01", "not in the future"),
    ("2025-06-02T09:00:01+00:00", "more than 90 days"),
])
def test_a_hardship_until_in_the_past_or_beyond_the_limit_is_rejected(until, why):
    err = refusal(new_case(), "hardship", {"reason": "x", "until": until})
    assert err.field == "until" and why in err.reason


def test_hardship_resolved_without_a_hardship_is_rejected():
    err = refusal(new_case(), "hardship_resolved", {})
    assert "not paused for hardship" in err.reason


def test_an_operator_hold_stops_the_clock_until_released():
    case = new_case()
    assert send(case, "hold", {"reason": "complaint review"}, at=T0 + DAY)
    assert case.pause_reason == "operator: held by an operator"
    assert case.stage_clock(T0 + 20 * DAY) == DAY
    assert send(case, "release", None, at=T0 + 20 * DAY)
    assert not case.paused and case.stage_clock(T0 + 21 * DAY) == 2 * DAY


def test_an_operator_hold_with_until_ends_via_tick():
    case = new_case()
    send(case, "hold", {"reason": "review", "until": "2025-03-05"})
    tick(case, QUIET, datetime(2025, 3, 5, tzinfo=UTC))
    assert not case.paused and last_event(case).kind == "operator_ended"


def test_release_without_an_operator_hold_is_rejected():
    case = new_case()
    send(case, "hardship", {"reason": "x"})
    err = refusal(case, "release", {})
    assert "not on an operator hold" in err.reason


def test_a_dispute_holds_the_case_until_it_is_resolved():
    case = new_case()
    run_due(case, T0)
    assert send(case, "dispute", {"reason": "not my loan"}, at=T0 + timedelta(hours=1))
    assert case.pause_reason == "dispute: the debt is disputed"
    _, stop = run_due(case, T0 + 60 * DAY)
    assert stop == Wait(None, "paused (dispute: the debt is disputed)")
    assert case.stage is Stage.REMINDER
    assert send(case, "dispute_resolved", {"upheld": False, "note": "verified"}, at=T0 + 60 * DAY)
    assert not case.paused and case.outcome is None
    assert decide(case, QUIET, T0 + 60 * DAY) == Wait(T0 + 60 * DAY + timedelta(hours=23), "email due")


def test_an_upheld_dispute_closes_the_case_as_closed():
    case = new_case()
    send(case, "dispute", {"reason": "identity theft"})
    assert send(case, "dispute_resolved", {"upheld": True, "note": "fraud confirmed"}, at=T0 + DAY)
    assert case.outcome is Outcome.CLOSED and "fraud confirmed" in case.close_note
    assert decide(case, QUIET, T0 + DAY) == Finish()


def test_a_second_dispute_and_a_resolution_without_dispute_are_rejected():
    case = new_case()
    assert "no open dispute" in refusal(case, "dispute_resolved", {"upheld": False}).reason
    send(case, "dispute", {"reason": "wrong amount"})
    assert "already disputed" in refusal(case, "dispute", {"reason": "again"}).reason


def test_the_dispute_is_the_pause_reason_when_several_holds_apply_and_the_case_stays_paused():
    case = new_case()
    send(case, "hold", {"reason": "review"})
    send(case, "hardship", {"reason": "ill"})
    send(case, "dispute", {"reason": "wrong amount"})
    assert case.pause_reason == "dispute: the debt is disputed"
    send(case, "dispute_resolved", {"upheld": False}, at=T0 + DAY)
    assert case.pause_reason == "hardship: hardship reported"
    send(case, "hardship_resolved", {}, at=T0 + DAY)
    assert case.paused and case.stage_clock(T0 + 9 * DAY) == timedelta(0)


# -- promises to pay ---------------------------------------------------------------------

def test_a_promise_to_pay_holds_the_case_until_its_deadline():
    case = new_case()
    assert send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-10", "agent": "ann"})
    promise = case.promise
    assert promise.amount == Decimal("200.00") and promise.state == "pending"
    # end of the due date (UTC) plus two days' grace
    assert promise.deadline == datetime(2025, 3, 13, tzinfo=UTC)
    assert promise_deadline(promise.due_date, timedelta(days=2)) == promise.deadline
    assert case.pause_reason == "promise: promise to pay by 2025-03-10"


def test_a_promise_reminder_goes_out_the_day_before_the_due_date():
    case = new_case()
    run_due(case, T0)
    send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-10"})
    remind_at = datetime(2025, 3, 9, tzinfo=UTC)
    assert decide(case, QUIET, T0) == Wait(remind_at, "promise reminder")
    step = decide(case, QUIET, remind_at)
    assert step == Act(Channel.SMS, "promise_reminder", "promise_reminder")
    mark_done(case, step.key)
    assert case.promise.reminded
    assert decide(case, QUIET, remind_at) == Wait(datetime(2025, 3, 13, tzinfo=UTC), "promise due")


def test_a_promise_made_after_its_reminder_time_gets_no_reminder():
    case = new_case()
    run_due(case, T0)
    send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-04"})  # due tomorrow
    assert decide(case, QUIET, T0 + timedelta(hours=1)) == Wait(datetime(2025, 3, 7, tzinfo=UTC), "promise due")


def test_a_promise_below_the_strategy_minimum_share_is_refused():
    case = new_case(amount_past_due="450.00")
    error = refusal(case, "promise_to_pay", {"amount": "89.99", "due_date": "2025-03-10"})
    assert error.field == "amount" and "below 20% of the past-due amount (90.00 USD)" in error.reason
    assert send(case, "promise_to_pay", {"amount": "90.00", "due_date": "2025-03-10"})


def test_no_promise_reminder_is_sent_while_the_debt_is_disputed():
    # A dispute halts collection until verification (Reg F 1006.38, CONC 7.14); a
    # reminder to pay the promised amount is collection.
    case = new_case()
    send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-10"})
    send(case, "dispute", {"reason": "never borrowed this"}, at=T0 + DAY)
    step = decide(case, QUIET, datetime(2025, 3, 10, 12, tzinfo=UTC))
    assert not isinstance(step, Act), step


@pytest.mark.parametrize(("payload", "field", "why"), [
    ({"amount": "0", "due_date": "2025-03-10"}, "amount", "positive"),
    ({"amount": "-50.00", "due_date": "2025-03-10"}, "amount", "positive"),
    ({"amount": "12.345", "due_date": "2025-03-10"}, "amount", "more decimals"),
    ({"amount": "5000.01", "due_date": "2025-03-10"}, "amount", "more than the outstanding"),
    ({"amount": "200", "due_date": "2025-03-02"}, "due_date", "in the past"),
    ({"amount": "200", "due_date": "2025-03-18"}, "due_date", "beyond the strategy's promise horizon"),
    ({"amount": "200", "due_date": "tomorrow"}, "due_date", "date"),
    ({"amount": "200"}, "due_date", "required"),
])
def test_an_invalid_promise_is_rejected_naming_field_and_reason(payload, field, why):
    err = refusal(new_case(), "promise_to_pay", payload)
    assert err.field == field
    assert why in err.reason


def test_a_promise_due_today_or_at_the_horizon_is_accepted():
    assert send(new_case(), "promise_to_pay", {"amount": "200", "due_date": "2025-03-03"})
    assert send(new_case(), "promise_to_pay", {"amount": "200", "due_date": "2025-03-17"})


def test_a_second_promise_while_one_is_pending_is_rejected():
    case = new_case()
    send(case, "promise_to_pay", {"amount": "200", "due_date": "2025-03-10"})
    err = refusal(case, "promise_to_pay", {"amount": "100", "due_date": "2025-03-12"}, at=T0 + DAY)
    assert "already pending" in err.reason and "2025-03-10" in err.reason
    assert not send(case, "promise_to_pay", {"amount": "100", "due_date": "2025-03-12"}, at=T0 + DAY)
    assert case.promise.amount == Decimal("200.00")


def test_a_promise_is_kept_when_payments_reach_its_amount():
    case = new_case()
    send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-10"})
    send(case, "payment_received", {"amount": "150.00", "reference": "p1"}, at=T0 + DAY)
    assert case.promise.state == "pending" and case.promise.paid == Decimal("150.00") and case.paused
    send(case, "payment_received", {"amount": "50", "reference": "p2"}, at=T0 + 2 * DAY)
    assert case.promise.state == "kept" and case.promises_kept == 1
    assert not case.paused
    assert any(e.kind == "promise_kept" for e in case.events)
    tick(case, QUIET, T0 + 30 * DAY)
    assert case.promise.state == "kept" and case.promises_broken == 0


def test_a_promise_breaks_at_its_deadline_via_tick():
    case = new_case()
    send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-10"})
    deadline = datetime(2025, 3, 13, tzinfo=UTC)
    tick(case, QUIET, deadline - timedelta(seconds=1))
    assert case.promise.state == "pending" and case.paused
    tick(case, QUIET, deadline)
    assert case.promise.state == "broken" and case.promises_broken == 1
    assert not case.paused
    assert last_event(case).kind == "promise_broken"
    assert not isinstance(decide(case, QUIET, deadline), Advance)


def test_every_second_broken_promise_requests_escalation():
    case = new_case()
    now = T0
    advances: list[bool] = []
    for _ in range(4):
        due = now.date() + timedelta(days=3)
        assert send(case, "promise_to_pay", {"amount": "100", "due_date": due.isoformat()}, at=now)
        now = promise_deadline(due, timedelta(days=2))
        tick(case, QUIET, now)
        step = decide(case, QUIET, now)
        advances.append(isinstance(step, Advance))
        if isinstance(step, Advance):
            assert step.reason == f"{case.promises_broken} broken promises"
            case.enter_stage(step.to, now, step.reason)
    assert advances == [False, True, False, True]
    assert case.promises_broken == 4 and case.stage is Stage.FIELD_VISIT


def test_a_broken_promise_at_the_last_stage_requests_no_escalation():
    case = ladder_case_at(Stage.LITIGATION)
    for due in ("2025-03-05", "2025-03-15"):
        now = T0 if due == "2025-03-05" else datetime(2025, 3, 8, tzinfo=UTC)
        send(case, "promise_to_pay", {"amount": "100", "due_date": due}, at=now)
        tick(case, QUIET, promise_deadline(datetime.fromisoformat(due).date(), timedelta(days=2)))
    assert case.promises_broken == 2 and case.exit_requested is None


# -- payments ---------------------------------------------------------------------------

def test_a_partial_payment_reduces_the_amount_past_due_and_the_outstanding():
    case = new_case()
    assert send(case, "payment_received", {"amount": "100.50", "reference": "bank-1"})
    assert case.amount_past_due == Decimal("349.50")
    assert case.outstanding == Decimal("4899.50")
    assert case.paid_total == Decimal("100.50")
    assert case.outcome is None
    assert last_event(case).status == "accepted" and last_event(case).detail["reference"] == "bank-1"


def test_a_duplicate_payment_reference_is_recorded_and_changes_nothing():
    case = new_case()
    send(case, "payment_received", {"amount": "100", "reference": "bank-1"})
    before = (case.amount_past_due, case.outstanding, case.paid_total)
    send(case, "payment_received", {"amount": "100", "reference": "bank-1"}, at=T0 + DAY)
    assert (case.amount_past_due, case.outstanding, case.paid_total) == before
    assert last_event(case).status == "duplicate" and "already applied" in last_event(case).reason


def test_clearing_the_arrears_closes_the_case_as_cured():
    case = new_case()
    send(case, "payment_received", {"amount": "400", "reference": "a"})
    send(case, "payment_received", {"amount": "50.00", "reference": "b"}, at=T0 + DAY)
    assert case.amount_past_due == 0 and case.outcome is Outcome.CURED
    assert case.outstanding == Decimal("4550.00")
    assert case.days_past_due(T0 + 5 * DAY) == 0
    assert decide(case, QUIET, T0 + DAY) == Finish()


def test_an_overpayment_never_makes_the_outstanding_negative():
    case = new_case()
    send(case, "payment_received", {"amount": "6000.00", "reference": "big"})
    assert case.outstanding == 0 and case.amount_past_due == 0
    assert case.events[-2].detail["excess"] == "1000.00"
    assert case.outcome is Outcome.CURED


@pytest.mark.parametrize("amount", [100.5, 100.0])
def test_a_float_payment_amount_is_refused(amount):
    case = new_case()
    assert not send(case, "payment_received", {"amount": amount, "reference": "f"})
    assert last_event(case).status == "rejected" and last_event(case).reason.startswith("amount")
    assert case.amount_past_due == Decimal("450.00") and case.payment_refs == []


def test_a_boolean_payment_amount_is_refused():
    case = new_case()
    assert not send(case, "payment_received", {"amount": True, "reference": "b"})
    assert case.amount_past_due == Decimal("450.00")


def test_a_payment_with_too_many_decimals_is_refused():
    case = new_case(currency="JPY", outstanding_amount="50000", amount_past_due="4500")
    assert not send(case, "payment_received", {"amount": "10.5", "reference": "y"})
    assert "JPY" in last_event(case).reason
    assert send(case, "payment_received", {"amount": "10", "reference": "y"})
    assert case.amount_past_due == Decimal("4490")


def test_an_absurd_payment_amount_is_recorded_as_rejected_instead_of_raising():
    case = new_case()
    assert handle("payment_received", {"amount": "1e30", "reference": "x"}, case, QUIET, T0) is False
    assert last_event(case).status == "rejected" and case.amount_past_due == Decimal("450.00")


# -- contact preferences and call outcomes --------------------------------------------------

def test_cease_contact_on_a_channel_blocks_that_channel_only():
    case = new_case()
    assert send(case, "cease_contact", {"channels": ["sms"]})
    step = decide(case, QUIET, T0)
    assert isinstance(step, Block) and step.channel is Channel.SMS and step.key == "0:sms:0"
    assert "cease" in step.reason
    mark_done(case, step.key)
    assert decide(case, QUIET, T0 + DAY) == Act(Channel.EMAIL, "reminder_how_to_pay", "1:email:86400")


def test_cease_contact_without_channels_blocks_every_borrower_channel_but_not_the_legal_hand_off():
    case = new_case()
    assert send(case, "cease_contact", {})
    assert set(case.ceased) == {Channel.SMS, Channel.EMAIL, Channel.CALL, Channel.VISIT, Channel.LETTER}
    steps, _ = run_due(case, T0 + 10 * DAY)
    assert steps and all(isinstance(s, Block) for s in steps)
    case.enter_stage(Stage.LEGAL_LETTER, T0 + 30 * DAY, "test")
    assert isinstance(decide(case, QUIET, T0 + 30 * DAY), Block)
    case.enter_stage(Stage.LITIGATION, T0 + 45 * DAY, "test")
    assert decide(case, QUIET, T0 + 45 * DAY) == Act(Channel.LEGAL_HANDOFF, None, "0:legal_handoff:0")


def test_cease_contact_cannot_name_the_legal_hand_off():
    err = refusal(new_case(), "cease_contact", {"channels": ["legal_handoff"]})
    assert err.field == "channels" and "not a contact channel" in err.reason


def test_a_call_outcome_without_an_open_call_task_is_rejected():
    case = new_case(days_past_due=45)
    err = refusal(case, "call_outcome", {"outcome": "reached"})
    assert "no call task is open" in err.reason


def test_an_unknown_call_outcome_is_rejected():
    case = new_case(days_past_due=45)
    run_due(case, T0)
    err = refusal(case, "call_outcome", {"outcome": "shouted"})
    assert err.field == "outcome" and "reached" in err.reason


def test_a_missed_call_triggers_the_missed_call_sms_once():
    case = new_case(days_past_due=45)
    run_due(case, T0)
    assert send(case, "call_outcome", {"outcome": "no_answer"}, at=T0 + timedelta(hours=1))
    assert case.calls[0].outcome == "no_answer"
    step = decide(case, QUIET, T0 + timedelta(hours=1))
    assert step == Act(Channel.SMS, "missed_call", "missed_call:call-1")
    mark_done(case, step.key)
    assert case.calls[0].followed_up
    assert isinstance(decide(case, QUIET, T0 + timedelta(hours=1)), Wait)
    assert "no call task" in refusal(case, "call_outcome", {"outcome": "reached"}).reason


def test_a_wrong_number_blocks_later_calls_and_sms():
    case = new_case(days_past_due=45)
    run_due(case, T0)
    assert send(case, "call_outcome", {"outcome": "wrong_number"}, at=T0 + timedelta(hours=1))
    assert case.phone_invalid
    steps, _ = run_due(case, T0 + 3 * DAY)
    call = next(s for s in steps if s.channel is Channel.CALL)
    assert isinstance(call, Block) and "phone number" in call.reason
    assert any(isinstance(s, Act) and s.channel is Channel.EMAIL for s in steps)
    send(case, "promise_to_pay", {"amount": "100", "due_date": "2025-03-09"}, at=T0 + 3 * DAY)
    reminder = decide(case, QUIET, datetime(2025, 3, 8, tzinfo=UTC))
    assert isinstance(reminder, Block) and reminder.channel is Channel.SMS
    assert "phone number" in reminder.reason


# -- operator actions ---------------------------------------------------------------------

def test_escalate_moves_the_case_on_at_once():
    case = new_case()
    assert send(case, "escalate", {"reason": "fraud suspicion"})
    assert decide(case, QUIET, T0) == Advance(Stage.CONTACT, "operator: fraud suspicion")


def test_escalate_is_rejected_at_litigation():
    err = refusal(ladder_case_at(Stage.LITIGATION), "escalate", {})
    assert "last stage" in err.reason and "litigation" in err.reason


def test_close_with_an_invalid_outcome_is_rejected():
    case = new_case()
    err = refusal(case, "close", {"outcome": "forgiven", "note": "x"})
    assert err.field == "outcome"
    assert not send(case, "close", {"outcome": "forgiven", "note": "x"})
    assert case.outcome is None


def test_close_needs_a_note():
    err = refusal(new_case(), "close", {"outcome": "settled"})
    assert err.field == "note"


def test_a_command_to_a_closed_case_is_rejected():
    case = new_case()
    send(case, "close", {"outcome": "settled", "note": "settled for 400"})
    err = refusal(case, "payment_received", {"amount": "10", "reference": "late"}, at=T0 + DAY)
    assert "closed (settled)" in err.reason
    assert not send(case, "payment_received", {"amount": "10", "reference": "late"}, at=T0 + DAY)
    assert case.amount_past_due == Decimal("450.00")


def test_assign_records_the_agent():
    case = new_case()
    assert send(case, "assign", {"agent": "agent-7"})
    assert case.agent == "agent-7" and status(case, QUIET, T0)["assigned_agent"] == "agent-7"


def test_an_unknown_command_is_rejected():
    err = refusal(new_case(), "forgive_everything", {})
    assert "unknown command 'forgive_everything'" in err.reason


@pytest.mark.parametrize("payload", [[1, 2], "pay me", 42, True])
def test_a_payload_that_is_not_a_json_object_is_rejected(payload):
    err = refusal(new_case(), "escalate", payload)
    assert "must be a JSON object" in err.reason


def test_an_unexpected_payload_field_is_rejected():
    err = refusal(new_case(), "assign", {"agent": "a", "password": "x"})
    assert err.field == "password"


@pytest.mark.parametrize(("name", "payload"), [
    ("no_such_command", {}),
    ("escalate", ["not", "an", "object"]),
    ("payment_received", {"amount": "lots", "reference": "r"}),
    ("payment_received", {"reference": "r"}),
    ("promise_to_pay", {"amount": "1", "due_date": "2020-01-01"}),
    ("hardship", {"reason": ""}),
    ("hardship", {"reason": "x", "until": "not a date"}),
    ("dispute_resolved", {"upheld": "maybe"}),
    ("call_outcome", {"outcome": "reached"}),
    ("field_visit_report", {"outcome": "met"}),
    ("cease_contact", {"channels": ["carrier pigeon"]}),
    ("close", {"outcome": "vanished", "note": "n"}),
    ("assign", {"agent": "x" * 65}),
    ("release", "please"),
])
def test_handle_never_raises_for_bad_input_and_records_the_rejection(name, payload):
    case = new_case()
    before = case.model_dump(exclude={"events"})
    assert handle(name, payload, case, QUIET, T0) is False
    event = last_event(case)
    assert (event.kind, event.status) == (name, "rejected")
    assert event.reason
    assert case.model_dump(exclude={"events"}) == before


# -- status ------------------------------------------------------------------------------

CONTRACT_KEYS = {"loan_id", "stage", "paused", "pause_reason", "days_past_due", "amount_past_due",
                 "outstanding", "promise", "arrangement", "outcome", "next_action_at", "events"}


def test_status_has_every_key_of_the_public_contract():
    case = new_case()
    state = status(case, QUIET, T0)
    assert CONTRACT_KEYS <= set(state)
    assert state["loan_id"] == case.loan_id and state["stage"] == "reminder"
    assert state["paused"] is False and state["pause_reason"] is None
    assert state["amount_past_due"] == "450.00" and state["outstanding"] == "5000.00"
    assert state["promise"] is None and state["arrangement"] is None and state["outcome"] is None
    assert state["next_action_at"] == T0.isoformat()  # the day-0 SMS is due now
    assert state["events"][0]["kind"] == "case_opened"


def test_status_shows_a_pending_promise_the_pause_and_the_next_wake():
    case = new_case()
    run_due(case, T0)
    send(case, "promise_to_pay", {"amount": "200.00", "due_date": "2025-03-10"})
    state = status(case, QUIET, T0)
    assert state["promise"]["state"] == "pending" and state["promise"]["amount"] == "200.00"
    assert state["promise"]["due_date"] == "2025-03-10"
    assert state["paused"] is True and state["pause_reason"].startswith("promise:")
    assert state["next_action_at"] == "2025-03-09T00:00:00+00:00"


def test_status_shows_rejected_commands_with_their_reason():
    case = new_case()
    send(case, "escalate", "now")
    event = status(case, QUIET, T0)["events"][-1]
    assert event["status"] == "rejected" and "JSON object" in event["reason"]


def test_status_shows_the_outcome_of_a_closed_case():
    case = new_case()
    send(case, "payment_received", {"amount": "450", "reference": "all"})
    state = status(case, QUIET, T0)
    assert state["outcome"] == "cured" and state["days_past_due"] == 0 and state["amount_past_due"] == "0.00"


def test_days_past_due_advance_with_calendar_time():
    case = new_case(days_past_due=5)
    assert status(case, QUIET, T0)["days_past_due"] == 5
    assert status(case, QUIET, T0 + timedelta(hours=14, minutes=59))["days_past_due"] == 5
    assert status(case, QUIET, datetime(2025, 3, 4, 0, 0, 1, tzinfo=UTC))["days_past_due"] == 6
    assert status(case, QUIET, T0 + 40 * DAY)["days_past_due"] == 45


def test_days_past_due_keep_advancing_while_the_case_is_paused():
    case = new_case(days_past_due=5)
    send(case, "hardship", {"reason": "ill"})
    assert status(case, QUIET, T0 + 10 * DAY)["days_past_due"] == 15


# -- stage ends by days past due, escalation and holds, time before commands ----------------

def test_the_reminder_stage_ends_when_days_past_due_reach_31():
    case = new_case(DEFAULT, days_past_due=5)
    _, step = run_due(case, T0 + 25 * DAY, DEFAULT)
    assert step == Wait(datetime(2025, 3, 29, tzinfo=UTC), "reminder ends")  # day 26, not day 30
    assert decide(case, DEFAULT, datetime(2025, 3, 29, tzinfo=UTC)) == Advance(
        Stage.CONTACT, "days past due reached 31")


def test_a_loan_arriving_late_in_its_bucket_still_gets_the_minimum_dwell():
    case = new_case(DEFAULT, days_past_due=25)
    run_due(case, T0 + 7 * DAY - timedelta(seconds=1), DEFAULT)
    assert isinstance(decide(case, DEFAULT, T0 + 7 * DAY - timedelta(seconds=1)), Wait)
    assert decide(case, DEFAULT, T0 + 7 * DAY) == Advance(Stage.CONTACT, "days past due reached 31")


def test_after_a_long_hardship_each_stage_still_gets_its_minimum_dwell():
    case = new_case(DEFAULT, days_past_due=20)
    send(case, "hardship", {"reason": "hospitalised"}, strat=DEFAULT)
    send(case, "hardship_resolved", {}, at=T0 + 60 * DAY, strat=DEFAULT)  # now DPD 80
    released = T0 + 60 * DAY
    _, step = run_due(case, released + 7 * DAY - timedelta(seconds=1), DEFAULT)
    assert step == Wait(released + 7 * DAY, "reminder ends")
    assert decide(case, DEFAULT, released + 7 * DAY) == Advance(Stage.CONTACT, "days past due reached 31")


def test_no_escalation_happens_while_the_case_is_on_hold():
    case = new_case()
    send(case, "dispute", {"reason": "not mine"})
    assert send(case, "escalate", {"reason": "supervisor decision"})
    assert isinstance(decide(case, QUIET, T0 + DAY), Wait)
    send(case, "dispute_resolved", {"upheld": False}, at=T0 + 2 * DAY)
    assert decide(case, QUIET, T0 + 2 * DAY) == Advance(Stage.CONTACT, "operator: supervisor decision")


def test_a_payment_arriving_after_the_promise_deadline_does_not_keep_the_broken_promise():
    case = new_case()
    send(case, "promise_to_pay", {"amount": "100", "due_date": "2025-03-05"})
    # The deadline (2025-03-08 00:00) passed while the worker was down; the payment comes first.
    assert send(case, "payment_received", {"amount": "100", "reference": "late"}, at=datetime(2025, 3, 9, tzinfo=UTC))
    assert case.promise.state == "broken" and case.promises_broken == 1 and case.promises_kept == 0


def test_validate_sees_what_fell_due_without_changing_the_case():
    from domain.commands import validate

    case = new_case()
    send(case, "promise_to_pay", {"amount": "100", "due_date": "2025-03-05"})
    later = datetime(2025, 3, 9, tzinfo=UTC)
    validate("promise_to_pay", {"amount": "100", "due_date": "2025-03-12"}, case, QUIET, later)
    assert case.promise.state == "pending"  # untouched: the validator must not change the case


def test_close_as_cured_is_refused_while_arrears_remain():
    case = new_case()
    error = refusal(case, "close", {"outcome": "cured", "note": "looks fine"})
    assert error.field == "outcome" and "450.00 USD is still past due" in error.reason


def test_a_hold_until_keeps_its_utc_offset():
    case = new_case()
    assert send(case, "hold", {"reason": "review", "until": "2025-03-20T00:00:00+08:00"})
    assert case.hold("operator").until == datetime(2025, 3, 19, 16, tzinfo=UTC)
