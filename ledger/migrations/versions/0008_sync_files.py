"""The servicer's daily files (sync/): one row per file by its SHA-256, so each is applied once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # As sync/schema.py has it (a migration keeps its own copy: the module may change later).
    op.create_table(
        "sync_files",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("as_of", sa.Date),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False, server_default="0"),
        sa.Column("started", sa.Integer, nullable=False, server_default="0"),
        sa.Column("new_episode", sa.Integer, nullable=False, server_default="0"),
        sa.Column("already_running", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cured", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reason", sa.Text),
        sa.Column("report", sa.JSON),
        sa.Column("workflow_id", sa.String(200)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("sha256", name="pk_sync_files"),
    )
    op.create_index("ix_sync_files_started_at", "sync_files", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_files_started_at", table_name="sync_files")
    op.drop_table("sync_files")
