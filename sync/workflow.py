"""The daily sync's workflow: the schedule starts it, its one activity does the work.

Orchestration only: the activity is retried without end (with backoff) until it finishes or is found
misconfigured, and each attempt resumes from the last heartbeat; the worker that runs it is one with a
sync source (the activity's own task queue, ``<cases' queue>-sync``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sync.models import SyncReport, SyncRequest, SyncRun

# A run that has not finished in this long is stuck, not slow (100k rows take minutes).
RUN_LIMIT = timedelta(hours=12)


def sync_queue(case_queue: str) -> str:
    """The task queue of the sync's activity for cases on ``case_queue``: polled only by workers
    that have a sync source configured."""
    return f"{case_queue}-sync"


@workflow.defn(name="DailySyncWorkflow")
class DailySyncWorkflow:
    @workflow.run
    async def run(self, request: SyncRequest) -> SyncReport:
        return await workflow.execute_activity(
            "run_daily_sync", SyncRun(started_at=workflow.now(), workflow_id=workflow.info().workflow_id),
            result_type=SyncReport, task_queue=sync_queue(workflow.info().task_queue),
            start_to_close_timeout=RUN_LIMIT, heartbeat_timeout=timedelta(seconds=request.heartbeat_seconds),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                                     non_retryable_error_types=["SyncMisconfigured"]),
            summary="apply the servicer's daily file")
