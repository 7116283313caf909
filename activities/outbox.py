"""Outbox folders: where messages and work items land when no real provider is configured.

Each item is written once under its idempotency key, atomically, so a retried
activity finds its earlier write instead of producing a second message.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


class FileOutbox:
    def __init__(self, root: Path) -> None:
        self.root = root

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

    @staticmethod
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()
