"""Wiring: the desk's records, role table, Temporal client and HTTP app, served by uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import uvicorn
from fastapi import FastAPI

from desk.api import create_app
from desk.cases import CaseDesk
from desk.config import DeskSettings
from desk.policy import load_policy
from desk.store import DeskStore
from infra.client import connect
from infra.codec import codec_from_setting
from ledger import Ledger

log = structlog.get_logger("desk")


@asynccontextmanager
async def opened_store(settings: DeskSettings) -> AsyncIterator[DeskStore]:
    """The desk's records in the ledger's database, its schema brought up to date; the payload keys
    read the private reasons back for the compliance role."""
    ledger = Ledger.connect(settings.base.ledger_url, codec=codec_from_setting(settings.base.payload_keys))
    try:
        await ledger.migrate()
        yield DeskStore(ledger)
    finally:
        await ledger.close()


async def _connect(settings: DeskSettings, attempts: int = 30):  # type: ignore[no-untyped-def]
    for attempt in range(1, attempts + 1):
        try:
            return await connect(settings.base)
        except RuntimeError as err:  # the SDK's connection failure
            if attempt == attempts:
                raise
            log.warning("temporal_not_reachable", address=settings.base.temporal_address, error=str(err))
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


@asynccontextmanager
async def desk_app(settings: DeskSettings) -> AsyncIterator[FastAPI]:
    async with opened_store(settings) as store:
        client = await _connect(settings)
        app = create_app(CaseDesk(client, load_policy(), store, store.ledger, settings))
        if settings.oidc_issuer:
            from desk.oidc import add_oidc

            add_oidc(app, store, settings)
        yield app


async def serve(settings: DeskSettings) -> None:
    async with desk_app(settings) as app:
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                proxy_headers=True, server_header=False)
        log.info("desk_serving", url=f"http://{settings.host}:{settings.port}", temporal=settings.base.temporal_address)
        await uvicorn.Server(config).serve()
