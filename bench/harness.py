"""A portfolio under load, on this machine: the pieces ``bench/load.py`` and ``tests/test_load.py`` share.

- :func:`clone_portfolio` writes N loans cloned from ``examples/portfolio.csv`` with fresh ids;
- :func:`dev_server` runs the Temporal dev server on a SQLite file of its own (the embedded default);
- :class:`WorkerProcess` runs ``worker.py`` as users do and reads its CPU time (rendering processes
  included) and memory;
- :func:`first_steps` reads from the ledger how many cases have finished their first step;
- :func:`history_faults` reads every case's history for activity timeouts and retries and for
  workflow tasks that timed out or failed.

Everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PORTFOLIO = ROOT / "examples" / "portfolio.csv"

# What the worker's log says when something waited past a limit or failed where it should have waited.
LOG_FAULTS = {
    "activity attempt failed": "Completing activity as failed",
    "connection pool timeout": "QueuePool limit",
    "database is locked": "database is locked",
}


def clone_portfolio(path: Path, count: int, tag: str, jurisdictions: Iterable[str] | None = None) -> list[str]:
    """``count`` loans cycled from the sample portfolio, each with a fresh id; returns the ids."""
    with PORTFOLIO.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = [row for row in reader if jurisdictions is None or row["jurisdiction"] in set(jurisdictions)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    ids = []
    for n in range(count):
        row = dict(rows[n % len(rows)])
        row["loan_id"] = f"{tag}-{row['jurisdiction']}-{n:06d}"
        ids.append(row["loan_id"])
        writer.writerow(row)
    path.write_text(out.getvalue(), encoding="utf-8")
    return ids


@contextlib.asynccontextmanager
async def dev_server(folder: Path, data_converter=None) -> AsyncIterator[WorkflowEnvironment]:  # noqa: ANN001
    """``temporal server start-dev`` from the venv, its store a SQLite file in ``folder``; the client
    speaks the project's data converter (``data_converter`` to encrypt)."""
    from infra.client import data_converter as project_converter

    folder.mkdir(parents=True, exist_ok=True)
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"), dev_server_database_filename=str(folder / "temporal.sqlite"),
        ui=False, dev_server_log_level="error", data_converter=data_converter or project_converter())
    try:
        yield environment
    finally:
        await environment.shutdown()


@dataclass(frozen=True)
class Stack:
    """A benchmark's scratch stack: its folder, settings (payloads encrypted with ``keys``, the
    ledger at ``settings.ledger_url``) and the dev server, with search attributes registered."""

    folder: Path
    settings: Any
    keys: str
    server: WorkflowEnvironment


@contextlib.asynccontextmanager
async def scratch_stack(prefix: str, database: str | None = None) -> AsyncIterator[Stack]:
    """A temporary folder with the dev server on a SQLite file in it; the ledger there too unless
    ``database`` names one. Everything goes when the block ends."""
    from infra.client import data_converter
    from infra.codec import generate_key
    from infra.search_attributes import ensure_search_attributes
    from infra.settings import Settings

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder, keys = Path(tmp), generate_key()
        settings = Settings(data_dir=folder / "data", payload_keys=keys, database_url=database or "")
        async with dev_server(folder / "server", data_converter(settings)) as server:
            await ensure_search_attributes(server.client)
            yield Stack(folder, settings, keys, server)


def show(result: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], None]) -> None:
    """A benchmark's result: one JSON object, or its table."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        table(result)


def machine() -> str:
    """This machine, as a benchmark's result names it."""
    return (f"{platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}, {platform.system()}")


def address_of(environment: WorkflowEnvironment) -> str:
    return environment.client.service_client.config.target_host


def server_process() -> psutil.Process | None:
    """The dev server this process started (a child named ``temporal``)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name().startswith("temporal") and "start-dev" in " ".join(child.cmdline()):
                return child
    return None


def cpu_seconds(process: psutil.Process | None) -> float:
    """CPU time of ``process`` and its children (a worker's rendering processes count as its own)."""
    if process is None:
        return 0.0
    total = 0.0
    for each in [process, *_children(process)]:
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def _children(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return process.children(recursive=True)
    return []


@dataclass
class WorkerProcess:
    """``worker.py`` as a process, logging to ``log``; stopped with SIGTERM (in-flight work drains)."""

    env: dict[str, str]
    log: Path
    nice: int = 0  # run it at a lower priority than the server on the same machine
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    started_wall: float = 0.0
    _cpu_done: float = field(default=0.0)

    def start(self) -> "WorkerProcess":
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT,
                                            preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None)
        self.started_at, self.started_wall = time.monotonic(), time.time()
        return self

    def logged_after(self, event: str) -> float | None:
        """Seconds from the start until the worker logged ``event`` (its JSON ``event``), if it did."""
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if f'"event": "{event}"' in line:
                stamp = json.loads(line).get("timestamp")
                if stamp:
                    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - self.started_wall
        return None

    async def ready(self, seconds: float = 120.0, *, letters: bool = True) -> float:
        """Wait until it polls (and, with ``letters``, renders letters); returns seconds since start."""
        wanted = '"letters started"' if letters else '"worker started"'
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker.py exited with {self.process.returncode}; see {self.log}")
            if wanted in self.log.read_text(encoding="utf-8", errors="replace"):
                return time.monotonic() - self.started_at
            await asyncio.sleep(0.1)
        raise TimeoutError(f"worker.py did not log {wanted} within {seconds:.0f}s; see {self.log}")

    @property
    def ps(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    def cpu(self) -> float:
        with contextlib.suppress(psutil.Error):
            return cpu_seconds(self.ps)
        return self._cpu_done

    def rss_mb(self) -> float:
        """Resident memory of the worker process itself (its rendering processes apart)."""
        with contextlib.suppress(psutil.Error):
            return self.ps.memory_info().rss / 2**20
        return 0.0

    def stop(self, seconds: float = 60.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self._cpu_done = self.cpu()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_faults(self) -> Counter:
        text_ = self.log.read_text(encoding="utf-8", errors="replace")
        return Counter({name: text_.count(needle) for name, needle in LOG_FAULTS.items()})


@dataclass(frozen=True)
class Progress:
    opened: int  # cases whose opening the ledger holds
    done: int  # ... of which none has a contact still being sent: the first step is finished
    sending: int  # contacts claimed and not yet confirmed
    sent: int
    retried: int  # contacts that needed more than one try


async def first_steps(ledger_engine, prefix: str) -> Progress:  # noqa: ANN001 - an AsyncEngine
    """How far the cases whose loan ids start with ``prefix`` are, from the ledger alone."""
    like = {"p": f"{prefix}%"}
    async with ledger_engine.connect() as connection:
        try:
            opened = set((await connection.execute(text(
                "SELECT DISTINCT loan_id FROM case_events WHERE kind = 'case_opened' AND loan_id LIKE :p"),
                like)).scalars())
            attempts = (await connection.execute(text(
                "SELECT loan_id, state, tries FROM contact_attempts WHERE loan_id LIKE :p"), like)).all()
        except Exception:  # noqa: BLE001 - the worker has not created the schema yet
            return Progress(0, 0, 0, 0, 0)
    sending = {row.loan_id for row in attempts if row.state == "sending"}
    return Progress(opened=len(opened), done=len(opened - sending), sending=sum(r.state == "sending" for r in attempts),
                    sent=sum(r.state == "sent" for r in attempts), retried=sum(r.tries > 1 for r in attempts))


async def history_faults(client: Client, workflow_ids: Iterable[str], concurrency: int = 16) -> Counter:
    """Across the cases' histories: activity and workflow-task timeouts, failures and retries."""
    found: Counter = Counter(activity_timeouts=0, activity_retries=0, workflow_task_timeouts=0,
                             workflow_task_failures=0, activities=0)
    gate = asyncio.Semaphore(concurrency)

    async def read(workflow_id: str) -> None:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        for event in history.events:
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                found["activities"] += 1
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                found["activity_timeouts"] += 1
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                found["activity_retries"] += max(0, event.activity_task_started_event_attributes.attempt - 1)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                found["workflow_task_timeouts"] += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                found["workflow_task_failures"] += 1

    await asyncio.gather(*(read(w) for w in workflow_ids))
    return found


@dataclass(frozen=True)
class Pending:
    cases: int  # cases asked
    waiting: int  # ... with an activity or a workflow task still to run
    retrying: int  # activities pending on a second or later attempt
    untouched: int  # cases no workflow task has run for yet


async def pending_work(client: Client, workflow_ids: Iterable[str], concurrency: int = 16) -> Pending:
    """What the cases still have to do now, from Temporal: pending activities (the history shows an
    attempt only once it ends) and workflow tasks."""
    gate = asyncio.Semaphore(concurrency)
    found = Counter()

    async def read(workflow_id: str) -> None:
        async with gate:
            described = await client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(namespace=client.namespace,
                                                 execution=WorkflowExecution(workflow_id=workflow_id)))
        found["cases"] += 1
        pending = list(described.pending_activities)
        found["waiting"] += bool(pending or described.HasField("pending_workflow_task"))
        found["retrying"] += sum(1 for p in pending if p.attempt > 1)
        found["untouched"] += described.workflow_execution_info.history_length <= 3

    await asyncio.gather(*(read(w) for w in workflow_ids))
    return Pending(**{key: found[key] for key in ("cases", "waiting", "retrying", "untouched")})


async def until_quiet(cpu: Callable[[], float], seconds: float, *, idle: float = 0.05, quiet_for: int = 3) -> float:
    """Wait until ``cpu()`` (CPU seconds used so far) has grown by less than ``idle`` a second for
    ``quiet_for`` seconds running, or ``seconds`` have passed; returns when it went quiet (seconds
    from now, the quiet seconds not counted)."""
    began = time.monotonic()
    quiet, last, went_quiet = 0, cpu(), 0.0
    while quiet < quiet_for and time.monotonic() - began < seconds:
        await asyncio.sleep(1.0)
        now = cpu()
        if now - last < idle:
            if quiet == 0:
                went_quiet = time.monotonic() - 1.0 - began
            quiet += 1
        else:
            quiet = 0
        last = now
    return went_quiet if quiet >= quiet_for else time.monotonic() - began


def environment(address: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment worker.py and starter.py get: this server, a data folder, payload keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARREARS_", "TEMPORAL_"))}
    env.update({"TEMPORAL_ADDRESS": address, "ARREARS_DATA_DIR": str(data_dir), **settings})
    return env
