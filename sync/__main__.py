"""The daily sync from the command line.

    python -m sync schedule          create or update the schedule (ARREARS_SYNC_AT, ARREARS_SYNC_TIMEZONE)
    python -m sync run [--no-wait]   run it now (through the schedule) and print what each file did
    python -m sync status [--limit N]  the files seen lately with their counts, and the schedule's next runs

Exit 0 when done, 1 when a file was unreadable or had rejected rows (``run``), 2 when the sync cannot
run at all (no source, a bad setting, no server, no schedule).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from infra.client import connect
from infra.settings import Settings
from ledger import Ledger, LedgerError
from sync import SCHEDULE_ID
from sync.files import SyncFiles
from sync.models import SyncReport
from sync.schedule import Skipped, ensure_schedule, trigger
from sync.settings import SyncSettings


class Unusable(RuntimeError):
    """The command cannot run: the message says why (exit 2)."""


async def _client(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as err:  # the SDK reports an unreachable server as a RuntimeError
        raise Unusable(f"cannot reach Temporal at {settings.temporal_address}: {err}") from None


async def schedule(settings: Settings, sync: SyncSettings) -> int:
    if not sync.configured:
        raise Unusable("no sync source: set ARREARS_SYNC_FOLDER, or ARREARS_SYNC_SQL_URL and ARREARS_SYNC_SQL_QUERY")
    client = await _client(settings)
    done = await ensure_schedule(client, settings, sync)
    description = await client.get_schedule_handle(SCHEDULE_ID).describe()
    upcoming = description.info.next_action_times[:1]
    print(f"schedule {SCHEDULE_ID} {done}: every day at {sync.at:%H:%M} {sync.timezone} from {sync.source}"
          + (f"; next run {upcoming[0]:%Y-%m-%d %H:%M} UTC" if upcoming else "")
          + (" (paused)" if description.schedule.state.paused else ""))
    return 0


async def run(settings: Settings, wait: bool) -> int:
    client = await _client(settings)
    try:
        handle = await trigger(client)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Unusable(f"no schedule {SCHEDULE_ID}: create it with `python -m sync schedule`") from None
        raise
    except Skipped as skipped:
        print(f"sync: {skipped}")
        return 0
    print(f"sync: started {handle.id}")
    if not wait:
        return 0
    try:
        report: SyncReport = await handle.result()
    except WorkflowFailureError as err:
        raise Unusable(f"the sync {handle.id} failed: {err.cause or err}") from None
    print(report.summary())
    for file in report.files:
        for problem in file.rejections:
            print(f"{file.name}:{problem.line}: rejected: {problem.reason}", file=sys.stderr)
        if file.rejected > len(file.rejections):
            print(f"{file.name}: {file.rejected - len(file.rejections)} more rejected rows (see the ledger)",
                  file=sys.stderr)
        for refusal in file.refusals:
            print(f"{file.name}: loan {refusal.loan_id}: refused: {refusal.reason}", file=sys.stderr)
    troubled = any(f.status == "unreadable" or f.rejected for f in report.files)
    return 1 if troubled else 0


async def status(settings: Settings, limit: int) -> int:
    ledger = Ledger.connect(settings.ledger_url)
    try:
        rows = await SyncFiles(ledger).recent(limit)
    except Exception as err:  # noqa: BLE001 - a ledger without the table, or no database at all
        raise Unusable(f"cannot read the ledger's sync files ({err.__class__.__name__}): "
                       "run `python -m ledger upgrade` or start the worker once") from None
    finally:
        await ledger.close()
    if not rows:
        print("sync: no file seen yet")
    for row in rows:
        when = f"{row['started_at']:%Y-%m-%d %H:%M}"
        counts = (f"{row['rows']} rows, {row['started']} started, {row['new_episode']} new episode, "
                  f"{row['already_running']} already running, {row['updated']} updated, {row['cured']} cured, "
                  f"{row['rejected']} rejected") if row["state"] == "done" else (row["reason"] or "")
        print(f"{when}  {row['state']:<10}  {row['name']}  as of {row['as_of'] or '?'}  {counts}  {row['sha256'][:12]}")
    try:
        client = await _client(settings)
        description = await client.get_schedule_handle(SCHEDULE_ID).describe()
    except (Unusable, RPCError) as err:
        print(f"schedule {SCHEDULE_ID}: not available ({getattr(err, 'message', err)})")
        return 0
    upcoming = description.info.next_action_times[:1]
    print(f"schedule {SCHEDULE_ID}: {'paused' if description.schedule.state.paused else 'active'}"
          + (f", next run {upcoming[0]:%Y-%m-%d %H:%M} UTC" if upcoming else "")
          + f", {description.info.num_actions} runs so far")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("schedule", help="create or update the schedule")
    run_parser = commands.add_parser("run", help="run the sync now and print its report")
    run_parser.add_argument("--no-wait", action="store_true", help="start it and return")
    status_parser = commands.add_parser("status", help="the files seen lately")
    status_parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        sync = SyncSettings.from_env()
        if args.command == "schedule":
            return asyncio.run(schedule(settings, sync))
        if args.command == "run":
            return asyncio.run(run(settings, wait=not args.no_wait))
        return asyncio.run(status(settings, args.limit))
    except (Unusable, LedgerError, ValueError) as err:  # ValueError: a bad setting, named
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's runtime threads can crash it (sdk-python #300).
    os._exit(code)
