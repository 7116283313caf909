"""Work items follow the case: which of the case's own events close which items, and how a queue
is paged. The store applies these in the transaction that appends the events (``Ledger._append``).
A case is one episode of its loan (domain/episodes.py): its events touch that episode's items only,
never an earlier or later case's of the same loan (which may name a visit alike)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Update, and_, or_, update

from ledger.schema import work_items

OPEN = "open"


@dataclass(frozen=True)
class WorkItemRow:
    """One piece of work for people as the ledger holds it. ``item_id`` is its public id, ``case_ref``
    what the case calls it (a call task's task_id, a visit's visit_id), ``due_at`` when it is due;
    a closed item says how (``outcome``, ``reported_by``) or why (``reason``)."""

    item_key: str
    loan_id: str
    workflow_id: str
    queue: str
    state: str
    assigned_to: str | None
    payload: dict[str, Any]
    outcome: str | None
    created_at: datetime
    item_id: str = ""
    case_ref: str | None = None
    due_at: datetime | None = None
    reason: str | None = None
    reported_by: str | None = None
    completed_at: datetime | None = None
    episode: str = ""  # the case's episode ("" for a case from before episodes)


@dataclass(frozen=True)
class Closing:
    """How one event of a case closes its open items: those of ``queue`` the case calls
    ``case_ref``, or (``case_ref`` None) every open item of the case."""

    queue: str | None
    case_ref: str | None
    state: str
    outcome: str | None = None
    reason: str | None = None
    reported_by: str | None = None


# The events that end a piece of work, by kind: (queue, the detail naming the item).
_CALL_ENDS = {"call_task_withdrawn": "withdrawn", "call_task_expired": "expired"}


def closing(event: dict[str, Any]) -> Closing | None:
    """What ``event`` (as appended: kind, status, reason, actor, detail) does to the case's work, if
    anything. A legal hand-off and a supervisor's flag end only with the case. The events of a case
    reach the ledger no later than the work queued after them (they ride with it), so an event
    never closes work the case queued after it."""
    kind, status, reason = event["kind"], event["status"], event.get("reason")
    detail = event.get("detail") or {}
    if kind in _CALL_ENDS and detail.get("task_id"):
        return Closing("calls", str(detail["task_id"]), _CALL_ENDS[kind], reason=reason)
    if kind == "call_outcome" and status == "accepted" and detail.get("task_id"):
        return Closing("calls", str(detail["task_id"]), "done", outcome=detail.get("outcome"),
                       reported_by=event.get("actor"))
    visit = detail.get("visit_id")
    if kind == "field_visit_cancelled" and visit:
        return Closing("visits", str(visit), "withdrawn", reason=reason)
    if kind == "field_visit_completed" and visit:
        outcome = detail.get("outcome")
        if outcome == "overdue":
            return Closing("visits", str(visit), "expired", outcome=outcome,
                           reason=reason or "the visit's report did not come in time")
        return Closing("visits", str(visit), "done", outcome=outcome, reason=reason)
    if kind == "field_visit_failed" and visit:
        return Closing("visits", str(visit), "withdrawn", reason=f"the visit failed: {reason or 'no reason given'}")
    if kind == "stage_entered":
        # A stage starts with no call task (CaseState.enter_stage): the last stage's are over.
        return Closing("calls", None, "withdrawn", reason=f"the case moved on to the {detail.get('stage')} stage")
    if kind == "case_closed":
        why = f"case closed: {detail.get('outcome')}"
        return Closing(None, None, "withdrawn", reason=f"{why}: {reason}" if reason else why)
    return None


def close_items(loan_id: str, workflow_id: str, what: Closing, now: datetime, episode: str = "") -> Update:
    """The statement closing what ``what`` names, among the case's (``episode``'s) items still open:
    an item closed before (by an agent's report, an earlier event) stays as it was, so a replay
    changes nothing."""
    where = [work_items.c.loan_id == loan_id, work_items.c.episode == episode, work_items.c.workflow_id == workflow_id,
             work_items.c.state == OPEN]
    if what.queue is not None:
        where.append(work_items.c.queue == what.queue)
    if what.case_ref is not None:
        where.append(work_items.c.case_ref == what.case_ref)
    return update(work_items).where(*where).values(
        state=what.state, outcome=_fit(what.outcome, 32), reason=what.reason,
        reported_by=_fit(what.reported_by, 64), completed_at=now)


def reassigned_calls(loan_id: str, workflow_id: str, event: dict[str, Any], episode: str = "") -> Update | None:
    """An accepted ``assign`` moves the case's (``episode``'s) open call tasks to the new agent: the
    calls follow the case to whoever works it now (visits stay with their field staff)."""
    agent = (event.get("detail") or {}).get("agent")
    if event["kind"] != "assign" or event["status"] != "accepted" or not agent:
        return None
    return update(work_items).where(
        work_items.c.loan_id == loan_id, work_items.c.episode == episode, work_items.c.workflow_id == workflow_id,
        work_items.c.queue == "calls", work_items.c.state == OPEN).values(assigned_to=_fit(str(agent), 200))


def replaced_items(item: dict[str, Any], now: datetime) -> Update:
    """An item the case calls by the name of a newer one (a visit's next attempt) is replaced by it
    (within the case's episode: another episode's visit may bear the same name)."""
    return update(work_items).where(
        work_items.c.loan_id == item["loan_id"], work_items.c.episode == item.get("episode", ""),
        work_items.c.queue == item["queue"],
        work_items.c.case_ref == item["case_ref"], work_items.c.state == OPEN,
        work_items.c.item_key != item["item_key"],
    ).values(state="expired", reason=f"replaced by {item['item_id']}", completed_at=now)


def assigned_to_any(names: list[str]) -> Any:
    """Items assigned to one of ``names``, each matched exactly against the comma-separated team
    (agent-1 is not agent-10, and a ``%`` is a percent sign)."""
    team = "," + work_items.c.assigned_to + ","
    return or_(*(team.contains(f",{name},", autoescape=True) for name in names))


def after(cursor: str) -> Any:
    """Items past ``cursor`` in due order (due time, then id)."""
    due_at, last_id = _decode(cursor)
    return or_(work_items.c.due_at > due_at, and_(work_items.c.due_at == due_at, work_items.c.id > last_id))


def cursor_at(due_at: datetime, item_id: int) -> str:
    """An opaque cursor for the position just past an item."""
    text = json.dumps([utc(due_at).isoformat(), item_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, int]:
    try:
        due, last_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 <= last_id < 2**63:
            raise TypeError
        return utc(datetime.fromisoformat(due)), last_id
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError, RecursionError):
        raise ValueError(f"{cursor[:40]!r} is not a cursor this queue gave out") from None


def utc(value: datetime) -> datetime:
    """An aware UTC time (SQLite returns naive ones, in UTC as they were stored)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fit(value: str | None, length: int) -> str | None:
    return None if value is None else value.replace("\x00", "\ufffd")[:length]


def row_to_item(row: Any) -> WorkItemRow:
    return WorkItemRow(item_key=row.item_key, loan_id=row.loan_id, workflow_id=row.workflow_id, queue=row.queue,
                       state=row.state, assigned_to=row.assigned_to, payload=row.payload, outcome=row.outcome,
                       created_at=utc(row.created_at), item_id=row.item_id, case_ref=row.case_ref,
                       due_at=utc(row.due_at), reason=row.reason, reported_by=row.reported_by,
                       completed_at=utc(row.completed_at) if row.completed_at is not None else None,
                       episode=row.episode)
