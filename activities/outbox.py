"""Outbox folders: where messages and work items land when no real provider is configured.

Each item is written once under its idempotency key, atomically, so a retried
activity finds its earlier write instead of producing a second message. What is
kept here names borrowers: it goes with its ledger row when that is purged.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where each channel keeps its messages under the data folder, and their suffix; work items for
# people are kept under QUEUES/<queue>/ as JSON.
CHANNEL_FOLDERS = {"sms": ("outbox/sms", ".json"), "email": ("outbox/email", ".eml"), "letter": ("letters", ".pdf")}
QUEUES = "queues"


def safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


@dataclass(frozen=True)
class Kept:
    """What is kept under a key: where (None: nowhere, the message only went to its provider),
    whether this call wrote it, and its bytes (the first writer's, on a retry)."""

    path: Path | None
    created: bool
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def location(self) -> str:
        return "" if self.path is None else str(self.path)


class FileOutbox:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def keep(self, folder: str, key: str, suffix: str, content: bytes) -> Kept:
        """:meth:`write_once` and read back, off the event loop (it waits for the disk)."""
        return await asyncio.to_thread(self._keep, folder, key, suffix, content)

    async def kept(self, folder: str, key: str, suffix: str) -> Kept | None:
        """What an earlier try kept under ``key``, if anything."""
        path = self.root / folder / f"{safe_name(key)}{suffix}"
        content = await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)
        return None if content is None else Kept(path, False, content)

    def _keep(self, folder: str, key: str, suffix: str, content: bytes) -> Kept:
        path, created = self.write_once(folder, key, suffix, content)
        return Kept(path, created, content if created else path.read_bytes())

    def write_once(self, folder: str, key: str, suffix: str, content: bytes) -> tuple[Path, bool]:
        """Write ``content`` unless this key was written before; return the path and whether it is new."""
        directory = self.root / folder
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{safe_name(key)}{suffix}"
        if target.exists():
            return target, False
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                # link() fails if the target appeared meanwhile: the first writer wins, nothing is overwritten.
                os.link(temp, target)
            except FileExistsError:
                return target, False
        finally:
            os.unlink(temp)
        return target, True

    def forget(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Remove what is kept for ledger rows being purged (``ledger.retention.KeptFiles``): a
        contact attempt's copy (where its row says, and where its channel keeps one under its key,
        for a try that never recorded it) or a work item's queue file. Only files inside this
        outbox's folder, never through a link out of it; one already gone is no error. Returns how
        many files it removed."""
        root = self.root.resolve()
        removed = 0
        for path in set(self._files_of(table, rows)):
            try:
                target = (path if path.is_absolute() else Path.cwd() / path).resolve()
                if target.is_relative_to(root) and target.is_file():
                    target.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def _files_of(self, table: str, rows: list[dict[str, Any]]) -> Iterator[Path]:
        for row in rows:
            if table == "contact_attempts":
                if row.get("location"):
                    yield Path(row["location"])
                if row.get("channel") in CHANNEL_FOLDERS:
                    folder, suffix = CHANNEL_FOLDERS[row["channel"]]
                    yield self.root / folder / f"{safe_name(row['idempotency_key'])}{suffix}"
            elif table == "work_items":
                yield self.root / QUEUES / safe_name(row["queue"]) / f"{safe_name(row['item_key'])}.json"
