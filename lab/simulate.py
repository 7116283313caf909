"""What-if simulation: strategies over one portfolio, on the time-skipping server, with the real case workflow.

Each strategy's cases run the real ``LoanCollectionWorkflow`` (and its field-visit children) on ONE
time-skipping test server, all at once (``cases_at_once`` bounds how many loans share the server's
clock; more go in later batches), with simulated activities (``lab/sim_activities.py``) and a
simulated borrower beside each case (``lab/borrower.py``) acting on the behaviour model.

Reproducible: the server's clock starts at the real time, so the run first skips to a fixed Monday,
09:00 UTC (:data:`SIM_EPOCH`): weekdays, contact hours and daylight-saving changes fall on the same
simulated days whatever the date the run is made. Event times are reported relative to the start of
their batch (day 0 = ``SIM_EPOCH``), to the minute, so the few seconds the server's clock moves
while the machine works never change a report. At the horizon the run stops: open cases are read
(their ``status``) and terminated, and reported open.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from domain.case import CaseEvent, open_case
from domain.episodes import episode_of
from domain.loan import Loan
from domain.strategy import Strategy
from infra.client import data_converter
from infra.compliance import profile_for
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from lab.behaviour import Behaviour, BorrowerInput, pays_unprompted
from lab.borrower import BorrowerWorkflow, borrower_id
from lab.sim_activities import EventStore, SimActivities
from worker import Workers
from workflows import search_attributes as sa
from workflows.field_visit import FieldVisitWorkflow
from workflows.inputs import new_case
from workflows.loan_collection import LoanCollectionWorkflow

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
# Day 0 of every simulation: a Monday, 09:00 UTC, far enough ahead that the test server's clock
# (which starts at the real time) can always skip forward to it. 400 Gregorian years are a whole
# number of weeks, so past it the same calendar comes back every 400 years.
SIM_EPOCH = datetime(2100, 1, 4, 9, 0, tzinfo=UTC)
CALENDAR_CYCLE_DAYS = 146_097  # 400 Gregorian years
STARTS_AT_ONCE = 32  # workflow starts in flight at once (the server takes them in turn anyway)
READS_AT_ONCE = 32
SKIP_DEADLINE = timedelta(hours=1)  # for one day of a large portfolio on a slow machine


@dataclass(frozen=True)
class SimCase:
    """One loan under one strategy: the case's workflow id keeps the strategies apart, the loan id stays
    the loan's (the borrower's draws are keyed by it, so every strategy meets the same borrower)."""

    strategy: Strategy
    loan: Loan
    case_id: str


@dataclass
class Simulation:
    """What a run produced: every case's events as the ledger would hold them, and how it ran."""

    start: datetime  # day 0 (every batch's events are reported from it)
    days: int
    seed: int
    strategies: list[str]
    loans: int
    batches: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # one per case event, as reports.kpis.Event takes
    effects: Counter = field(default_factory=Counter)  # contacts and work the simulated activities did
    open_cases: int = 0
    unread: int = 0  # cases whose open tail could not be read at the horizon
    # Wall time from the first case's start to the horizon, over all batches (reading the open cases
    # at the horizon left out); never part of a report: it varies by machine.
    seconds: float = 0.0
    case_ids: list[str] = field(default_factory=list)


def case_id_for(index: int, strategy: Strategy, loan_id: str) -> str:
    return f"lab-{index}-{strategy.name}-{loan_id}"


def quiet_runtime() -> Runtime:
    """The SDK core logs to stdout by default: its warnings go to Python logging (stderr) instead."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter="WARN", forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))))


def first_start(now: datetime) -> datetime:
    """Day 0: :data:`SIM_EPOCH`, or the same calendar 400 years on once the server's clock is past it."""
    start = SIM_EPOCH
    while start <= now:
        start += timedelta(days=CALENDAR_CYCLE_DAYS)
    return start


def next_monday_nine(after: datetime) -> datetime:
    """The first Monday 09:00 UTC after ``after`` (where a later batch starts)."""
    day = (after + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    return day + timedelta(days=(7 - day.weekday()) % 7)


def lab_workers(client: Client, task_queue: str, activities: Any, *, workflows: Sequence[type] | None = None,
                cases: int = 1000, sandboxed: bool = False) -> Workers:
    """The project's own worker composition (worker.Workers: the cases' queue and one per channel),
    with the simulated activities and the borrower workflow, sized for ``cases`` cases at once.

    Unless ``sandboxed``, the workflows run outside the SDK's sandbox: the same code, without the
    sandbox re-importing the workflow modules for every case and checking every call for determinism
    (the replay tests prove that). It halves a simulation's time and changes no figure of it."""
    settings = Settings(activity_slots=64, sms_slots=32, email_slots=32, letter_processes=0, workflow_slots=32,
                        workflow_cache=max(1000, 3 * cases))
    options: dict[str, Any] = {} if sandboxed else {"workflow_runner": UnsandboxedWorkflowRunner()}
    return Workers(client, settings, task_queue, activities.all(), letter_slots=16,
                   workflows=list(workflows or (LoanCollectionWorkflow, FieldVisitWorkflow, BorrowerWorkflow)),
                   **options)


async def simulate(loans: Sequence[Loan], strategies: Sequence[Strategy], behaviour: Behaviour, *, days: int,
                   seed: int, cases_at_once: int = 1000, env: WorkflowEnvironment | None = None,
                   sandboxed: bool = False) -> Simulation:
    """Run every strategy over ``loans`` for ``days`` simulated days; on ``env`` if given (its search
    attributes registered), else on a time-skipping server of its own. ``sandboxed``: in the SDK's
    workflow sandbox, as the worker runs cases (slower; the same figures)."""
    if days < 1:
        raise ValueError("days: simulate at least one day")
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy: each strategy once (given {', '.join(names)})")
    own = env is None
    if env is None:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(TEST_SERVER), data_converter=data_converter(), runtime=quiet_runtime())
        await ensure_search_attributes(env.client)
    store = EventStore()
    activities = SimActivities(env.client, store, f"lab-{uuid.uuid4().hex}")
    per_batch = max(1, cases_at_once // max(1, len(strategies)))  # loans per batch (each under every strategy)
    sim = Simulation(start=first_start(await env.get_current_time()), days=days, seed=seed, strategies=names,
                     loans=len(loans))
    try:
        async with lab_workers(env.client, activities.task_queue, activities,
                               cases=min(len(loans), per_batch) * len(strategies), sandboxed=sandboxed) as workers:
            batch_start = sim.start
            for first in range(0, len(loans), per_batch):
                batch = [SimCase(strategy, loan, case_id_for(n + 1, strategy, loan.loan_id))
                         for loan in loans[first:first + per_batch] for n, strategy in enumerate(strategies)]
                await skip_to(env, batch_start, step=None)  # nothing runs yet (or any more)
                await _run_batch(env, activities, batch, behaviour, seed, batch_start, days, store, sim)
                if workers.failed.is_set():  # a worker stopped polling: what ran after that is not the workflow's
                    raise RuntimeError(f"the simulation's worker failed: {workers.error}")
                sim.batches += 1
                batch_start = next_monday_nine(batch_start + timedelta(days=days))
    finally:
        if own:
            await env.shutdown()
    sim.effects = store.effects
    return sim


async def skip_to(env: WorkflowEnvironment, moment: datetime, step: timedelta | None = timedelta(days=1),
                  attempts: int = 3) -> None:
    """Skip the server's clock to ``moment``, a ``step`` at a time (None: at once, when nothing runs).
    A skip returns once the server's clock has got there, which takes as long as the cases' work in
    that time: longer than the 30 s the client gives a call, on a large portfolio, hence a
    deadline of its own. A skip whose connection drops is asked again: the clock says how far it got."""
    failures = 0
    while True:
        try:
            now = await env.get_current_time()
            if moment <= now:
                return
            request = SleepRequest()
            request.duration.FromTimedelta(moment - now if step is None else min(step, moment - now))
            await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_DEADLINE)
            failures = 0
        except RPCError:
            failures += 1
            if failures >= attempts:
                raise


async def _run_batch(env: WorkflowEnvironment, activities: SimActivities, batch: list[SimCase], behaviour: Behaviour,
                     seed: int, start: datetime, days: int, store: EventStore, sim: Simulation) -> None:
    client = env.client
    horizon = start + timedelta(days=days)
    gate = asyncio.Semaphore(STARTS_AT_ONCE)

    async def begin(case: SimCase) -> None:
        loan = case.loan.model_copy(update={"as_of": start.date()})  # days past due as of day 0
        episode = episode_of(start.date(), loan.days_past_due)
        borrower = BorrowerInput(case_id=case.case_id, loan_id=case.loan.loan_id, seed=seed, behaviour=behaviour,
                                 risk_grade=loan.risk_grade, amount_past_due=loan.amount_past_due,
                                 outstanding=loan.outstanding_amount, opened_at=start, horizon=horizon)
        activities.expect(borrower)
        async with gate:
            if pays_unprompted(borrower):
                await activities.start_borrower(borrower)
            # As intake starts a case: the whole strategy and the profile in the input, its opening
            # search attributes with the start.
            await client.start_workflow(
                LoanCollectionWorkflow.run,
                new_case(loan, case.strategy, profile_for(loan, case.strategy), episode=episode),
                id=case.case_id, task_queue=activities.task_queue,
                search_attributes=sa.opening(open_case(loan, case.strategy, start), loan, start,
                                             strategy=case.strategy.name))

    began = time.perf_counter()
    await asyncio.gather(*(begin(case) for case in batch))
    await skip_to(env, horizon)
    sim.seconds += time.perf_counter() - began
    await _read_open(client, batch, store, sim, activities.started)
    sim.case_ids.extend(case.case_id for case in batch)
    for case in batch:
        record = store.cases.get(case.case_id)
        for seq, event in sorted(record.events.items()) if record else ():
            if event.at > horizon:
                continue
            sim.events.append(_event(case, record.episode, seq, event, start, sim.start))


async def _read_open(client: Client, batch: list[SimCase], store: EventStore, sim: Simulation,
                     borrowers: set[str]) -> None:
    """At the horizon: what the open cases hold that the ledger does not yet, then stop them and their
    borrowers."""
    gate = asyncio.Semaphore(READS_AT_ONCE)

    async def read(case: SimCase) -> None:
        record = store.cases.get(case.case_id)
        async with gate:
            if record is None or not record.closed:
                handle = client.get_workflow_handle(case.case_id)
                try:
                    status = await handle.query("status")
                    store.merge(case.case_id, case.loan.loan_id, status.get("episode") or "",
                                [CaseEvent.model_validate(e) for e in status["events"]], status["events_dropped"])
                    sim.open_cases += status.get("outcome") is None
                except Exception:  # noqa: BLE001 - reported as unread; the rest of the report stands
                    sim.unread += 1
                await _terminate(client, case.case_id)
            if case.case_id in borrowers:
                await _terminate(client, borrower_id(case.case_id))

    await asyncio.gather(*(read(case) for case in batch))


async def _terminate(client: Client, workflow_id: str) -> None:
    try:
        await client.get_workflow_handle(workflow_id).terminate("the simulation's horizon")
    except Exception:  # noqa: BLE001 - it ended already
        pass


def _event(case: SimCase, episode: str, seq: int, event: CaseEvent, batch_start: datetime,
           day_zero: datetime) -> dict[str, Any]:
    """One case event as the KPI engine reads it, timed from day 0 to the minute. The loan id carries
    the strategy, so the two strategies' cases of one loan stay two cases."""
    offset = event.at - batch_start
    at = day_zero + timedelta(minutes=int(offset.total_seconds() // 60))
    return {"loan_id": f"{case.strategy.name}/{case.loan.loan_id}", "episode": episode, "seq": seq, "at": at,
            "kind": event.kind, "status": event.status, "reason": event.reason, "actor": event.actor,
            "detail": dict(event.detail)}


def kpi_report(sim: Simulation) -> Any:
    """The KPIs by strategy over the simulated days (``reports.kpis``, marked simulated), with the unit
    costs of ``reports/costs.toml`` (or ARREARS_COSTS)."""
    from reports.costs import load_costs
    from reports.kpis import Event, compute

    end = (sim.start + timedelta(days=sim.days)).date() + timedelta(days=1)  # the horizon's day counts
    return compute([Event(**event) for event in sim.events], sim.start.date(), end, by=("strategy",),
                   costs=load_costs(), simulated=True)
