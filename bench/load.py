"""Load benchmark: a lender's first portfolio on one machine, each figure a ratio against a baseline
measured in the same run, on the same server.

    .venv/bin/python bench/load.py [--cases 2000] [--more 8000] [--json]

Runs the embedded default: the Temporal dev server on a SQLite file of its own, ``worker.py`` as a
process (payloads encrypted, the ledger on SQLite unless ``--database URL``), loans cloned from
``examples/portfolio.csv`` on the ``default`` strategy.

1. intake, server alone: ``starter``'s intake of N loans vs bare ``start_workflow`` calls of a
   workflow with no worker, same client, same concurrency (bare before and after the intake);
2. backlog: one worker started on those N cases. The time until every case has finished its first
   step vs the CPU work it took (worker with its letter processes, plus the server, over the
   cores); worker CPU per case for the first day; activity timeouts and retries, workflow-task
   timeouts, pool and lock waits (goal: 0);
3. intake while the worker runs (``--more`` loans, default N), vs bare starts in the same phase;
4. operators: ``assign`` update and ``status`` query round trips (p50/p99) at N and N+more live
   cases, vs the same calls on a trivial workflow;
5. memory: worker RSS per 1,000 cached cases;
6. scale-out: a second backlog of N worked off by two worker processes vs the first by one;
7. letters per second: the letter press (one process per core) vs one letter at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import structlog  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.letter_press import LetterPress  # noqa: E402
from activities.letters import LetterDocument, render_pdf  # noqa: E402
from activities.templates import TemplateBook  # noqa: E402
from bench.baselines import BareStart, BenchEcho  # noqa: E402
from bench.harness import (  # noqa: E402
    WorkerProcess, address_of, clone_portfolio, cpu_seconds, environment, first_steps, history_faults,
    machine, pending_work, scratch_stack, server_process, until_quiet,
)
from infra.compliance import profile_for  # noqa: E402
from infra.strategies import load_strategy  # noqa: E402
from infra.settings import Settings  # noqa: E402
from ledger import Ledger  # noqa: E402
from starter import IntakeReport, intake, read_portfolio  # noqa: E402
from workflows.inputs import case_workflow_id, new_case  # noqa: E402

CONCURRENCY = 32  # the starter's own
NICE = int(os.environ.get("BENCH_WORKER_NICE", "0"))


async def bare_starts(client: Client, count: int, concurrency: int = CONCURRENCY) -> float:
    """Seconds for ``count`` bare starts at ``concurrency``."""
    gate = asyncio.Semaphore(concurrency)
    tag = uuid.uuid4().hex[:8]

    async def one(n: int) -> None:
        async with gate:
            await client.start_workflow(BareStart.run, "x", id=f"bare-{tag}-{n}", task_queue=f"bare-{tag}")

    began = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.perf_counter() - began


async def intake_against_bare(client: Client, settings: Settings, portfolio: Path, count: int) -> dict[str, Any]:
    """Intake of ``portfolio`` between two halves of bare starts, same client and concurrency."""
    first = await bare_starts(client, count // 2)
    began = time.perf_counter()
    report: IntakeReport = await intake(portfolio, "default", settings, client=client)
    took = time.perf_counter() - began
    second = await bare_starts(client, count - count // 2)
    if len(report.started) != count:
        raise SystemExit(f"intake: {report.summary()}")
    bare_rate, intake_rate = count / (first + second), count / took
    # What the starter does per loan besides the RPC, measured apart: validation, and building and
    # encrypting the start payload.
    began = time.perf_counter()
    loans, _ = read_portfolio(portfolio)
    validate_ms = (time.perf_counter() - began) / count * 1000
    strategy_ = load_strategy("default", settings.strategies_dir, TemplateBook(settings.templates_dir))
    converter = client.data_converter
    began = time.perf_counter()
    for _, loan in loans[:500]:
        await converter.encode([new_case(loan, strategy_, profile_for(loan, strategy_))])
    encode_ms = (time.perf_counter() - began) / min(500, len(loans)) * 1000
    return {"intake_per_s": round(intake_rate, 1), "bare_per_s": round(bare_rate, 1),
            "ratio": round(intake_rate / bare_rate, 2), "validate_ms_per_loan": round(validate_ms, 3),
            "encode_encrypt_ms_per_loan": round(encode_ms, 3)}


async def backlog(client: Client, address: str, data: Path, ids: list[str], prefix: str, database: str,
                  keys: str, log_dir: Path, processes: int) -> dict[str, Any]:
    """Start ``processes`` workers on a backlog of ``ids`` and measure how they work it off."""
    env = environment(address, data, ARREARS_DATABASE_URL=database, ARREARS_PAYLOAD_KEYS=keys)
    server = server_process()
    workers = [WorkerProcess(env, log_dir / f"worker-{prefix}-{n}.log", nice=NICE).start() for n in range(processes)]
    ledger = Ledger.connect(database)
    try:
        ready = [await w.ready(letters=False) for w in workers]
        rss_start = [w.rss_mb() for w in workers]
        cpu0, server0 = sum(w.cpu() for w in workers), cpu_seconds(server)
        # The first day's work: everything the cases have to do now (first steps, and what follows
        # at once, such as the SMS after a validation notice); then only timers days away remain.
        samples: list[tuple[float, float, float]] = []

        def cpu() -> float:
            used = sum(w.cpu() for w in workers)
            samples.append((time.monotonic(), used, cpu_seconds(server)))
            return used

        began = time.monotonic()
        wall = await until_quiet(cpu, 3600)
        # CPU at the moment the workers went quiet (the quiet seconds after it are not work).
        at = next((s for s in samples if s[0] - began >= wall), samples[-1])
        cpu1, server1 = at[1], at[2]
        pending = await pending_work(client, map(case_workflow_id, ids))
        progress = await first_steps(ledger.engine, prefix)
    finally:
        await ledger.close()
    cores = psutil.cpu_count() or 1
    work = (cpu1 - cpu0) + (server1 - server0)
    return {
        "cases": len(ids), "workers": processes, "ready_seconds": [round(r, 1) for r in ready],
        "polling_after_s": [round(w.logged_after("worker started") or -1, 2) for w in workers],
        "letters_after_s": [round(w.logged_after("letters started") or -1, 2) for w in workers],
        "first_day_seconds": round(wall, 1), "cases_with_work_pending": pending.waiting,
        "cases_never_run": pending.untouched, "activities_pending_a_retry": pending.retrying,
        "cpu_work_seconds": round(work, 1), "cpu_work_over_cores_seconds": round(work / cores, 1),
        "first_day_vs_cpu_work": round(wall / (work / cores), 2) if work else None,
        "worker_cpu_s": round(cpu1 - cpu0, 1), "server_cpu_s": round(server1 - server0, 1),
        "worker_cpu_first_day_per_case_s": round((cpu1 - cpu0) / len(ids), 3),
        "cases_opened_in_ledger": progress.opened, "contacts_sent": progress.sent,
        "contacts_retried": progress.retried, "contacts_sending": progress.sending,
        "rss_start_mb": [round(r) for r in rss_start], "_workers": workers,
    }


async def latencies(client: Client, ids: list[str], samples: int) -> dict[str, Any]:
    """``assign`` update and ``status`` query round trips on random live cases, one at a time."""
    update_ms, query_ms = [], []
    for n in range(samples):
        handle = client.get_workflow_handle(case_workflow_id(random.choice(ids)))
        began = time.perf_counter()
        await handle.execute_update("assign", {"agent": f"agent-{n % 7}", "by": "bench"})
        update_ms.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        await handle.query("status")
        query_ms.append((time.perf_counter() - began) * 1000)
    return {"update": _percentiles(update_ms), "query": _percentiles(query_ms)}


async def echo_latencies(client: Client, samples: int) -> dict[str, Any]:
    queue = f"echo-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[BenchEcho]):
        handle = await client.start_workflow(BenchEcho.run, id=queue, task_queue=queue)
        update_ms, query_ms = [], []
        for n in range(samples):
            began = time.perf_counter()
            await handle.execute_update(BenchEcho.assign, {"agent": f"agent-{n % 7}"})
            update_ms.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            await handle.query(BenchEcho.status)
            query_ms.append((time.perf_counter() - began) * 1000)
        await handle.terminate("benchmark over")
    return {"update": _percentiles(update_ms), "query": _percentiles(query_ms)}


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p99_ms": round(p99, 1)}


async def letters_per_second(count: int) -> dict[str, Any]:
    book = TemplateBook(ROOT / "templates")
    values = {"lender": "Arrears Demo Bank", "contact_point": "+1 555 0100", "product": "personal loan",
              "loan_tail": "1234", "days_past_due": "95", "response_days": "15", "today": "2026-11-30",
              "promise_amount": "", "promise_due_date": "", "instalment_amount": "", "instalment_due_date": ""}
    documents = []
    for n in range(count):
        jurisdiction, currency, language = (("CN", "CNY", "zh"), ("US", "USD", "en"))[n % 2]
        text = book.render(("legal_letter", "validation_notice")[n // 2 % 2], jurisdiction,
                           {**values, "amount_past_due": f"{currency} {n},234.56", "outstanding": f"{currency} 9,999.00"})
        documents.append(LetterDocument(language=language, title=text.subject or "", sender="Arrears Demo Bank",
                                        recipient=[f"Borrower {n}", f"{n} Example Road, Town"], date="2026-11-30",
                                        reference=f"L-{n}", body=text.body))
    render_pdf(documents[0]), render_pdf(documents[1])  # this process's glyphs, as the press warms its own
    began = time.perf_counter()
    for document in documents:
        render_pdf(document)
    one_at_a_time = count / (time.perf_counter() - began)
    press = LetterPress(psutil.cpu_count() or 1, warm_text=book.wording())
    await press.start()
    try:
        began = time.perf_counter()
        await asyncio.gather(*(press.render(d) for d in documents))
        pressed = count / (time.perf_counter() - began)
    finally:
        await press.aclose()
    return {"press_letters_per_s": round(pressed, 1), "one_at_a_time_letters_per_s": round(one_at_a_time, 1),
            "ms_per_letter": round(1000 / one_at_a_time, 1), "processes": press.processes,
            "ratio": round(pressed / one_at_a_time, 2)}


async def run(cases: int, more: int, samples: int, database: str | None) -> dict[str, Any]:
    began = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "load", "cases": cases, "more": more,
                              "machine": machine()}
    async with scratch_stack("arrears-load-", database) as stack:
            folder, settings, keys, server = stack.folder, stack.settings, stack.keys, stack.server
            database = settings.ledger_url
            client, address = server.client, address_of(server)
            tag = uuid.uuid4().hex[:4]
            ids = clone_portfolio(folder / "first.csv", cases, f"{tag}a")
            result["intake_server_alone"] = await intake_against_bare(client, settings, folder / "first.csv", cases)
            print(f"intake (server alone): {result['intake_server_alone']}", file=sys.stderr)

            one = await backlog(client, address, folder / "data", ids, f"{tag}a-", database, keys, folder, 1)
            workers = one.pop("_workers")
            result["backlog_one_worker"] = one
            print(f"backlog, one worker: {one}", file=sys.stderr)
            live = list(ids)

            result["latency_at_first"] = {"live_cases": len(live), **await latencies(client, live, samples)}
            result["latency_baseline"] = await echo_latencies(client, samples)
            rss = workers[0].rss_mb()
            result["memory"] = {"cached_cases": len(live), "rss_mb": round(rss),
                                "rss_at_start_mb": one["rss_start_mb"][0],
                                "mb_per_1000_cached": round((rss - one["rss_start_mb"][0]) / len(live) * 1000, 1)}
            print(f"latency: {result['latency_at_first']} vs {result['latency_baseline']}; "
                  f"memory {result['memory']}", file=sys.stderr)

            more_ids = clone_portfolio(folder / "more.csv", more, f"{tag}b")
            result["intake_with_worker"] = await intake_against_bare(client, settings, folder / "more.csv", more)
            await until_quiet(lambda: sum(w.cpu() for w in workers), 3600)
            live += more_ids
            result["latency_at_more"] = {"live_cases": len(live), **await latencies(client, live, samples)}
            print(f"intake with the worker: {result['intake_with_worker']}; latency {result['latency_at_more']}",
                  file=sys.stderr)
            for worker in workers:
                worker.stop()
            faults = {**dict(await history_faults(client, map(case_workflow_id, live)))}
            logged = sum((w.log_faults() for w in workers), start=Counter())

            # Scale-out: the same backlog again, worked off by two workers.
            scale_ids = clone_portfolio(folder / "scale.csv", cases, f"{tag}c")
            report = await intake(folder / "scale.csv", "default", settings, client=client)
            assert len(report.started) == cases, report.summary()
            two = await backlog(client, address, folder / "data", scale_ids, f"{tag}c-", database, keys, folder, 2)
            pair = two.pop("_workers")
            for worker in pair:
                worker.stop()
            faults2 = dict(await history_faults(client, map(case_workflow_id, scale_ids)))
            logged += sum((w.log_faults() for w in pair), start=Counter())
            shares = [w.cpu() for w in pair]
            result["scale_out"] = {**two, "worker_cpu_shares": [round(s / sum(shares), 2) for s in shares],
                                   "speedup_vs_one": round(one["first_day_seconds"] / two["first_day_seconds"], 2)}
            print(f"two workers: {result['scale_out']}", file=sys.stderr)
            result["faults"] = {"histories": {k: faults.get(k, 0) + faults2.get(k, 0) for k in faults},
                                "worker_logs": dict(logged)}
    result["letters"] = await letters_per_second(200)
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    return result


def print_table(r: dict[str, Any]) -> None:
    one, two = r["backlog_one_worker"], r["scale_out"]
    a, w = r["intake_server_alone"], r["intake_with_worker"]
    lf, lm, lb = r["latency_at_first"], r["latency_at_more"], r["latency_baseline"]
    letters, memory, faults = r["letters"], r["memory"], r["faults"]
    rows = [
        ("intake, server alone (cases/s)", f"{a['intake_per_s']}", f"bare starts {a['bare_per_s']}", a["ratio"]),
        ("intake while the worker runs (cases/s)", f"{w['intake_per_s']}", f"bare starts {w['bare_per_s']}",
         w["ratio"]),
        ("a backlog's first day: wall vs its CPU work / cores (s)", f"{one['first_day_seconds']}",
         f"{one['cpu_work_over_cores_seconds']}", one["first_day_vs_cpu_work"]),
        ("worker CPU per case, first day (s)", f"{one['worker_cpu_first_day_per_case_s']}", "goal 0.1",
         round(one["worker_cpu_first_day_per_case_s"] / 0.1, 2)),
        *[(f"{call} p50/p99 at {at['live_cases']} live (ms)", f"{at[call]['p50_ms']}/{at[call]['p99_ms']}",
           f"trivial {lb[call]['p50_ms']}/{lb[call]['p99_ms']}", round(at[call]["p99_ms"] / lb[call]["p99_ms"], 2))
          for at in (lf, lm) for call in ("update", "query")],
        ("worker memory per 1,000 cached cases (MB)", f"{memory['mb_per_1000_cached']}",
         f"at start {memory['rss_at_start_mb']}", round(memory["mb_per_1000_cached"] / memory["rss_at_start_mb"], 2)),
        ("letters per second", f"{letters['press_letters_per_s']}",
         f"one at a time {letters['one_at_a_time_letters_per_s']}", letters["ratio"]),
        ("two workers vs one: a backlog's first day (s)", f"{two['first_day_seconds']}",
         f"one worker {one['first_day_seconds']}", two["speedup_vs_one"]),
    ]
    print(f"load benchmark on {r['machine']}: {r['cases']} + {r['more']} cases ({r['wall_seconds']} s)")
    print("| figure | measured | baseline (same run) | ratio |\n| --- | --- | --- | --- |")
    for name, measured, baseline, ratio in rows:
        print(f"| {name} | {measured} | {baseline} | {ratio} |")
    print(f"\nactivity timeouts {faults['histories']['activity_timeouts']}, retries "
          f"{faults['histories']['activity_retries']} (+{one['activities_pending_a_retry']} pending), cases with "
          f"work left after the first day {one['cases_with_work_pending'] + two['cases_with_work_pending']}, workflow-task "
          f"timeouts {faults['histories']['workflow_task_timeouts']}, failures "
          f"{faults['histories']['workflow_task_failures']}; worker logs {faults['worker_logs']}; "
          f"{faults['histories']['activities']} activities")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="the backlog (default 2000)")
    parser.add_argument("--more", type=int, default=None, help="taken in while the worker runs (default: --cases)")
    parser.add_argument("--samples", type=int, default=300, help="update and query round trips per measurement")
    parser.add_argument("--database", default=None, help="the ledger's URL (default: SQLite in a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    # The servers and workers this starts write to stdout; keep it for the table or the JSON.
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = asyncio.run(run(args.cases, args.more if args.more is not None else args.cases, args.samples,
                                 args.database))
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(result, indent=2) if args.json else "", end="")
    if not args.json:
        print_table(result)


if __name__ == "__main__":
    code = 0
    try:
        main()
    finally:
        sys.stdout.flush()
        os._exit(code)  # sdk-python #300: never let interpreter teardown turn a finished run into a crash
