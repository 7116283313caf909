"""Alembic, driven from code: the worker migrates at start, users may run ``python -m ledger upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade through an open (sync-facing) connection: used from async code via ``run_sync``."""
    if connection.dialect.name == "postgresql":
        # One migration at a time across workers; held until this transaction ends.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('arrears-ledger-migrate'))"))
    cfg = config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
