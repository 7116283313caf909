"""The worker: the composition root. Settings -> data converter -> adapters -> activities -> Workers.

    python worker.py          (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, ARREARS_* select the rest)

One process polls four task queues: the cases' own (``collections``: the case workflows, call
tasks, visits, hand-offs and the audit trail, the daily sync's workflow) and one per channel
(``collections-sms``, ``collections-email``, ``collections-letters``); a fifth, ``collections-sync``
(the daily sync's one activity, one at a time), when a sync source is configured (sync/): then it
also creates or updates the schedule ``arrears-daily-sync``. Each takes only what it can finish at once: its
activity slots, and a ledger pool with a connection for every slot, so no activity waits for a
connection; letters one per rendering process; SMS and e-mail at most at their provider's rate.
Work beyond that waits on the server, where no timeout runs, instead of in this process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.channels import CollectionActivities, Sender
from activities.letter_press import LetterPress
from activities.outbox import FileOutbox
from activities.sms_provider import sms_provider_from_url
from activities.smtp import mailer_from_url
from activities.templates import TemplateBook
from infra import logging as arrears_logging
from infra.bytecode import keep_bytecode
from infra.codec import codec_from_setting
from infra.client import connect
from infra.compliance import lint_templates
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from ledger import Ledger, LedgerError
from ledger.store import safe_url
from sync.activity import SyncActivities
from sync.schedule import ensure_schedule
from sync.settings import SyncSettings
from sync.workflow import DailySyncWorkflow, sync_queue
from workflows.field_visit import FieldVisitWorkflow
from workflows.inputs import channel_queue
from workflows.loan_collection import LoanCollectionWorkflow

log = structlog.get_logger("arrears.worker")

# The sync's workflow on every worker (it only waits for its activity, which runs where a source is).
WORKFLOWS = [LoanCollectionWorkflow, FieldVisitWorkflow, DailySyncWorkflow]
# Activities that run on a channel's task queue; every other one runs on the cases' queue.
CHANNEL_OF_ACTIVITY = {"send_sms": "sms", "send_email": "email", "issue_letter": "letter"}
SHUTDOWN_GRACE = timedelta(seconds=10)


def open_ledger(settings: Settings) -> Ledger:
    """The worker's ledger: a connection per activity slot, the payload keys to seal private reasons
    with (without them the ledger keeps none: ``ledger/private.py``)."""
    return Ledger.connect(settings.ledger_url, pool_size=settings.ledger_connections,
                          codec=codec_from_setting(settings.payload_keys))


def build_activities(settings: Settings, ledger: Ledger | None = None) -> CollectionActivities:
    """The channel adapters the settings select; a bad channel URL raises ValueError naming the setting."""
    templates = TemplateBook(settings.templates_dir)
    return CollectionActivities(
        ledger=ledger or open_ledger(settings),
        outbox=FileOutbox(settings.data_dir),
        outbox_copies=settings.outbox_copies,
        templates=templates,
        sender=Sender(lender=settings.lender, contact_point=settings.contact_point, email_from=settings.email_from,
                      sms_from=settings.sms_from),
        field_agents=settings.field_agents,
        press=LetterPress(settings.letter_processes, warm_text=templates.wording()),
        mailer=mailer_from_url(settings.smtp_url),
        # Inside the activity's 30 s: 3 tries of at most 5 s, 4 s apart at most; then Temporal retries.
        sms=sms_provider_from_url(settings.sms_url, timeout=5.0, attempts=3, max_backoff=4.0),
    )


def _name(activity_fn: Callable[..., Any]) -> str:
    return getattr(activity_fn, "__temporal_activity_definition").name


class Workers:
    """One process's Temporal workers: the cases' task queue, and one per channel queue.

    ``async with`` runs them all; :meth:`start` and :meth:`start_letters` start them in two steps
    (``worker.py`` takes letters only once its rendering processes are ready). Each runs as a task
    of its own: if one fails, :attr:`failed` is set and :attr:`error` says why."""

    def __init__(self, client: Client, settings: Settings, task_queue: str,
                 activities: Sequence[Callable[..., Any]], *, letter_slots: int,
                 workflows: Sequence[type] = WORKFLOWS, sync: Callable[..., Any] | None = None,
                 **case_options: Any) -> None:
        self.task_queue = task_queue
        by_channel: dict[str | None, list[Callable[..., Any]]] = {}
        for activity_fn in activities:
            by_channel.setdefault(CHANNEL_OF_ACTIVITY.get(_name(activity_fn)), []).append(activity_fn)
        options: dict[str, Any] = dict(max_concurrent_workflow_tasks=settings.workflow_slots,
                                       max_cached_workflows=settings.workflow_cache)
        # The channel activities are on the cases' queue too: a message or letter scheduled there
        # before the channel queues existed (a case's send in retry across the upgrade) still runs.
        self.cases = Worker(client, task_queue=task_queue, workflows=list(workflows),
                            activities=[fn for group in by_channel.values() for fn in group],
                            max_concurrent_activities=settings.activity_slots,
                            graceful_shutdown_timeout=SHUTDOWN_GRACE, **{**options, **case_options})
        by_channel.pop(None, None)
        slots = {"sms": settings.sms_slots, "email": settings.email_slots, "letter": letter_slots}
        rates = {"sms": settings.sms_rate, "email": settings.email_rate}
        self.channels = {
            channel: Worker(client, task_queue=channel_queue(task_queue, channel), activities=channel_activities,
                            max_concurrent_activities=slots[channel],
                            max_task_queue_activities_per_second=rates.get(channel),
                            graceful_shutdown_timeout=SHUTDOWN_GRACE)
            for channel, channel_activities in by_channel.items()}
        # The daily sync's activity (``sync``), one at a time: a whole file with its own concurrency.
        self.sync = (Worker(client, task_queue=sync_queue(task_queue), activities=[sync], max_concurrent_activities=1,
                            graceful_shutdown_timeout=SHUTDOWN_GRACE) if sync is not None else None)
        self._running: list[tuple[Worker, asyncio.Task[None]]] = []
        self._stopping = False
        self.failed = asyncio.Event()
        self.error: BaseException | None = None

    def _run(self, worker: Worker) -> None:
        task = asyncio.create_task(worker.run())
        task.add_done_callback(self._ended)
        self._running.append((worker, task))

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not self._stopping and not task.cancelled():
            self.fail(task.exception() or RuntimeError("a worker stopped polling on its own"))

    def fail(self, error: BaseException) -> None:
        """Something this process needs to work stopped working: :attr:`failed` tells ``main``."""
        self.error = self.error or error
        self.failed.set()

    async def start(self) -> None:
        """Poll the cases' queue, the SMS and e-mail queues, and the sync's when it has one."""
        for worker in [self.cases, *(w for c, w in self.channels.items() if c != "letter"),
                       *([self.sync] if self.sync is not None else [])]:
            self._run(worker)

    async def start_letters(self) -> None:
        if "letter" in self.channels and not self._stopping:
            self._run(self.channels["letter"])

    async def stop(self) -> None:
        """Finish in-flight tasks (up to the grace period, on every queue at once) and stop polling."""
        self._stopping = True
        await asyncio.gather(*(worker.shutdown() for worker, _ in self._running), return_exceptions=True)
        await asyncio.gather(*(task for _, task in self._running), return_exceptions=True)

    async def __aenter__(self) -> "Workers":
        await self.start()
        await self.start_letters()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def build_worker(client: Client, settings: Settings, task_queue: str | None = None,
                 activities: CollectionActivities | Sequence[Callable[..., Any]] | None = None,
                 sync: SyncActivities | None = None, **case_options: Any) -> Workers:
    """The workers for ``activities`` (default: the settings' real ones); tests pass a list to
    replace some activities by name, and options such as ``max_cached_workflows``; ``sync``, the
    daily sync's activity when a source is configured."""
    activities = activities if activities is not None else build_activities(settings)
    if isinstance(activities, CollectionActivities):
        press, functions = activities.press, activities.all()
    else:
        press, functions = None, list(activities)
    return Workers(client, settings, task_queue or settings.task_queue, functions,
                   letter_slots=press.slots if press else 1,
                   sync=sync.run_daily_sync if sync is not None else None, **case_options)


async def _schedule_sync(client: Client, settings: Settings, sync_settings: SyncSettings) -> None:
    """The daily sync's schedule, as these settings say. A server that refuses it (no rights to
    schedules) leaves the cases' work running: the error says what to do."""
    try:
        done = await ensure_schedule(client, settings, sync_settings)
    except RPCError as err:
        log.error("sync schedule not set", error=err.message, fix="python -m sync schedule, with rights to schedules")
        return
    log.info("sync schedule ready", schedule="arrears-daily-sync", change=done, source=sync_settings.source,
             at=f"{sync_settings.at:%H:%M}", timezone=sync_settings.timezone, complete=sync_settings.complete,
             task_queue=sync_queue(settings.task_queue))


async def main() -> None:
    arrears_logging.configure()
    try:
        settings = Settings.from_env()
        sync_settings = SyncSettings.from_env()
    except ValueError as err:  # names the setting and the reason (never a key)
        log.error("bad setting", error=str(err))
        raise SystemExit(2) from None
    try:  # the sandbox imports the workflow modules for every case: compile them once
        keep_bytecode(settings.data_dir / "bytecode")
    except OSError as err:
        log.warning("no bytecode cache: workflow modules are compiled for every case", error=str(err))
    problems = lint_templates(TemplateBook(settings.templates_dir))
    if problems:  # a template that threatens, impersonates or shames must never go out
        for problem in problems:
            log.error("template refused", problem=problem)
        raise SystemExit(2)
    try:
        ledger = open_ledger(settings)
        activities = build_activities(settings, ledger)
    except (LedgerError, ValueError) as err:
        log.error("bad setting", error=str(err))
        raise SystemExit(2) from None
    log.info("payloads", encrypted=bool(settings.payload_keys))
    if not settings.payload_keys:
        log.warning("private reasons not kept", setting="ARREARS_PAYLOAD_KEYS",
                    why="hardship, dispute and hold reasons are kept only encrypted; the ledger records that "
                        "one was given, without its text")
    log.info("channels", email=activities.mailer.address if activities.mailer else "outbox",
             sms=activities.sms.url if activities.sms else "outbox", outbox_copies=settings.outbox_copies)
    try:
        await ledger.migrate()  # fail at start, naming the database, rather than at the first send
    except (LedgerError, OSError, SQLAlchemyError) as err:
        log.error("ledger unavailable", setting="ARREARS_DATABASE_URL", database=safe_url(settings.ledger_url),
                  error=str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise SystemExit(2) from None
    client = await connect(settings)
    added = await ensure_search_attributes(client)
    log.info("search attributes ready", added=added, namespace=settings.temporal_namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sync = SyncActivities(client, settings, sync_settings, ledger) if sync_settings.configured else None
    workers = build_worker(client, settings, activities=activities, sync=sync)
    letters: asyncio.Task[None] | None = None
    try:
        log.info("ledger ready", database=safe_url(settings.ledger_url), connections=settings.ledger_connections)
        await workers.start()
        log.info("worker started", task_queue=settings.task_queue, address=settings.temporal_address,
                 data_dir=str(settings.data_dir), activity_slots=settings.activity_slots,
                 sms_slots=settings.sms_slots, email_slots=settings.email_slots,
                 workflow_slots=settings.workflow_slots, workflow_cache=settings.workflow_cache)
        if sync is not None:
            await _schedule_sync(client, settings, sync_settings)

        async def take_letters() -> None:
            # Off the start path: the rendering processes open the font (about a second), then
            # the letters' queue is polled. Until then letters wait on the server, untimed.
            try:
                await activities.press.start()
                await workers.start_letters()
            except Exception as err:  # noqa: BLE001 - a worker that cannot print letters must say so and stop
                workers.fail(err)
                return
            log.info("letters started", task_queue=channel_queue(settings.task_queue, "letter"),
                     processes=activities.press.processes)

        letters = asyncio.create_task(take_letters())
        stopped, broken = asyncio.create_task(stop.wait()), asyncio.create_task(workers.failed.wait())
        await asyncio.wait([stopped, broken], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        broken.cancel()
        if workers.error is not None:
            log.error("worker failed", error=str(workers.error) or type(workers.error).__name__)
        log.info("worker stopping: finishing in-flight tasks")
    finally:
        if letters is not None and not letters.done():
            letters.cancel()
            await asyncio.gather(letters, return_exceptions=True)
        await workers.stop()
        await activities.aclose()
    log.info("worker stopped")
    if workers.error is not None:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
    logging.shutdown()
    sys.stdout.flush()
    # The worker has drained and stopped; skip interpreter teardown, where the SDK's runtime
    # threads can abort the process (sdk-python #300) and turn a clean stop into a crash.
    os._exit(0)
