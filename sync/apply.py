"""Applying a checked file to the cases: what each row means, at bounded concurrency, resumable.

The cases are reached through a :class:`CaseDoor` (Temporal in production, a fake in tests). Rows
are applied by ``concurrency`` tasks pulling from the file in order; ``applied`` (what the heartbeat
carries) is the count of leading rows all done, so a run resumed from it repeats at most the rows that
were in flight, and every command is idempotent (a start never starts a second live case, an update
carries an id of the file and loan), so a repeated row starts nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from temporalio.service import RPCError, RPCStatusCode

from domain.loan import Loan
from sync import SYNC_IDENTITY
from sync.models import FileReport
from sync.source import DailyFile, Row


class Refused(Exception):
    """The case refused the command (its reason), or there is no live case to send it to."""

    def __init__(self, reason: str, *, no_case: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.no_case = no_case


class CaseDoor(Protocol):
    """How the sync reaches the cases."""

    async def admit(self, loan: Loan, *, as_of: date) -> str:
        """Start the loan's case: "started", "new episode", "already running" or "already existed"."""

    async def update(self, loan_id: str, payload: dict[str, Any], *, update_id: str) -> dict[str, Any]:
        """Send ``loan_update`` to the loan's live case; its status, or :class:`Refused`."""

    def running_loans(self) -> AsyncIterator[str]:
        """The loan ids of the live cases (the sync's task queue)."""


@dataclass
class Progress:
    """What the heartbeat carries: the file, the leading rows applied, the report so far."""

    sha256: str
    applied: int
    report: FileReport

    def details(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "applied": self.applied, "report": self.report.model_dump(mode="json")}

    @classmethod
    def from_details(cls, details: Any) -> "Progress | None":
        if not isinstance(details, dict) or "sha256" not in details:
            return None
        return cls(sha256=details["sha256"], applied=int(details["applied"]),
                   report=FileReport.model_validate(details["report"]))


def current_reason(as_of: date) -> str:
    return f"the servicer reports the loan current on {as_of.isoformat()}"


def absent_reason(as_of: date) -> str:
    return f"absent from the servicer's complete file of {as_of.isoformat()}"


class Applier:
    def __init__(self, door: CaseDoor, *, concurrency: int = 32, max_absent_share: float = 0.5) -> None:
        self.door = door
        self.concurrency = concurrency
        self.max_absent_share = max_absent_share

    async def apply(self, daily: DailyFile, report: FileReport, *, start: int = 0,
                    beat: Callable[[Progress], None] = lambda progress: None) -> FileReport:
        """Apply ``daily``'s valid rows from the ``start``-th on (``report`` holds the counts of
        those before), then, for a complete file, cure the live cases it leaves out."""
        rows = daily.loans(start)
        applied = start
        finished: dict[int, Callable[[FileReport], None]] = {}

        async def take() -> None:
            nonlocal applied
            for row in rows:  # shared: each task takes the next row; no more than `concurrency` in flight
                count = await self._row(daily, row)
                finished[row.index] = count
                # A row's outcome counts once every row before it has: then `applied` and the report
                # the heartbeat carries always agree, whatever order the tasks finish in.
                while applied in finished:
                    finished.pop(applied)(report)
                    applied += 1
                beat(Progress(daily.sha256, applied, report))

        await _together(take() for _ in range(self.concurrency))
        if daily.complete:
            await self._absent(daily, report)
        return report

    async def _row(self, daily: DailyFile, row: Row) -> Callable[[FileReport], None]:
        loan = row.loan
        as_of = loan.as_of or daily.as_of
        if loan.is_current:
            payload = {"as_of": as_of.isoformat(), "current": True, "reason": current_reason(as_of),
                       "outstanding": str(loan.outstanding_amount), "by": SYNC_IDENTITY}
            return await self._update(daily, loan.loan_id, payload, "current")
        try:
            admitted = await self.door.admit(loan, as_of=as_of)
        except RPCError as err:
            if err.status in PASSING:
                raise
            reason = f"not started: {err.message}"  # one row the server refuses never stops the file
            return lambda r: r.refuse(loan.loan_id, reason)
        if admitted == "started":
            return lambda r: setattr(r, "started", r.started + 1)
        if admitted == "new episode":
            return lambda r: setattr(r, "new_episode", r.new_episode + 1)
        if admitted == "already existed":
            return lambda r: setattr(r, "already_existed", r.already_existed + 1)
        payload = {"as_of": as_of.isoformat(), "amount_past_due": str(loan.amount_past_due),
                   "outstanding": str(loan.outstanding_amount), "days_past_due": loan.days_past_due,
                   "by": SYNC_IDENTITY}
        if row.fees is not None:
            payload["fees"] = str(row.fees)
        counted = await self._update(daily, loan.loan_id, payload, "figures")

        def running(report: FileReport) -> None:
            report.already_running += 1
            counted(report)
        return running

    async def _update(self, daily: DailyFile, loan_id: str, payload: dict[str, Any],
                      kind: str) -> Callable[[FileReport], None]:
        """Send ``loan_update`` (``kind``: figures, current, absent) under an id of the file and loan:
        sent again after a restart, the case answers it once."""
        try:
            status = await self.door.update(loan_id, payload, update_id=f"sync-{daily.sha256[:24]}-{kind}-{loan_id}")
        except RPCError as err:
            if err.status in PASSING:
                raise
            reason = f"not updated: {err.message}"
            return lambda r: r.refuse(loan_id, reason)
        except Refused as refused:
            if refused.no_case and kind == "current":
                return lambda r: setattr(r, "current_without_case", r.current_without_case + 1)
            if refused.no_case and kind == "absent":
                return lambda r: None  # closed since the listing: nothing left to cure
            reason = refused.reason
            return lambda r: r.refuse(loan_id, reason)
        closed_cured = status.get("outcome") == "cured"

        def count(report: FileReport) -> None:
            if kind == "figures":
                report.updated += 1
            if closed_cured and kind == "absent":
                report.cured_absent += 1
            elif closed_cured:
                report.cured_current += 1
        return count

    async def _absent(self, daily: DailyFile, report: FileReport) -> None:
        if daily.valid == 0:
            report.absent_held_back = "the file has no valid rows: no case is taken for cured"
            return
        running = [loan_id async for loan_id in self.door.running_loans()]
        absent = sorted(set(running) - daily.present)
        if absent and len(absent) > self.max_absent_share * len(running):
            report.absent_held_back = (
                f"{len(absent)} of {len(running)} live cases are absent from the file, more than "
                f"{self.max_absent_share:.0%} (ARREARS_SYNC_MAX_ABSENT_SHARE): no case is taken for cured")
            return
        payload = {"as_of": daily.as_of.isoformat(), "current": True, "reason": absent_reason(daily.as_of),
                   "by": SYNC_IDENTITY}
        pending = iter(absent)

        async def cure() -> None:
            for loan_id in pending:  # shared, as the rows are: `concurrency` cures in flight at most
                count = await self._update(daily, loan_id, payload, "absent")
                count(report)

        await _together(cure() for _ in range(self.concurrency))


# What a server answers when it may answer otherwise later: the activity fails and is tried again
# (resuming from its heartbeat). Any other answer is about the row itself, and is reported as refused.
PASSING = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED,
                     RPCStatusCode.ABORTED, RPCStatusCode.INTERNAL, RPCStatusCode.UNKNOWN, RPCStatusCode.CANCELLED})


async def _together(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run them all; the first to fail stops the others (no command goes on being sent for an attempt
    that has failed, beside the attempt that retries it) and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
