"""A backlog arrives while no worker runs (after a deploy or an outage), then one worker starts.

On the embedded default (the dev server on its SQLite file, payloads encrypted) with the ledger
on SQLite and on PostgreSQL, 300 cases cloned from the sample portfolio are taken in before
``worker.py`` runs. The worker must take only the work it can finish: every case finishes its
first step (the ledger holds its opening and no contact is left half-sent), no activity times
out or is retried, no workflow task times out or fails, and no ledger connection or lock is
waited for past its limit. On the code before backpressure this stalled: letters rendered in the
worker's threads timed out, were retried, and the retries were the load.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest

from bench.harness import (
    ROOT, WorkerProcess, address_of, clone_portfolio, dev_server, environment, first_steps, history_faults,
    pending_retries,
)
from infra.codec import generate_key
from ledger import Ledger
from tests.ledger_fixtures import BACKENDS, scratch_database
from workflows.inputs import case_workflow_id

pytestmark = pytest.mark.e2e

CASES = 300
PATIENCE = 300.0  # seconds: far more than the work needs; the test stops by itself either way


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_backlog_taken_in_while_no_worker_runs_is_worked_off_without_a_timeout_or_a_retry(
        backend, tmp_path):
    tag = uuid.uuid4().hex[:6]
    async with scratch_database(backend, tmp_path) as url, dev_server(tmp_path / "server") as server:
        env = environment(address_of(server), tmp_path / "data", ARREARS_DATABASE_URL=url,
                          ARREARS_PAYLOAD_KEYS=generate_key())
        portfolio = tmp_path / "loans.csv"
        ids = clone_portfolio(portfolio, CASES, tag)
        intake = subprocess.run([sys.executable, "starter.py", "--file", str(portfolio), "--strategy", "default"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert intake.returncode == 0 and f"{CASES} started" in intake.stdout, intake.stdout + intake.stderr

        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        ledger = Ledger.connect(url)
        try:
            await worker.ready(letters=False)
            deadline = time.monotonic() + PATIENCE
            progress = await first_steps(ledger.engine, "")
            while progress.done < CASES and time.monotonic() < deadline:
                await asyncio.sleep(2)
                progress = await first_steps(ledger.engine, "")
            retrying = await pending_retries(server.client, map(case_workflow_id, ids))
        finally:
            worker.stop()
            await ledger.close()
        faults = await history_faults(server.client, map(case_workflow_id, ids))

    log = worker.log_faults()
    assert progress.done == CASES, f"{progress}; worker log: {dict(log)}; histories: {dict(faults)}"
    assert progress.retried == 0 and retrying == 0, f"{progress}; {retrying} activities pending a retry"
    assert faults["activity_timeouts"] == faults["activity_retries"] == 0, dict(faults)
    assert faults["workflow_task_timeouts"] == faults["workflow_task_failures"] == 0, dict(faults)
    assert sum(log.values()) == 0, dict(log)
    assert faults["activities"] >= CASES  # every case acted (a first contact, a call task, its trail)
