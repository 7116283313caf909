"""The work queues follow the case, end to end on the time-skipping server (SQLite and PostgreSQL):
what the case withdraws, replaces, cancels or closes is closed in the ledger with its reason, before
the case waits; a visit report names its visit."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from sqlalchemy import select

from ledger import Ledger
from ledger.schema import work_items
from ledger.work import WorkItemRow, row_to_item
from tests.conftest import eventually, events, make_loan, start_case, status
from tests.histories.record import quick_field_visit
from tests.ledger_fixtures import BACKENDS

BOTH_DATABASES = pytest.mark.parametrize("worker", BACKENDS, indirect=True)


async def _items(ledger: Ledger, queue: str, loan_id: str, state: str = "open",
                 attempts: int = 100) -> list[WorkItemRow]:
    """The loan's items of ``queue`` in ``state``, once there are any: activities write in real time."""
    await ledger.migrate()  # the worker migrates at its first effect; the test may look earlier
    for _ in range(attempts):
        async with ledger.engine.connect() as connection:
            rows = (await connection.execute(select(work_items).where(
                work_items.c.loan_id == loan_id, work_items.c.queue == queue, work_items.c.state == state)
                .order_by(work_items.c.id))).all()
        if rows:
            return [row_to_item(row) for row in rows]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {state} {queue} item for {loan_id}")


async def _becomes(ledger: Ledger, item_id: str, state: str, attempts: int = 100) -> WorkItemRow:
    item = None
    for _ in range(attempts):
        item = await ledger.work_item_by_id(item_id)
        if item is not None and item.state == state:
            return item
        await asyncio.sleep(0.05)
    raise AssertionError(f"{item_id} never became {state}: {item}")


@BOTH_DATABASES
async def test_a_hold_withdraws_the_open_call_task_in_the_ledger_with_its_reason(env, worker):
    loan = make_loan(days_past_due=35)
    handle = await start_case(env.client, worker, loan)
    [task] = await _items(worker.ledger, "calls", loan.loan_id)
    assert task.case_ref == task.item_id == (await status(handle))["open_call_tasks"][0]
    await handle.execute_update("hold", {"reason": "complaint under review", "by": "sup-1"})
    withdrawn = await _becomes(worker.ledger, task.item_id, "withdrawn")
    assert withdrawn.reason == "operator: held by an operator" and withdrawn.completed_at is not None
    assert task.item_id not in [i.item_id for i in (await worker.ledger.work_queue("calls"))[0]]


@BOTH_DATABASES
async def test_a_newer_call_task_expires_the_older_one_in_the_ledger(env, worker):
    loan = make_loan(days_past_due=35)
    await start_case(env.client, worker, loan)
    [first] = await _items(worker.ledger, "calls", loan.loan_id)
    await env.sleep(timedelta(days=3, hours=1))  # the contact stage's second call, nobody reported the first
    second = [i for i in await _items(worker.ledger, "calls", loan.loan_id) if i.item_id != first.item_id]
    assert len(second) == 1
    expired = await _becomes(worker.ledger, first.item_id, "expired")
    assert expired.reason == "a newer call task replaced it before an outcome was reported"
    assert [i.item_id for i in await worker.ledger.open_work("calls") if i.loan_id == loan.loan_id] == \
        [second[0].item_id]


@BOTH_DATABASES
async def test_closing_the_case_withdraws_its_legal_hand_off(env, worker):
    loan = make_loan(days_past_due=125)
    handle = await start_case(env.client, worker, loan)
    await eventually(handle, lambda s: bool(events(s, "letter_sent")))
    await env.sleep(timedelta(days=16))  # the letter's response period: no escalation inside it
    await eventually(handle, lambda s: s["stage"] == "litigation")
    [legal] = await _items(worker.ledger, "legal", loan.loan_id)
    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-1"})
    await handle.result()
    withdrawn = await _becomes(worker.ledger, legal.item_id, "withdrawn")
    assert withdrawn.reason == "case closed: written_off: uneconomic"
    assert [i for i in (await worker.ledger.work_queue("legal"))[0] if i.loan_id == loan.loan_id] == []


@BOTH_DATABASES
async def test_a_cancelled_visit_is_withdrawn_from_the_field_agents_queue(env, worker):
    loan = make_loan(days_past_due=70)
    handle = await start_case(env.client, worker, loan)
    await env.sleep(timedelta(days=1, hours=1))
    [plan] = await _items(worker.ledger, "visits", loan.loan_id)
    state = await status(handle)
    assert plan.case_ref == state["field_visit"]["visit_id"] == plan.payload["visit_id"]
    assert plan.due_at == datetime.fromisoformat(plan.payload["scheduled_for"])
    assert len(set(plan.assigned_to.split(","))) == 2
    await handle.execute_update("dispute", {"reason": "already paid", "by": "agent-2"})
    withdrawn = await _becomes(worker.ledger, plan.item_id, "withdrawn")
    assert withdrawn.reason == "dispute: the debt is disputed"


@BOTH_DATABASES
async def test_a_visit_reported_late_in_its_stage_is_done_in_the_ledger_before_the_case_waits(env, worker):
    """The visit's end is a note of the case's own (it would ride with the next stage's letter, the
    next day): it reaches the ledger at once."""
    loan = make_loan(days_past_due=70)
    handle = await start_case(env.client, worker, loan, quick_field_visit())
    await env.sleep(timedelta(days=1, hours=1))
    [plan] = await _items(worker.ledger, "visits", loan.loan_id)
    started = datetime.fromisoformat(events(await status(handle), "field_visit_started")[0]["at"])
    await env.sleep(timedelta(days=7, hours=14) - (await env.get_current_time() - started))

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("field_visit_report", {"outcome": "met", "visit_id": f"{plan.case_ref}-old"})
    assert "visit_id" in str(refused.value.cause) and "no longer in progress" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await handle.execute_update("field_visit_report", {"outcome": "met", "agents": ["field-01", "Field-01"]})
    assert "agents" in str(twice.value.cause)

    await handle.execute_update("field_visit_report", {"outcome": "met", "visit_id": plan.case_ref,
                                                       "agents": plan.assigned_to.split(","), "by": "field-01"})
    done = await _becomes(worker.ledger, plan.item_id, "done")
    assert done.outcome == "met"
    state = await status(handle)
    assert state["stage"] == "field_visit" and events(state, "field_visit_completed")
    assert not events(state, "letter_sent")  # the case waits for its stage's end, the ledger does not
