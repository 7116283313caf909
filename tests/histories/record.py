"""Record workflow histories for the replay tests.

    .venv/bin/python -m tests.histories.record [SCENARIO ...]

Runs a few scenarios on the time-skipping server and writes each case's (and
each visit child's) history to tests/histories/*.json. Commit them: the replay
test proves that cases started under this code still replay under later code.
Histories already committed are never re-recorded: they are the cases started
under earlier code. Record a new scenario by name; a change to workflow logic is
gated by workflow.patched, and the old histories stay in place beside the new ones.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.stages import Stage
from domain.strategy import Strategy
from infra.client import data_converter
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from sync.models import SyncReport, SyncRequest, SyncRun
from sync.workflow import DailySyncWorkflow, sync_queue
from tests.conftest import PROFILES, make_loan, strategy, zone_where_it_is
from worker import build_worker
from workflows.inputs import FEATURES, CaseInput, case_workflow_id
from workflows.loan_collection import LoanCollectionWorkflow

HERE = Path(__file__).parent
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


async def _start(client: Client, queue: str, loan_id: str, **fields) -> WorkflowHandle:
    loan = make_loan(loan_id=loan_id, **fields.pop("loan", {}))
    return await client.start_workflow(LoanCollectionWorkflow.run,
                                       CaseInput(loan=loan, strategy=fields.pop("strat", strategy()), **fields),
                                       id=case_workflow_id(loan_id), task_queue=queue)


async def untouched_default_ladder(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    handle = await _start(env.client, queue, "REPLAY-LADDER", loan={"days_past_due": 5})
    await env.sleep(timedelta(days=130))
    return handle


async def operator_commands(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    handle = await _start(env.client, queue, "REPLAY-COMMANDS")
    today = (await env.get_current_time()).date()
    await handle.signal("payment_received", {"amount": "nonsense", "reference": "BAD"})
    await handle.execute_update("assign", {"agent": "agent-1"})
    await handle.execute_update("promise_to_pay", {"amount": "100", "due_date": (today + timedelta(days=3)).isoformat()})
    await handle.execute_update("payment_received", {"amount": "100", "reference": "P-1"})
    await handle.signal("payment_received", {"amount": "100", "reference": "P-1"})
    await handle.execute_update("hardship", {"reason": "illness", "until": (today + timedelta(days=10)).isoformat()})
    await env.sleep(timedelta(days=12))
    await handle.execute_update("dispute", {"reason": "amount wrong"})
    await handle.execute_update("dispute_resolved", {"upheld": False, "note": "verified"})
    await handle.execute_update("cease_contact", {"channels": ["sms"]})
    await handle.execute_update("hold", {"reason": "complaint"})
    await handle.execute_update("release", {})
    await env.sleep(timedelta(days=5))
    await handle.execute_update("escalate", {"reason": "no response"})
    await env.sleep(timedelta(days=4))
    await handle.execute_update("call_outcome", {"outcome": "no_answer"})
    await env.sleep(timedelta(days=1))
    await handle.signal("payment_received", {"amount": "350.00", "reference": "P-2"})
    await handle.result()
    return handle


async def field_visit_reports(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    handle = await _start(env.client, queue, "REPLAY-VISIT", loan={"days_past_due": 70})
    await env.sleep(timedelta(days=1, hours=1))
    await handle.execute_update("field_visit_report", {"outcome": "not_home"})
    await env.sleep(timedelta(hours=2))
    await handle.execute_update("field_visit_report", {"outcome": "met", "note": "agreed to call"})
    await env.sleep(timedelta(days=3))
    await handle.execute_update("close", {"outcome": "settled", "note": "settled at the door"})
    await handle.result()
    return handle


async def hold_with_a_visit_report(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    handle = await _start(env.client, queue, "REPLAY-VISIT-HOLD", loan={"days_past_due": 70})
    await env.sleep(timedelta(days=1, hours=1))
    await handle.signal("field_visit_report", {"outcome": "not_home"})
    await handle.signal("dispute", {"reason": "already paid"})
    await env.sleep(timedelta(days=12))
    await handle.execute_update("dispute_resolved", {"upheld": False, "note": "no payment found"})
    await env.sleep(timedelta(days=4))
    return handle


async def arrangements(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """An instalment plan paid early, late within grace and in parts; then a broken one."""
    handle = await _start(env.client, queue, "REPLAY-ARRANGEMENT", loan={"days_past_due": 20})
    today = (await env.get_current_time()).date()
    await handle.execute_update("hardship", {"reason": "reduced hours"})
    await handle.execute_update("propose_arrangement", {"kind": "instalments", "approved_by": "agent-3", "instalments": [
        {"due_date": (today + timedelta(days=7 * n)).isoformat(), "amount": "90.00"} for n in range(1, 6)]})
    await handle.execute_update("payment_received", {"amount": "90.00", "reference": "A1"})
    await env.sleep(timedelta(days=16))
    await handle.execute_update("payment_received", {"amount": "50.00", "reference": "A2"})
    await handle.signal("payment_received", {"amount": "50.00", "reference": "A2"})
    await handle.execute_update("payment_received", {"amount": "40.00", "reference": "A3"})
    await env.sleep(timedelta(days=30))  # the third and fourth instalments are never paid
    return handle


async def continue_as_new(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    handle = await _start(env.client, queue, "REPLAY-CAN", loan={"days_past_due": 5}, history_limit=40)
    await env.sleep(timedelta(days=40))
    return handle


async def compliance_checks(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A US borrower asleep: the validation notice, a deferred SMS sent at 08:00, capped calls."""
    now = await env.get_current_time()
    handle = await _start(env.client, queue, "REPLAY-COMPLIANCE", compliance=PROFILES["US"],
                          loan={"days_past_due": 25, "timezone": zone_where_it_is(2, now)})
    await env.sleep(timedelta(days=8))
    await handle.execute_update("call_outcome", {"outcome": "reached"})
    await handle.execute_update("cease_contact", {"channels": ["email"]})
    await env.sleep(timedelta(days=10))
    return handle


async def compliance_resolved_by_worker(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A case started without a profile (as before profiles existed): the worker resolves one."""
    now = await env.get_current_time()
    handle = await _start(env.client, queue, "REPLAY-COMPLIANCE-WORKER",
                          loan={"jurisdiction": "UK", "currency": "GBP", "timezone": zone_where_it_is(12, now)})
    await handle.execute_update("hardship", {"reason": "adviser notice", "breathing_space": True})
    await env.sleep(timedelta(days=62))
    return handle


async def ledger_trail(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Events appended to the ledger before each wait, signed commands, across a continue-as-new."""
    handle = await _start(env.client, queue, "REPLAY-LEDGER", history_limit=60)
    await handle.execute_update("assign", {"agent": "agent-1", "by": "sup-7"})
    await handle.signal("hold", {"reason": "complaint", "by": "sup-7"})
    await env.sleep(timedelta(days=2))
    await handle.execute_update("release", {"by": "sup-7"})
    await env.sleep(timedelta(days=30))
    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-7"})
    await handle.result()
    return handle


async def started_as_intake_starts(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A case started the way intake starts one: its features in its input (no patch markers) and
    its opening search attributes set with the start. An assignment that keeps the timer, a call
    task replacing another (the expiry rides with it), a short wait into the field visit, whose
    first plan carries the case's events."""
    from starter import start_case

    now = await env.get_current_time()
    loan = make_loan(loan_id="REPLAY-FEATURES", days_past_due=52, timezone=zone_where_it_is(12, now))
    handle = await start_case(env.client, loan, strategy(), queue)
    await env.sleep(timedelta(hours=2))
    await handle.execute_update("assign", {"agent": "agent-4", "by": "sup-1"})
    await env.sleep(timedelta(days=4))
    await handle.execute_update("call_outcome", {"outcome": "no_answer", "by": "agent-4"})
    await env.sleep(timedelta(days=12))  # the contact stage's 14 days, then a day into the field visit
    await handle.execute_update("field_visit_report", {"outcome": "met", "note": "will pay", "by": "field-01"})
    await env.sleep(timedelta(days=4))
    return handle


def quick_field_visit() -> Strategy:
    """The default ladder with a field-visit stage that ends a day and a half after the visit's
    report is due: a visit reported late in it ends less than a day before the stage does."""
    base = strategy().model_copy(deep=True)
    base.stages[Stage.FIELD_VISIT] = base.stages[Stage.FIELD_VISIT].model_copy(
        update={"dwell": timedelta(days=9, hours=12), "min_dwell": timedelta(days=7)})
    return base


async def work_follows_case(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """Work the case ends reaches the ledger before the case waits: a hold withdraws the call task, a
    visit reported on less than a day before its stage ends (the note of its end would otherwise
    ride with the next stage's letter); the case closes with its legal hand-off open."""
    handle = await _start(env.client, queue, "REPLAY-WORK", loan={"days_past_due": 50},
                          strat=quick_field_visit(), compliance=PROFILES["demo"])
    await env.sleep(timedelta(hours=1))  # the contact stage's first call task is queued
    await handle.execute_update("hold", {"reason": "complaint", "by": "sup-2"})
    await handle.execute_update("release", {"by": "sup-2"})
    started: list[dict] = []
    while not started:  # the contact stage's 14 days, then a day into the field visit
        await env.sleep(timedelta(days=1))
        started = [e for e in (await handle.query("status"))["events"] if e["kind"] == "field_visit_started"]
    # The visit is planned 5 days after it starts, reported on 3 days after that at the latest, and
    # its stage ends 8 days 12 hours after it starts: report at 7 days 14 hours.
    await env.sleep(timedelta(days=7, hours=14) - (await env.get_current_time()
                                                   - datetime.fromisoformat(started[0]["at"])))
    await handle.execute_update("field_visit_report", {"outcome": "met", "visit_id": started[0]["detail"]["visit_id"],
                                                       "agents": ["field-01", "field-02"], "by": "field-01"})
    await env.sleep(timedelta(days=40))  # the legal letter's 15 days, then litigation and the hand-off
    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-2"})
    await handle.result()
    return handle


async def validation_period_kept(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """The second compliance pass, US: a loan taken in at DPD 95 gets the validation notice; the legal
    letter waits out the validation period, escalate is refused while the letter's response period
    runs, then litigation and the hand-off; a hardship reason kept for the ledger only."""
    now = await env.get_current_time()
    handle = await _start(env.client, queue, "REPLAY-SECOND-PASS-US", compliance=PROFILES["US"], features=list(FEATURES),
                          loan={"days_past_due": 95, "timezone": zone_where_it_is(12, now)})
    await env.sleep(timedelta(days=2))
    await handle.execute_update("hardship", {"reason": "in hospital", "until": (now + timedelta(days=5)).isoformat(),
                                             "by": "agent-1"})
    await env.sleep(timedelta(days=40))
    try:
        await handle.execute_update("escalate", {"by": "sup-1"})  # refused: the response period runs
    except WorkflowUpdateFailedError:
        pass
    await env.sleep(timedelta(days=20))
    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-1"})
    await handle.result()
    return handle


async def breathing_space_held(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """The second compliance pass, UK: a breathing space beside hardship and an arrangement, ended by the
    scheme; a call task whose agent dialled three times, once after hours (a breach)."""
    now = await env.get_current_time()
    handle = await _start(env.client, queue, "REPLAY-SECOND-PASS-UK", compliance=PROFILES["UK"], features=list(FEATURES),
                          loan={"jurisdiction": "UK", "currency": "GBP", "days_past_due": 40,
                                "timezone": zone_where_it_is(11, now)})
    await env.sleep(timedelta(hours=13))
    dials = [now + timedelta(minutes=5), now + timedelta(minutes=20), now + timedelta(hours=12)]
    await handle.execute_update("call_outcome", {"outcome": "no_answer", "dials": 3, "by": "agent-7",
                                                 "dialled_at": [d.isoformat() for d in dials]})
    await handle.execute_update("breathing_space", {"kind": "standard", "reference": "BS-1", "by": "comp-1"})
    await handle.execute_update("hardship", {"reason": "lost job", "by": "agent-7"})
    await handle.execute_update("hardship_resolved", {"by": "agent-7"})
    today = (await env.get_current_time()).date()
    await handle.execute_update("propose_arrangement", {"kind": "instalments", "by": "agent-7", "instalments": [
        {"due_date": (today + timedelta(days=10)).isoformat(), "amount": "150.00"},
        {"due_date": (today + timedelta(days=40)).isoformat(), "amount": "300.00"}]})
    await env.sleep(timedelta(days=20))
    await handle.execute_update("breathing_space_ended", {"reason": "cancelled_by_adviser", "by": "comp-1"})
    await env.sleep(timedelta(days=3))
    return handle


async def case_follows_loan(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """The case follows the loan: an episode in its keys, the servicer's figures lowering DPD, a promise
    falling due on a hardship hold judged after it, a payment valued in time and posted after a promise
    broke, a reversed payment, an oversized command refused, a residual below the tolerance curing it."""
    now = await env.get_current_time()
    handle = await _start(env.client, queue, "REPLAY-FOLLOWS-LOAN", features=list(FEATURES), episode="2026-01-05",
                          loan={"days_past_due": 25, "amount_past_due": "900.00", "timezone": zone_where_it_is(12, now)})
    today = (await env.get_current_time()).date()
    await handle.execute_update("loan_update", {"as_of": today.isoformat(), "amount_past_due": "900.00",
                                                "outstanding": "5000.00", "days_past_due": 3, "by": "system:daily-sync"})
    await handle.execute_update("promise_to_pay", {"amount": "300.00", "due_date": (today + timedelta(days=3)).isoformat(),
                                                   "by": "agent-1"})
    await handle.execute_update("hardship", {"reason": "lost job", "by": "agent-1"})
    await env.sleep(timedelta(days=10))
    await handle.execute_update("hardship_resolved", {"by": "agent-1"})
    await env.sleep(timedelta(days=8))  # the promise breaks the time held later
    paid_at = (await env.get_current_time()) - timedelta(days=3)
    await handle.execute_update("payment_received", {"amount": "300.00", "reference": "LATE-1",
                                                     "paid_at": paid_at.isoformat(), "by": "payments-1"})
    await handle.execute_update("payment_received", {"amount": "200.00", "reference": "DD-2", "by": "payments-1"})
    await handle.execute_update("payment_reversed", {"reference": "DD-2", "reason": "returned unpaid",
                                                     "by": "payments-1"})
    await handle.signal("hold", {"reason": "x" * 20_000})
    await env.sleep(timedelta(days=2))
    await handle.execute_update("payment_received", {"amount": "599.50", "reference": "LAST", "by": "payments-1"})
    await handle.result()
    return handle


async def episode_reopened(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A case a payment cured, reopened as a new episode when the payment came back."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from workflows.inputs import reopened_case

    handle = await _start(env.client, queue, "REPLAY-REOPENED", features=list(FEATURES), episode="2026-01-10",
                          loan={"days_past_due": 8})
    closed = await handle.execute_update("payment_received", {"amount": "450.00", "reference": "DD-1"})
    await until_closed(env.client, handle.id)  # (awaiting the result would let the server skip years ahead)
    previous = CaseInput(loan=make_loan(loan_id="REPLAY-REOPENED", days_past_due=8), strategy=strategy(),
                         features=list(FEATURES), episode="2026-01-10")
    reopened = reopened_case(previous, closed, "DD-1", "returned unpaid", "payments-1", "2026-01-10.2",
                             handle.result_run_id, now=await env.get_current_time())
    run = await env.client.start_workflow(
        LoanCollectionWorkflow.run, reopened, id=handle.id, task_queue=queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
    await env.sleep(timedelta(days=4))
    await run.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-1"})
    await run.result()
    return run


async def daily_sync(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """The daily sync's workflow as its schedule starts it: its activity fails once (a worker that died
    mid-file) and is tried again, which finishes the run."""
    attempts = 0

    @activity.defn(name="run_daily_sync")
    async def run_daily_sync(run: SyncRun) -> SyncReport:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("the worker died")
        return SyncReport(files=[])

    async with Worker(env.client, task_queue=sync_queue(queue), activities=[run_daily_sync]):
        handle = await env.client.start_workflow(DailySyncWorkflow.run, SyncRequest(heartbeat_seconds=10),
                                                 id="daily-sync-REPLAY", task_queue=queue)
        await handle.result()
    return handle


async def risk_regraded(env: WorkflowEnvironment, queue: str) -> WorkflowHandle:
    """A loan the lender sent without a grade, graded by the default scorecard at intake (600: C): a
    broken promise grades it D, a payment C again, each a risk_grade_changed and a RiskGrade upsert."""
    from infra.scorecards import load_scorecard

    card = load_scorecard(HERE.parent.parent / "strategies" / "scorecard.toml")
    loan = card.grade_loan(make_loan(loan_id="REPLAY-REGRADE").model_copy(update={"risk_grade": ""}))
    handle = await env.client.start_workflow(
        LoanCollectionWorkflow.run, CaseInput(loan=loan, strategy=strategy(), compliance=PROFILES["demo"],
                                              features=list(FEATURES), episode="2026-01-10", scorecard=card),
        id=case_workflow_id(loan.loan_id), task_queue=queue)
    due = ((await env.get_current_time()) + timedelta(days=2)).date().isoformat()
    await handle.execute_update("promise_to_pay", {"amount": "100.00", "due_date": due, "by": "agent-1"})
    await env.sleep(timedelta(days=6))  # the promise breaks
    await handle.execute_update("payment_received", {"amount": "100.00", "reference": "P-1", "by": "payments-1"})
    await env.sleep(timedelta(days=2))
    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-1"})
    await handle.result()
    return handle


SCENARIOS: dict[str, Callable[[WorkflowEnvironment, str], Awaitable[WorkflowHandle]]] = {
    "untouched_default_ladder": untouched_default_ladder,
    "operator_commands": operator_commands,
    "field_visit_reports": field_visit_reports,
    "hold_with_a_visit_report": hold_with_a_visit_report,
    "arrangements": arrangements,
    "continue_as_new": continue_as_new,
    "compliance_checks": compliance_checks,
    "compliance_resolved_by_worker": compliance_resolved_by_worker,
    "ledger_trail": ledger_trail,
    "started_as_intake_starts": started_as_intake_starts,
    "work_follows_case": work_follows_case,
    "validation_period_kept": validation_period_kept,
    "breathing_space_held": breathing_space_held,
    "case_follows_loan": case_follows_loan,
    "episode_reopened": episode_reopened,
    "daily_sync": daily_sync,
    "risk_regraded": risk_regraded,
}


async def _described(client: Client, workflow_id: str):
    # Raw, because the Java test server returns unset datetime attributes in a form the
    # SDK's typed describe() cannot decode.
    raw = await client.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)))
    return raw.workflow_execution_info


async def _latest_run_id(client: Client, workflow_id: str) -> str:
    return (await _described(client, workflow_id)).execution.run_id


async def until_closed(client: Client, workflow_id: str, attempts: int = 200) -> None:
    """Wait for the workflow's latest run to close, without awaiting its result (on the time-skipping
    server a result awaited with nothing else running lets the clock skip ahead)."""
    for _ in range(attempts):
        if (await _described(client, workflow_id)).status != 1:  # WORKFLOW_EXECUTION_STATUS_RUNNING
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never closed")


async def record(name: str, out_dir: Path) -> list[Path]:
    """Run one scenario on a fresh server; write every run of the case and its children."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER),
                                                        data_converter=data_converter())
    written: list[Path] = []
    try:
        await ensure_search_attributes(env.client)
        with tempfile.TemporaryDirectory() as data:
            queue = f"record-{name}"
            async with build_worker(env.client, Settings(data_dir=Path(data), letter_processes=0), task_queue=queue):
                handle = await SCENARIOS[name](env, queue)
                workflow_ids = [handle.id]
                if handle.id.startswith("loan-"):  # a case: its visits' children too
                    state = await env.client.get_workflow_handle(handle.id).query("status")
                    workflow_ids += [e["detail"]["visit_id"] for e in state["events"]
                                     if e["kind"] == "field_visit_started"]
                runs = [(handle.id, handle.result_run_id)]
                latest = await _latest_run_id(env.client, handle.id)
                if latest != handle.result_run_id:
                    runs.append((handle.id, latest))
                runs += [(wid, None) for wid in workflow_ids[1:]]
                for index, (workflow_id, run_id) in enumerate(runs):
                    history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
                    # The workflow id is part of replay (child ids derive from it) but not of the
                    # exported history, so the file name carries it.
                    path = out_dir / f"{name}--{index}--{workflow_id}.json"
                    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
                    written.append(path)
    finally:
        await env.shutdown()
    return written


async def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise SystemExit(f"name the scenarios to record (unknown: {unknown}); one of: {', '.join(SCENARIOS)}")
    for name in names:
        if list(HERE.glob(f"{name}--*.json")):
            raise SystemExit(f"{name}: already recorded; committed histories stand for cases already running")
        for path in await record(name, HERE):
            print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
