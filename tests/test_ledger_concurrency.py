"""The ledger under a worker's load: no activity waits past a limit for a connection or a lock.

A worker gives its ledger one connection per activity slot, and holds one only for a statement;
SQLite takes one writer at a time (write-ahead log, a busy timeout, transactions that take the
write lock first), so concurrent writers in this process and in others wait briefly instead of
failing; and an operation whose activity is cancelled still finishes, returning its connection.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger import Ledger
from tests.ledger_fixtures import BACKENDS, scratch_database

KEEP = date(2030, 1, 1)
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


async def _claim_and_confirm(ledger: Ledger, key: str) -> None:
    await ledger.claim(key, loan_id=key.split("/")[0], jurisdiction="US", channel="sms", template=None,
                       retain_until=KEEP)
    await ledger.record_events(key.split("/")[0], "loan-x", [{"seq": 0, "at": AT, "kind": "case_opened",
                                                             "status": "info"}], KEEP)
    await ledger.sent(key, message_id="m")


async def test_sqlite_runs_in_write_ahead_log_mode_with_a_busy_timeout(tmp_path):
    ledger = Ledger.connect(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        await ledger.migrate()
        async with ledger.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() >= 5000
    finally:
        await ledger.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_many_writers_share_a_small_pool_without_a_timeout(backend, tmp_path):
    """Two hundred concurrent operations on three connections: they queue for the milliseconds each
    statement takes; none fails, and the pool never grows past its size."""
    async with scratch_database(backend, tmp_path) as url:
        ledger = Ledger.connect(url, pool_size=3)
        try:
            await ledger.migrate()
            await asyncio.gather(*(_claim_and_confirm(ledger, f"L-{n}/00001/reminder/sms") for n in range(200)))
            attempts = await ledger.attempts()
            assert len(attempts) == 200 and {a["state"] for a in attempts} == {"sent"}
            assert ledger.engine.pool.size() == 3 and ledger.engine.pool.checkedout() == 0
        finally:
            await ledger.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_operation_whose_activity_is_cancelled_still_returns_its_connection(backend, tmp_path):
    async with scratch_database(backend, tmp_path) as url:
        ledger = Ledger.connect(url, pool_size=4)
        try:
            await ledger.migrate()
            rng = random.Random(7)
            for round_ in range(5):
                tasks = [asyncio.create_task(_claim_and_confirm(ledger, f"C-{round_}-{n}/00001/reminder/sms"))
                         for n in range(60)]
                await asyncio.sleep(rng.uniform(0.001, 0.03))
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            # Every operation ran to its end in the background: nothing is left checked out, and the
            # next one finds a connection at once.
            for _ in range(100):
                if ledger.engine.pool.checkedout() == 0:
                    break
                await asyncio.sleep(0.05)
            assert ledger.engine.pool.checkedout() == 0
            await asyncio.wait_for(_claim_and_confirm(ledger, "after/00001/reminder/sms"), timeout=10)
            states = {a["state"] for a in await ledger.attempts()}
            assert states <= {"sending", "sent"}
        finally:
            await ledger.close()


WRITER = """
import asyncio, sys
from datetime import date
from ledger import Ledger
async def main(url, name):
    ledger = Ledger.connect(url)
    for n in range(150):
        key = f"{name}-{n}/00001/reminder/sms"
        await ledger.claim(key, loan_id=f"{name}-{n}", jurisdiction="US", channel="sms", template=None,
                           retain_until=date(2030, 1, 1))
        await ledger.sent(key, message_id="m")
    await ledger.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_writers_in_three_processes_on_one_sqlite_file_never_meet_a_locked_database(tmp_path):
    """Two workers and an agent command on the embedded ledger: each write waits for the others'."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.connect(url)
    try:
        await ledger.migrate()
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"P{n}"], cwd=ROOT, stderr=subprocess.PIPE)
                   for n in range(3)]
        errors = [w.communicate(timeout=120)[1].decode() for w in writers]
        assert [w.returncode for w in writers] == [0, 0, 0], errors
        assert not any("locked" in e for e in errors)
        attempts = await ledger.attempts()
        assert len(attempts) == 450 and {a["state"] for a in attempts} == {"sent"}
    finally:
        await ledger.close()


async def test_an_in_memory_sqlite_ledger_needs_no_pool():
    ledger = Ledger.connect("sqlite:///:memory:", pool_size=8)
    try:
        await ledger.migrate()
        await _claim_and_confirm(ledger, "M-1/00001/reminder/sms")
        assert [a["state"] for a in await ledger.attempts()] == ["sent"]
    finally:
        await ledger.close()
