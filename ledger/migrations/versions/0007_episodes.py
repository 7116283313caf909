"""Rows carry the delinquency episode: a loan cured and delinquent again is a new case (a new run of
``loan-<loan_id>``) numbering its events from the start, so ``case_events``, ``contact_attempts``,
``work_items`` and ``case_book`` get ``episode`` (domain/episodes.py: the delinquency date, with a
".N" when a case reopened on the same one), and the trail's unique key becomes
``(loan_id, episode, seq)``: a second episode's events are kept beside the first one's, never taken
for them. Rows already there are of cases from before episodes: their episode is "".

The loan-level lookups stay indexed: ``case_events`` by ``(loan_id, episode, seq)``, the others by
``loan_id``; the book keeps one row per loan (its latest episode, ledger/book.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("case_events", "contact_attempts", "work_items", "case_book")


def _episode() -> sa.Column:
    return sa.Column("episode", sa.String(32), nullable=False, server_default="")


def upgrade() -> None:
    for name in _TABLES:
        op.add_column(name, _episode())
    # SQLite cannot drop a constraint in place: the batch copies the table (its append-only trigger
    # goes with the old table and is made again below).
    with op.batch_alter_table("case_events") as batch:
        batch.drop_constraint("uq_case_events_loan_id_seq", type_="unique")
        batch.create_unique_constraint("uq_case_events_loan_id_episode_seq", ["loan_id", "episode", "seq"])
    _append_only_on_sqlite()


def downgrade() -> None:
    # Only a ledger holding no second episode goes back: two episodes' events of one number would
    # break the old key, and the database says so.
    with op.batch_alter_table("case_events") as batch:
        batch.drop_constraint("uq_case_events_loan_id_episode_seq", type_="unique")
        batch.create_unique_constraint("uq_case_events_loan_id_seq", ["loan_id", "seq"])
    for name in reversed(_TABLES):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("episode")
    _append_only_on_sqlite()


def _append_only_on_sqlite() -> None:
    """The trail's guard (0001), which SQLite loses when a batch copies the table."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS case_events_append_only")
    op.execute("""
        CREATE TRIGGER case_events_append_only BEFORE UPDATE ON case_events
        BEGIN SELECT RAISE(ABORT, 'case_events is append-only: rows are never changed'); END""")
