"""The letter press: letters rendered in processes of their own, never on the worker's event loop."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from activities.letter_press import LetterPress
from activities.letters import MissingGlyphs, render_pdf
from activities.templates import TemplateBook
from tests.test_letters import ROOT, letter


@pytest.fixture
async def press():
    running = LetterPress(2, warm_text=TemplateBook(ROOT / "templates").wording())
    await running.start()
    try:
        yield running
    finally:
        await running.aclose()


def _renderers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


async def test_letters_come_out_of_the_press_as_they_would_in_this_process(press):
    documents = [letter("zh"), letter("en"), letter("zh", template="validation_notice"), letter("en")]
    pressed = await asyncio.gather(*(press.render(d) for d in documents))
    assert pressed == [render_pdf(d) for d in documents]
    # Rendered elsewhere: two processes of the press's own, each its own font.
    assert len(_renderers()) == 2 and os.getpid() not in {p.pid for p in _renderers()}
    assert press.slots == 2


async def test_a_letter_the_font_cannot_set_is_refused_across_the_process_boundary(press):
    with pytest.raises(MissingGlyphs) as refused:
        await press.render(letter("en", recipient=["Zhang San 😀", "Address"]))
    assert refused.value.characters == ["😀"] and "U+1F600" in str(refused.value)


async def test_a_renderer_that_dies_is_replaced_and_the_next_letter_prints(press):
    await press.render(letter("en"))
    victim = _renderers()[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # The letter in flight when a renderer dies fails (its activity retries); the press starts afresh.
    for _ in range(3):
        try:
            pdf = await press.render(letter("zh"))
            break
        except Exception:  # noqa: BLE001 - BrokenProcessPool, once
            continue
    assert pdf == render_pdf(letter("zh"))


async def test_without_processes_letters_render_in_a_thread():
    inline = LetterPress(0)
    assert inline.slots == 1 and await inline.render(letter("en")) == render_pdf(letter("en"))
    assert not _renderers()
    with pytest.raises(ValueError, match="ARREARS_LETTER_PROCESSES"):
        LetterPress(-1)


ORPHAN = """
import asyncio, sys
from activities.letter_press import LetterPress
async def main():
    press = LetterPress(1)
    await press.start()
    import psutil
    print("renderer", [p.pid for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())][0],
          flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def test_a_renderer_leaves_when_its_worker_is_killed():
    """A worker killed outright (SIGKILL, no shutdown) leaves no rendering process behind."""
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = next(line for line in parent.stdout if line.startswith("renderer "))
        renderer = psutil.Process(int(line.split()[1]))
        assert renderer.is_running()
    finally:
        parent.kill()
        parent.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and renderer.is_running() and renderer.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.2)
    assert not renderer.is_running() or renderer.status() == psutil.STATUS_ZOMBIE
