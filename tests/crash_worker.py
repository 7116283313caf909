"""A worker that dies mid-send: the provider has the text, the ledger has not heard back.

    python -m tests.crash_worker ADDRESS TASK_QUEUE DATA_DIR      (the ledger: ARREARS_DATABASE_URL)

Used by tests/test_exactly_once.py: the process kills itself (SIGKILL, no clean-up) right after
the SMS reaches the provider (the outbox), before the activity can record or report it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from activities.channels import CollectionActivities
from activities.models import ContactReceipt, ContactRequest
from infra.settings import Settings
from worker import build_activities, build_worker


class DiesAfterTheProvider(CollectionActivities):
    async def _sms(self, request: ContactRequest) -> ContactReceipt:
        receipt = await super()._sms(request)
        os.kill(os.getpid(), signal.SIGKILL)
        return receipt  # never reached


async def main(address: str, task_queue: str, data_dir: str) -> None:
    settings = Settings(temporal_address=address, data_dir=Path(data_dir),
                        database_url=os.environ.get("ARREARS_DATABASE_URL", ""))
    base = build_activities(settings)
    crashing = DiesAfterTheProvider(ledger=base.ledger, outbox=base.outbox, templates=base.templates,
                                    sender=base.sender, field_agents=base.field_agents, press=base.press)
    from infra.client import connect

    client = await connect(settings)
    # No sticky cache: the case's next workflow task goes to the shared queue, where the
    # replacement worker finds it (the test server does not fall back from a dead sticky queue).
    async with build_worker(client, settings, task_queue=task_queue, activities=crashing, max_cached_workflows=0):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
