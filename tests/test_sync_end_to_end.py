"""End to end on the Temporal dev server: the schedule picks up two daily files a day apart, with
worker.py killed (SIGKILL) in the middle of the second and a new one resuming it; every case ends as the
files say and nothing is started twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from sync import SCHEDULE_ID
from sync.models import SyncReport
from sync.schedule import trigger
from tests.conftest import ROOT
from tests.test_end_to_end import _eventually
from tests.test_sync_files import HEADER, row

pytestmark = pytest.mark.e2e

RUNNING = 40      # loans of the first day's file
PADDING = 2000    # loans the second file reports current that never had a case: the file's bulk


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)




async def _applied(client: Client, workflow_id: str) -> int | None:
    """The rows the sync's activity has reported applied in its last heartbeat (None before one)."""
    description = await client.get_workflow_handle(workflow_id).describe()
    pending = description.raw_description.pending_activities
    if not pending or not pending[0].heartbeat_details.payloads:
        return None
    details = await client.data_converter.decode(pending[0].heartbeat_details.payloads)
    return details[0]["applied"] if details and isinstance(details[0], dict) else None


async def test_the_schedule_applies_two_daily_files_across_a_worker_restart(dev_server, address, tmp_path: Path):
    client: Client = dev_server.client
    drop, data = tmp_path / "drop", tmp_path / "data"
    drop.mkdir()
    queue = f"sync-e2e-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "ARREARS_DATA_DIR": str(data), "ARREARS_TASK_QUEUE": queue,
           "ARREARS_LETTER_PROCESSES": "0", "ARREARS_SYNC_FOLDER": str(drop), "ARREARS_SYNC_AT": "06:00",
           "ARREARS_SYNC_TIMEZONE": "Europe/London", "ARREARS_SYNC_STRATEGY": "default",
           "ARREARS_SYNC_CONCURRENCY": "8", "ARREARS_SYNC_HEARTBEAT_TIMEOUT": "3",
           # No sticky cache: after the kill, the cases' next tasks go straight to the new worker.
           "ARREARS_WORKFLOW_CACHE": "0"}
    log = tmp_path / "worker.log"
    first_worker = _worker(env, log)
    second_worker: subprocess.Popen | None = None
    try:
        # The worker creates the schedule (the UI's Schedules page lists it).
        await _eventually(lambda: _schedule_exists(client), seconds=40, every=0.2)

        # Day 1: the servicer's file as of yesterday; `python -m sync run` triggers the schedule.
        today = datetime.now(UTC).date()
        yesterday = today - timedelta(days=1)
        ids = [f"E2E-{uuid.uuid4().hex[:6]}-{n:03d}" for n in range(RUNNING)]
        day1 = [row(loan_id, dpd=10 + n % 30, as_of=yesterday.isoformat()) for n, loan_id in enumerate(ids)]
        (drop / f"delinquency-{yesterday}.csv").write_text(
            "\n".join([HEADER + ",as_of", *day1, row("E2E-BAD", dpd="x", as_of=yesterday.isoformat())]) + "\n")
        ran = subprocess.run([sys.executable, "-m", "sync", "run"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
        assert ran.returncode == 1, ran.stderr  # one row rejected
        assert f"{RUNNING} started, 0 new episode" in ran.stdout and "1 rejected" in ran.stdout
        assert f"delinquency-{yesterday}.csv:{RUNNING + 2}: rejected: days_past_due: 'x'" in ran.stderr

        # Between the files one borrower pays everything: the case closes cured.
        repaid, current, absent = ids[0], ids[1], ids[2]
        case = client.get_workflow_handle(f"loan-{repaid}")
        await case.execute_update("payment_received", {"amount": "450.00", "reference": "E2E-PAY-1"})
        assert (await case.result())["outcome"] == "cured"

        # Day 2: figures for the running cases, one current, one left out, one new loan, the repaid
        # loan delinquent again (a new delinquency: a new episode), and the bulk of the file.
        new = f"E2E-NEW-{uuid.uuid4().hex[:6]}"
        updated = ids[3:]
        half = len(updated) // 2
        day2 = [row(loan_id, past_due="200.00", dpd=11, as_of=today.isoformat()) for loan_id in updated]
        padding = [row(f"E2E-OK-{n:05d}", past_due="0.00", dpd=0, as_of=today.isoformat()) for n in range(PADDING)]
        (drop / f"delinquency-{today}.csv").write_text("\n".join([
            HEADER + ",as_of", *day2[:half], *padding, *day2[half:],
            row(current, past_due="0.00", dpd=0, as_of=today.isoformat()),
            row(new, dpd=1, as_of=today.isoformat()),
            row(repaid, dpd=1, as_of=today.isoformat())]) + "\n")
        run = await trigger(client)

        # The worker dies once the heartbeat shows progress, well before the end; a new one takes over.
        applied = await _eventually(lambda: _applied(client, run.id), seconds=30, every=0.1)
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait(timeout=10)
        assert 0 < applied < PADDING, applied
        second_worker = _worker(env, log)
        report: SyncReport = await asyncio.wait_for(run.result(), timeout=60)

        before, second = report.files
        assert before.status == "already processed"
        assert second.status == "done" and second.rows == len(day2) + PADDING + 3
        assert (second.started, second.new_episode, second.already_running, second.updated) == \
            (1, 1, len(updated), len(updated))
        assert (second.cured_current, second.cured_absent, second.current_without_case) == (1, 1, PADDING)
        assert (second.rejected, second.refused) == (0, 0)
        # It was one activity, retried once after the kill, resuming where its heartbeat said.
        history = [e async for e in client.get_workflow_handle(run.id).fetch_history_events()]
        started = [e for e in history if e.HasField("activity_task_started_event_attributes")]
        assert started[-1].activity_task_started_event_attributes.attempt == 2
        assert "sync resumed" in log.read_text()

        # Every case as the files say.
        for loan_id in updated[:3] + updated[-3:]:
            state = await client.get_workflow_handle(f"loan-{loan_id}").query("status")
            assert state["outcome"] is None and state["amount_past_due"] == "200.00", loan_id
        for loan_id, reason in ((current, f"the servicer reports the loan current on {today}"),
                                (absent, f"absent from the servicer's complete file of {today}")):
            result = await client.get_workflow_handle(f"loan-{loan_id}").result()
            assert result["outcome"] == "cured" and reason in str(result["events"]), loan_id
        assert (await client.get_workflow_handle(f"loan-{new}").query("status"))["outcome"] is None
        reopened = await client.get_workflow_handle(f"loan-{repaid}").query("status")
        assert reopened["outcome"] is None and reopened["episode"] != ""

        # Nothing started twice: one run per loan, two for the loan delinquent again.
        runs = Counter([w.id async for w in client.list_workflows(
            f"WorkflowType = 'LoanCollectionWorkflow' AND TaskQueue = '{queue}'")])
        assert runs[f"loan-{repaid}"] == 2
        assert {wid: n for wid, n in runs.items() if n != 1 and wid != f"loan-{repaid}"} == {}
        assert set(runs) == {f"loan-{loan_id}" for loan_id in [*ids, new]}

        # The status command shows both files with their counts.
        status = subprocess.run([sys.executable, "-m", "sync", "status"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert f"delinquency-{today}.csv  as of {today}  {len(day2) + PADDING + 3} rows, 1 started" in status.stdout
        assert f"schedule {SCHEDULE_ID}: active" in status.stdout
        # An operator moves the hour with the command (the worker did the same at its start).
        moved = subprocess.run([sys.executable, "-m", "sync", "schedule"], cwd=ROOT,
                               env={**env, "ARREARS_SYNC_AT": "05:15"}, capture_output=True, text=True, timeout=60)
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.startswith(f"schedule {SCHEDULE_ID} updated: every day at 05:15 Europe/London from folder")
    finally:
        for process in (first_worker, second_worker):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        try:
            await client.get_schedule_handle(SCHEDULE_ID).delete()
        except Exception:  # noqa: BLE001 - never created: nothing to clean
            pass


async def _schedule_exists(client: Client) -> bool:
    try:
        await client.get_schedule_handle(SCHEDULE_ID).describe()
        return True
    except Exception:  # noqa: BLE001 - not there yet
        return False
