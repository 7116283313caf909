"""Retention counts from the case's last activity, and private reasons are kept encrypted: the trail
gets ``case_events.private`` (ledger/private.py), and each loan's date in the case book becomes the
latest of all its rows' (events, contact attempts, work items), which the purge now keeps every row of
the loan until (ledger/retention.py).

The loan-level lookups this needs are indexed already: ``case_book`` by its key, ``contact_attempts``
and ``work_items`` by ``loan_id``, ``case_events`` by ``(loan_id, seq)``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_book = sa.table("case_book", sa.column("loan_id", sa.String), sa.column("retain_until", sa.Date))


def upgrade() -> None:
    op.add_column("case_events", sa.Column("private", sa.Text))
    # A loan already in the book is kept as long as its latest row: until now the book followed its
    # events only, and an early event went at its own date while the case was still contacted.
    for name in ("contact_attempts", "work_items"):
        rows = sa.table(name, sa.column("loan_id", sa.String), sa.column("retain_until", sa.Date))
        latest = (sa.select(sa.func.max(rows.c.retain_until)).where(rows.c.loan_id == _book.c.loan_id)
                  .scalar_subquery())
        op.execute(sa.update(_book).where(_book.c.retain_until < latest).values(retain_until=latest))


def downgrade() -> None:
    op.drop_column("case_events", "private")
