"""The ledger's record of the servicer's files (``sync_files``): applied once each, by SHA-256."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger import Ledger
from sync.models import FileReport
from sync.schema import sync_files


def _now() -> datetime:
    return datetime.now(UTC)


class SyncFiles:
    """``sync_files`` in the case ledger (SQLite or PostgreSQL, as the ledger is)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _insert(self) -> Any:
        return (postgresql.insert if self.ledger.dialect == "postgresql" else sqlite.insert)(sync_files)

    async def begin(self, *, sha256: str, name: str, source: str, as_of: Any, workflow_id: str) -> str | None:
        """Take the file on: None to go ahead (new, or left running by a run that died), or, if it
        was applied already, when (then nothing of it is applied again)."""
        # The write comes first: on SQLite the transaction takes the write lock at once, instead of
        # reading and then finding another writer in the way.
        async with self.ledger.engine.begin() as connection:
            await connection.execute(self._insert().values(
                sha256=sha256, name=name[:300], source=source, as_of=as_of, state="running",
                workflow_id=workflow_id, started_at=_now()).on_conflict_do_nothing(index_elements=["sha256"]))
            row = (await connection.execute(select(sync_files).where(sync_files.c.sha256 == sha256))).mappings().one()
            if row["state"] == "done":
                return f"applied {row['finished_at']:%Y-%m-%d %H:%M} UTC as {row['name']}"
            if row["workflow_id"] != workflow_id or row["state"] != "running":
                await connection.execute(update(sync_files).where(sync_files.c.sha256 == sha256).values(
                    state="running", name=name[:300], as_of=as_of, workflow_id=workflow_id, reason=None))
        return None

    async def unreadable(self, *, sha256: str, name: str, source: str, reason: str, workflow_id: str) -> None:
        """Record a file nothing of which could be applied (it is read again next time)."""
        async with self.ledger.engine.begin() as connection:
            await connection.execute(self._insert().values(
                sha256=sha256, name=name[:300], source=source, state="unreadable", reason=reason,
                workflow_id=workflow_id, started_at=_now(), finished_at=_now()).on_conflict_do_nothing(
                index_elements=["sha256"]))
            await connection.execute(update(sync_files).where(
                sync_files.c.sha256 == sha256, sync_files.c.state != "done").values(
                state="unreadable", reason=reason, finished_at=_now()))

    async def finish(self, report: FileReport) -> None:
        """The file is applied: its counts and report, and ``done`` (skipped from now on)."""
        async with self.ledger.engine.begin() as connection:
            await connection.execute(update(sync_files).where(sync_files.c.sha256 == report.sha256).values(
                state="done", rows=report.rows, started=report.started, new_episode=report.new_episode,
                already_running=report.already_running, updated=report.updated, cured=report.cured,
                rejected=report.rejected, reason=report.absent_held_back,
                report=report.model_dump(mode="json"), finished_at=_now()))

    async def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """The files seen last, newest first."""
        async with self.ledger.engine.connect() as connection:
            rows = await connection.execute(
                select(sync_files).order_by(sync_files.c.started_at.desc()).limit(limit))
            return [dict(row) for row in rows.mappings()]

    async def get(self, sha256: str) -> dict[str, Any] | None:
        async with self.ledger.engine.connect() as connection:
            row = (await connection.execute(select(sync_files).where(sync_files.c.sha256 == sha256))).mappings().first()
            return dict(row) if row else None

