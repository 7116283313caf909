"""The daily sync's workflow and activity on the Temporal dev server, with the real case workflows:
two days of the servicer's file, a file applied once, a cut-short file applying nothing, and the
schedule as the UI shows it. (The time-skipping server has no schedules and no visibility queries.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

from infra.search_attributes import ensure_search_attributes
from ledger import Ledger
from sync import SCHEDULE_ID
from sync.activity import SyncActivities
from sync.files import SyncFiles
from sync.models import SyncReport, SyncRequest
from sync.schedule import ensure_schedule
from sync.settings import SyncSettings
from sync.workflow import DailySyncWorkflow
from tests.conftest import settings_for
from tests.test_sync_files import HEADER, row
from worker import Workers, build_activities, build_worker


class Running:
    def __init__(self, client: Client, workers: Workers, drop: Path, ledger: Ledger) -> None:
        self.client, self.workers, self.drop, self.ledger = client, workers, drop, ledger

    async def sync(self) -> SyncReport:
        return await self.client.execute_workflow(
            DailySyncWorkflow.run, SyncRequest(heartbeat_seconds=10), id=f"sync-{uuid.uuid4().hex[:8]}",
            task_queue=self.workers.task_queue, result_type=SyncReport)

    async def status(self, loan_id: str) -> dict:
        return await self.client.get_workflow_handle(f"loan-{loan_id}").query("status")


@pytest_asyncio.fixture(loop_scope="module")
async def running(dev_server: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Running]:
    client = dev_server.client
    await ensure_search_attributes(client)
    settings = settings_for(tmp_path / "data")
    drop = tmp_path / "drop"
    drop.mkdir()
    sync_settings = SyncSettings(folder=drop, concurrency=4, strategy="demo")
    activities = build_activities(settings)
    task_queue = f"sync-{uuid.uuid4().hex[:8]}"
    sync = SyncActivities(client, settings, sync_settings, activities.ledger, task_queue=task_queue)
    try:
        async with build_worker(client, settings, task_queue=task_queue, activities=activities, sync=sync) as workers:
            yield Running(client, workers, drop, activities.ledger)
    finally:
        await activities.aclose()


def write(path: Path, *rows: str) -> None:
    path.write_text("\n".join([HEADER + ",as_of", *rows]) + "\n")


async def test_two_days_of_the_servicers_file_start_update_and_cure_the_cases(running: Running):
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    ids = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("A", "B", "C", "D")}
    write(running.drop / f"dq-{yesterday}.csv",
          *(row(ids[n], dpd=d, as_of=yesterday.isoformat()) for n, d in (("A", 5), ("B", 40), ("C", 3), ("D", 8))),
          row("BAD-1", past_due="lots", as_of=yesterday.isoformat()))
    first = (await running.sync()).files
    assert [(f.status, f.rows, f.started, f.rejected) for f in first] == [("done", 5, 4, 1)]
    assert first[0].rejections[0].line == 6 and first[0].rejections[0].reason.startswith("amount_past_due: 'lots'")
    assert (await running.status(ids["A"]))["days_past_due"] >= 5

    # The next day: A's figures change, C is current again, D is left out of the (complete) file,
    # E is new; yesterday's file is still in the folder and is not applied again.
    ids["E"] = f"E-{uuid.uuid4().hex[:6]}"
    write(running.drop / f"dq-{today}.csv",
          row(ids["A"], past_due="300.00", dpd=6, outstanding="4800.00", as_of=today.isoformat()),
          row(ids["B"], dpd=41, as_of=today.isoformat()),
          row(ids["C"], past_due="0.00", dpd=0, as_of=today.isoformat()),
          row(ids["E"], dpd=2, as_of=today.isoformat()))
    before, second = (await running.sync()).files
    assert before.status == "already processed" and before.started == 0
    assert (second.started, second.already_running, second.updated) == (1, 2, 2)
    assert (second.cured_current, second.cured_absent, second.rejected, second.refused) == (1, 1, 0, 0)
    a = await running.status(ids["A"])
    assert (a["amount_past_due"], a["outstanding"]) == ("300.00", "4800.00")
    updates = [e for e in a["events"] if e["kind"] == "loan_update"]
    assert updates[-1]["status"] == "accepted" and updates[-1]["actor"] == "system:daily-sync"
    for name, reason in (("C", f"the servicer reports the loan current on {today}"),
                         ("D", f"absent from the servicer's complete file of {today}")):
        result = await running.client.get_workflow_handle(f"loan-{ids[name]}").result()
        assert result["outcome"] == "cured"
        assert any(reason in str(e) for e in result["events"]), (name, result["events"][-3:])

    # The ledger keeps each file once, with its report.
    recent = {r["name"]: r for r in await SyncFiles(running.ledger).recent()}
    assert recent[f"dq-{today}.csv"]["state"] == "done" and recent[f"dq-{today}.csv"]["cured"] == 2


async def test_a_file_cut_short_applies_nothing_and_is_read_again_once_whole(running: Running):
    loan_id = f"CUT-{uuid.uuid4().hex[:6]}"
    today = datetime.now(UTC).date()
    whole = "\n".join([HEADER + ",as_of", row(loan_id, as_of=today.isoformat())]) + "\n"
    path = running.drop / "zz-cut.csv"
    path.write_text(whole[:-20])
    files = (await running.sync()).files
    cut = [f for f in files if f.name == "zz-cut.csv"][0]
    assert cut.status == "unreadable" and "cut short" in cut.reason
    assert not [w async for w in running.client.list_workflows(f"WorkflowId = 'loan-{loan_id}'")]
    path.write_text(whole)
    files = (await running.sync()).files
    assert [(f.status, f.started) for f in files if f.name == "zz-cut.csv"] == [("done", 1)]


async def test_the_schedule_runs_daily_at_the_local_time_and_an_update_keeps_an_operators_pause(
        dev_server: WorkflowEnvironment, tmp_path: Path):
    client = dev_server.client
    settings = settings_for(tmp_path)
    sync_settings = SyncSettings(folder=tmp_path, at=time(6, 0), timezone="Europe/London")
    assert await ensure_schedule(client, settings, sync_settings) == "created"
    handle = client.get_schedule_handle(SCHEDULE_ID)
    described = await handle.describe()
    spec = described.schedule.spec
    assert spec.time_zone_name == "Europe/London"
    assert [(c.hour[0].start, c.minute[0].start) for c in spec.calendars] == [(6, 0)]
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert described.schedule.action.workflow == "DailySyncWorkflow"
    next_run = described.info.next_action_times[0]
    assert next_run.astimezone(__import__("zoneinfo").ZoneInfo("Europe/London")).time() == time(6, 0)

    await handle.pause(note="servicer outage, INC-42")
    later = SyncSettings(folder=tmp_path, at=time(7, 30), timezone="Europe/London")
    assert await ensure_schedule(client, settings, later) == "updated"
    described = await handle.describe()
    assert [(c.hour[0].start, c.minute[0].start) for c in described.schedule.spec.calendars] == [(7, 30)]
    assert described.schedule.state.paused and described.schedule.state.note == "servicer outage, INC-42"
    await handle.delete()
