"""How long the ledger keeps what happened to a loan, and the purge that ends it.

A loan's rows are kept while its case is being collected, and for its jurisdiction's record-keeping
years after its last activity (Reg F 1006.100 counts three years from the last communication or
attempt). The loan's date is its ``case_book.retain_until``, moved forward in the transaction of
every write for the loan (events appended, a contact claimed, work queued). A row's own
``retain_until`` (the day it was written plus those years) is the least it is kept: a row goes only
once both it and its loan's date have passed. So a long case keeps its early events until its last
activity is old enough, and a write costs one conditional update of one row by its key, never a
rewrite of the loan's history (whose trail stays append-only).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from sqlalchemy import Table, and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from ledger.schema import case_book

# Rows deleted (and their files removed) per transaction: the purge never holds SQLite's write lock,
# or a PostgreSQL transaction, for more than a moment.
PURGE_PAGE = 500
# What the purge reads of a row besides its key: what says where its files are.
_FILE_COLUMNS = {"contact_attempts": ("idempotency_key", "channel", "location"), "work_items": ("item_key", "queue")}


class KeptFiles(Protocol):
    """Where copies of what the ledger's rows record are kept (``activities.outbox.FileOutbox``)."""

    def forget(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Remove the files of ``rows`` of ``table`` (being purged); how many were removed."""
        ...


async def extend(connection: AsyncConnection, loan_id: str, keep: date) -> None:
    """Keep the loan until at least ``keep`` (its newest activity's date): a no-op, by the primary
    key, when it is kept that long already (every write of the same day) or has no book row yet
    (then its rows' own dates count, and its first events create the row)."""
    await connection.execute(update(case_book).where(case_book.c.loan_id == loan_id, case_book.c.retain_until < keep)
                             .values(retain_until=keep))


def expired(table: Table, today: date) -> ColumnElement[bool]:
    """The rows of ``table`` past their retention on ``today``: their own date, and their loan's."""
    if table is case_book:
        return case_book.c.retain_until < today
    loan_kept = exists().where(case_book.c.loan_id == table.c.loan_id, case_book.c.retain_until >= today)
    return and_(table.c.retain_until < today, ~loan_kept)


async def expired_page(connection: AsyncConnection, table: Table, today: date) -> list[dict[str, Any]]:
    """The next rows of ``table`` to purge: their key, and what names their files."""
    key = table.primary_key.columns.values()[0]
    columns = [key, *(table.c[name] for name in _FILE_COLUMNS.get(table.name, ()))]
    rows = await connection.execute(select(*columns).where(expired(table, today)).order_by(key).limit(PURGE_PAGE))
    return [dict(row._mapping) for row in rows]
