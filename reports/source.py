"""Reading what the KPIs need from the ledger: the cases' events, and the desk's teams.

Only the columns a report reads, never ``private`` (what a person wrote about a borrower's
circumstances stays sealed in the ledger). The same queries on SQLite and PostgreSQL, through the
ledger's own engine settings (``ledger.Ledger.connect``).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Text, and_, case, cast, func, inspect, literal, or_, select

from desk.schema import desk_users
from ledger import Ledger
from ledger.schema import case_events
from reports.kpis import Event

_E = case_events.c
# Rows fetched from the driver at a time: a report over a big ledger streams instead of holding them twice.
CHUNK = 10_000


async def read_events(ledger_url: str, start: date, end: date) -> list[Event]:
    """Every event before ``end`` of each case (a loan's episode) the window ``[start, end)`` concerns:
    one with an event in the window, or open at its start (entered before it, not closed before it),
    so a case quiet all window still counts as open. Each case's ``case_opened`` and the events after
    it are included, whenever they happened: what a case is at the window's start is folded from them.
    In (loan, episode, seq) order."""
    since, until = _midnight(start), _midnight(end)
    # The cases the window concerns, found in one pass over the trail grouped by case.
    touched = func.max(case((_E.at >= since, 1), else_=0))
    closed_before = func.max(case((and_(_E.kind == "case_closed", _E.at < since), 1), else_=0))
    cases = (select(_E.loan_id, _E.episode).where(_E.at < until).group_by(_E.loan_id, _E.episode)
             .having(or_(touched == 1, closed_before == 0)).subquery("cases"))
    query = (select(_E.loan_id, _E.episode, _E.seq, _E.at, _E.kind, _E.status, _E.reason, _E.actor,
                    cast(_E.detail, Text).label("detail"))
             .join(cases, and_(cases.c.loan_id == _E.loan_id, cases.c.episode == _E.episode))
             .where(_E.at < until)
             .order_by(_E.loan_id, _E.episode, _E.seq))
    ledger = Ledger.connect(ledger_url, pool_size=1)
    try:
        async with ledger.engine.connect() as connection:
            if ledger.dialect == "postgresql":
                # One snapshot: a case's events as they stood at one moment, never half a transaction's.
                await connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            async with connection.begin():
                result = await connection.stream(query.execution_options(yield_per=CHUNK))
                events: list[Event] = []
                # A chunk at a time: row by row, each row would cross from the driver's thread on its own.
                async for chunk in result.partitions(CHUNK):
                    for loan_id, episode, seq, at, kind, status, reason, actor, detail in chunk:
                        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)  # SQLite: naive UTC
                        events.append(Event(loan_id, episode, seq, at, kind, status, reason, actor, _detail(detail)))
                return events
    finally:
        await ledger.close()


async def read_teams(ledger_url: str) -> dict[str, str]:
    """Agent name -> team, from the desk's users (``desk_users``); empty when the ledger has no desk
    (the table is absent) or nobody has a team."""
    ledger = Ledger.connect(ledger_url, pool_size=1)
    try:
        async with ledger.engine.connect() as connection:
            present = await connection.run_sync(lambda sync: inspect(sync).has_table("desk_users"))
            if not present:
                return {}
            rows = await connection.execute(select(desk_users.c.name, desk_users.c.team)
                                            .where(desk_users.c.team.is_not(None), desk_users.c.team != literal("")))
            return {name: team for name, team in rows}
    finally:
        await ledger.close()


def _detail(text: Any) -> dict[str, Any]:
    """The event's detail; {} when it is not a JSON object (the KPIs then read nothing from it)."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, (str, bytes)):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
