"""The Temporal Schedule ``arrears-daily-sync``: every day at ARREARS_SYNC_AT in ARREARS_SYNC_TIMEZONE.

The server keeps it (the UI's Schedules page shows it, its next runs and its recent ones); the
worker creates it at start when a source is configured, and ``python -m sync schedule`` creates or
updates it. A run still going when the next is due makes the next one skip (overlap: skip).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleCalendarSpec,
    ScheduleOverlapPolicy, SchedulePolicy, ScheduleRange, ScheduleSpec, ScheduleState, ScheduleUpdate,
    ScheduleUpdateInput, WorkflowHandle,
)

from infra.settings import Settings
from sync import SCHEDULE_ID
from sync.models import SyncReport, SyncRequest
from sync.settings import SyncSettings
from sync.workflow import DailySyncWorkflow

# A run the server missed (it was down at the hour) still happens if it is back within this long;
# later, the day's run is skipped and the next day's file brings the cases up to date.
CATCHUP = timedelta(hours=12)


def daily_schedule(settings: Settings, sync: SyncSettings) -> Schedule:
    at = f"{sync.at:%H:%M} {sync.timezone}"
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailySyncWorkflow.run, SyncRequest(heartbeat_seconds=int(sync.heartbeat_timeout.total_seconds())),
            id=SCHEDULE_ID, task_queue=settings.task_queue,
            static_summary=f"daily sync from the servicer: {sync.source}"),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(sync.at.hour)], minute=[ScheduleRange(sync.at.minute)],
                                            comment=f"every day at {at}")],
            time_zone_name=sync.timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP),
        state=ScheduleState(note=f"the servicer's daily file, every day at {at}"),
    )


async def ensure_schedule(client: Client, settings: Settings, sync: SyncSettings) -> str:
    """Create the schedule, or bring it to these settings (keeping a pause an operator set):
    "created" or "updated"."""
    schedule = daily_schedule(settings, sync)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def updated(current: ScheduleUpdateInput) -> ScheduleUpdate:
        state = current.description.schedule.state
        return ScheduleUpdate(schedule=Schedule(action=schedule.action, spec=schedule.spec, policy=schedule.policy,
                                                state=ScheduleState(note=state.note if state.paused else schedule.state.note,
                                                                    paused=state.paused)))

    await client.get_schedule_handle(SCHEDULE_ID).update(updated)
    return "updated"


class Skipped(RuntimeError):
    """The trigger was skipped: a sync is running (overlap: skip)."""


async def trigger(client: Client, *, timeout: float = 30.0) -> WorkflowHandle:
    """Run the sync now, through the schedule (so the UI shows it among the schedule's runs): the
    handle of the run it started, or :class:`Skipped` when one is running."""
    handle = client.get_schedule_handle(SCHEDULE_ID)
    before = (await handle.describe()).info
    await handle.trigger()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = (await handle.describe()).info
        if info.num_actions > before.num_actions and info.recent_actions:
            workflow_id = info.recent_actions[-1].action.workflow_id  # type: ignore[attr-defined]
            return client.get_workflow_handle(workflow_id, result_type=SyncReport)
        if info.num_actions_skipped_overlap > before.num_actions_skipped_overlap:
            running = ", ".join(a.workflow_id for a in info.running_actions)  # type: ignore[attr-defined]
            raise Skipped(f"a sync is running ({running}): this one was skipped")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the schedule {SCHEDULE_ID} started nothing within {timeout:.0f} s")
        await asyncio.sleep(0.2)
