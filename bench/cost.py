"""Cost benchmark: Temporal billable actions per case over the whole default ladder, vs the minimum.

    .venv/bin/python bench/cost.py [--json] [--days 180] [--step 10] [--extra DAYS]

One untouched US loan (DPD 5, grade B, USD 5000 outstanding / 450 past due) enters at
``reminder`` and walks the ``default`` ladder on the time-skipping test server from the venv
(never downloaded). Billable actions are counted from the event histories of the case (every
run, following continue-as-new) and of its field-visit child(ren); the baseline is the minimum
number of actions the case's business actions need, measured in the same run (see MINIMUM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.history.v1 import HistoryEvent  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.templates import TemplateBook  # noqa: E402
from bench.harness import show  # noqa: E402
from domain.loan import Loan  # noqa: E402
from infra.client import data_converter  # noqa: E402
from infra.search_attributes import ensure_search_attributes  # noqa: E402
from infra.settings import Settings  # noqa: E402
from infra.strategies import load_strategy  # noqa: E402
from ledger import Ledger, LedgerError  # noqa: E402
from worker import build_worker  # noqa: E402
from starter import start_case  # noqa: E402

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"

# Billable categories, counted from history events. A child start is counted once, at its
# StartChildWorkflowExecutionInitiated in the parent (not again at the child's own
# WorkflowExecutionStarted); a continue-as-new counts as a workflow start of the new run.
CATEGORIES = [
    ("workflow_started", "case workflow started (client start)"),
    ("child_workflows_started", "StartChildWorkflowExecutionInitiated"),
    ("continue_as_new", "WorkflowExecutionContinuedAsNew"),
    ("activities_scheduled", "ActivityTaskScheduled"),
    ("activity_retries", "ActivityTaskStarted attempt > 1 (extra attempts)"),
    ("timers_started", "TimerStarted"),
    ("signals_received", "WorkflowExecutionSignaled (from outside our workflows)"),
    ("signals_sent", "SignalExternalWorkflowExecutionInitiated"),
    ("search_attribute_upserts", "UpsertWorkflowSearchAttributes"),
    ("updates_accepted", "WorkflowExecutionUpdateAccepted"),
    ("markers_recorded", "MarkerRecorded (local activities, side effects)"),
]

MINIMUM = ("1 case start + 1 activity per business action (messages sent/queued, visit plans, "
           "overdue flags) + 1 child start per field visit + 1 timer per distinct instant after the "
           "start at which the case acts or enters a stage on its own clock (instants reached through "
           "a child's completion need none) + 1 report-deadline timer per visit plan in the child")

ACTION_GAP = timedelta(minutes=1)  # events closer than this belong to the same wake of the case


def make_loan() -> Loan:
    return Loan.from_row({
        "loan_id": f"B-{uuid.uuid4().hex[:10]}", "borrower_name": "Ada Example", "phone": "+15555550123",
        "email": "ada@example.com", "address": "1 Test Street, Springfield", "timezone": "America/New_York",
        "jurisdiction": "US", "currency": "USD", "outstanding_amount": "5000.00", "amount_past_due": "450.00",
        "days_past_due": "5", "product": "personal_loan", "risk_grade": "B",
    })


async def fetch_runs(client: Client, workflow_id: str, first_run_id: str | None) -> list[list[HistoryEvent]]:
    """Every run of a workflow id, from the first, following continue-as-new."""
    runs: list[list[HistoryEvent]] = []
    run_id = first_run_id
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(list(history.events))
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return runs
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


def _summary(event: HistoryEvent) -> str:
    if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
        try:
            return str(data_converter().payload_converter.from_payload(event.user_metadata.summary, str))
        except Exception:  # an undecodable summary is still a timer
            return "?"
    return "(no summary)"


def count_actions(histories: dict[str, list[list[HistoryEvent]]],
                  root_id: str) -> tuple[Counter, list[dict], Counter]:
    counts: Counter = Counter({key: 0 for key, _ in CATEGORIES})
    timers: list[dict[str, Any]] = []
    upserts: Counter = Counter()  # which attributes each upsert set, as "A+B"
    ours = set(histories)
    for workflow_id, runs in histories.items():
        for run_index, events in enumerate(runs):
            started: dict[int, dict[str, Any]] = {}
            for event in events:
                kind = event.event_type
                if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                    if workflow_id == root_id and run_index == 0:
                        counts["workflow_started"] += 1
                elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                    counts["child_workflows_started"] += 1
                elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                    counts["continue_as_new"] += 1
                elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    counts["activities_scheduled"] += 1
                elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    counts["activity_retries"] += max(0, event.activity_task_started_event_attributes.attempt - 1)
                elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
                    counts["timers_started"] += 1
                    attrs = event.timer_started_event_attributes
                    timer = {"workflow": "case" if workflow_id == root_id else "visit",
                             "at": event.event_time.ToDatetime().isoformat(timespec="seconds"),
                             "seconds": attrs.start_to_fire_timeout.ToSeconds(),
                             "summary": _summary(event), "end": "open"}
                    started[event.event_id] = timer
                    timers.append(timer)
                elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
                    started[event.timer_fired_event_attributes.started_event_id]["end"] = "fired"
                elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
                    started[event.timer_canceled_event_attributes.started_event_id]["end"] = "cancelled"
                elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                    sender = event.workflow_execution_signaled_event_attributes.external_workflow_execution
                    if sender.workflow_id not in ours:  # a workflow-to-workflow signal is billed once, when sent
                        counts["signals_received"] += 1
                elif kind == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                    counts["signals_sent"] += 1
                elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                    counts["search_attribute_upserts"] += 1
                    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
                    upserts["+".join(sorted(fields))] += 1
                elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                    counts["updates_accepted"] += 1
                elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
                    counts["markers_recorded"] += 1
    return counts, timers, upserts


def activity_types(histories: dict[str, list[list[HistoryEvent]]]) -> Counter:
    found: Counter = Counter()
    for runs in histories.values():
        for events in runs:
            for event in events:
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    found[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
    return found


def business_minimum(state: dict[str, Any]) -> dict[str, Any]:
    """The business actions the case performed (from its status) and the fewest actions they need."""
    events = state["events"]
    at = lambda e: datetime.fromisoformat(e["at"])  # noqa: E731
    sent = [e for e in events if e["status"] == "sent"]
    visits = [e for e in events if e["kind"] == "field_visit_started"]
    completed = [e for e in events if e["kind"] == "field_visit_completed"]
    plans = sum(int(e["detail"].get("attempts", 0)) for e in completed)
    overdue = sum(1 for e in completed if e["detail"].get("outcome") == "overdue")
    business = Counter(e["kind"] for e in sent)
    business["field_visit_planned"] = plans
    business["field_visit_flagged_overdue"] = overdue

    opened = at(next(e for e in events if e["kind"] == "case_opened"))
    acting = sorted(at(e) for e in sent + visits + [e for e in events if e["kind"] == "stage_entered"])
    woken_by_child = [at(e) for e in completed]
    wakes: list[datetime] = []
    for moment in acting:
        if moment - opened < ACTION_GAP or (wakes and moment - wakes[-1] < ACTION_GAP):
            continue  # part of the start, or of a wake already counted
        if any(timedelta(0) <= moment - c < ACTION_GAP for c in woken_by_child):
            wakes.append(moment)  # reached through the child's completion: a wake, but no timer
            continue
        wakes.append(moment)
    timer_wakes = [w for w in wakes if not any(timedelta(0) <= w - c < ACTION_GAP for c in woken_by_child)]
    need = {
        "workflow_started": 1,
        "activities": sum(business.values()),
        "child_workflows_started": len(visits),
        "case_timers": len(timer_wakes),
        "visit_timers": plans,
    }
    return {"business_actions": dict(business), "business_total": sum(business.values()),
            "minimum_breakdown": need, "minimum": sum(need.values()),
            "case_timer_wakes": [w.isoformat(timespec="seconds") for w in timer_wakes]}


async def run(days: int, step: int, extra: int | None) -> dict[str, Any]:
    began = time.perf_counter()
    # SDK core logs to stdout by default; forward its warnings to Python logging (stderr) instead.
    runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter="WARN", forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=data_converter(), runtime=runtime)
    try:
        client = env.client
        await ensure_search_attributes(client)
        with tempfile.TemporaryDirectory(prefix="arrears-bench-") as tmp:
            settings = Settings(data_dir=Path(tmp) / "data", letter_processes=0)
            async with build_worker(client, settings, task_queue=f"bench-{uuid.uuid4().hex}") as worker:
                strategy = load_strategy("default", ROOT / "strategies", TemplateBook(ROOT / "templates"))
                loan = make_loan()
                # Start at 14:00 UTC (10:00 in New York in summer, 09:00 in winter), so every run
                # meets the same contact hours whatever the hour the bench itself runs at.
                now = await env.get_current_time()
                start_at = now.replace(hour=14, minute=0, second=0, microsecond=0)
                await env.sleep((start_at if start_at > now else start_at + timedelta(days=1)) - now)
                sim_began = time.perf_counter()
                # Started as intake starts a case: its opening search attributes set with the start.
                handle: WorkflowHandle = await start_case(client, loan, strategy, worker.task_queue)
                simulated, reached = 0, None
                while simulated < days:
                    chunk = min(step, days - simulated)
                    if reached is not None and extra is not None:
                        chunk = min(chunk, reached + extra - simulated)
                    await env.sleep(timedelta(days=chunk))
                    simulated += chunk
                    state = await handle.query("status")
                    if reached is None and state["stage"] == "litigation" and any(
                            e["kind"] == "legal_handoff_queued" for e in state["events"]):
                        reached = simulated
                    if reached is not None and extra is not None and simulated >= reached + extra:
                        break
                state = await handle.query("status")
                if reached is None:
                    raise SystemExit(f"the case never reached litigation in {days} days: stage {state['stage']}")
                histories = {handle.id: await fetch_runs(client, handle.id, handle.first_execution_run_id)}
                for visit_id in dict.fromkeys(e["detail"]["visit_id"] for e in state["events"]
                                              if e["kind"] == "field_visit_started"):
                    histories[visit_id] = await fetch_runs(client, visit_id, None)
                sim_seconds = time.perf_counter() - sim_began
                await handle.terminate("benchmark over")
                ledger = Ledger.connect(settings.ledger_url)
                try:
                    recorded = {(e["seq"], e["kind"]) for e in await ledger.events(loan.loan_id)}
                    effects = {a["idempotency_key"] for a in await ledger.attempts(loan.loan_id)}
                    for event in state["events"]:
                        key = event["detail"].get("idempotency_key")
                        if event["status"] == "sent" and key and key not in effects:
                            with contextlib.suppress(LedgerError):
                                effects.add((await ledger.work_item(key)).item_key)
                finally:
                    await ledger.close()
    finally:
        await env.shutdown()

    counts, timers, upserts = count_actions(histories, handle.id)
    total = sum(counts.values())
    need = business_minimum(state)
    by_summary = Counter((t["workflow"], t["summary"], t["end"]) for t in timers)
    return {
        "benchmark": "cost",
        "days_simulated": simulated,
        "litigation_reached_by_day": reached,
        "stage": state["stage"],
        "billable": dict(counts),
        "billable_total": total,
        "business_actions": need["business_actions"],
        "business_total": need["business_total"],
        "minimum": need["minimum"],
        "minimum_breakdown": need["minimum_breakdown"],
        "minimum_definition": MINIMUM,
        "ratio": round(total / need["minimum"], 2),
        "activity_types": dict(activity_types(histories)),
        "timers": {
            "fired": sum(1 for t in timers if t["end"] == "fired"),
            "cancelled": sum(1 for t in timers if t["end"] == "cancelled"),
            "open": sum(1 for t in timers if t["end"] == "open"),
            "by_summary": [{"workflow": w, "summary": s, "end": e, "count": n}
                           for (w, s, e), n in sorted(by_summary.items())],
            "cancelled_list": [t for t in timers if t["end"] == "cancelled"],
        },
        "upserts_by_attributes": dict(upserts.most_common()),
        "histories": {wid: [len(r) for r in runs] for wid, runs in histories.items()},
        # The audit trail intact: every event of the case, in order, in the ledger.
        "trail": {"events": len(state["events"]) + state["events_dropped"],
                  "in_ledger": sum(1 for n, e in enumerate(state["events"], start=state["events_dropped"])
                                   if (n, e["kind"]) in recorded),
                  # An event still to ride along with the next activity is held as its effect already.
                  "held_as_effect": [e["kind"] for n, e in enumerate(state["events"], start=state["events_dropped"])
                                     if (n, e["kind"]) not in recorded
                                     and e["detail"].get("idempotency_key") in effects],
                  "missing": [e["kind"] for n, e in enumerate(state["events"], start=state["events_dropped"])
                              if (n, e["kind"]) not in recorded
                              and e["detail"].get("idempotency_key") not in effects]},
        "wall_seconds": round(sim_seconds, 2),
        "wall_seconds_total": round(time.perf_counter() - began, 2),
    }


def print_table(r: dict[str, Any]) -> None:
    width = 28
    print(f"cost: one untouched case, default ladder ({r['days_simulated']} days simulated; "
          f"litigation + legal hand-off by day {r['litigation_reached_by_day']})")
    print(f"{'billable category':<{width}} {'count':>6}")
    for key, _ in CATEGORIES:
        print(f"  {key:<{width - 2}} {r['billable'][key]:>6}")
    print(f"{'TOTAL billable':<{width}} {r['billable_total']:>6}")
    print(f"{'business actions':<{width}} {r['business_total']:>6}   "
          + ", ".join(f"{k} {v}" for k, v in sorted(r['business_actions'].items())))
    print(f"{'minimum':<{width}} {r['minimum']:>6}   "
          + ", ".join(f"{k} {v}" for k, v in r['minimum_breakdown'].items()))
    print(f"{'ratio total/minimum':<{width}} {r['ratio']:>6}")
    trail = r["trail"]
    print(f"audit trail: {trail['in_ledger']} of the case's {trail['events']} events in the ledger's trail, "
          f"{len(trail['held_as_effect'])} held as their effect until the next activity carries them "
          f"({', '.join(trail['held_as_effect']) or '-'}), {len(trail['missing'])} missing")
    t = r["timers"]
    print(f"timers: {t['fired']} fired, {t['cancelled']} cancelled, {t['open']} open")
    for row in t["by_summary"]:
        print(f"  {row['count']:>3} x {row['end']:<9} {row['workflow']:<5} {row['summary']}")
    print("search-attribute upserts by attributes set: "
          + ", ".join(f"{k} {v}" for k, v in r["upserts_by_attributes"].items()))
    print(f"days simulated: {r['days_simulated']}")
    print(f"wall seconds: {r['wall_seconds']} (case start to histories fetched; "
          f"{r['wall_seconds_total']} incl. server start)")
    print(f"minimum = {r['minimum_definition']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--days", type=int, default=180,
                        help="days to simulate (default 180, the ladder DESIGN.md costs)")
    parser.add_argument("--step", type=int, default=10, help="days per env.sleep")
    parser.add_argument("--extra", type=int, default=None,
                        help="stop this many days after the legal hand-off instead of at --days")
    args = parser.parse_args()
    # The activities log each effect through structlog; keep stdout for the table or the JSON.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    result = asyncio.run(run(args.days, args.step, args.extra))
    show(result, args.json, print_table)


if __name__ == "__main__":
    main()
