"""The sync's one activity: read the day's files, apply each once, heartbeat the progress.

Its clients come in ``__init__`` (the worker is the composition root). A retried attempt (the worker
died, was restarted, or a server call failed) resumes from the last heartbeat: the file it was in, the
rows applied, the counts so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.assignment import PlanError
from domain.loan import Loan
from domain.scorecard import Scorecard
from domain.strategy import Strategy
from infra.compliance import ComplianceError
from infra.scorecards import ScorecardError, configured_scorecard
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from infra.strategies import StrategyError
from ledger import Ledger
from sync.apply import Applier, Progress, Refused
from sync.files import SyncFiles
from sync.models import FileReport, SyncReport, SyncRun
from sync.settings import SyncSettings
from sync.source import DailyFile, Unreadable, folder_files, read_file, rows_as_csv, sha256_of
from workflows.inputs import case_workflow_id

if TYPE_CHECKING:
    from starter import StrategyChoice

log = structlog.get_logger("arrears.sync")

CASE_WORKFLOW = "LoanCollectionWorkflow"
# Heartbeats carry the whole report so far: at most one a second is enough for the server.
BEAT_EVERY = 1.0


class TemporalDoor:
    """The cases on ``task_queue``, through the one client: intake's ``admit`` and the case's
    ``loan_update`` update. ``strategy``: one for every new case, or intake's ``StrategyChoice``
    (an experiment's draw)."""

    def __init__(self, client: Client, strategy: Strategy | StrategyChoice, task_queue: str, *,
                 with_attributes: bool) -> None:
        from starter import StrategyChoice

        self.client = client
        self.strategy = StrategyChoice.of(strategy)
        self.task_queue = task_queue
        self.with_attributes = with_attributes

    async def admit(self, loan: Loan, *, as_of: date) -> str:
        from starter import admit  # intake's rule for a loan without a live case, shared with the CLI

        strategy, arm = self.strategy.for_loan(loan)
        admitted = await admit(self.client, loan, strategy, self.task_queue, as_of=as_of,
                               with_attributes=self.with_attributes, assignment=arm,
                               scorecard=self.strategy.scorecard)
        return admitted.status

    async def update(self, loan_id: str, payload: dict[str, Any], *, update_id: str) -> dict[str, Any]:
        handle = self.client.get_workflow_handle(case_workflow_id(loan_id))
        try:
            return await handle.execute_update("loan_update", payload, id=update_id, result_type=dict)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                details = list(cause.details)
                if len(details) >= 2 and details[1]:
                    field, reason = str(details[0]), str(details[1])
                    raise Refused(f"{field}: {reason}" if field else reason) from None
                raise Refused(cause.message) from None
            raise Refused(str(cause or err)) from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # no case, or it closed: no live case to follow
                raise Refused(f"no live case ({err.message})", no_case=True) from None
            raise  # the server or the network: the attempt fails, the next resumes from its heartbeat

    async def running_loans(self) -> AsyncIterator[str]:
        query = (f"WorkflowType = '{CASE_WORKFLOW}' AND ExecutionStatus = 'Running' "
                 f"AND TaskQueue = '{self.task_queue}'")
        async for execution in self.client.list_workflows(query, page_size=1000):
            if execution.id.startswith("loan-"):
                yield execution.id.removeprefix("loan-")


class SyncActivities:
    def __init__(self, client: Client, settings: Settings, sync: SyncSettings, ledger: Ledger,
                 task_queue: str | None = None) -> None:
        self.client = client
        self.settings = settings
        self.sync = sync
        self.ledger = ledger
        self.files = SyncFiles(ledger)
        self._migrated = False
        # The cases' task queue: where new cases start and whose live cases a complete file covers.
        self.task_queue = task_queue or settings.task_queue

    def _strategy(self) -> StrategyChoice:
        """Intake's choice for new cases: ARREARS_SYNC_STRATEGY for all, else the experiment in
        strategies/assignment.toml, else ``default`` (each strategy loaded and checked once a run)."""
        from starter import choose_strategies

        try:
            card = configured_scorecard(self.settings.strategies_dir)
        except ScorecardError as err:
            raise ApplicationError(f"ARREARS_SCORECARD: {err}", type="SyncMisconfigured", non_retryable=True) from None
        try:
            return replace(choose_strategies(self.sync.strategy, self.settings), scorecard=card)
        except (StrategyError, ComplianceError, PlanError) as err:
            setting = "ARREARS_SYNC_STRATEGY" if self.sync.strategy else "strategies/assignment.toml"
            raise ApplicationError(f"{setting}: {err}", type="SyncMisconfigured", non_retryable=True) from None

    async def _sources(self, run_date: date) -> AsyncIterator[tuple[str, str, bytes]]:
        """(name, source, content) of each file to consider, in the order to apply them."""
        if self.sync.folder is not None:
            for path in await asyncio.to_thread(folder_files, self.sync.folder, self.sync.pattern):
                yield path.name, "folder", await asyncio.to_thread(path.read_bytes)
        elif self.sync.sql_url and self.sync.sql_query:
            columns, rows = await query_rows(self.sync.sql_url, self.sync.sql_query)
            yield f"sql {run_date.isoformat()}", "sql", rows_as_csv(columns, rows, run_date)

    @activity.defn(name="run_daily_sync")
    async def run_daily_sync(self, run: SyncRun) -> SyncReport:
        """Apply the day's files; the report names each with its counts."""
        if not self.sync.configured:
            raise ApplicationError("no sync source: set ARREARS_SYNC_FOLDER or ARREARS_SYNC_SQL_URL",
                                   type="SyncMisconfigured", non_retryable=True)
        if not self._migrated:  # the worker migrates at start; a test's or an embedding's ledger may not be
            await self.ledger.migrate()
            self._migrated = True
        info = activity.info()
        resumed = Progress.from_details(info.heartbeat_details[0]) if info.heartbeat_details else None
        strategy = self._strategy()
        with_attributes = await _attributes_registered(self.client)
        applier = Applier(TemporalDoor(self.client, strategy, self.task_queue, with_attributes=with_attributes),
                          concurrency=self.sync.concurrency, max_absent_share=self.sync.max_absent_share)
        run_date = run.started_at.astimezone(ZoneInfo(self.sync.timezone)).date()
        report = SyncReport()
        async with _heartbeats(resumed) as beat:
            try:
                async for name, source, data in self._sources(run_date):
                    report.files.append(await self._file(applier, run, name, source, data, run_date, resumed, beat,
                                                         scorecard=strategy.scorecard))
            except FileNotFoundError as err:  # the drop folder is not there (an unmounted share?): retried
                raise ApplicationError(str(err), type="SyncSourceMissing") from None
        log.info("sync done", files=[f.summary() for f in report.files], attempt=info.attempt)
        return report

    async def _file(self, applier: Applier, run: SyncRun, name: str, source: str, data: bytes, run_date: date,
                    resumed: Progress | None, beat: Any, *, scorecard: Scorecard | None = None) -> FileReport:
        sha = sha256_of(data)
        known = await self.files.get(sha)
        if known is not None and known["state"] == "done":
            return FileReport(name=name, sha256=sha, as_of=known["as_of"], status="already processed",
                              reason=f"applied {known['finished_at']:%Y-%m-%d %H:%M} UTC as {known['name']}")
        try:
            daily: DailyFile = await asyncio.to_thread(read_file, data, name=name, source=source, run_date=run_date,
                                                       scorecard=scorecard)
        except Unreadable as err:
            await self.files.unreadable(sha256=sha, name=name, source=source, reason=str(err),
                                        workflow_id=run.workflow_id)
            log.warning("sync file unreadable", file=name, reason=str(err))
            return FileReport(name=name, sha256=sha, status="unreadable", reason=str(err))
        daily.complete = self.sync.complete
        already = await self.files.begin(sha256=sha, name=name, source=source, as_of=daily.as_of,
                                         workflow_id=run.workflow_id)
        if already is not None:  # applied by another run since we looked
            return FileReport(name=name, sha256=sha, as_of=daily.as_of, status="already processed", reason=already)
        if resumed is not None and resumed.sha256 == sha:
            start, file_report = resumed.applied, resumed.report
            log.info("sync resumed", file=name, applied=start, rows=daily.valid)
        else:
            start = 0
            file_report = FileReport(name=name, sha256=sha, as_of=daily.as_of, complete=daily.complete,
                                     rows=daily.rows)
            for line, reason in daily.rejections:
                file_report.reject(line, reason)
        await applier.apply(daily, file_report, start=start, beat=beat)
        await self.files.finish(file_report)
        log.info("sync file applied", file=name, summary=file_report.summary())
        return file_report


@contextlib.asynccontextmanager
async def _heartbeats(resumed: Progress | None) -> AsyncIterator[Any]:
    """``beat(progress)``: the latest progress, sent at most once a second, and again every few
    seconds while nothing moves (a long validation, slow server calls), so only a dead worker
    misses the heartbeat timeout. A resumed attempt beats its predecessor's progress until it has
    its own: dying again before then loses nothing."""
    latest: list[Any] = [resumed]
    sent = [0.0]

    def send() -> None:
        sent[0] = time.monotonic()
        activity.heartbeat(*([latest[0].details()] if latest[0] is not None else []))

    def beat(progress: Progress | None) -> None:
        if progress is not None:
            latest[0] = progress
        if time.monotonic() - sent[0] >= BEAT_EVERY:
            send()

    async def tick() -> None:
        while True:
            await asyncio.sleep(BEAT_EVERY * 2)
            send()

    ticker = asyncio.create_task(tick())
    try:
        yield beat
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if latest[0] is not None:
            send()


async def _attributes_registered(client: Client) -> bool:
    """Whether cases may start with their search attributes set (as intake decides it)."""
    try:
        return not await ensure_search_attributes(client)
    except RPCError:
        return False


async def query_rows(url: str, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The servicing database's answer to ``query``: its columns and rows. PostgreSQL and SQLite
    through the async drivers this project has; any other SQLAlchemy URL with its own (sync) driver,
    in a thread."""
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from ledger.store import ASYNC_DRIVERS

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if parsed.drivername in ASYNC_DRIVERS.values() or ("+" not in parsed.drivername and backend in ASYNC_DRIVERS):
        async_url = parsed if "+" in parsed.drivername else parsed.set(drivername=ASYNC_DRIVERS[backend])
        engine = create_async_engine(async_url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(text(query))
                return list(result.keys()), [tuple(row) for row in result.fetchall()]
        finally:
            await engine.dispose()

    def fetch() -> tuple[list[str], list[tuple[Any, ...]]]:
        engine = create_engine(parsed, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                result = connection.execute(text(query))
                return list(result.keys()), [tuple(row) for row in result.fetchall()]
        finally:
            engine.dispose()

    return await asyncio.to_thread(fetch)
