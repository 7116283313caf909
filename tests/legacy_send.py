"""A workflow that schedules ``send_sms`` on its own task queue, as cases did before the channel
queues existed (tests/test_worker_capacity.py: such a send still runs after the upgrade)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy


@workflow.defn(name="LegacySend")
class LegacySend:
    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return await workflow.execute_activity(
            "send_sms", request, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1))
