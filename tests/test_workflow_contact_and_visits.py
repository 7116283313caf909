"""Contact stage call tasks and field-visit child workflows on the time-skipping server."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError

from tests.conftest import eventually, events, make_loan, start_case, status


async def test_a_missed_call_is_followed_by_an_sms_and_an_answered_one_is_not(env, worker, data_dir: Path):
    handle = await start_case(env.client, worker, make_loan(days_past_due=40))
    state = await eventually(handle, lambda s: s["open_call_tasks"])
    task = json.loads(next((data_dir / "queues" / "calls").glob("*.json")).read_text())
    assert task["item_id"] == state["open_call_tasks"][0] and task["phone"] == "+15555550123"
    state = await handle.execute_update("call_outcome", {"outcome": "no_answer", "agent": "agent-9"})
    assert state["open_call_tasks"] == []
    state = await eventually(handle, lambda s: events(s, "sms_sent"))
    assert events(state, "sms_sent")[0]["detail"]["template"] == "missed_call"
    await env.sleep(timedelta(days=3, hours=1))
    await handle.execute_update("call_outcome", {"outcome": "reached", "note": "will pay Friday"})
    await env.sleep(timedelta(hours=2))
    assert len(events(await status(handle), "sms_sent")) == 1


async def test_a_wrong_number_blocks_later_calls_and_texts(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=40))
    await eventually(handle, lambda s: s["open_call_tasks"])
    await handle.execute_update("call_outcome", {"outcome": "wrong_number"})
    await env.sleep(timedelta(days=10))
    state = await status(handle)
    assert len(events(state, "call_queued")) == 1
    assert [e["reason"] for e in events(state, "call_blocked")] == ["phone number reported wrong"] * 2


async def _visit_started(handle) -> dict:
    return await eventually(handle, lambda s: s["field_visit"] and s["field_visit"]["state"] == "in_progress")


async def test_a_field_visit_is_planned_with_two_staff_and_its_report_completes_it(env, worker, data_dir: Path):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=1, hours=1))
    state = await _visit_started(handle)
    visit_id = state["field_visit"]["visit_id"]
    plan = json.loads(next((data_dir / "queues" / "visits").glob("*.json")).read_text())
    assert len(plan["agents"]) == 2 and plan["attempt"] == 1
    state = await handle.execute_update("field_visit_report", {"outcome": "met", "note": "will call branch",
                                                               "agents": plan["agents"]})
    state = await eventually(handle, lambda s: s["field_visit"]["state"] == "completed")
    assert state["field_visit"]["outcome"] == "met" and state["stage"] == "field_visit"
    child = env.client.get_workflow_handle(visit_id)
    assert (await child.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_nobody_home_plans_a_second_visit_and_moved_escalates_to_the_legal_letter(env, worker, data_dir):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=1, hours=1))
    await _visit_started(handle)
    await handle.execute_update("field_visit_report", {"outcome": "not_home"})
    await env.sleep(timedelta(hours=1))
    assert len(list((data_dir / "queues" / "visits").glob("*.json"))) == 2
    await handle.execute_update("field_visit_report", {"outcome": "moved", "note": "neighbour says moved away"})
    state = await eventually(handle, lambda s: s["stage"] == "legal_letter")
    completed = events(state, "field_visit_completed")[0]["detail"]
    assert completed["outcome"] == "moved" and completed["attempts"] == 2
    assert events(state, "stage_entered")[-1]["reason"] == "field visit outcome moved"


async def test_an_overdue_visit_report_is_flagged_to_a_supervisor(env, worker, data_dir):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=10))
    state = await status(handle)
    assert events(state, "field_visit_completed")[0]["detail"]["outcome"] == "overdue"
    alert = json.loads(next((data_dir / "queues" / "supervisor").glob("*.json")).read_text())
    assert "report not received" in alert["note"]
    assert state["stage"] == "legal_letter"


async def test_a_hold_cancels_a_planned_visit_and_release_plans_it_again(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=1, hours=1))
    state = await _visit_started(handle)
    first_visit = state["field_visit"]["visit_id"]
    await handle.execute_update("hardship", {"reason": "bereavement"})
    state = await eventually(handle, lambda s: s["field_visit"]["state"] == "cancelled")
    child = env.client.get_workflow_handle(first_visit)
    for _ in range(100):  # the cancellation reaches the child workflow a moment later
        if (await child.describe()).status == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.05)
    assert (await child.describe()).status == WorkflowExecutionStatus.CANCELED
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("field_visit_report", {"outcome": "met"})
    await handle.execute_update("hardship_resolved", {})
    state = await _visit_started(handle)
    assert state["field_visit"]["visit_id"] != first_visit


async def _child_status(env, visit_id: str, wanted: WorkflowExecutionStatus) -> WorkflowExecutionStatus:
    child = env.client.get_workflow_handle(visit_id)
    for _ in range(100):  # the cancellation reaches the child workflow a moment later
        current = (await child.describe()).status
        if current == wanted:
            return current
        await asyncio.sleep(0.05)
    return current


async def test_cease_contact_on_visits_cancels_a_planned_visit_for_good(env, worker, data_dir):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=1, hours=1))
    state = await _visit_started(handle)
    await handle.execute_update("cease_contact", {"channels": ["visit"]})
    state = await eventually(handle, lambda s: s["field_visit"]["state"] == "cancelled")
    assert await _child_status(env, state["field_visit"]["visit_id"],
                               WorkflowExecutionStatus.CANCELED) == WorkflowExecutionStatus.CANCELED
    await env.sleep(timedelta(days=5))
    state = await status(handle)
    assert [e["reason"] for e in events(state, "visit_blocked")] == [
        "borrower asked to cease contact on this channel"]
    assert len(list((data_dir / "queues" / "visits").glob("*.json"))) == 1


async def test_a_hold_arriving_with_a_not_home_report_cancels_the_revisit(env, worker, data_dir):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=1, hours=1))
    state = await _visit_started(handle)
    await handle.signal("field_visit_report", {"outcome": "not_home"})
    # The hold comes once the revisit is planned. Sent back to back instead, it can cancel the visit
    # while the plan activity is in flight; the Java time-skipping server then refuses the plan's late
    # completion and stops skipping time (its sleep call times out, then the connection breaks).
    # The back-to-back case is in the recorded history `hold_with_a_visit_report`, replayed by test_replay.
    for _ in range(200):
        if list((data_dir / "queues" / "visits").glob("*plan-2.json")):
            break
        await asyncio.sleep(0.05)
    await handle.signal("dispute", {"reason": "already paid"})
    state = await eventually(handle, lambda s: s["field_visit"]["state"] == "cancelled")
    assert await _child_status(env, state["field_visit"]["visit_id"],
                               WorkflowExecutionStatus.CANCELED) == WorkflowExecutionStatus.CANCELED
    await env.sleep(timedelta(days=12))
    assert not list((data_dir / "queues" / "supervisor").glob("*.json"))  # no overdue chase while disputed
    assert (await status(handle))["stage"] == "field_visit"


async def test_a_hold_withdraws_the_open_call_task(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=40))
    await eventually(handle, lambda s: s["open_call_tasks"])
    await handle.execute_update("hold", {"reason": "complaint under review"})
    state = await eventually(handle, lambda s: not s["open_call_tasks"])
    assert events(state, "call_task_withdrawn")[0]["reason"] == "operator: held by an operator"
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("call_outcome", {"outcome": "reached"})


async def test_escalation_waits_until_a_dispute_is_resolved(env, worker):
    handle = await start_case(env.client, worker)
    await handle.execute_update("dispute", {"reason": "not my loan"})
    await handle.execute_update("escalate", {"reason": "supervisor"})
    await env.sleep(timedelta(days=3))
    assert (await status(handle))["stage"] == "reminder"
    await handle.execute_update("dispute_resolved", {"upheld": False})
    await eventually(handle, lambda s: s["stage"] == "contact")
