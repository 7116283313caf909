"""Reading the KPIs' events from a real ledger (SQLite and PostgreSQL): the cases a window concerns,
each with its events up to the window's end (its ``case_opened`` included), never the sealed
``private`` text; and the desk's teams."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from desk.schema import desk_users
from ledger import Ledger
from reports.kpis import compute
from reports.source import read_events, read_teams
from tests.ledger_fixtures import BACKENDS, scratch_database

NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
KEEP = date(2033, 1, 1)
WORDS = "lost my job in October"


def at(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def opened(when: datetime, dpd: int = 10) -> dict[str, Any]:
    return {"at": when, "kind": "case_opened", "status": "info",
            "detail": {"stage": "reminder", "strategy": "default", "days_past_due": dpd, "currency": "USD",
                       "amount_past_due": "100.00", "outstanding": "1000.00", "risk_grade": "B", "product": "card",
                       "jurisdiction": "US"}}


def event(when: datetime, kind: str, status: str = "info", **detail: Any) -> dict[str, Any]:
    return {"at": when, "kind": kind, "status": status, "detail": detail}


def closed(when: datetime) -> dict[str, Any]:
    return event(when, "case_closed", outcome="cured", amount_past_due="0.00")


# loan -> episode -> its events, in order. The window is November.
TRAIL: dict[str, dict[str, list[dict[str, Any]]]] = {
    "gone": {"2026-09-01": [opened(at(9, 10)), closed(at(10, 5))]},                 # closed before: not read
    "quiet": {"2026-09-20": [opened(at(10, 1)), event(at(10, 2), "sms_sent", "sent")]},  # open, nothing in Nov
    "new": {"2026-11-02": [opened(at(11, 12)), event(at(11, 20), "sms_sent", "sent"),
                           event(at(12, 3), "sms_sent", "sent")]},                   # its December text: not read
    "future": {"2026-11-25": [opened(at(12, 2))]},                                  # opens after: not read
    "late": {"2026-09-05": [opened(at(9, 15)), closed(at(10, 20)),
                            event(at(11, 4), "call_task_withdrawn", task_id="t1")]},  # closed, a late event in Nov
    "twice": {"2026-09-28": [opened(at(10, 8)), closed(at(10, 30))],                 # its first episode ended
              "2026-10-31": [opened(at(11, 3)), {**event(at(11, 4), "hardship", "accepted", until="2027-01-01"),
                                                 "actor": "ann", "private": {"reason": WORDS}}]},
}


async def write_trail(url: str) -> None:
    ledger = Ledger.connect(url)
    try:
        await ledger.migrate()
        for loan_id, episodes in TRAIL.items():
            for episode, events in episodes.items():
                numbered = [{"seq": seq, **e} for seq, e in enumerate(events)]
                await ledger.record_events(loan_id, f"loan-{loan_id}", numbered, KEEP, episode=episode)
    finally:
        await ledger.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_events_returns_the_cases_the_window_concerns_up_to_its_end(backend: str, tmp_path: Path):
    async with scratch_database(backend, tmp_path) as url:
        await write_trail(url)
        events = await read_events(url, NOV, DEC)
    cases = sorted({(e.loan_id, e.episode) for e in events})
    # "gone" closed before the window, "future" opened after it, "twice"'s first episode ended before it.
    assert cases == [("late", "2026-09-05"), ("new", "2026-11-02"), ("quiet", "2026-09-20"),
                     ("twice", "2026-10-31")]
    kinds = {case: [e.kind for e in events if (e.loan_id, e.episode) == case] for case in cases}
    assert kinds == {
        ("late", "2026-09-05"): ["case_opened", "case_closed", "call_task_withdrawn"],
        ("new", "2026-11-02"): ["case_opened", "sms_sent"],                 # not the text of 12-03
        ("quiet", "2026-09-20"): ["case_opened", "sms_sent"],               # all of it, from October
        ("twice", "2026-10-31"): ["case_opened", "hardship"],
    }
    assert [(e.loan_id, e.episode, e.seq) for e in events] == sorted((e.loan_id, e.episode, e.seq) for e in events)
    first = events[[e.kind for e in events].index("case_opened")]
    assert first.at.tzinfo is not None and first.at == at(9, 15)
    assert first.detail["days_past_due"] == 10 and first.detail["amount_past_due"] == "100.00"
    hardship = next(e for e in events if e.kind == "hardship")
    assert (hardship.actor, hardship.status, hardship.detail) == ("ann", "accepted", {"until": "2027-01-01"})
    assert all(WORDS not in repr(e) for e in events), "the sealed private text is never read"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_events_read_make_the_report_of_the_window(backend: str, tmp_path: Path):
    async with scratch_database(backend, tmp_path) as url:
        await write_trail(url)
        report = compute(await read_events(url, NOV, DEC), NOV, DEC)
    (row,) = report.rows
    assert row.values["cases_entered"] == 2                 # "new" and "twice"'s second episode
    assert row.values["cases_open"] == 3                    # "quiet" too, though quiet all November
    assert row.values["recovery_rate"]["USD"].denominator == Decimal("200.00")   # 100 past due at entry, each


@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_teams_maps_each_desk_user_with_a_team(backend: str, tmp_path: Path):
    async with scratch_database(backend, tmp_path) as url:
        await write_trail(url)
        ledger = Ledger.connect(url)
        try:
            async with ledger.engine.begin() as connection:
                now = datetime.now(UTC)
                await connection.execute(insert(desk_users), [
                    {"name": name, "role": role, "team": team, "active": True, "failed_logins": 0, "created_at": now}
                    for name, role, team in (("ann", "agent", "north"), ("dan", "field_agent", "field"),
                                             ("sue", "supervisor", None))])
        finally:
            await ledger.close()
        assert await read_teams(url) == {"ann": "north", "dan": "field"}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_teams_is_empty_without_the_desk_table(backend: str, tmp_path: Path):
    async with scratch_database(backend, tmp_path) as url:
        ledger = Ledger.connect(url)
        try:
            async with ledger.engine.begin() as connection:  # a database the desk never set up
                await connection.exec_driver_sql("CREATE TABLE other (id INTEGER)")
        finally:
            await ledger.close()
        assert await read_teams(url) == {}
