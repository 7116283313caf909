"""Outbox folders: where messages and work items land when no real provider is configured.

Each item is written once under its idempotency key, atomically, so a retried
activity finds its earlier write instead of producing a second message.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


@dataclass(frozen=True)
class Kept:
    """What is kept under a key: where, whether this call wrote it, and its bytes (the first
    writer's, on a retry)."""

    path: Path
    created: bool
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


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
