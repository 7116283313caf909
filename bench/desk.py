"""Desk benchmark: how fast the workbench answers with a portfolio of live cases on this machine,
each figure a ratio against a baseline measured in the same run, through the same server.

    .venv/bin/python bench/desk.py [--cases 10000] [--samples 100] [--json]

Runs the embedded default: the Temporal dev server on a SQLite file of its own, ``worker.py`` as a
process (payloads encrypted, the ledger on SQLite unless ``--database URL``), ``--cases`` loans
cloned from ``examples/portfolio.csv`` on the ``default`` strategy (live for months: every case is
running while the desk is measured), then the desk served by uvicorn on loopback.

Measured, sequentially, ``--samples`` requests each (p50/p95 ms), against ``GET /healthz`` (the
same server and client doing no work) as the baseline:
- an agent's queue: ``GET /queue`` (the page) and ``GET /api/v1/work?queue=calls``;
- a case: ``GET /cases/{loan}`` (the page: status query, ledger events and attempts) and
  ``GET /api/v1/cases/{loan}``;
- the supervisor's ``GET /portfolio``.
The goal (issue 13) is under 300 ms for the queue and the case page.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import structlog  # noqa: E402
import uvicorn  # noqa: E402

from bench.harness import WorkerProcess, address_of, environment, first_steps, until_quiet  # noqa: E402
from bench.harness import clone_portfolio, machine, scratch_stack, show  # noqa: E402
from desk.api import create_app  # noqa: E402
from desk.cases import CaseDesk  # noqa: E402
from desk.config import DeskSettings  # noqa: E402
from desk.policy import load_policy  # noqa: E402
from desk.store import DeskStore  # noqa: E402
from ledger import Ledger  # noqa: E402
from starter import intake  # noqa: E402

AGENTS = 20
PASSWORD = "bench password, not secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1)}


async def _timed(http: httpx.AsyncClient, path: str, samples: int, **params: Any) -> dict[str, Any]:
    took, status = [], None
    for _ in range(samples):
        began = time.perf_counter()
        response = await http.get(path, params=params or None)
        took.append(time.perf_counter() - began)
        status = response.status_code
    return {"status": status, **_percentiles(took)}


async def _session(base: str, name: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=base, timeout=60)
    await http.get("/login")
    answer = await http.post("/login", data={"username": name, "password": PASSWORD,
                                             "csrf_token": http.cookies["arrears_login_csrf"]})
    assert answer.status_code == 303, answer.text
    return http


async def run(cases: int, samples: int, database: str | None) -> dict[str, Any]:
    began = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "desk", "cases": cases, "samples": samples,
                              "machine": machine()}
    async with scratch_stack("arrears-desk-", database) as stack:
            folder, settings, keys, server = stack.folder, stack.settings, stack.keys, stack.server
            client = server.client
            tag = uuid.uuid4().hex[:4]
            ids = clone_portfolio(folder / "portfolio.csv", cases, tag)
            report = await intake(folder / "portfolio.csv", "default", settings, client=client)
            assert len(report.started) == cases, report.summary()
            worker = WorkerProcess(environment(address_of(server), settings.data_dir,
                                               ARREARS_DATABASE_URL=settings.ledger_url, ARREARS_PAYLOAD_KEYS=keys),
                                   folder / "worker.log").start()
            ledger = Ledger.connect(settings.ledger_url)
            try:
                await worker.ready(letters=False)
                result["first_steps_seconds"] = round(await until_quiet(worker.cpu, 7200), 1)
                progress = await first_steps(ledger.engine, f"{tag}-")
                result["cases_opened_in_ledger"] = progress.opened
                print(f"{cases} cases live, first steps done in {result['first_steps_seconds']} s", file=sys.stderr)

                store = DeskStore(ledger)
                await ledger.migrate()
                await store.add_user("sup-1", "supervisor", password=PASSWORD)
                for n in range(AGENTS):
                    await store.add_user(f"agent-{n:02d}", "agent", team=f"team-{n % 4}", password=PASSWORD)
                desk = CaseDesk(client, load_policy(), store, ledger, DeskSettings(base=settings))
                port = _free_port()
                serving = uvicorn.Server(uvicorn.Config(create_app(desk), host="127.0.0.1", port=port,
                                                        log_level="warning"))
                task = asyncio.create_task(serving.serve())
                while not serving.started:
                    await asyncio.sleep(0.05)
                base = f"http://127.0.0.1:{port}"
                supervisor = await _session(base, "sup-1")
                csrf = (await supervisor.get("/api/v1/me")).json()["csrf_token"]
                # The cases with a call to make go to the agents, as a supervisor would hand them out
                # (their open calls follow the assignment); the rest of the portfolio stays unassigned.
                calling, after = [], None
                while True:
                    page = (await supervisor.get("/api/v1/work", params={"queue": "calls", "limit": 500,
                                                                         **({"after": after} if after else {})})).json()
                    calling += [item["loan_id"] for item in page["items"]]
                    after = page["next"]
                    if not after:
                        break
                random.seed(7)
                random.shuffle(calling)
                gate = asyncio.Semaphore(16)

                async def assign(n: int, loan_id: str) -> None:
                    async with gate:
                        await supervisor.post(f"/api/v1/cases/{loan_id}/assign", json={"agent": f"agent-{n % AGENTS:02d}"},
                                              headers={"X-CSRF-Token": csrf})

                await asyncio.gather(*(assign(n, loan) for n, loan in enumerate(calling)))
                await asyncio.sleep(2)
                result["open_calls"] = len(calling)
                agent = await _session(base, "agent-00")
                mine = [loan for n, loan in enumerate(calling) if n % AGENTS == 0] or ids[:1]
                queue = (await agent.get("/api/v1/work", params={"queue": "calls", "limit": 500})).json()
                result["agent_queue_items"] = len(queue.get("items", []))
                loan = mine[0]
                timings = {
                    "baseline: GET /healthz": await _timed(agent, "/healthz", samples),
                    "queue page: GET /queue": await _timed(agent, "/queue", samples),
                    "queue API: GET /api/v1/work": await _timed(agent, "/api/v1/work", samples, queue="calls"),
                    "case page: GET /cases/{loan}": await _timed(agent, f"/cases/{loan}", samples),
                    "case API: GET /api/v1/cases/{loan}": await _timed(agent, f"/api/v1/cases/{loan}", samples),
                    "portfolio page: GET /portfolio": await _timed(supervisor, "/portfolio", max(10, samples // 5)),
                }
                base_ms = timings["baseline: GET /healthz"]["p50_ms"]
                for timing in timings.values():
                    timing["p50_vs_baseline"] = round(timing["p50_ms"] / base_ms, 1) if base_ms else None
                result["timings"] = timings
                for http in (agent, supervisor):
                    await http.aclose()
                serving.should_exit = True
                await task
            finally:
                worker.stop()
                await ledger.close()
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"desk with {result['cases']} live cases ({result['machine']}); first steps "
          f"{result['first_steps_seconds']} s; {result['open_calls']} open calls over {AGENTS} agents; agent-00's "
          f"queue: {result['agent_queue_items']} calls")
    print(f"{'request':<40} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'p50 / baseline':>15}")
    for name, t in result["timings"].items():
        print(f"{name:<40} {t['status']:>6} {t['p50_ms']:>8} {t['p95_ms']:>8} {t['p50_vs_baseline']:>15}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--database", help="the ledger's URL (default: SQLite in a scratch folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(run(args.cases, args.samples, args.database))
    show(result, args.json, print_table)


if __name__ == "__main__":
    main()
