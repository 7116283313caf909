"""The case book: where every case stands now, one row per loan, kept from the case's events
(``ledger/book.py``); filled here from the trail the ledger holds already.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

from ledger import book

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column]:
    """The columns as this migration creates them (frozen here: a later migration changes them itself)."""
    return [
        sa.Column("loan_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("stage_entered_at", sa.DateTime(timezone=True)),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("amount_past_due_milli", sa.BigInteger),
        sa.Column("outstanding_milli", sa.BigInteger),
        sa.Column("risk_grade", sa.String(8), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("jurisdiction", sa.String(8), nullable=False),
        sa.Column("assigned_agent", sa.String(64)),
        sa.Column("dpd_at_intake", sa.Integer),
        sa.Column("intake_at", sa.DateTime(timezone=True)),
        sa.Column("overdue_since", sa.Date),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("holds", sa.String(64), nullable=False),
        sa.Column("promise_due_date", sa.Date),
        sa.Column("promise_state", sa.String(16)),
        sa.Column("arrangement_kind", sa.String(16)),
        sa.Column("arrangement_state", sa.String(16)),
        sa.Column("outcome", sa.String(16)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.Date, nullable=False),
    ]


_NAMES = [column.name for column in _columns()]
_book = sa.table("case_book", *(sa.column(column.name, column.type) for column in _columns()))
_events = sa.table(
    "case_events", sa.column("loan_id", sa.String), sa.column("workflow_id", sa.String), sa.column("seq", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)), sa.column("kind", sa.String), sa.column("status", sa.String),
    sa.column("detail", sa.JSON), sa.column("retain_until", sa.Date))


def upgrade() -> None:
    op.create_table("case_book", *_columns(),
                    sa.PrimaryKeyConstraint("loan_id", name="pk_case_book"))
    op.create_index("ix_case_book_portfolio", "case_book", [
        "outcome", "stage", "risk_grade", "currency", "overdue_since", "dpd_at_intake", "amount_past_due_milli",
        "outstanding_milli"])
    op.create_index("ix_case_book_outcome_holds", "case_book", ["outcome", "holds"])
    op.create_index("ix_case_book_assigned_agent", "case_book", ["assigned_agent"])
    op.create_index("ix_case_book_retain_until", "case_book", ["retain_until"])
    _fill()


def downgrade() -> None:
    op.drop_table("case_book")


def _fill() -> None:
    """One row per loan the trail holds, folded from its events, a page of events at a time (in
    (loan_id, seq) order: the trail's unique index); a loan cut by a page goes on in the next."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows: dict[str, dict[str, Any]] = {}
    after: tuple[str, int] | None = None
    while True:
        query = sa.select(_events).order_by(_events.c.loan_id, _events.c.seq).limit(book.FILL_PAGE)
        if after is not None:
            query = query.where(sa.or_(_events.c.loan_id > after[0],
                                       sa.and_(_events.c.loan_id == after[0], _events.c.seq > after[1])))
        page = [dict(event._mapping) for event in bind.execute(query)]
        if not page:
            break
        for loan_id, events in groupby(page, key=lambda e: e["loan_id"]):
            trail = list(events)
            row = rows.pop(loan_id, None) or {**book.blank(loan_id, trail[0]["workflow_id"]),
                                              "retain_until": date.min}
            keep = max(row["retain_until"], *(e["retain_until"] for e in trail))
            rows[loan_id] = {**book.fold_all(row, trail), "workflow_id": trail[-1]["workflow_id"],
                             "retain_until": keep}
        after = (page[-1]["loan_id"], page[-1]["seq"])
        # Every loan but the page's last is complete: write those.
        done = [row for loan_id, row in rows.items() if loan_id != after[0]]
        _write(bind, done, now)
        rows = {after[0]: rows[after[0]]} if after[0] in rows else {}
    _write(bind, list(rows.values()), now)


def _write(bind: Any, rows: list[dict[str, Any]], now: datetime) -> None:
    if rows:
        bind.execute(sa.insert(_book), [{**{name: row.get(name) for name in _NAMES}, "updated_at": now}
                                        for row in rows])
