"""Simulation benchmark: simulated cases per second, the real case workflow against a skeleton of its shape.

    .venv/bin/python bench/lab.py [--cases 200] [--days 180] [--strategy default] [--seed 1] [--sandboxed] [--json]

One time-skipping server from the venv (never downloaded), one process. First the strategy lab's
simulation (lab/simulate.py) of ``--cases`` synthetic loans (lab/portfolio.py) over ``--days``: the
real LoanCollectionWorkflow, its field-visit children and the simulated borrowers. Then, on the same
server and worker set-up, one skeleton workflow per simulated case (lab/skeleton.py) with the timers,
activities and signals that case's family (case, visit children, borrower) recorded in the real run,
and no domain logic, over the same horizon. Each run is timed from its first start to the horizon
reached; the result is the ratio of the two rates (the goal: at least 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.templates import TemplateBook  # noqa: E402
from bench.cost import fetch_runs  # noqa: E402
from bench.harness import machine, show  # noqa: E402
from domain.loan import Loan  # noqa: E402
from infra.client import data_converter  # noqa: E402
from infra.search_attributes import ensure_search_attributes  # noqa: E402
from infra.strategies import load_lab_strategy  # noqa: E402
from lab.behaviour import load_behaviour  # noqa: E402
from lab.borrower import borrower_id  # noqa: E402
from lab.portfolio import synthetic_rows  # noqa: E402
from lab.sim_activities import VISIT_MARK  # noqa: E402
from lab.simulate import (  # noqa: E402
    TEST_SERVER, Simulation, lab_workers, next_monday_nine, quiet_runtime, simulate, skip_to,
)
from lab.skeleton import Shape, SkeletonActivities, SkeletonWorkflow  # noqa: E402

READS_AT_ONCE = 16


async def shapes(client: Client, sim: Simulation) -> list[Shape]:
    """Each simulated case's family (the case over all its runs, its visit children, its borrower) as
    the server's histories recorded it."""
    visits: dict[str, list[str]] = {}
    for event in sim.events:
        if event["kind"] == "field_visit_started":
            visit_id = event["detail"]["visit_id"]  # <case id>-visit-<n> (workflows/visits.py)
            visits.setdefault(visit_id.rsplit(VISIT_MARK, 1)[0], []).append(visit_id)
    gate = asyncio.Semaphore(READS_AT_ONCE)

    async def counted(workflow_ids: list[str]) -> Shape:
        timers = activities = signals = 0
        for workflow_id in workflow_ids:
            async with gate:
                try:
                    runs = await fetch_runs(client, workflow_id, None)
                except Exception:  # noqa: BLE001 - a borrower never started (nothing followed its contacts)
                    continue
            for events in runs:
                for event in events:
                    kind = event.event_type
                    timers += kind == EventType.EVENT_TYPE_TIMER_STARTED
                    activities += kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                    signals += kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        return Shape(timers=timers, activities=activities, signals=signals, horizon_seconds=sim.days * 86_400)

    families = [[case_id, *visits.get(case_id, []), borrower_id(case_id)] for case_id in sim.case_ids]
    return list(await asyncio.gather(*(counted(family) for family in families)))


async def skeleton_run(env: WorkflowEnvironment, found: list[Shape], days: int, sandboxed: bool) -> float:
    """One skeleton per shape, over the same horizon; seconds from the first start to the horizon."""
    client = env.client
    start = next_monday_nine(await env.get_current_time())
    await skip_to(env, start, step=None)
    activities = SkeletonActivities(client)
    queue = f"skeleton-{uuid.uuid4().hex}"
    gate = asyncio.Semaphore(32)

    async def begin(n: int, shape: Shape) -> None:
        async with gate:
            await client.start_workflow(SkeletonWorkflow.run, shape, id=f"skeleton-{n}", task_queue=queue)

    async with lab_workers(client, queue, activities, workflows=[SkeletonWorkflow], cases=len(found),
                           sandboxed=sandboxed):
        began = time.perf_counter()
        await asyncio.gather(*(begin(n, shape) for n, shape in enumerate(found)))
        await skip_to(env, start + timedelta(days=days))
        return time.perf_counter() - began


async def run(cases: int, days: int, strategy_names: list[str], seed: int, sandboxed: bool) -> dict[str, Any]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=data_converter(), runtime=quiet_runtime())
    try:
        await ensure_search_attributes(env.client)
        loans = [Loan.from_row(row) for row in synthetic_rows(cases, seed)]
        book = TemplateBook(ROOT / "templates")
        strategies = [load_lab_strategy(name, ROOT / "strategies", book) for name in strategy_names]
        sim = await simulate(loans, strategies, load_behaviour(), days=days, seed=seed, env=env, sandboxed=sandboxed)
        found = await shapes(env.client, sim)
        skeleton_seconds = await skeleton_run(env, found, days, sandboxed)
    finally:
        await env.shutdown()
    simulated = len(found)
    real_rate, skeleton_rate = simulated / sim.seconds, simulated / skeleton_seconds
    mean = {key: round(sum(getattr(s, key) for s in found) / simulated, 1)
            for key in ("timers", "activities", "signals")}
    return {
        "machine": machine(), "cases": simulated, "days": days, "strategies": strategy_names, "seed": seed,
        "runner": "sandboxed" if sandboxed else "unsandboxed",
        "shape_per_case": mean, "events": len(sim.events), "open_at_horizon": sim.open_cases,
        "real": {"seconds": round(sim.seconds, 2), "cases_per_second": round(real_rate, 2)},
        "skeleton": {"seconds": round(skeleton_seconds, 2), "cases_per_second": round(skeleton_rate, 2)},
        "ratio": round(real_rate / skeleton_rate, 3),
        "goal": 0.8,
    }


def table(result: dict[str, Any]) -> None:
    shape = result["shape_per_case"]
    print(f"simulation benchmark ({result['machine']})")
    print(f"  {result['cases']} cases ({', '.join(result['strategies'])}) x {result['days']} days, seed "
          f"{result['seed']}, workflows {result['runner']}")
    print(f"  shape per case (case + visit children + borrower): {shape['timers']} timers, "
          f"{shape['activities']} activities, {shape['signals']} signals")
    print(f"  real workflow: {result['real']['seconds']:.1f} s, {result['real']['cases_per_second']:.2f} cases/s")
    print(f"  skeleton:      {result['skeleton']['seconds']:.1f} s, {result['skeleton']['cases_per_second']:.2f} cases/s")
    print(f"  ratio real/skeleton: {result['ratio']:.2f}x (goal >= {result['goal']})")


def main() -> None:
    # The SDK's warnings about the test server and the cases' log of commands they refused are expected here.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--strategy", action="append", dest="strategies")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sandboxed", action="store_true", help="run the workflows in the SDK's sandbox")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.cases, args.days, args.strategies or ["default"], args.seed, args.sandboxed))
    show(result, args.json, table)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    import os

    os._exit(0)  # the SDK's runtime threads can crash interpreter teardown (sdk-python #300)
