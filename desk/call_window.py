"""When an agent may dial a call task, as the desk shows it: the window the case gave the task
(``callable_from`` / ``callable_until``, UTC, in the work item's payload), the same on the borrower's
clock (the item's time zone, which the queue shows already: nothing personal is added), and whether
now is inside it.

A task outside its window stays where its due time puts it in the queue (the ledger pages the queue
in that order, so moving items within a page would misorder them across pages); it is flagged
``callable_now: false`` instead, and the workbench marks it "not callable now"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FIELDS = ("callable_from", "callable_until", "callable_from_local", "callable_until_local", "callable_now")


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _zone(name: object) -> ZoneInfo | None:
    try:
        return ZoneInfo(str(name)) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def call_window(payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The item's window in UTC and on the borrower's clock, and ``callable_now`` (None: the item
    has no window, e.g. a visit, or a call task queued before tasks carried one)."""
    start, end = _instant(payload.get("callable_from")), _instant(payload.get("callable_until"))
    if start is None and end is None:
        return dict.fromkeys(FIELDS)
    zone = _zone(payload.get("timezone"))

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).isoformat() if moment is not None and zone is not None else None

    return {"callable_from": start.astimezone(UTC).isoformat() if start else None,
            "callable_until": end.astimezone(UTC).isoformat() if end else None,
            "callable_from_local": local(start), "callable_until_local": local(end),
            "callable_now": (start is None or start <= now) and (end is None or now <= end)}
