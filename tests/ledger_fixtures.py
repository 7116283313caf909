"""A migrated ledger on SQLite (a file) and on PostgreSQL (a schema of its own per test).

PostgreSQL is ``ARREARS_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Where no server answers, its tests skip, unless ``ARREARS_REQUIRE_POSTGRES=1`` (``.ci/run`` sets
it): then a missing server is an error, so CI never passes without them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ledger import Ledger

POSTGRES_URL = os.environ.get("ARREARS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


async def _postgres_or_skip() -> Ledger:
    admin = Ledger.connect(POSTGRES_URL)
    try:
        async with admin.engine.connect():
            pass
    except (OSError, Exception) as err:  # noqa: BLE001 - any failure to connect means "no server"
        await admin.close()
        if os.environ.get("ARREARS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (ARREARS_REQUIRE_POSTGRES=1) but {POSTGRES_URL} fails: {err}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {err}")
    return admin


async def open_ledger(backend: str, tmp_path: Path, *, migrated: bool = True) -> tuple[Ledger, str]:
    """A ledger (migrated to the newest schema unless told not to) and the URL (plus schema) that
    reaches it."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        ledger = Ledger.connect(url)
        if migrated:
            await ledger.migrate()
        return ledger, url
    admin = await _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    async with admin.engine.begin() as connection:
        await connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    await admin.close()
    ledger = Ledger.connect(POSTGRES_URL, schema=schema)
    ledger.test_schema = schema  # type: ignore[attr-defined]
    if migrated:
        await ledger.migrate()
    return ledger, POSTGRES_URL


async def drop_ledger(ledger: Ledger) -> None:
    schema = getattr(ledger, "test_schema", None)
    await ledger.close()
    if schema is not None:
        admin = Ledger.connect(POSTGRES_URL)
        async with admin.engine.begin() as connection:
            await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL other processes can use (a worker, a command): a SQLite file, or a PostgreSQL
    database of its own, dropped afterwards (a schema cannot be named in a URL for asyncpg)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch-ledger.db'}"
        return
    admin = await _postgres_or_skip()
    name = f"arrears_t_{uuid.uuid4().hex[:12]}"
    server = admin.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with server.connect() as connection:
        await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with server.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(params=BACKENDS)
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    opened, _ = await open_ledger(request.param, tmp_path)
    try:
        yield opened
    finally:
        await drop_ledger(opened)
