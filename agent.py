"""Agents' work: pull call tasks and field visits from the ledger's queues, report outcomes.

    python agent.py list calls [--agent agent-1]          open call tasks (visits: `list visits`)
    python agent.py report ITEM OUTCOME --by agent-1 [--note TEXT]

A report goes to the case as the ``call_outcome`` / ``field_visit_report`` update, so the case
validates it first: a refused report says why and leaves the item open (or, when the case has
withdrawn the task meanwhile, marks it withdrawn). An accepted one closes the item in the ledger
with the outcome and who reported it. Reporting the same outcome again changes nothing.
Exit 0 on success, 1 when the report was refused, 2 when the ledger or Temporal is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from infra.client import connect
from infra.settings import Settings
from ledger import Ledger, LedgerError
from ledger.store import WorkItemRow

# Which update a queue's outcome becomes, and how the item names itself to the case.
REPORTS = {"calls": "call_outcome", "visits": "field_visit_report"}


@dataclass(frozen=True)
class Reported:
    item: WorkItemRow
    accepted: bool
    reason: str | None = None


def _payload(item: WorkItemRow, outcome: str, by: str, note: str | None) -> dict[str, object]:
    payload: dict[str, object] = {"outcome": outcome, "by": by}
    if note:
        payload["note"] = note
    if item.queue == "calls":
        payload |= {"task_id": item.payload.get("item_id"), "agent": by}
    return payload


async def report(ledger: Ledger, client: Client, item_key: str, outcome: str, *, by: str,
                 note: str | None = None) -> Reported:
    """Send the outcome of one work item to its case and close the item when the case accepts it."""
    item = await ledger.work_item(item_key)
    if item.queue not in REPORTS:
        raise LedgerError(f"work item {item_key!r}: the {item.queue} queue takes no outcomes from agents")
    if item.state != "open":
        if item.outcome == outcome:
            return Reported(item, accepted=True, reason="already reported")
        raise LedgerError(f"work item {item_key!r}: already {item.state} with outcome {item.outcome!r}")
    handle = client.get_workflow_handle(item.workflow_id)
    try:
        await handle.execute_update(REPORTS[item.queue], _payload(item, outcome, by, note))
    except WorkflowUpdateFailedError as err:
        reason = str(err.cause.message if err.cause is not None and hasattr(err.cause, "message") else err)
        if "no longer open" in reason or "no call task is open" in reason or "no field visit" in reason:
            earlier = await _accepted_earlier(handle, item)
            if earlier is not None:  # a report that reached the case before the ledger heard of it
                accepted_outcome, who = earlier
                done = await ledger.complete_work(item_key, outcome=accepted_outcome, reported_by=who or by)
                if accepted_outcome == outcome:
                    return Reported(done, accepted=True, reason="already reported")
                return Reported(done, accepted=False,
                                reason=f"the case already has outcome {accepted_outcome!r} for this task")
            item = await ledger.complete_work(item_key, outcome="withdrawn", reported_by=by, state="withdrawn")
        return Reported(item, accepted=False, reason=reason)
    return Reported(await ledger.complete_work(item_key, outcome=outcome, reported_by=by), accepted=True)


async def _accepted_earlier(handle, item: WorkItemRow) -> tuple[str, str | None] | None:
    """The outcome the case already accepted for this call task (and who sent it), if any."""
    if item.queue != "calls":
        return None
    state = await handle.query("status")
    for event in state["events"]:
        if (event["kind"], event["status"]) == ("call_outcome", "accepted") and \
                event["detail"].get("task_id") == item.payload.get("item_id"):
            return event["detail"]["outcome"], event.get("actor")
    return None


def _line(item: WorkItemRow) -> str:
    # Loan id and where/when only: the agent opens the case for the borrower's details.
    payload = item.payload
    when = payload.get("scheduled_for") or item.created_at.isoformat(timespec="minutes")
    who = item.assigned_to or "-"
    return f"{item.item_key}\t{item.loan_id}\t{who}\t{when}\t{payload.get('timezone', '')}"


async def _main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    ledger = Ledger.connect(settings.ledger_url)
    try:
        await ledger.migrate()
        if args.command == "list":
            items = await ledger.open_work(args.queue, assigned_to=args.agent)
            for item in items:
                print(_line(item))
            print(f"{len(items)} open in {args.queue}", file=sys.stderr)
            return 0
        client = await connect(settings)
        done = await report(ledger, client, args.item, args.outcome, by=args.by, note=args.note)
        if done.accepted:
            print(f"{done.item.item_key}: {done.item.outcome}" + (f" ({done.reason})" if done.reason else ""))
            return 0
        print(f"{done.item.item_key}: refused: {done.reason}"
              + (" — the case withdrew this task; it is closed" if done.item.state == "withdrawn" else ""),
              file=sys.stderr)
        return 1
    finally:
        await ledger.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="open items on a queue")
    listing.add_argument("queue", choices=sorted(REPORTS))
    listing.add_argument("--agent", help="only items assigned to this agent")
    reporting = commands.add_parser("report", help="report the outcome of one item")
    reporting.add_argument("item", help="the item key, as `list` prints it")
    reporting.add_argument("outcome")
    reporting.add_argument("--by", required=True, help="your agent id (recorded in the audit trail)")
    reporting.add_argument("--note")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except (LedgerError, RPCError, OSError, ValueError) as err:
        print(f"agent: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
