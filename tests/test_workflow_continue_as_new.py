"""Continue-as-new carries the whole case; nothing is lost or repeated across runs."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus

from tests.conftest import events, make_loan, start_case


async def test_a_long_case_continues_as_new_carrying_its_whole_state(env, worker, data_dir):
    handle = await start_case(env.client, worker, make_loan(days_past_due=5), history_limit=40)
    first_run = handle.result_run_id
    await handle.execute_update("payment_received", {"amount": "50.00", "reference": "EARLY"})
    await handle.execute_update("assign", {"agent": "agent-5"})
    await env.sleep(timedelta(days=130))

    latest = env.client.get_workflow_handle(handle.id)
    description = await latest.describe()
    assert description.run_id != first_run
    first = await env.client.get_workflow_handle(handle.id, run_id=first_run).describe()
    assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

    state = await latest.execute_update("payment_received", {"amount": "50.00", "reference": "EARLY"})
    assert state["amount_past_due"] == "400.00" and state["assigned_agent"] == "agent-5"
    assert len(events(state, "payment_received", "duplicate")) == 1
    assert state["stage"] == "litigation"
    stages = [e["detail"]["stage"] for e in events(state, "stage_entered")]
    assert stages == ["contact", "field_visit", "legal_letter", "litigation"]
    # Sequence numbers carried over: every effect was written once, none repeated by a new run.
    keys = [e["detail"]["idempotency_key"] for e in events(state, status_="sent")]
    assert len(keys) == len(set(keys)) == 13  # 3 SMS, 3 e-mails, 5 calls, the letter, the hand-off
    assert len(list((data_dir / "outbox" / "sms").glob("*.json"))) == 3
