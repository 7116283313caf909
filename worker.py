"""The worker: the composition root. Settings -> data converter -> adapters -> activities -> Worker.

    python worker.py          (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, ARREARS_* select the rest)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client
from temporalio.worker import Worker

from activities.channels import CollectionActivities, Sender
from activities.letters import prepare_fonts
from activities.outbox import FileOutbox
from activities.sms_provider import sms_provider_from_url
from activities.smtp import mailer_from_url
from activities.templates import TemplateBook
from infra import logging as arrears_logging
from infra.client import connect
from infra.compliance import lint_templates
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from ledger import Ledger, LedgerError
from ledger.store import safe_url
from workflows.field_visit import FieldVisitWorkflow
from workflows.loan_collection import LoanCollectionWorkflow

log = structlog.get_logger("arrears.worker")

WORKFLOWS = [LoanCollectionWorkflow, FieldVisitWorkflow]


def build_activities(settings: Settings, ledger: Ledger | None = None) -> CollectionActivities:
    """The channel adapters the settings select; a bad channel URL raises ValueError naming the setting."""
    return CollectionActivities(
        ledger=ledger or Ledger.connect(settings.ledger_url),
        outbox=FileOutbox(settings.data_dir),
        templates=TemplateBook(settings.templates_dir),
        sender=Sender(lender=settings.lender, contact_point=settings.contact_point, email_from=settings.email_from,
                      sms_from=settings.sms_from),
        field_agents=settings.field_agents,
        fonts_dir=settings.fonts_dir,
        mailer=mailer_from_url(settings.smtp_url),
        # Inside the activity's 30 s: 3 tries of at most 5 s, 4 s apart at most; then Temporal retries.
        sms=sms_provider_from_url(settings.sms_url, timeout=5.0, attempts=3, max_backoff=4.0),
    )


def build_worker(client: Client, settings: Settings, task_queue: str | None = None,
                 activities: CollectionActivities | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=(activities or build_activities(settings)).all(),
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def main() -> None:
    arrears_logging.configure()
    try:
        settings = Settings.from_env()
    except ValueError as err:  # names the setting and the reason (never a key)
        log.error("bad setting", error=str(err))
        raise SystemExit(2) from None
    problems = lint_templates(TemplateBook(settings.templates_dir))
    if problems:  # a template that threatens, impersonates or shames must never go out
        for problem in problems:
            log.error("template refused", problem=problem)
        raise SystemExit(2)
    try:
        ledger = Ledger.connect(settings.ledger_url)
        activities = build_activities(settings, ledger)
    except (LedgerError, ValueError) as err:
        log.error("bad setting", error=str(err))
        raise SystemExit(2) from None
    log.info("payloads", encrypted=bool(settings.payload_keys))
    log.info("channels", email=activities.mailer.address if activities.mailer else "outbox",
             sms=activities.sms.url if activities.sms else "outbox")
    try:
        await ledger.migrate()  # fail at start, naming the database, rather than at the first send
    except (LedgerError, OSError, SQLAlchemyError) as err:
        log.error("ledger unavailable", setting="ARREARS_DATABASE_URL", database=safe_url(settings.ledger_url),
                  error=str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise SystemExit(2) from None
    # Once per machine (about 30 s): static CJK fonts for letters, cut from the variable font package.
    log.info("fonts for letters", fonts_dir=str(settings.fonts_dir))
    await asyncio.to_thread(prepare_fonts, settings.fonts_dir)
    client = await connect(settings)
    added = await ensure_search_attributes(client)
    log.info("search attributes ready", added=added, namespace=settings.temporal_namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        log.info("ledger ready", database=safe_url(settings.ledger_url))
        worker = build_worker(client, settings, activities=activities)
        async with worker:
            log.info("worker started", task_queue=settings.task_queue, address=settings.temporal_address,
                     data_dir=str(settings.data_dir))
            await stop.wait()
            log.info("worker stopping: finishing in-flight tasks")
    finally:
        await activities.aclose()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
    logging.shutdown()
    sys.stdout.flush()
    # The worker has drained and stopped; skip interpreter teardown, where the SDK's runtime
    # threads can abort the process (sdk-python #300) and turn a clean stop into a crash.
    os._exit(0)
