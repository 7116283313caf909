"""The case book: where every case stands now, one row per loan, folded from the case's own events.

:func:`fold` is pure: a book row (a dict of ``case_book``'s columns) and one event as the ledger
appends it (``seq``, ``at``, ``kind``, ``status``, ``detail``) give the row after that event.
:func:`keep` applies the events a transaction has just appended (``Ledger._append``), in ``seq``
order and only those past the row's ``last_seq``: a retried activity or a replayed case, whose
events the ledger holds already, changes nothing. What the events never said (a case opened before
its ``case_opened`` carried the loan's grade, product, jurisdiction, currency and amounts) stays
"unknown", or NULL for an amount or a date, until a later event says it.

A loan's row is where the loan stands now: its latest episode's case (domain/episodes.py). The
events of a newer episode than the row's start it afresh (from :func:`blank`); an older episode's
late events leave it as it is (the trail keeps them) and only keep the loan as long as they say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.episodes import base_date
from domain.money import minor_units
from ledger.schema import case_book

UNKNOWN = "unknown"
# Amounts are kept as integer thousandths of the currency's unit (see ledger/schema.py).
SCALE = 3
# Events read at a time when a migration fills the book from a trail the ledger already holds.
FILL_PAGE = 5000
# The order in which a supervisor reads a case's holds (domain.case: the first is *the* reason).
HOLD_KINDS = ("dispute", "hardship", "operator", "arrangement", "promise")
# What puts a hold on (the command, accepted) and what takes it off (besides ``<kind>_ended``,
# which the case records when a hold's ``until`` passes).
_HOLD_ON = {"dispute": "dispute", "hardship": "hardship", "hold": "operator",
            "propose_arrangement": "arrangement", "promise_to_pay": "promise"}
_HOLD_OFF = {"dispute_resolved": "dispute", "hardship_resolved": "hardship", "release": "operator",
             "arrangement_completed": "arrangement", "arrangement_broken": "arrangement",
             "arrangement_cancelled": "arrangement", "promise_kept": "promise", "promise_broken": "promise"}
_ARRANGEMENT_ENDS = {"arrangement_completed": "completed", "arrangement_broken": "broken",
                     "arrangement_cancelled": "cancelled"}
# Events that change nothing in the book unless the case took them: a refused or duplicate command,
# a contact sent, deferred or blocked.
_TAKEN = ("accepted", "info")

Insert = Callable[[Any], Any]  # the dialect's INSERT (it has on_conflict_do_nothing)


def blank(loan_id: str, workflow_id: str, episode: str = "") -> dict[str, Any]:
    """The row of a case (of ``episode``) whose events the book has not seen yet."""
    return dict(loan_id=loan_id, episode=episode, workflow_id=workflow_id, stage=UNKNOWN, stage_entered_at=None,
                currency=UNKNOWN, amount_past_due_milli=None, outstanding_milli=None, risk_grade=UNKNOWN,
                product=UNKNOWN, jurisdiction=UNKNOWN, assigned_agent=None, dpd_at_intake=None, intake_at=None, overdue_since=None,
                paused=False, holds="", promise_due_date=None, promise_state=None, arrangement_kind=None,
                arrangement_state=None, outcome=None, closed_at=None, last_seq=-1, last_event_at=None)


def fold(row: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """``row`` after ``event``; the same row when the book has applied that event (or a later one)
    already. Never raises on what an event's detail holds: a value it cannot read is left out."""
    seq = event["seq"]
    if seq <= row["last_seq"]:
        return row
    at = _moment(event.get("at"))
    row = {**row, "last_seq": seq, "last_event_at": at or row["last_event_at"]}
    kind, detail = event.get("kind"), event.get("detail") or {}
    if event.get("status") not in _TAKEN or not isinstance(detail, dict):
        return row
    if kind == "case_opened":
        _opened(row, detail, at)
    elif kind == "stage_entered" and _text(detail, "stage", 16):
        row.update(stage=_text(detail, "stage", 16), stage_entered_at=at)
    elif kind == "payment_received":
        _paid(row, detail)
    elif kind == "promise_to_pay":
        row.update(promise_state="pending", promise_due_date=_day(detail.get("due_date")))
    elif kind in ("promise_kept", "promise_broken"):
        row["promise_state"] = kind.removeprefix("promise_")
    elif kind == "propose_arrangement":
        row.update(arrangement_kind=_text(detail, "arrangement_kind", 16), arrangement_state="active")
    elif kind in _ARRANGEMENT_ENDS:
        row["arrangement_state"] = _ARRANGEMENT_ENDS[kind]
    elif kind == "risk_grade_changed" and _text(detail, "to", 8):
        row["risk_grade"] = _text(detail, "to", 8)  # the scorecard re-graded the case on its behaviour
    elif kind == "assign" and _text(detail, "agent", 64):
        row["assigned_agent"] = _text(detail, "agent", 64)
    elif kind == "case_closed":
        row.update(outcome=_text(detail, "outcome", 16) or UNKNOWN, closed_at=at)
        _amounts(row, detail)
    _hold(row, kind)
    return row


def fold_all(row: dict[str, Any], events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``row`` after ``events``, taken in ``seq`` order."""
    for event in sorted(events, key=lambda e: e["seq"]):
        row = fold(row, event)
    return row


def episode_order(episode: str) -> tuple[int, date, int, str]:
    """How a loan's episodes follow each other: by their delinquency date, then their number (".2"
    before ".10"); a case from before episodes ("") first. A name the engine never gives (no date)
    comes after that and before any dated one, so that every two names still compare."""
    if not episode:
        return (0, date.min, 0, episode)
    try:
        day = base_date(episode)
    except ValueError:
        return (1, date.min, 0, episode)
    _, _, tail = episode.partition(".")
    return (2, day or date.min, int(tail) if tail.isdigit() else 1, episode)


async def keep(connection: AsyncConnection, insert: Insert, loan_id: str, workflow_id: str,
               events: list[dict[str, Any]], retain_until: date, now: datetime, episode: str = "") -> None:
    """Bring the loan's book row up to date with ``events`` of ``episode``, newly appended in this
    transaction: the row's own episode's, or a newer one's (the row starts afresh); an older
    episode's change nothing but how long the loan is kept.

    The row is read FOR UPDATE (PostgreSQL): two transactions appending the same case's events take
    turns here, and the second folds only what the first did not."""
    current = await _locked(connection, loan_id)
    if current is None:
        row = fold_all(blank(loan_id, workflow_id, episode), events)
        created = await connection.execute(insert(case_book).values(
            **row, updated_at=now, retain_until=retain_until).on_conflict_do_nothing(index_elements=["loan_id"]))
        if created.rowcount == 1:
            return
        current = await _locked(connection, loan_id)  # another transaction created it meanwhile
        assert current is not None
    if current["episode"] != episode and episode_order(episode) < episode_order(current["episode"]):
        if retain_until > current["retain_until"]:
            await connection.execute(update(case_book).where(case_book.c.loan_id == loan_id)
                                     .values(retain_until=retain_until))
        return
    if current["episode"] != episode:
        row = fold_all(blank(loan_id, workflow_id, episode), events)
    else:
        row = fold_all(current, events)
        if row["last_seq"] == current["last_seq"]:
            return
    changes = {key: value for key, value in row.items() if key != "loan_id"}
    changes.update(workflow_id=workflow_id, updated_at=now, retain_until=max(retain_until, current["retain_until"]))
    await connection.execute(update(case_book).where(case_book.c.loan_id == loan_id).values(**changes))


def view(row: Any) -> dict[str, Any]:
    """A book row as callers read it: amounts as Decimal in the currency's decimals, times in UTC,
    the holds as a list."""
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    currency = values["currency"]
    for name in ("amount_past_due", "outstanding"):
        milli = values.pop(f"{name}_milli")
        values[name] = None if milli is None else money(milli, currency)
    for name in ("stage_entered_at", "intake_at", "closed_at", "last_event_at", "updated_at"):
        values[name] = _moment(values[name])
    values["holds"] = [kind for kind in values["holds"].split(",") if kind]
    return values


def money(milli: int | Decimal, currency: str) -> Decimal:
    """Thousandths of ``currency``'s unit as an amount in its decimals (two where it is unknown)."""
    return Decimal(milli).scaleb(-SCALE).quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN)


def milli(value: Any) -> int | None:
    """A decimal string (or Decimal) as thousandths of its unit; None when it is no amount."""
    if isinstance(value, (bool, float)) or not isinstance(value, (str, int, Decimal)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount.adjusted() >= 15:
        return None
    return int(amount.scaleb(SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


# -- the events that change the book ------------------------------------------------------------

def _opened(row: dict[str, Any], detail: dict[str, Any], at: datetime | None) -> None:
    row.update(stage=_text(detail, "stage", 16) or row["stage"], stage_entered_at=at, intake_at=at)
    dpd = detail.get("days_past_due")
    if isinstance(dpd, int) and not isinstance(dpd, bool):
        row["dpd_at_intake"] = dpd
        row["overdue_since"] = at.date() - timedelta(days=dpd) if at is not None else None
    for key, length in (("currency", 8), ("risk_grade", 8), ("product", 64), ("jurisdiction", 8)):
        row[key] = _text(detail, key, length) or row[key]
    _amounts(row, detail)


def _paid(row: dict[str, Any], detail: dict[str, Any]) -> None:
    before = row["outstanding_milli"]
    _amounts(row, detail)
    paid, excess = milli(detail.get("amount")), milli(detail.get("excess") or "0")
    if "outstanding" not in detail and before is not None and paid is not None and excess is not None:
        # A payment recorded before its event said the new outstanding: worked out as the case does.
        row["outstanding_milli"] = before - (paid - excess)


def _amounts(row: dict[str, Any], detail: dict[str, Any]) -> None:
    for key in ("amount_past_due", "outstanding"):
        value = milli(detail.get(key))
        if value is not None:
            row[f"{key}_milli"] = value


def _hold(row: dict[str, Any], kind: Any) -> None:
    holds = set(filter(None, row["holds"].split(",")))
    if kind in _HOLD_ON:
        holds.add(_HOLD_ON[kind])
    elif kind in _HOLD_OFF:
        holds.discard(_HOLD_OFF[kind])
    elif isinstance(kind, str) and kind.endswith("_ended"):
        holds.discard(kind.removesuffix("_ended"))
    row["holds"] = ",".join(k for k in HOLD_KINDS if k in holds)
    row["paused"] = bool(holds)


async def _locked(connection: AsyncConnection, loan_id: str) -> dict[str, Any] | None:
    found = (await connection.execute(
        select(case_book).where(case_book.c.loan_id == loan_id).with_for_update())).one_or_none()
    return None if found is None else dict(found._mapping)


def _text(detail: dict[str, Any], key: str, length: int) -> str | None:
    value = detail.get(key)
    return value[:length] if isinstance(value, str) and value else None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
