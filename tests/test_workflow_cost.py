"""What a case costs in billable actions, and that the savings keep the audit trail whole.

A case started the way intake starts one carries its features in its input (no patch markers, no
``TemporalChangeVersion`` upserts) and its opening search attributes with the start (no upsert in
its first task); a case started the old way still asks its history. A command that leaves the next
wake where it was keeps the running timer. The case's own notes ride with the next activity: a
replaced call task's expiry with the new task, a visit's start with the visit's first plan.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import uuid

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType

from activities.models import VisitPlanned, VisitRequest

from starter import start_case as intake_start
from tests.conftest import NO_RULES, events, make_loan, settings_for, start_case, status, strategy
from tests.ledger_fixtures import BACKENDS
from worker import build_activities, build_worker
from workflows.inputs import FEATURES, new_case


async def _history(handle) -> list:
    return list((await handle.fetch_history()).events)


def _kinds(history: list) -> Counter:
    return Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history)


def _activities(history: list) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in history
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


async def _start_with_features(env, worker, loan):
    return await env.client.start_workflow(
        "LoanCollectionWorkflow", new_case(loan, strategy(), NO_RULES), id=f"loan-{loan.loan_id}",
        task_queue=worker.task_queue)


async def test_a_case_started_as_intake_starts_needs_no_patch_markers_nor_an_opening_upsert(env, worker):
    loan = make_loan(days_past_due=5)
    handle = await intake_start(env.client, loan, strategy(), worker.task_queue)
    await env.sleep(timedelta(days=3))
    history = await _history(handle)
    started = history[0].workflow_execution_started_event_attributes
    assert set(started.search_attributes.indexed_fields) >= {"CollectionStage", "DaysPastDue", "RiskGrade",
                                                              "OutstandingAmount", "CollectionPaused"}
    kinds = _kinds(history)
    assert kinds["MARKER_RECORDED"] == 0 and kinds["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"] == 0, kinds
    assert (await status(handle))["stage"] == "reminder"


async def test_a_case_started_without_features_still_asks_its_history(env, worker):
    """The path of every case started before features were named: patch markers, as recorded."""
    handle = await start_case(env.client, worker, make_loan(days_past_due=5), features=None)
    await env.sleep(timedelta(days=3))
    history = await _history(handle)
    patches = {json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
               for e in history if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
               and e.marker_recorded_event_attributes.marker_name == "core_patch"}
    assert {"compliance-checks", "ledger-events", "timer-kept"} <= patches <= set(FEATURES)
    assert _kinds(history)["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"] >= 1  # its opening values, in its first task


async def test_an_assignment_keeps_the_running_timer_and_a_hold_replaces_it(env, worker):
    handle = await _start_with_features(env, worker, make_loan(days_past_due=5))
    await env.sleep(timedelta(hours=1))  # the first SMS is out; the case sleeps until the e-mail's day
    before = _kinds(await _history(handle))
    await handle.execute_update("assign", {"agent": "agent-2"})
    await env.sleep(timedelta(minutes=5))
    after_assign = _kinds(await _history(handle))
    assert after_assign["TIMER_STARTED"] == before["TIMER_STARTED"]
    assert after_assign["TIMER_CANCELED"] == 0
    # A hold moves the next wake: that timer goes, and the hold's own wake takes its place.
    await handle.execute_update("hold", {"reason": "complaint", "until": "2099-01-01"})
    await env.sleep(timedelta(minutes=5))
    after_hold = _kinds(await _history(handle))
    assert after_hold["TIMER_CANCELED"] == 1 and after_hold["TIMER_STARTED"] == before["TIMER_STARTED"] + 1


@pytest.mark.parametrize("worker", BACKENDS, indirect=True)
async def test_a_replaced_call_tasks_expiry_rides_with_the_new_task_into_the_ledger(env, worker):
    loan = make_loan(days_past_due=40)  # agent contact: calls on days 0, 3, 7, ...
    handle = await _start_with_features(env, worker, loan)
    await env.sleep(timedelta(days=8))
    history = await _history(handle)
    assert _activities(history).count("create_call_task") == 3
    assert "record_case_events" not in _activities(history)
    state = await status(handle)
    expired = events(state, "call_task_expired")
    assert len(expired) == 2
    trail = {(e["kind"], e["detail"].get("task_id")) for e in await worker.ledger.events(loan.loan_id)}
    assert {("call_task_expired", e["detail"]["task_id"]) for e in expired} <= trail


@pytest.mark.parametrize("worker", BACKENDS, indirect=True)
async def test_a_visits_first_plan_carries_the_cases_events_into_the_ledger(env, worker):
    loan = make_loan(days_past_due=62)  # the field-visit stage: the visit one day in
    handle = await _start_with_features(env, worker, loan)
    await env.sleep(timedelta(hours=2))
    # Entering the stage with nothing to send for a day: the entry waits for the next activity.
    assert "record_case_events" not in _activities(await _history(handle))
    await env.sleep(timedelta(days=1, hours=2))
    state = await status(handle)
    assert events(state, "field_visit_started")
    recorded = [e["kind"] for e in await worker.ledger.events(loan.loan_id)]
    assert "case_opened" in recorded and "field_visit_started" in recorded
    assert "record_case_events" not in _activities(await _history(handle))
    visit = await worker.ledger.open_work("visits")
    assert [item.loan_id for item in visit] == [loan.loan_id]
    # Closing writes whatever is left: the trail ends whole.
    await handle.execute_update("close", {"outcome": "closed", "note": "sold", "by": "sup-1"})
    result = await handle.result()
    trail = await worker.ledger.events(loan.loan_id)
    assert [e["seq"] for e in trail] == list(range(len(result["events"])))
    assert [e["kind"] for e in trail] == [e["kind"] for e in result["events"]]


async def test_a_command_before_a_short_wait_is_still_written_at_once(env, worker):
    """Only the case's own notes wait for a ride: what came from outside goes before the wait."""
    loan = make_loan(days_past_due=62)
    handle = await _start_with_features(env, worker, loan)
    await handle.execute_update("assign", {"agent": "agent-3", "by": "sup-2"})
    await env.sleep(timedelta(hours=1))
    assert "record_case_events" in _activities(await _history(handle))
    assert [e["actor"] for e in await worker.ledger.events(loan.loan_id) if e["kind"] == "assign"] == ["sup-2"]


@activity.defn(name="plan_field_visit")
async def plan_written_by_an_older_worker(request: VisitRequest) -> VisitPlanned:
    """A visit plan from before the plan carried the case's events: it writes none of them."""
    return VisitPlanned(visit_id="v-1", agents=["field-01", "field-02"], scheduled_for=request.scheduled_for,
                        location="-")


async def test_events_a_visit_carried_but_never_wrote_still_reach_the_ledger(env, data_dir):
    settings = settings_for(data_dir)
    activities = build_activities(settings)
    real = [a for a in activities.all() if getattr(a, "__temporal_activity_definition").name != "plan_field_visit"]
    loan = make_loan(days_past_due=62)
    try:
        async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                activities=[*real, plan_written_by_an_older_worker]) as workers:
            handle = await _start_with_features(env, workers, loan)
            # No report comes: the visit ends overdue and the case moves on to the lawyer's letter.
            await env.sleep(timedelta(days=12))
            assert (await status(handle))["stage"] == "legal_letter"
            await handle.execute_update("close", {"outcome": "closed", "note": "sold"})
            result = await handle.result()
        trail = await activities.ledger.events(loan.loan_id)
    finally:
        await activities.aclose()
    assert [e["kind"] for e in trail] == [e["kind"] for e in result["events"]]
    assert "field_visit_started" in [e["kind"] for e in trail]


async def test_a_message_sent_days_ago_does_not_hurry_a_note_that_can_wait(env, worker):
    """Entering the field visit a day before the visit, the stage entry waits for the visit's plan,
    though the last call task's event, held as its work item, is days old."""
    handle = await _start_with_features(env, worker, make_loan(days_past_due=45))  # agent contact first
    await env.sleep(timedelta(days=16, hours=2))  # the contact stage's 14 days, then into the field visit
    state = await status(handle)
    assert state["stage"] == "field_visit" and events(state, "stage_entered")
    assert "record_case_events" not in _activities(await _history(handle))
