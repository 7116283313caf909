"""Repayment arrangements without Temporal: validation, payments, judging, completion."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from domain.case import CaseState, open_case, tick
from domain.commands import handle, parse
from domain.decide import Act, Advance, Finish, Wait, decide, mark_done
from domain.errors import Rejected
from domain.stages import Channel, Outcome, Stage
from domain.status import status
from domain.strategy import Strategy
from tests.conftest import make_loan, strategy

UTC = timezone.utc
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
STRATEGY = strategy(dpd_buckets=[])


def new_case(**loan: Any) -> CaseState:
    case = open_case(make_loan(**loan), STRATEGY, T0)
    case.done = [f"{i}:{t.channel.value}:{int(o.total_seconds())}"  # reminders already sent
                 for i, t in enumerate(STRATEGY.stages[case.stage].treatments) for o in t.at]
    return case


def send(case: CaseState, name: str, payload: Any, at: datetime = T0, strat: Strategy = STRATEGY) -> bool:
    return handle(name, payload, case, strat, at)


def refusal(case: CaseState, payload: dict[str, Any], strat: Strategy = STRATEGY) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse("propose_arrangement", payload, case, strat, T0)
    return caught.value


def plan(*items: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"kind": "instalments", "instalments": [{"due_date": d, "amount": a} for d, a in items], **extra}


THREE = plan(("2025-03-10", "150.00"), ("2025-03-17", "150.00"), ("2025-03-24", "150.00"))


def at_midnight(day: str, plus: timedelta = timedelta(0)) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + plus


# -- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("payload, field, reason", [
    (plan(("2025-03-17", "225"), ("2025-03-10", "225")), "instalments.1.due_date", "ascending"),
    (plan(("2025-03-01", "450")), "instalments.0.due_date", "2025-03-01 is in the past"),
    (plan(("2027-03-01", "450")), "instalments.0.due_date", "beyond the strategy's longest term"),
    (plan(("2025-03-10", "200"), ("2025-03-17", "200")), "instalments",
     "add up to 400.00 USD, not the arrears less waivers (450.00 USD)"),
    (plan(("2025-03-10", "-50"), ("2025-03-17", "500")), "instalments.0.amount", "must be positive"),
    (plan(("2025-03-10", "225.001"), ("2025-03-17", "224.999")), "instalments.0.amount", "more decimals"),
    (plan(("2025-03-10", 225.5), ("2025-03-17", "224.50")), "instalments.0.amount", "not floating-point"),
    ({"kind": "instalments"}, "instalments", "name at least one"),
    ({"kind": "extension"}, "new_due_date", "is required for an extension"),
    ({"kind": "settlement", "new_due_date": "2025-03-20"}, "settlement_amount", "is required"),
    ({"kind": "barter"}, "kind", "Input should be"),
    (plan(("2025-03-10", "450"), approver_role="intern"), "approver_role", "'intern' is not one of agent, supervisor"),
])
def test_an_invalid_arrangement_is_refused_naming_the_field_and_reason(payload, field, reason):
    error = refusal(new_case(), payload)
    assert error.field == field and reason in error.reason


def test_more_instalments_than_the_strategy_allows_are_refused():
    items = [((T0.date() + timedelta(days=7 * (n + 1))).isoformat(), "34.61") for n in range(13)]
    items[-1] = (items[-1][0], "34.68")
    error = refusal(new_case(), plan(*items))
    assert error.field == "instalments" and "13 instalments; the strategy allows at most 12" in error.reason


def test_an_agent_may_waive_up_to_ten_percent_and_a_supervisor_up_to_half():
    waive_15 = plan(("2025-03-10", "382.50"), interest_waiver="67.50")
    error = refusal(new_case(), waive_15)
    assert error.field == "interest_waiver"
    assert error.reason == "gives up 15.00% of the arrears; approver role agent may give up at most 10%"
    assert send(new_case(), "propose_arrangement", {**waive_15, "approver_role": "supervisor", "approved_by": "sup-1"})
    assert send(new_case(), "propose_arrangement", plan(("2025-03-10", "405.00"), interest_waiver="30", fee_waiver="15"))


def test_a_settlement_discount_is_limited_by_the_approver_role():
    case = new_case(outstanding_amount="5000.00")
    error = refusal(case, {"kind": "settlement", "settlement_amount": "2000.00", "new_due_date": "2025-03-20",
                           "approver_role": "supervisor", "approved_by": "sup-1"})
    assert error.field == "settlement_amount" and "gives up 60.00% of the balance" in error.reason
    error = refusal(case, {"kind": "settlement", "settlement_amount": "2600.00", "new_due_date": "2025-03-20",
                           "approver_role": "supervisor"})
    assert error.field == "approved_by" and error.reason == "name the supervisor who approved it"
    assert send(case, "propose_arrangement", {"kind": "settlement", "settlement_amount": "2600.00",
                                              "new_due_date": "2025-03-20", "approver_role": "supervisor",
                                              "approved_by": "sup-1"})


def test_an_arrangement_is_refused_while_a_promise_is_pending_or_another_is_active():
    case = new_case()
    send(case, "promise_to_pay", {"amount": "100", "due_date": "2025-03-06"})
    assert "a promise to pay is pending" in refusal(case, THREE).reason
    other = new_case()
    assert send(other, "propose_arrangement", THREE)
    assert "already has an active repayment arrangement" in refusal(other, THREE).reason
    with pytest.raises(Rejected, match="active repayment arrangement"):
        parse("promise_to_pay", {"amount": "100", "due_date": "2025-03-06"}, other, STRATEGY, T0)


# -- holds, payments, judging ----------------------------------------------------------------

def test_an_active_arrangement_holds_the_ladder_and_shows_in_status():
    case = new_case()
    assert send(case, "propose_arrangement", {**THREE, "approved_by": "agent-4"})
    state = status(case, STRATEGY, T0)
    assert state["paused"] and state["pause_reason"] == "arrangement: instalments arrangement"
    arrangement = state["arrangement"]
    assert arrangement["state"] == "active" and arrangement["next_due_date"] == "2025-03-10"
    assert arrangement["next_amount"] == "150.00" and arrangement["amount_remaining"] == "450.00"
    assert [i["state"] for i in arrangement["schedule"]] == ["pending"] * 3
    # No escalation however long it runs: the stage clock is stopped.
    assert not isinstance(decide(case, STRATEGY, T0 + 40 * DAY), Advance)


def test_payments_go_to_the_oldest_instalment_and_partial_or_early_payments_carry_forward():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    send(case, "payment_received", {"amount": "100", "reference": "a"}, T0 + DAY)        # early, partial
    send(case, "payment_received", {"amount": "100", "reference": "b"}, T0 + 2 * DAY)    # spills over
    send(case, "payment_received", {"amount": "100", "reference": "b"}, T0 + 2 * DAY)    # same reference
    schedule = case.arrangement.schedule
    assert [(i.paid, i.state) for i in schedule] == [
        (Decimal("150.00"), "paid"), (Decimal("50.00"), "pending"), (Decimal(0), "pending")]
    assert case.amount_past_due == Decimal("250.00")


def test_a_payment_late_but_within_grace_counts_and_a_miss_breaks_the_plan():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    # Due 10 March; judged at the end of the day plus 3 days' grace: 14 March 00:00 UTC.
    send(case, "payment_received", {"amount": "150", "reference": "late"}, at_midnight("2025-03-13", 20 * timedelta(hours=1)))
    tick(case, STRATEGY, at_midnight("2025-03-14"))
    assert case.arrangement.schedule[0].state == "paid" and case.arrangement.state == "active"
    tick(case, STRATEGY, at_midnight("2025-03-21") - timedelta(seconds=1))
    assert case.arrangement.state == "active"
    tick(case, STRATEGY, at_midnight("2025-03-21"))
    assert case.arrangement.state == "broken" and case.arrangement.schedule[1].state == "missed"
    assert case.arrangements_broken == 1 and not case.paused
    assert case.events[-1].kind == "arrangement_broken"
    # The ladder resumes where it stood.
    assert case.stage is Stage.REMINDER and case.stage_clock(at_midnight("2025-03-21")) == timedelta(0)


def test_a_strategy_may_tolerate_late_instalments_carrying_the_shortfall_forward():
    lenient = STRATEGY.model_copy(update={"arrangements": STRATEGY.arrangements.model_copy(update={"tolerated_late": 1})})
    case = new_case()
    send(case, "propose_arrangement", THREE, strat=lenient)
    send(case, "payment_received", {"amount": "100", "reference": "p"}, T0 + DAY, strat=lenient)
    tick(case, lenient, at_midnight("2025-03-14"))
    first, second, _ = case.arrangement.schedule
    assert first.state == "late" and first.carried_forward == Decimal("50.00")
    assert second.amount == Decimal("200.00") and case.arrangement.state == "active"
    tick(case, lenient, at_midnight("2025-03-21"))
    assert case.arrangement.state == "broken"  # a second shortfall is one too many


def test_completing_an_instalment_plan_cures_the_case():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    for n, day in enumerate(("2025-03-09", "2025-03-16", "2025-03-23")):
        send(case, "payment_received", {"amount": "150.00", "reference": f"i{n}"}, at_midnight(day))
    assert case.arrangement.state == "completed" and case.outcome is Outcome.CURED
    assert isinstance(decide(case, STRATEGY, at_midnight("2025-03-23")), Finish)


def test_a_waiver_is_applied_when_the_plan_completes():
    case = new_case()
    send(case, "propose_arrangement", plan(("2025-03-10", "405.00"), interest_waiver="45.00"))
    send(case, "payment_received", {"amount": "405.00", "reference": "all"}, T0 + DAY)
    assert case.outcome is Outcome.CURED and case.amount_past_due == 0
    assert case.outstanding == Decimal("4550.00")  # 5000 - 405 paid - 45 waived


def test_an_extension_is_one_instalment_on_the_new_date():
    case = new_case()
    send(case, "propose_arrangement", {"kind": "extension", "new_due_date": "2025-04-01"})
    assert [(i.due_date.isoformat(), i.amount) for i in case.arrangement.schedule] == [("2025-04-01", Decimal("450.00"))]
    send(case, "payment_received", {"amount": "450", "reference": "x"}, T0 + 20 * DAY)
    assert case.outcome is Outcome.CURED


def test_a_paid_settlement_settles_the_case_and_writes_down_the_rest():
    case = new_case(outstanding_amount="5000.00")
    send(case, "propose_arrangement", {"kind": "settlement", "settlement_amount": "4600.00",
                                       "instalments": [{"due_date": "2025-03-10", "amount": "2300.00"},
                                                       {"due_date": "2025-04-10", "amount": "2300.00"}]})
    send(case, "payment_received", {"amount": "2300", "reference": "s1"}, T0 + DAY)
    assert case.outcome is None  # the arrears are paid, but the settlement is not
    send(case, "payment_received", {"amount": "2300", "reference": "s2"}, T0 + 30 * DAY)
    assert case.outcome is Outcome.SETTLED and case.outstanding == 0
    assert "400.00 USD written down" in case.close_note


# -- hardship and reminders ----------------------------------------------------------------

def test_a_hardship_case_moves_to_an_arrangement_which_ends_the_hardship_pause():
    case = new_case()
    send(case, "hardship", {"reason": "reduced hours"})
    send(case, "propose_arrangement", THREE, T0 + DAY)
    assert case.hold("hardship") is None and case.hold("arrangement") is not None
    assert any(e.kind == "hardship_ended" for e in case.events)


def test_hardship_during_an_arrangement_suspends_it_and_moves_the_schedule_on():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    send(case, "hardship", {"reason": "hospitalised"}, at_midnight("2025-03-05"))
    tick(case, STRATEGY, at_midnight("2025-03-20"))
    assert case.arrangement.state == "active" and case.arrangement.schedule[0].state == "pending"
    assert isinstance(decide(case, STRATEGY, at_midnight("2025-03-20")), Wait)  # no reminder either
    send(case, "hardship_resolved", {}, at_midnight("2025-03-20"))  # 15 days of hardship
    assert [i.due_date.isoformat() for i in case.arrangement.schedule] == ["2025-03-25", "2025-04-01", "2025-04-08"]
    rescheduled = [e for e in case.events if e.kind == "arrangement_rescheduled"]
    assert len(rescheduled) == 1 and rescheduled[0].detail["days"] == 15
    tick(case, STRATEGY, at_midnight("2025-03-29") - timedelta(seconds=1))
    assert case.arrangement.state == "active"
    tick(case, STRATEGY, at_midnight("2025-03-29"))
    assert case.arrangement.state == "broken"
    assert [i.state for i in case.arrangement.schedule] == ["missed", "cancelled", "cancelled"]


def test_a_courtesy_reminder_goes_out_before_each_instalment():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    # Two days before 10 March; the first wake is the reminder.
    assert decide(case, STRATEGY, T0) == Wait(at_midnight("2025-03-08"), "instalment reminder")
    plan_key = case.arrangement.key
    step = decide(case, STRATEGY, at_midnight("2025-03-08"))
    assert step == Act(Channel.SMS, "arrangement_reminder", f"arrangement_reminder:{plan_key}:0")
    mark_done(case, step.key)
    assert decide(case, STRATEGY, at_midnight("2025-03-08")) == Wait(at_midnight("2025-03-14"), "instalment due")
    send(case, "payment_received", {"amount": "150", "reference": "one"}, at_midnight("2025-03-09"))
    tick(case, STRATEGY, at_midnight("2025-03-14"))
    assert decide(case, STRATEGY, at_midnight("2025-03-15")) == Act(
        Channel.SMS, "arrangement_reminder", f"arrangement_reminder:{plan_key}:1")


def test_a_ceased_sms_channel_blocks_the_reminder_but_not_the_plan():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    send(case, "cease_contact", {"channels": ["sms"]})
    step = decide(case, STRATEGY, at_midnight("2025-03-08"))
    assert step.channel is Channel.SMS and step.reason == "borrower asked to cease contact on this channel"


# -- refusals that protect the plan, and every way a plan can end ------------------------------

@pytest.mark.parametrize("hold_command, payload", [
    ("dispute", {"reason": "not my loan"}),
    ("hold", {"reason": "fraud review"}),
])
def test_no_plan_is_agreed_while_the_debt_is_disputed_or_held_by_an_operator(hold_command, payload):
    case = new_case()
    send(case, hold_command, payload)
    kind = "dispute" if hold_command == "dispute" else "operator"
    assert refusal(case, THREE).reason == f"the case is on a {kind} hold; resolve it before agreeing a plan"


@pytest.mark.parametrize("payload, field", [
    ({**THREE, "new_due_date": "2025-03-20"}, "new_due_date"),
    ({**THREE, "settlement_amount": "400"}, "settlement_amount"),
    ({"kind": "extension", "new_due_date": "2025-03-20", "instalments": THREE["instalments"]}, "instalments"),
])
def test_fields_that_do_not_apply_to_the_kind_are_refused(payload, field):
    error = refusal(new_case(), payload)
    assert error.field == field and error.reason.startswith("does not apply to")


def test_a_plan_needs_arrears_and_must_leave_something_to_pay():
    paid_up = new_case()
    paid_up.amount_past_due = Decimal("0.00")  # defensive: an open case normally has arrears
    assert refusal(paid_up, plan(("2025-03-10", "450"))).reason == "nothing is past due: there are no arrears to arrange"
    whole = refusal(new_case(), {**plan(("2025-03-10", "1")), "interest_waiver": "450", "approver_role": "supervisor",
                                 "approved_by": "sup-1"})
    assert whole.field == "interest_waiver"


def test_an_operator_cannot_escalate_a_case_that_follows_a_plan():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    with pytest.raises(Rejected, match="it escalates only if the plan breaks"):
        parse("escalate", {"reason": "slow payer"}, case, STRATEGY, T0)


def test_closing_a_case_under_a_plan_cancels_the_plan():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    send(case, "payment_received", {"amount": "150", "reference": "one"}, T0 + DAY)
    send(case, "close", {"outcome": "written_off", "note": "deceased"}, T0 + 2 * DAY)
    assert case.outcome is Outcome.WRITTEN_OFF and case.hold("arrangement") is None
    arrangement = status(case, STRATEGY, T0 + 2 * DAY)["arrangement"]
    assert arrangement["state"] == "cancelled" and arrangement["next_due_date"] is None
    assert [i["state"] for i in arrangement["schedule"]] == ["paid", "cancelled", "cancelled"]
    assert any(e.kind == "arrangement_cancelled" for e in case.events)


def test_a_broken_settlement_whose_arrears_were_paid_closes_the_case_cured():
    case = new_case(outstanding_amount="5000.00")
    send(case, "propose_arrangement", {"kind": "settlement", "settlement_amount": "4600.00",
                                       "instalments": [{"due_date": "2025-03-10", "amount": "2300.00"},
                                                       {"due_date": "2025-04-10", "amount": "2300.00"}]})
    send(case, "payment_received", {"amount": "2300", "reference": "s1"}, T0 + DAY)
    tick(case, STRATEGY, at_midnight("2025-04-14"))  # the second instalment was never paid
    assert case.arrangement.state == "broken" and case.outcome is Outcome.CURED
    assert case.outstanding == Decimal("2700.00")  # the settlement's discount is lost with the plan


def test_a_reminder_for_an_ended_plan_does_not_mark_the_next_plan():
    case = new_case()
    send(case, "propose_arrangement", THREE)
    old_key = f"arrangement_reminder:{case.arrangement.key}:0"
    tick(case, STRATEGY, at_midnight("2025-03-14"))  # broken
    send(case, "propose_arrangement", plan(("2025-03-20", "450")), at_midnight("2025-03-14"))
    mark_done(case, old_key)
    assert not case.arrangement.schedule[0].reminded
