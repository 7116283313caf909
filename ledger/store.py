"""The ledger's API: async, over SQLAlchemy 2, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import fcntl
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from sqlalchemy import delete, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ledger import book, private, retention, work
from ledger.retention import KeptFiles
from ledger.schema import TABLES, case_book, case_events, contact_attempts, work_items
from ledger.work import WorkItemRow

if TYPE_CHECKING:
    from infra.codec import EncryptionCodec

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
# Connections a ledger keeps by default (a command, an agent). A worker sizes its pool to its
# activity slots instead: each activity holds at most one connection, for one statement at a
# time, so no activity ever waits for one.
DEFAULT_POOL = 5
# How long a write waits for another *process's* write on SQLite (the busy timeout). Writes take
# milliseconds; within a process they queue on the ledger's writer lock and never get here.
SQLITE_BUSY_SECONDS = 15.0

P = ParamSpec("P")
T = TypeVar("T")


def _to_completion(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run a ledger operation to its end even if the activity awaiting it is cancelled (a timeout,
    a worker shutting down): a cancellation in the middle of a transaction must not strand a
    connection, or SQLite's one write lock, while the pool waits for it to come back."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(method(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The operation finishes on its own; nobody awaits its answer any more.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise

    return guarded


class LedgerError(RuntimeError):
    """The ledger cannot be used: the message names the setting or the row and the reason."""


def async_url(url: str) -> str:
    """``sqlite:///path`` / ``postgresql://...`` as users write them, with the async driver."""
    try:
        parsed = make_url(url)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy raises several kinds for a bad URL
        raise LedgerError(f"ARREARS_DATABASE_URL: {url!r} is not a database URL ({err})") from None
    backend = parsed.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise LedgerError(f"ARREARS_DATABASE_URL: {backend!r} is not supported (use sqlite:/// or postgresql://)")
    if "+" in parsed.drivername:
        return parsed.render_as_string(hide_password=False)
    return parsed.set(drivername=ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "(unparseable URL)"


@dataclass(frozen=True)
class Attempt:
    """A claimed effect. ``state`` "sent": it happened before, here is its receipt; "sending": go
    ahead (for the ``tries``-th time: a provider told the same key twice must deduplicate)."""

    idempotency_key: str
    state: str
    tries: int
    provider_message_id: str | None = None
    location: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Trail:
    """Events of one case to append to the audit trail (each a dict with its ``seq``, and with what
    a person wrote that may be health or family data in its ``private``, sealed by the ledger).
    ``episode`` is the case's (domain/episodes.py; "" for a case from before episodes): each episode
    of a loan numbers its events from the start."""

    loan_id: str
    workflow_id: str
    events: list[dict[str, Any]]
    retain_until: date
    episode: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    def __init__(self, engine: AsyncEngine, *, codec: EncryptionCodec | None = None) -> None:
        self.engine = engine
        # The payload keys: events' private text is sealed with them (ledger/private.py); without
        # them it is withheld, never kept in clear.
        self.codec = codec
        # SQLite has one writer at a time. This process's writers take turns here, for the
        # milliseconds a write takes, instead of meeting "database is locked" in the driver.
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None
        self._writes = engine.execution_options(ledger_write=True)

    @classmethod
    def connect(cls, url: str, *, schema: str | None = None, pool_size: int = DEFAULT_POOL,
                codec: EncryptionCodec | None = None) -> "Ledger":
        """An engine for ``url`` holding at most ``pool_size`` connections (never more: a pool
        that overflows only moves the queue into the database); on PostgreSQL, ``schema`` puts
        the tables in that schema; ``codec`` seals the events' private text."""
        target = async_url(url)
        in_memory = target.startswith("sqlite") and make_url(target).database in (None, "", ":memory:")
        # An in-memory SQLite database lives in its one connection: no pool to size.
        options: dict[str, Any] = {} if in_memory else {"pool_size": pool_size, "max_overflow": 0}
        if target.startswith("sqlite"):
            options["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
        elif schema is not None:
            options["connect_args"] = {"server_settings": {"search_path": schema}}
        engine = create_async_engine(target, **options)
        if engine.dialect.name == "sqlite":
            _sqlite_writes_take_turns(engine)
        return cls(engine, codec=codec)

    async def close(self) -> None:
        await self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table))

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: on SQLite, this process's only one at the time, begun IMMEDIATE
        (it takes the write lock first, so it never fails half-way on another writer)."""
        if self._writer is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._writer, self._writes.begin() as connection:
            yield connection

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic), creating the SQLite folder first.

        Safe when several workers (and the agent command) start at once: PostgreSQL serialises the
        migration on an advisory lock, SQLite on a lock file beside the database."""
        from ledger.migrate import upgrade_connection

        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            lock = Path(database).with_name(Path(database).name + ".migrate-lock")
            lock.parent.mkdir(parents=True, exist_ok=True)
            with lock.open("a") as handle:
                await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
                try:
                    async with self._write() as connection:
                        await connection.run_sync(upgrade_connection)
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        async with self._write() as connection:
            await connection.run_sync(upgrade_connection)

    # -- contact attempts: exactly once ---------------------------------------------------
    @_to_completion
    async def claim(self, key: str, *, loan_id: str, jurisdiction: str, channel: str, template: str | None,
                    retain_until: date, trail: Trail | None = None, episode: str = "") -> Attempt:
        """Claim ``key`` before touching the world. A key seen before returns its earlier attempt:
        "sent" (do nothing again, here is the receipt) or "sending"/"failed" (another try). The
        case's ``trail``, riding along, is appended in the same transaction; ``episode`` is the
        case's (its keys name it: a second episode claims afresh)."""
        values = dict(idempotency_key=key, loan_id=loan_id, episode=episode, jurisdiction=jurisdiction,
                      channel=channel, template=template, state="sending", tries=1, created_at=_now(),
                      retain_until=retain_until)
        async with self._write() as connection:
            await self._append_keeping(connection, trail, loan_id, retain_until)
            inserted = await connection.execute(
                self._insert(contact_attempts).values(**values).on_conflict_do_nothing(
                    index_elements=["idempotency_key"]))
            if inserted.rowcount == 1:
                return Attempt(key, "sending", 1)
            row = (await connection.execute(
                select(contact_attempts).where(contact_attempts.c.idempotency_key == key))).one()
            if (row.loan_id, row.episode, row.channel) != (loan_id, episode, channel):
                raise LedgerError(f"idempotency key {key!r} was used for {_case(row.loan_id, row.episode)}/"
                                  f"{row.channel}, not {_case(loan_id, episode)}/{channel}")
            if row.state != "sent":
                # Another try, counted by the database: never over an attempt completed meanwhile.
                tries = (await connection.execute(
                    update(contact_attempts)
                    .where(contact_attempts.c.idempotency_key == key, contact_attempts.c.state != "sent")
                    .values(tries=contact_attempts.c.tries + 1, state="sending", reason=None)
                    .returning(contact_attempts.c.tries))).scalar_one_or_none()
                if tries is not None:
                    return Attempt(key, "sending", tries)
                row = (await connection.execute(
                    select(contact_attempts).where(contact_attempts.c.idempotency_key == key))).one()
            return Attempt(key, "sent", row.tries, row.provider_message_id, row.location, row.sha256)

    @_to_completion
    async def claimed_at(self, key: str) -> datetime | None:
        """When ``key`` was first claimed (None: never): what a message sent under it is dated, so
        that every try renders the same bytes without a copy of the first."""
        async with self.engine.connect() as connection:
            claimed = (await connection.execute(select(contact_attempts.c.created_at).where(
                contact_attempts.c.idempotency_key == key))).scalar_one_or_none()
        return None if claimed is None else work.utc(claimed)

    @_to_completion
    async def sent(self, key: str, *, message_id: str, location: str | None = None, sha256: str | None = None) -> None:
        async with self._write() as connection:
            await connection.execute(update(contact_attempts).where(contact_attempts.c.idempotency_key == key).values(
                state="sent", provider_message_id=message_id, location=location, sha256=sha256,
                completed_at=_now()))

    @_to_completion
    async def failed(self, key: str, reason: str) -> None:
        async with self._write() as connection:
            await connection.execute(update(contact_attempts).where(contact_attempts.c.idempotency_key == key)
                                     .values(state="failed", reason=_fit(reason, 2000), completed_at=_now()))

    @_to_completion
    async def attempts(self, loan_id: str | None = None) -> list[dict[str, Any]]:
        query = select(contact_attempts).order_by(contact_attempts.c.id)
        if loan_id is not None:
            query = query.where(contact_attempts.c.loan_id == loan_id)
        async with self.engine.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(query)]

    # -- the audit trail: append only ----------------------------------------------------------
    @_to_completion
    async def record_events(self, loan_id: str, workflow_id: str, events: Iterable[dict[str, Any]],
                            retain_until: date, *, episode: str = "") -> int:
        """Append the case's events (each with its ``seq`` in the case's ``episode``); ones already
        there are left alone. Returns how many were new."""
        trail = Trail(loan_id, workflow_id, list(events), retain_until, episode)
        if not trail.events:
            return 0
        async with self._write() as connection:
            return await self._append(connection, trail)

    async def _append_keeping(self, connection: AsyncConnection, trail: Trail | None, loan_id: str,
                              keep: date) -> None:
        """Append ``trail`` and keep the loan until at least ``keep`` (ledger/retention.py): new events
        move the book's date themselves; otherwise one conditional update by the loan's key does."""
        if await self._append(connection, trail) == 0 or trail is None or trail.retain_until < keep:
            await retention.extend(connection, loan_id, keep)

    async def _append(self, connection: AsyncConnection, trail: Trail | None) -> int:
        """Append ``trail``'s events; those new here close the work they end (a withdrawn call task,
        a cancelled visit, the case closing), in this transaction: once, whichever activity carried
        them, and never again on a retry or a replay (which finds the events there already)."""
        if trail is None or not trail.events:
            return 0
        recorded = _now()
        # What a case records may quote what an operator sent (an unknown signal's name, a `by`):
        # fitted to the columns and stripped of NUL, which PostgreSQL refuses, so that one bad
        # signal cannot stop the trail.
        rows = [dict(loan_id=trail.loan_id, episode=trail.episode, workflow_id=trail.workflow_id, seq=e["seq"],
                     at=e["at"], kind=_fit(e["kind"], 64), status=_fit(e["status"], 16),
                     reason=_clean(e.get("reason")), actor=_fit(e.get("actor"), 64),
                     detail=_clean(e.get("detail") or {}), recorded_at=recorded, retain_until=trail.retain_until,
                     private=private.seal(self.codec, trail.loan_id, e["seq"], _clean(e.get("private")),
                                          trail.episode))
                for e in trail.events]
        added = await connection.execute(
            self._insert(case_events).values(rows)
            .on_conflict_do_nothing(index_elements=["loan_id", "episode", "seq"]).returning(case_events.c.seq))
        new = {row.seq for row in added}
        fresh = sorted((r for r in rows if r["seq"] in new), key=lambda r: r["seq"])
        for event_row in fresh:
            closing = work.closing(event_row)
            if closing is not None:
                await connection.execute(work.close_items(trail.loan_id, trail.workflow_id, closing, recorded,
                                                          trail.episode))
            moved = work.reassigned_calls(trail.loan_id, trail.workflow_id, event_row, trail.episode)
            if moved is not None:
                await connection.execute(moved)
        if fresh:
            # The case's standing in the book moves with the same events, in the same transaction.
            await book.keep(connection, self._insert, trail.loan_id, trail.workflow_id, fresh, trail.retain_until,
                            recorded, trail.episode)
        return len(new)

    @_to_completion
    async def events(self, loan_id: str, episode: str | None = None) -> list[dict[str, Any]]:
        """The loan's trail, episode after episode (a case from before episodes first), or one
        ``episode``'s; each event with its ``episode`` and ``private_fields``: the names of what a
        person wrote that only :meth:`private_reasons` reads (\"reason\": a reason was given)."""
        query = select(case_events).where(case_events.c.loan_id == loan_id)
        if episode is not None:
            query = query.where(case_events.c.episode == episode)
        async with self.engine.connect() as connection:
            result = await connection.execute(query.order_by(case_events.c.episode, case_events.c.seq))
            rows = _by_episode([dict(row._mapping) for row in result])
        return [{**{k: v for k, v in row.items() if k != "private"}, "private_fields": private.fields(row["private"])}
                for row in rows]

    @_to_completion
    async def private_reasons(self, loan_id: str) -> list[dict[str, Any]]:
        """The case's events that carry private text, with the text decrypted (``private``), or
        why it cannot be read (``unreadable``: withheld, a key no longer configured, a damaged value).
        For the compliance role only: the desk decides who calls this, and logs it."""
        query = (select(case_events.c.episode, case_events.c.seq, case_events.c.at, case_events.c.kind,
                        case_events.c.actor, case_events.c.private)
                 .where(case_events.c.loan_id == loan_id, case_events.c.private.is_not(None))
                 .order_by(case_events.c.episode, case_events.c.seq))
        async with self.engine.connect() as connection:
            rows = _by_episode([dict(row._mapping) for row in await connection.execute(query)])
        return [{"episode": row["episode"], "seq": row["seq"], "at": work.utc(row["at"]), "kind": row["kind"],
                 "actor": row["actor"],
                 **private.read_back(self.codec, loan_id, row["seq"], row["private"], row["episode"])}
                for row in rows]

    # -- the case book: where each case stands now -----------------------------------------------
    @_to_completion
    async def standing(self, loan_id: str) -> dict[str, Any] | None:
        """The case's row of the book (``ledger/book.py``: amounts as Decimal, holds as a list), or
        None when the ledger holds none of its events."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(case_book).where(case_book.c.loan_id == loan_id))).one_or_none()
        return None if row is None else book.view(row)

    # -- work queues ------------------------------------------------------------------------
    @_to_completion
    async def add_work(self, key: str, *, loan_id: str, workflow_id: str, queue: str, payload: dict[str, Any],
                       assigned_to: str | None, retain_until: date, trail: Trail | None = None,
                       item_id: str | None = None, case_ref: str | None = None, due_at: datetime | None = None,
                       episode: str = "") -> tuple[WorkItemRow, bool]:
        """Put one item on a queue, once per key (with the case's ``trail``, riding along, in the
        same transaction); returns the item and whether it is new. ``item_id`` is its public id (by
        default the key made safe for a file name or URL), ``case_ref`` what the case calls it (a
        newer item by that name replaces an open one: a visit's next attempt), ``due_at`` when it
        is due (by default now); ``episode`` the case's (its events close only that episode's items)."""
        now = _now()
        values = dict(item_key=key, item_id=item_id or _safe_name(key), loan_id=loan_id, episode=episode,
                      workflow_id=workflow_id,
                      queue=queue, case_ref=case_ref, state="open", assigned_to=assigned_to, payload=payload,
                      created_at=now, due_at=work.utc(due_at) if due_at is not None else now,
                      retain_until=retain_until)
        async with self._write() as connection:
            await self._append_keeping(connection, trail, loan_id, retain_until)
            inserted = await connection.execute(self._insert(work_items).values(**values)
                                                .on_conflict_do_nothing(index_elements=["item_key"]))
            if inserted.rowcount == 1 and case_ref is not None:
                await connection.execute(work.replaced_items(values, now))
            row = (await connection.execute(select(work_items).where(work_items.c.item_key == key))).one()
        return _work(row), inserted.rowcount == 1

    @_to_completion
    async def work_queue(self, queue: str, *, assigned_to: str | list[str] | None = None, limit: int = 100,
                         after: str | None = None) -> tuple[list[WorkItemRow], str | None]:
        """The open items of ``queue``, soonest due first (then oldest), ``limit`` at a time: the
        page after the cursor ``after``, and the cursor of the next page (None: this was the last).
        ``assigned_to`` is one name or a team's names, each matched exactly against an item's
        comma-separated assignees; None: everybody's. A cursor this queue never gave out is refused
        with ValueError."""
        if limit < 1:
            raise ValueError(f"limit: must be at least 1, not {limit}")
        query = (select(work_items).where(work_items.c.queue == queue, work_items.c.state == "open")
                 .order_by(work_items.c.due_at, work_items.c.id).limit(limit + 1))
        if assigned_to is not None:
            names = [assigned_to] if isinstance(assigned_to, str) else list(assigned_to)
            if not names:
                return [], None
            query = query.where(work.assigned_to_any(names))
        if after is not None:
            query = query.where(work.after(after))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        page = rows[:limit]
        more = len(rows) > limit
        return [_work(row) for row in page], work.cursor_at(page[-1].due_at, page[-1].id) if more else None

    async def open_work(self, queue: str, *, assigned_to: str | None = None, limit: int = 100) -> list[WorkItemRow]:
        """The first ``limit`` open items of ``queue`` (see :meth:`work_queue`)."""
        items, _ = await self.work_queue(queue, assigned_to=assigned_to, limit=limit)
        return items

    @_to_completion
    async def work_item(self, key: str) -> WorkItemRow:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(work_items).where(work_items.c.item_key == key))).one_or_none()
        if row is None:
            raise LedgerError(f"work item {key!r}: no such item")
        return _work(row)

    @_to_completion
    async def work_item_by_id(self, item_id: str) -> WorkItemRow | None:
        """The item of public id ``item_id``, or None."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(
                select(work_items).where(work_items.c.item_id == item_id))).one_or_none()
        return None if row is None else _work(row)

    @_to_completion
    async def complete_work(self, key: str, *, outcome: str, reported_by: str, state: str = "done",
                            reason: str | None = None) -> WorkItemRow:
        """Close an open item with its outcome (and, when it did not get done, why). Closing it again
        with the same outcome is a no-op; with another one it is refused, naming the item."""
        async with self._write() as connection:
            # Only an item still open is closed: of two reports at once, the second finds it closed.
            closed = await connection.execute(update(work_items).where(
                work_items.c.item_key == key, work_items.c.state == "open").values(
                state=state, outcome=outcome, reported_by=_fit(reported_by, 64), reason=_clean(reason),
                completed_at=_now()))
            row = (await connection.execute(select(work_items).where(work_items.c.item_key == key))).one_or_none()
        if row is None:
            raise LedgerError(f"work item {key!r}: no such item")
        if closed.rowcount == 0 and row.outcome != outcome:
            raise LedgerError(f"work item {key!r}: already {row.state} with outcome {row.outcome!r}")
        return _work(row)

    # -- retention --------------------------------------------------------------------------
    @_to_completion
    async def purge_expired(self, today: date, files: KeptFiles | None = None) -> dict[str, int]:
        """Delete what is past its retention on ``today`` (``ledger/retention.py``: a row's own date
        and its loan's), the only deletion the ledger makes, with the files ``files`` keeps for those
        rows (outbox copies, letters, queue files), a page at a time. Returns the rows removed per
        table and the files removed (``files``). A file goes before its row: a purge cut short
        leaves a row without its file, which the next purge removes, never a file without its row."""
        removed = {table.name: 0 for table in (*TABLES, case_book)} | {"files": 0}
        for table in (*TABLES, case_book):  # the book last: it says which loans are still kept
            key = table.primary_key.columns.values()[0]
            while page := await self._purge_page(table, key, today, files, removed):
                removed[table.name] += page
        return removed

    async def _purge_page(self, table: Any, key: Any, today: date, files: KeptFiles | None,
                          removed: dict[str, int]) -> int:
        async with self._write() as connection:
            rows = await retention.expired_page(connection, table, today)
            if rows and files is not None:
                removed["files"] += await asyncio.to_thread(files.forget, table.name, rows)
            if rows:
                await connection.execute(delete(table).where(key.in_([row[key.name] for row in rows])))
        return len(rows)


def _sqlite_writes_take_turns(engine: AsyncEngine) -> None:
    """SQLite set up for a worker's many short transactions: write-ahead logging (readers and the
    writer never block each other), a busy timeout (another process's write is waited for, not
    failed on), and SQLAlchemy beginning each transaction itself, IMMEDIATE for writes."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own implicit BEGIN is off: see _on_begin
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("ledger_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _by_episode(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A loan's rows, fetched in (episode, seq) order, with its episodes in the order they followed
    each other (".2" before ".10", which text order would not say)."""
    return sorted(rows, key=lambda row: book.episode_order(row["episode"]))


def _case(loan_id: str, episode: str) -> str:
    return f"{loan_id}/{episode}" if episode else loan_id


def _clean(value: Any) -> Any:
    """``value`` with NUL characters (refused by PostgreSQL in text and JSON) replaced, at any depth."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _fit(value: str | None, length: int) -> str | None:
    return None if value is None else _clean(value)[:length]


_work = work.row_to_item


def _safe_name(key: str) -> str:
    """A work item's public id from its key (as ``activities.outbox.safe_name`` names its file)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


def retain_until(created: date, years: int | None) -> date:
    """``years`` after ``created`` (29 February becomes 28 February); seven where no profile says."""
    keep = years if years is not None else 7
    try:
        return created.replace(year=created.year + keep)
    except ValueError:
        return created.replace(year=created.year + keep, day=28)


__all__: Sequence[str] = ["Attempt", "Ledger", "LedgerError", "Trail", "WorkItemRow", "async_url", "retain_until", "safe_url"]
