"""Repayment arrangements on the time-skipping server: the case follows the plan to every ending."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from tests.conftest import eventually, events, make_loan, start_case, status, strategy


async def _today(env) -> date:
    return (await env.get_current_time()).date()


async def _arrangement_state_attribute(env, workflow_id: str) -> bytes | None:
    # Raw: the Java test server keeps unset attributes in a form the typed describe() cannot read.
    raw = await env.client.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
        namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)))
    field = raw.workflow_execution_info.search_attributes.indexed_fields.get("ArrangementState")
    return field.data if field is not None else None


def _plan(today: date, *amounts: str, first_in: int = 7, every: int = 7) -> dict:
    return {"kind": "instalments", "approved_by": "agent-3",
            "instalments": [{"due_date": (today + timedelta(days=first_in + every * n)).isoformat(), "amount": a}
                            for n, a in enumerate(amounts)]}


async def test_a_plan_paid_early_late_within_grace_and_in_parts_cures_the_case(env, worker, data_dir):
    handle = await start_case(env.client, worker, make_loan(amount_past_due="450.00"))
    await eventually(handle, lambda s: events(s, "sms_sent"))
    today = await _today(env)
    state = await handle.execute_update("propose_arrangement", _plan(today, "150.00", "150.00", "150.00"))
    assert state["arrangement"]["state"] == "active" and state["paused"]
    await env.sleep(timedelta(hours=1))
    assert await _arrangement_state_attribute(env, handle.id) == b'"active"'

    # Instalment 1, early; the same payment again changes nothing.
    await handle.execute_update("payment_received", {"amount": "150.00", "reference": "P1"})
    await handle.execute_update("payment_received", {"amount": "150.00", "reference": "P1"})
    # Instalment 2, late but inside the grace period (due day 14, judged at the end of day 17).
    await env.sleep(timedelta(days=16))
    state = await handle.execute_update("payment_received", {"amount": "150.00", "reference": "P2"})
    assert [i["state"] for i in state["arrangement"]["schedule"]] == ["paid", "paid", "pending"]
    # Instalment 3, in two parts.
    await handle.execute_update("payment_received", {"amount": "100.00", "reference": "P3a"})
    await env.sleep(timedelta(days=4))
    await handle.signal("payment_received", {"amount": "50.00", "reference": "P3b"})
    result = await handle.result()
    assert result["outcome"] == "cured" and result["arrangement"]["state"] == "completed"
    assert result["amount_past_due"] == "0.00"
    reminders = [e for e in events(result, "sms_sent") if e["detail"]["template"] == "arrangement_reminder"]
    assert len(reminders) == 2  # before instalments 2 and 3; the first was already paid when due
    sms = sorted((data_dir / "outbox" / "sms").glob("*.json"))
    assert any("next instalment of USD" in path.read_text() for path in sms)


async def test_a_missed_instalment_breaks_the_plan_and_the_ladder_resumes(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=5))
    await env.sleep(timedelta(days=20))
    today = await _today(env)
    await handle.execute_update("propose_arrangement", _plan(today, "225.00", "225.00"))
    await env.sleep(timedelta(days=12))  # first instalment never paid: judged 7 + 1 + 3 days later
    state = await status(handle)
    assert state["arrangement"]["state"] == "broken" and state["arrangements_broken"] == 1
    assert state["arrangement"]["schedule"][0]["state"] == "missed"
    assert await _arrangement_state_attribute(env, handle.id) == b'"broken"'
    # The ladder resumes where it stood: 20 days into reminder (its minimum dwell is met) and now
    # past DPD 31, so the case moves on to contact the moment the plan breaks.
    kinds = [e["kind"] for e in state["events"]]
    assert kinds.index("stage_entered") > kinds.index("arrangement_broken")
    assert not state["paused"] and state["stage"] == "contact"
    assert events(state, "stage_entered")[0]["reason"] == "days past due reached 31"


async def test_a_settlement_paid_in_full_settles_the_case(env, worker):
    handle = await start_case(env.client, worker, make_loan(outstanding_amount="5000.00", amount_past_due="450.00"))
    today = await _today(env)
    await handle.execute_update("propose_arrangement", {
        "kind": "settlement", "settlement_amount": "3000.00", "approver_role": "supervisor",
        "approved_by": "sup-1", "new_due_date": (today + timedelta(days=10)).isoformat()})
    await handle.execute_update("payment_received", {"amount": "1000.00", "reference": "S1"})
    state = await status(handle)
    assert state["outcome"] is None and state["amount_past_due"] == "0.00"  # arrears paid, settlement not
    await handle.signal("payment_received", {"amount": "2000.00", "reference": "S2"})
    result = await handle.result()
    assert result["outcome"] == "settled" and result["outstanding"] == "0.00"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_an_extension_moves_the_arrears_to_a_new_date(env, worker):
    handle = await start_case(env.client, worker)
    today = await _today(env)
    state = await handle.execute_update("propose_arrangement", {
        "kind": "extension", "new_due_date": (today + timedelta(days=30)).isoformat()})
    assert state["arrangement"]["schedule"] == [{"due_date": (today + timedelta(days=30)).isoformat(),
                                                 "amount": "450.00", "paid": "0.00", "carried_forward": "0.00",
                                                 "state": "pending"}]
    await env.sleep(timedelta(days=29))
    await handle.signal("payment_received", {"amount": "450.00", "reference": "EXT"})
    assert (await handle.result())["outcome"] == "cured"


async def test_hardship_moves_to_an_arrangement_and_hardship_within_it_suspends_judging(env, worker):
    handle = await start_case(env.client, worker)
    await handle.execute_update("hardship", {"reason": "reduced hours"})
    today = await _today(env)
    state = await handle.execute_update("propose_arrangement", _plan(today, "450.00"))
    assert [h["kind"] for h in state["holds"]] == ["arrangement"]
    await handle.execute_update("hardship", {"reason": "hospitalised"})
    await env.sleep(timedelta(days=20))  # the instalment fell due during the hardship
    state = await status(handle)
    assert state["arrangement"]["state"] == "active"
    state = await handle.execute_update("hardship_resolved", {})
    # The schedule moves on by the 20 days the hardship lasted: due on day 27 instead of day 7.
    assert events(state, "arrangement_rescheduled")[-1]["detail"]["days"] == 20
    assert state["arrangement"]["schedule"][0]["due_date"] == (today + timedelta(days=27)).isoformat()
    await env.sleep(timedelta(days=4))
    assert (await status(handle))["arrangement"]["state"] == "active"
    await env.sleep(timedelta(days=8))  # due day 27, judged at the end of day 30
    state = await status(handle)
    assert state["arrangement"]["state"] == "broken" and state["arrangement"]["schedule"][0]["state"] == "missed"


async def test_a_waiver_beyond_the_approvers_limit_is_refused_naming_the_limit(env, worker):
    handle = await start_case(env.client, worker)
    today = await _today(env)
    payload = {**_plan(today, "382.50"), "interest_waiver": "67.50"}
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update("propose_arrangement", payload)
    assert "interest_waiver: gives up 15.00% of the arrears; approver role agent may give up at most 10%" in str(
        failure.value.cause)
    state = await handle.execute_update("propose_arrangement", {**payload, "approver_role": "supervisor",
                                                                "approved_by": "sup-2"})
    assert state["arrangement"]["waiver"] == "67.50"


async def test_a_strategy_that_tolerates_a_late_instalment_carries_its_shortfall_forward(env, worker):
    base = strategy()
    lenient = base.model_copy(update={"arrangements": base.arrangements.model_copy(update={"tolerated_late": 1})})
    handle = await start_case(env.client, worker, strat=lenient)
    today = await _today(env)
    await handle.execute_update("propose_arrangement", _plan(today, "225.00", "225.00"))
    await handle.execute_update("payment_received", {"amount": "100.00", "reference": "PART"})
    await env.sleep(timedelta(days=12))  # the first instalment is judged short, and tolerated
    state = await status(handle)
    assert state["arrangement"]["state"] == "active"
    first, second = state["arrangement"]["schedule"]
    assert first["state"] == "late" and first["carried_forward"] == "125.00" and second["amount"] == "350.00"
    await handle.signal("payment_received", {"amount": "350.00", "reference": "REST"})
    result = await handle.result()
    assert result["outcome"] == "cured" and result["arrangement"]["state"] == "completed"


async def test_closing_a_case_under_a_plan_cancels_it_in_status_and_the_ui(env, worker):
    handle = await start_case(env.client, worker)
    today = await _today(env)
    await handle.execute_update("propose_arrangement", _plan(today, "225.00", "225.00"))
    await handle.signal("close", {"outcome": "written_off", "note": "borrower deceased"})
    result = await handle.result()
    assert result["outcome"] == "written_off" and result["arrangement"]["state"] == "cancelled"
    assert [i["state"] for i in result["arrangement"]["schedule"]] == ["cancelled", "cancelled"]
    assert await _arrangement_state_attribute(env, handle.id) == b'"cancelled"'


async def test_a_refused_proposal_sent_as_a_signal_is_recorded_and_the_case_carries_on(env, worker):
    handle = await start_case(env.client, worker)
    today = await _today(env)
    await handle.signal("propose_arrangement", _plan(today, "100.00"))  # does not cover the arrears
    state = await eventually(handle, lambda s: events(s, status_="rejected"))
    rejected = events(state, status_="rejected")[0]
    assert rejected["kind"] == "propose_arrangement"
    assert rejected["reason"].startswith("instalments: add up to 100.00 USD")
    assert state["arrangement"] is None and not state["paused"]
    state = await handle.execute_update("propose_arrangement", _plan(today, "450.00"))
    assert state["arrangement"]["state"] == "active"


async def test_a_plan_survives_continue_as_new(env, worker):
    handle = await start_case(env.client, worker, history_limit=40)
    first_run = handle.result_run_id
    today = await _today(env)
    await handle.execute_update("propose_arrangement",
                                _plan(today, *["50.00"] * 9, first_in=7, every=7))
    for n in range(8):
        await handle.execute_update("payment_received", {"amount": "50.00", "reference": f"I{n}"})
        await env.sleep(timedelta(days=7))
    latest = env.client.get_workflow_handle(handle.id)
    assert (await latest.describe()).run_id != first_run
    state = await status(latest)
    assert state["arrangement"]["state"] == "active" and state["arrangement"]["amount_remaining"] == "50.00"
    await latest.signal("payment_received", {"amount": "50.00", "reference": "I8"})
    result = await latest.result()
    assert result["outcome"] == "cured" and result["arrangement"]["state"] == "completed"
    reminders = [e for e in events(result, "sms_sent") if e["detail"]["template"] == "arrangement_reminder"]
    assert len({e["detail"]["idempotency_key"] for e in reminders}) == len(reminders)
