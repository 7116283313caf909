"""A backlog arrives while no worker runs (after a deploy or an outage), then one worker starts.

On the embedded default (the dev server on its SQLite file, payloads encrypted) with the ledger
on SQLite and on PostgreSQL, 300 cases cloned from the sample portfolio are taken in before
``worker.py`` runs. The worker must take only the work it can finish: once it has gone quiet,
every case has run and has nothing left to do now (no activity or workflow task pending, no
contact left half-sent), no activity timed out or was retried, no workflow task timed out or
failed, and no ledger connection or lock was waited for past its limit. On the code before
backpressure this stalled: letters rendered in the worker's threads timed out, were retried, and
the retries were the load.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from bench.harness import (
    ROOT, WorkerProcess, address_of, clone_portfolio, dev_server, environment, first_steps, history_faults,
    pending_work, until_quiet,
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
            await until_quiet(worker.cpu, PATIENCE)
            pending = await pending_work(server.client, map(case_workflow_id, ids))
            progress = await first_steps(ledger.engine, tag)
        finally:
            worker.stop()
            await ledger.close()
        faults = await history_faults(server.client, map(case_workflow_id, ids))

    log = worker.log_faults()
    report = f"{pending}; {progress}; worker log: {dict(log)}; histories: {dict(faults)}"
    assert pending.cases == CASES and pending.untouched == pending.waiting == pending.retrying == 0, report
    assert progress.sending == progress.retried == 0 and progress.sent > 0, report
    assert faults["activity_timeouts"] == faults["activity_retries"] == 0, report
    assert faults["workflow_task_timeouts"] == faults["workflow_task_failures"] == 0, report
    assert sum(log.values()) == 0, report
    assert faults["activities"] >= CASES * 0.9, report  # nearly every case acted at once (contact, call, trail)


async def test_two_workers_share_a_backlog_on_one_embedded_ledger(tmp_path):
    """Scale-out on one machine: two worker.py processes on the same SQLite ledger split the work
    between them, and writers in two processes never meet a locked database."""
    cases = 150
    tag = uuid.uuid4().hex[:6]
    async with dev_server(tmp_path / "server") as server:
        env = environment(address_of(server), tmp_path / "data", ARREARS_PAYLOAD_KEYS=generate_key())
        portfolio = tmp_path / "loans.csv"
        ids = clone_portfolio(portfolio, cases, tag)
        intake = subprocess.run([sys.executable, "starter.py", "--file", str(portfolio)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert intake.returncode == 0, intake.stdout + intake.stderr
        workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log").start() for n in range(2)]
        try:
            for worker in workers:
                await worker.ready(letters=False)
            await until_quiet(lambda: sum(w.cpu() for w in workers), PATIENCE)
            pending = await pending_work(server.client, map(case_workflow_id, ids))
        finally:
            for worker in workers:
                worker.stop()
        faults = await history_faults(server.client, map(case_workflow_id, ids))
    done = [sum(w.log.read_text().count(f'"event": "{e}"') for e in ("sms_sent", "email_sent", "letter_issued",
                                                                      "work_item_queued")) for w in workers]
    logs = [dict(w.log_faults()) for w in workers]
    assert pending.waiting == pending.untouched == 0, pending
    assert all(n > 0 for n in done), f"each worker should have taken a share: {done}"
    assert faults["activity_timeouts"] == faults["activity_retries"] == faults["workflow_task_timeouts"] == 0, faults
    assert all(sum(log.values()) == 0 for log in logs), logs
