"""The ledger's table of the servicer's files (migration ``0008``): one row per file by its SHA-256,
so a file is applied once, whatever its name and however often it is dropped or triggered."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Date, DateTime, Index, Integer, String, Table, Text

from ledger.schema import metadata

# state: running (being applied, or a worker died in it: the next run resumes it), done (applied:
# skipped from now on, "already processed"), unreadable (never applied: the reason says why; a run
# reads it again, in case it was read while being written). The counts repeat the report's, for
# `python -m sync status`; the report (JSON) has them all, with the rejected rows' lines and reasons.
sync_files = Table(
    "sync_files", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("source", String(16), nullable=False),   # folder, sql
    Column("as_of", Date),
    Column("state", String(16), nullable=False),
    Column("rows", Integer, nullable=False, default=0),
    Column("started", Integer, nullable=False, default=0),
    Column("new_episode", Integer, nullable=False, default=0),
    Column("already_running", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("cured", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("reason", Text),
    Column("report", JSON),
    Column("workflow_id", String(200)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_sync_files_started_at", "started_at"),
)
