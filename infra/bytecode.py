"""Bytecode for the worker's workflow modules, even where Python is told not to write any.

The workflow sandbox imports each workflow's module afresh for every case it runs or replays.
Without bytecode on disk (``PYTHONDONTWRITEBYTECODE=1``, as in the image, or a read-only source
tree) Python compiles the module's source each time: about a sixth of a busy worker's CPU. The
worker keeps bytecode in its data folder instead (``sys.pycache_prefix``), written on first import
and read from then on; the source tree is never written to.
"""

from __future__ import annotations

import sys
from pathlib import Path


def keep_bytecode(folder: Path) -> Path:
    """Cache compiled modules imported from now on in ``folder`` (the worker's data folder's
    ``bytecode/``; kept across restarts, recompiled when a source changes) and read them from
    there. Raises OSError if the folder cannot be made. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    sys.pycache_prefix = str(folder)
    sys.dont_write_bytecode = False
    return folder
