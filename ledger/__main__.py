"""``python -m ledger upgrade`` (schema to the newest migration) · ``python -m ledger current``
· ``python -m ledger purge`` (delete what is past its retention, with the outbox copies, letters and
queue files of what it deletes, under ARREARS_DATA_DIR). ARREARS_DATABASE_URL selects the database
(default: SQLite under ARREARS_DATA_DIR)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from activities.outbox import FileOutbox
from infra.settings import Settings
from ledger.migrate import current_revision
from ledger.store import Ledger, LedgerError


async def _main(action: str) -> int:
    settings = Settings.from_env()
    ledger = Ledger.connect(settings.ledger_url)
    try:
        if action == "upgrade":
            await ledger.migrate()
        if action in ("upgrade", "current"):
            async with ledger.engine.connect() as connection:
                print(f"{ledger.dialect}: schema at {await connection.run_sync(current_revision)}")
        elif action == "purge":
            removed = await ledger.purge_expired(datetime.now(UTC).date(), FileOutbox(settings.data_dir))
            files = removed.pop("files")
            print(", ".join(f"{table}: {count} removed" for table, count in removed.items()))
            print(f"files: {files} removed")
    finally:
        await ledger.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["upgrade", "current", "purge"])
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args.action))
    except LedgerError as err:
        print(f"ledger: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
