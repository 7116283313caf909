"""Alembic environment: runs on the connection it is given (the worker, the tests), or opens one
from ``sqlalchemy.url`` with the async driver (``python -m ledger upgrade``)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ledger.schema import metadata
from ledger.store import async_url


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_from_url(context.config.get_main_option("sqlalchemy.url")))
