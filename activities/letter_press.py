"""Where letters are rendered: in processes of their own, one per core, or in a thread.

Rendering a letter is CPU work (about 30 ms). Done on the worker's event loop, or in a thread of
its process, it holds the interpreter while workflow tasks and every other activity wait. A
worker renders in a :class:`LetterPress` of separate processes instead, and takes letter
activities from a task queue of their own with exactly as many slots as the press has processes
(``worker.py``): a letter is only accepted when a process is free to render it, so its timeout
measures the rendering, never a wait for a process.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from activities.fonts import letter_fonts
from activities.letters import LetterDocument, render_pdf

log = structlog.get_logger("arrears.letters")


def _adopted(parent: int) -> None:
    """In a rendering process: leave when the worker that started it is gone (killed, not stopped:
    a stopped worker shuts its press down), rather than wait for letters that never come."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ready(warm_text: str) -> int:
    """In a rendering process: open the font and instance the glyphs every letter uses."""
    letter_fonts().warm(warm_text)
    return os.getpid()


class LetterPress:
    """Renders letters off the event loop: in ``processes`` processes, or (``processes=0``, for
    tests and one-off tools) in a thread of this process."""

    def __init__(self, processes: int, warm_text: str = "") -> None:
        if processes < 0:
            raise ValueError("ARREARS_LETTER_PROCESSES: must be 0 (render in a thread) or more")
        self.processes = processes
        self._warm_text = warm_text
        self._pool: Executor | None = None
        self._lock = asyncio.Lock()

    @property
    def slots(self) -> int:
        """How many letters may be rendered at once without waiting for a process."""
        return max(1, self.processes)

    async def start(self) -> None:
        """Start the processes and let each open the font, so that the first letters are as fast
        as the rest (about a second, off the worker's start path)."""
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        if self.processes == 0 or self._pool is not None:
            return
        # "spawn": never fork a process whose SDK threads hold locks a child would inherit.
        pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_adopted, initargs=(os.getpid(),))
        loop = asyncio.get_running_loop()
        try:
            pids = await asyncio.gather(*(loop.run_in_executor(pool, _ready, self._warm_text)
                                          for _ in range(self.processes)))
        except BaseException:  # cancelled (a worker stopping as it starts) or failed: no stray processes
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool = pool
        log.info("letter press ready", processes=self.processes, pids=sorted(set(pids)))

    async def render(self, document: LetterDocument) -> bytes:
        """The letter as PDF bytes; :class:`activities.letters.MissingGlyphs` if it cannot be set."""
        if self.processes == 0:
            return await asyncio.to_thread(render_pdf, document)
        if self._pool is None:
            await self.start()
        pool = self._pool
        assert pool is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, render_pdf, document)
        except BrokenProcessPool:
            # A rendering process died (killed, out of memory): start afresh; the activity's
            # retry renders the letter again.
            async with self._lock:
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                    log.warning("letter press restarted", processes=self.processes)
            raise

    async def aclose(self) -> None:
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
