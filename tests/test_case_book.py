"""The case book: every case's current standing, kept from its events in the transaction that appends
them (once, whatever is written twice), on SQLite and PostgreSQL; and the portfolio read from it."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from desk.portfolio import portfolio
from desk.schema import desk_approvals
from ledger import Ledger
from ledger.migrate import upgrade_connection
from ledger.schema import case_events
from tests.conftest import make_loan, start_case, status
from tests.ledger_fixtures import BACKENDS, drop_ledger, open_ledger

KEEP = date(2029, 11, 22)
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def _at(days: float) -> datetime:
    return AT + timedelta(days=days)


def _opened(stage: str = "contact", dpd: int = 35, *, currency: str = "USD", past_due: str = "450.00",
            outstanding: str = "5000.00", grade: str = "C", product: str = "personal_loan",
            jurisdiction: str = "US") -> dict[str, Any]:
    """A case_opened event as the case records it now."""
    return {"seq": 0, "at": AT, "kind": "case_opened", "status": "info",
            "detail": {"stage": stage, "strategy": "default", "days_past_due": dpd, "skip": [], "currency": currency,
                       "amount_past_due": past_due, "outstanding": outstanding, "risk_grade": grade,
                       "product": product, "jurisdiction": jurisdiction}}


def _event(seq: int, kind: str, status: str = "accepted", days: float = 0, **detail: Any) -> dict[str, Any]:
    return {"seq": seq, "at": _at(days), "kind": kind, "status": status, "detail": detail}


# A contact-stage case through most of what changes its standing, in the order a case records it.
TRAIL = [
    _opened(),
    _event(1, "compliance_profile", "info", profile="US", label="Reg F", tightened_by=[], production=True),
    _event(2, "assign", days=1, agent="agent-7"),
    _event(3, "payment_received", "rejected", days=1, reference="BAD"),
    _event(4, "payment_received", days=2, reference="P-1", amount="100.00", amount_past_due="350.00",
           outstanding="4900.00", excess=None),
    _event(5, "payment_received", "duplicate", days=2, reference="P-1"),
    _event(6, "promise_to_pay", days=3, amount="200.00", due_date="2026-12-04", agent="agent-7"),
    _event(7, "hardship", days=4, reason="lost job", breathing_space=False),
    _event(8, "hold", days=4, reason="complaint"),
    _event(9, "release", days=5),
    _event(10, "sms_sent", "sent", days=5, template="reminder_soft"),
    _event(11, "promise_broken", "info", days=13, amount="200.00", paid="0", due_date="2026-12-04", broken_total=1),
    _event(12, "stage_entered", "info", days=13, stage="field_visit", previous="contact"),
    _event(13, "hardship_ended", "info", days=14, reason="repayment arrangement agreed"),
    _event(14, "propose_arrangement", days=14, arrangement_kind="instalments", instalments=2, total="350.00"),
]

STANDING = {
    "loan_id": "L-1", "episode": "", "workflow_id": "loan-L-1", "stage": "field_visit", "stage_entered_at": _at(13),
    "currency": "USD", "amount_past_due": Decimal("350.00"), "outstanding": Decimal("4900.00"),
    "risk_grade": "C", "product": "personal_loan", "jurisdiction": "US", "assigned_agent": "agent-7",
    "dpd_at_intake": 35, "intake_at": AT, "overdue_since": date(2026, 10, 18), "paused": True,
    "holds": ["arrangement"], "promise_due_date": date(2026, 12, 4), "promise_state": "broken",
    "arrangement_kind": "instalments", "arrangement_state": "active", "outcome": None, "closed_at": None,
    "last_seq": 14, "last_event_at": _at(14), "retain_until": KEEP,
}


def _without_clock(standing: dict[str, Any] | None) -> dict[str, Any]:
    assert standing is not None
    return {key: value for key, value in standing.items() if key != "updated_at"}


# -- the book, from the events ---------------------------------------------------------------------

async def test_a_trail_of_events_gives_the_cases_standing(ledger):
    await ledger.record_events("L-1", "loan-L-1", TRAIL, KEEP)
    assert _without_clock(await ledger.standing("L-1")) == STANDING


async def test_the_standing_follows_the_trail_step_by_step_and_closes_with_the_case(ledger):
    for step in TRAIL:
        await ledger.record_events("L-1", "loan-L-1", [step], KEEP)
    assert _without_clock(await ledger.standing("L-1")) == STANDING
    await ledger.record_events("L-1", "loan-L-1", [
        _event(15, "payment_received", days=20, reference="P-2", amount="350.00", amount_past_due="0.00",
               outstanding="4550.00"),
        _event(16, "arrangement_completed", "info", days=20, arrangement_kind="instalments"),
        _event(17, "case_closed", "info", days=20, outcome="cured", amount_past_due="0.00", outstanding="4550.00"),
    ], KEEP)
    closed = await ledger.standing("L-1")
    assert closed is not None
    assert (closed["outcome"], closed["closed_at"], closed["arrangement_state"], closed["holds"], closed["paused"]) == (
        "cured", _at(20), "completed", [], False)
    assert (closed["amount_past_due"], closed["outstanding"], closed["last_seq"]) == (
        Decimal("0.00"), Decimal("4550.00"), 17)


async def test_the_same_events_appended_again_change_nothing(ledger):
    await ledger.record_events("L-1", "loan-L-1", TRAIL[:8], KEEP)
    first = await ledger.standing("L-1")
    # A retried activity, a replayed case: the same events, again and out of order.
    assert await ledger.record_events("L-1", "loan-L-1", list(reversed(TRAIL[:8])), KEEP) == 0
    assert await ledger.standing("L-1") == first  # not even updated_at moved
    # A retry carrying what is there already and what is new: only the new events count, once.
    assert await ledger.record_events("L-1", "loan-L-1", TRAIL[5:], KEEP) == len(TRAIL) - 8
    assert _without_clock(await ledger.standing("L-1")) == STANDING
    again = await ledger.standing("L-1")
    await ledger.record_events("L-1", "loan-L-1", TRAIL, KEEP)
    assert await ledger.standing("L-1") == again


async def test_the_book_follows_a_grade_the_scorecard_changed_on_the_cases_behaviour(ledger):
    await ledger.record_events("L-1", "loan-L-1", TRAIL[:3], KEEP)
    assert (await ledger.standing("L-1"))["risk_grade"] == "C"
    await ledger.record_events("L-1", "loan-L-1", [
        _event(3, "risk_grade_changed", "info", days=2, score=571, **{"from": "C", "to": "D"})], KEEP)
    assert (await ledger.standing("L-1"))["risk_grade"] == "D"
    await ledger.record_events("L-1", "loan-L-1", [
        _event(4, "risk_grade_changed", "info", days=3, score=1, **{"from": "D", "to": ""})], KEEP)
    assert (await ledger.standing("L-1"))["risk_grade"] == "D"  # a change naming no grade leaves it


async def test_a_case_opened_before_its_events_named_the_loan_is_unknown_where_they_are_silent(ledger):
    legacy = {"seq": 0, "at": AT, "kind": "case_opened", "status": "info",
              "detail": {"stage": "reminder", "strategy": "default", "days_past_due": 5, "skip": []}}
    await ledger.record_events("L-OLD", "loan-L-OLD", [legacy], KEEP)
    standing = await ledger.standing("L-OLD")
    assert standing is not None
    assert {key: standing[key] for key in ("stage", "currency", "risk_grade", "product", "jurisdiction",
                                           "amount_past_due", "outstanding", "dpd_at_intake")} == {
        "stage": "reminder", "currency": "unknown", "risk_grade": "unknown", "product": "unknown",
        "jurisdiction": "unknown", "amount_past_due": None, "outstanding": None, "dpd_at_intake": 5}
    # A payment recorded before its event named the new outstanding still says what is past due.
    await ledger.record_events("L-OLD", "loan-L-OLD", [
        _event(1, "payment_received", days=1, reference="P-1", amount="50.00", amount_past_due="400.00")], KEEP)
    standing = await ledger.standing("L-OLD")
    assert standing is not None and (standing["amount_past_due"], standing["outstanding"]) == (Decimal("400.00"), None)


async def test_what_an_event_cannot_say_leaves_the_book_as_it_was_and_never_stops_the_trail(ledger):
    await ledger.record_events("L-1", "loan-L-1", [_opened()], KEEP)
    await ledger.record_events("L-1", "loan-L-1", [
        _event(1, "payment_received", reference="X", amount=1.5, amount_past_due="NaN", outstanding=["no"]),
        _event(2, "promise_to_pay", amount="1", due_date="soon"),
        _event(3, "assign", agent=None),
        {"seq": 4, "at": AT, "kind": "stage_entered", "status": "info", "detail": None},
    ], KEEP)
    standing = await ledger.standing("L-1")
    assert standing is not None
    assert (standing["amount_past_due"], standing["outstanding"], standing["assigned_agent"], standing["stage"]) == (
        Decimal("450.00"), Decimal("5000.00"), None, "contact")
    assert (standing["promise_state"], standing["promise_due_date"], standing["last_seq"]) == ("pending", None, 4)
    assert len(await ledger.events("L-1")) == 5


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrading_a_ledger_fills_the_book_from_the_trail_it_holds(backend, tmp_path, monkeypatch):
    # Pages of two events: the fill must carry a case across a page boundary.
    monkeypatch.setattr("ledger.book.FILL_PAGE", 2)
    opened, _ = await open_ledger(backend, tmp_path, migrated=False)
    try:
        async with opened.engine.begin() as connection:
            await connection.run_sync(upgrade_connection, "0004")
            trails = {"L-1": TRAIL, "L-2": [_opened("reminder", 5, currency="CNY", past_due="80.00",
                                                     outstanding="900.00", grade="A", jurisdiction="CN")]}
            for loan_id, trail in trails.items():
                await connection.execute(insert(case_events), [
                    dict(loan_id=loan_id, workflow_id=f"loan-{loan_id}", seq=e["seq"], at=e["at"], kind=e["kind"],
                         status=e["status"], detail=e["detail"], recorded_at=AT, retain_until=KEEP) for e in trail])
        await opened.migrate()
        assert _without_clock(await opened.standing("L-1")) == STANDING
        second = await opened.standing("L-2")
        assert second is not None and (second["currency"], second["risk_grade"], second["amount_past_due"]) == (
            "CNY", "A", Decimal("80.00"))
        # And the book goes on from there with the next events.
        await opened.record_events("L-2", "loan-L-2", [_event(1, "hold", reason="complaint")], KEEP)
        assert (await opened.standing("L-2") or {})["holds"] == ["operator"]
    finally:
        await drop_ledger(opened)


# -- a real case on the time-skipping server -----------------------------------------------------

async def _standing_when(worker, loan_id: str, predicate, attempts: int = 200) -> dict[str, Any]:
    """The case's book row once ``predicate`` holds: the trail reaches the ledger with an activity."""
    standing = None
    for _ in range(attempts):
        standing = await worker.ledger.standing(loan_id)
        if standing is not None and predicate(standing):
            return standing
        await asyncio.sleep(0.05)
    raise AssertionError(f"the book never showed it; last: {standing}")


def _as_the_case_says(standing: dict[str, Any], state: dict[str, Any]) -> None:
    assert standing["stage"] == state["stage"]
    assert standing["paused"] == state["paused"]
    assert sorted(standing["holds"]) == sorted(h["kind"] for h in state["holds"])
    assert str(standing["amount_past_due"]) == state["amount_past_due"]
    assert str(standing["outstanding"]) == state["outstanding"]
    assert standing["assigned_agent"] == state["assigned_agent"]
    assert standing["outcome"] == state["outcome"]


@pytest.mark.parametrize("worker", BACKENDS, indirect=True)
async def test_a_running_case_keeps_its_book_row_right_after_each_step(env, worker):
    await worker.ledger.migrate()  # the worker's activities do it at their first write; the test reads first
    loan = make_loan(risk_grade="C", days_past_due=35, product="credit_card")
    handle = await start_case(env.client, worker, loan)

    opened = await _standing_when(worker, loan.loan_id, lambda s: s["stage"] == "contact")
    assert (opened["currency"], opened["risk_grade"], opened["product"], opened["jurisdiction"]) == (
        "USD", "C", "credit_card", "US")
    assert (opened["dpd_at_intake"], opened["amount_past_due"], opened["outstanding"]) == (
        35, Decimal("450.00"), Decimal("5000.00"))
    assert opened["workflow_id"] == handle.id and opened["outcome"] is None

    await handle.execute_update("assign", {"agent": "agent-7", "by": "sup-1"})
    await handle.execute_update("payment_received", {"amount": "100.00", "reference": "P-1"})
    paid = await _standing_when(worker, loan.loan_id, lambda s: s["amount_past_due"] == Decimal("350.00"))
    _as_the_case_says(paid, await status(handle))
    assert paid["outstanding"] == Decimal("4900.00") and paid["assigned_agent"] == "agent-7"

    await handle.execute_update("hold", {"reason": "complaint", "by": "sup-1"})
    held = await _standing_when(worker, loan.loan_id, lambda s: s["paused"])
    _as_the_case_says(held, await status(handle))
    assert held["holds"] == ["operator"]

    await handle.execute_update("close", {"outcome": "written_off", "note": "uneconomic", "by": "sup-1"})
    result = await handle.result()
    closed = await _standing_when(worker, loan.loan_id, lambda s: s["outcome"] is not None)
    _as_the_case_says(closed, result)
    assert closed["outcome"] == "written_off" and closed["closed_at"] is not None
    trail = await worker.ledger.events(loan.loan_id)
    assert closed["last_seq"] == trail[-1]["seq"] == len(result["events"]) + result["events_dropped"] - 1


# -- the portfolio -----------------------------------------------------------------------------

TODAY = date(2026, 12, 1)  # nine days after AT, every case's intake


async def _case(ledger: Ledger, loan_id: str, opened: dict[str, Any], *later: dict[str, Any]) -> None:
    await ledger.record_events(loan_id, f"loan-{loan_id}", [opened, *later], KEEP)


async def _work(ledger: Ledger, loan_id: str, queue: str, n: int = 1) -> str:
    key = f"{loan_id}/{n:05d}/{queue}"
    await ledger.add_work(key, loan_id=loan_id, workflow_id=f"loan-{loan_id}", queue=queue, payload={},
                          assigned_to=None, retain_until=KEEP, case_ref=key)
    return key


async def _approval(ledger: Ledger, loan_id: str, state: str, expires_in: timedelta, n: int) -> None:
    now = datetime.now(UTC)
    async with ledger.engine.begin() as connection:
        await connection.execute(insert(desk_approvals).values(
            approval_id=f"ap-{loan_id}-{n}", loan_id=loan_id, command="propose_arrangement", payload={},
            proposed_by="agent-7", proposer_role="agent", needs="beyond the agent's limit", gives_up={},
            state=state, created_at=now, expires_at=now + expires_in))


async def _hand_built_portfolio(ledger: Ledger) -> None:
    """Seven cases in USD and CNY; their DPD on TODAY are their DPD at intake plus nine."""
    # A: USD, C, DPD 44, a pending promise, an open call task.
    await _case(ledger, "A", _opened("contact", 35),
                _event(1, "promise_to_pay", days=1, amount="200.00", due_date="2026-12-04"))
    await _work(ledger, "A", "calls")
    # B: USD, C, DPD 14, on hardship; its call task was done.
    await _case(ledger, "B", _opened("reminder", 5, past_due="120.50", outstanding="900.00"),
                _event(1, "hardship", days=1, reason="lost job"))
    await ledger.complete_work(await _work(ledger, "B", "calls"), outcome="reached", reported_by="agent-7")
    # C: CNY, A, DPD 104, disputed, with the legal partner, an arrangement waiting for approval.
    await _case(ledger, "C", _opened("legal_letter", 95, currency="CNY", past_due="3000.00", outstanding="20000.00",
                                     grade="A", jurisdiction="CN"),
                _event(1, "dispute", days=2, reason="not mine"))
    await _work(ledger, "C", "legal")
    await _approval(ledger, "C", "pending", timedelta(days=1), 1)
    # D: CNY, E, DPD 209, on an operator hold, flagged for a supervisor (and an approval pending too).
    await _case(ledger, "D", _opened("litigation", 200, currency="CNY", past_due="800.00", outstanding="800.00",
                                     grade="E", jurisdiction="CN"),
                _event(1, "hold", days=2, reason="complaint"))
    await _work(ledger, "D", "supervisor")
    await _approval(ledger, "D", "pending", timedelta(days=1), 1)
    # E: USD, B, cured and closed; the call task it had was withdrawn as it closed.
    await _work(ledger, "E", "calls")
    await _case(ledger, "E", _opened("reminder", 10, past_due="100.00", outstanding="1000.00", grade="B"),
                _event(1, "payment_received", days=1, reference="P-E", amount="100.00", amount_past_due="0.00",
                       outstanding="900.00"),
                _event(2, "case_closed", "info", days=1, outcome="cured", amount_past_due="0.00", outstanding="900.00"))
    # F: USD, B, a settlement under way with nothing past due any more (DPD 0: in no bucket), a visit.
    await _case(ledger, "F", _opened("contact", 60, past_due="300.00", outstanding="2000.00", grade="B"),
                _event(1, "propose_arrangement", days=1, arrangement_kind="settlement"),
                _event(2, "payment_received", days=2, reference="P-F", amount="300.00", amount_past_due="0.00",
                       outstanding="1700.00"))
    await _work(ledger, "F", "visits")
    # G: opened before case_opened named the loan: DPD 49, grade, currency and amounts unknown.
    await _case(ledger, "G", {"seq": 0, "at": AT, "kind": "case_opened", "status": "info",
                              "detail": {"stage": "contact", "strategy": "default", "days_past_due": 40}})
    # Approvals that wait on nobody: B's expired unseen, E's rejected.
    await _approval(ledger, "B", "pending", -timedelta(hours=1), 1)
    await _approval(ledger, "E", "rejected", timedelta(days=1), 1)


EXPECTED = {
    "as_of": "2026-12-01",
    "cases": {"open": 6, "closed": 1},
    "by_stage": [
        {"stage": "reminder", "cases": 1, "amount_past_due": {"USD": "120.50"}, "outstanding": {"USD": "900.00"}},
        {"stage": "contact", "cases": 3, "amount_past_due": {"USD": "450.00"}, "outstanding": {"USD": "6700.00"}},
        {"stage": "field_visit", "cases": 0, "amount_past_due": {}, "outstanding": {}},
        {"stage": "legal_letter", "cases": 1, "amount_past_due": {"CNY": "3000.00"}, "outstanding": {"CNY": "20000.00"}},
        {"stage": "litigation", "cases": 1, "amount_past_due": {"CNY": "800.00"}, "outstanding": {"CNY": "800.00"}},
    ],
    "by_dpd_bucket": [
        {"bucket": "1-30", "cases": 1, "amount_past_due": {"USD": "120.50"}},
        {"bucket": "31-60", "cases": 2, "amount_past_due": {"USD": "450.00"}},
        {"bucket": "61-90", "cases": 0, "amount_past_due": {}},
        {"bucket": "91-120", "cases": 1, "amount_past_due": {"CNY": "3000.00"}},
        {"bucket": "121-180", "cases": 0, "amount_past_due": {}},
        {"bucket": "181+", "cases": 1, "amount_past_due": {"CNY": "800.00"}},
    ],
    "by_grade": [
        {"grade": "A", "cases": 1, "amount_past_due": {"CNY": "3000.00"}},
        {"grade": "B", "cases": 1, "amount_past_due": {"USD": "0.00"}},
        {"grade": "C", "cases": 2, "amount_past_due": {"USD": "570.50"}},
        {"grade": "D", "cases": 0, "amount_past_due": {}},
        {"grade": "E", "cases": 1, "amount_past_due": {"CNY": "800.00"}},
        {"grade": "unknown", "cases": 1, "amount_past_due": {}},
    ],
    "waiting_on": [
        {"who": "borrower: promise", "cases": 1}, {"who": "borrower: plan", "cases": 1}, {"who": "agents", "cases": 1},
        {"who": "field staff", "cases": 1}, {"who": "legal", "cases": 1}, {"who": "supervisors", "cases": 2},
        {"who": "hardship", "cases": 1}, {"who": "dispute", "cases": 1}, {"who": "operator hold", "cases": 1},
    ],
}


async def test_the_portfolio_adds_up_cases_and_amounts_per_currency_as_worked_out_by_hand(ledger):
    await _hand_built_portfolio(ledger)
    assert await portfolio(ledger, today=TODAY) == EXPECTED


async def test_dpd_buckets_move_with_the_days_and_a_day_before_intake_counts_the_dpd_at_intake(ledger):
    await _hand_built_portfolio(ledger)

    def buckets(figures: dict[str, Any]) -> dict[str, int]:
        return {b["bucket"]: b["cases"] for b in figures["by_dpd_bucket"] if b["cases"]}

    # Day 21 after intake: A (56) and G (61) straddle M2/M3; B is at 26; C at 116, D at 221.
    assert buckets(await portfolio(ledger, today=AT.date() + timedelta(days=21))) == {
        "1-30": 1, "31-60": 1, "61-90": 1, "91-120": 1, "181+": 1}
    assert buckets(await portfolio(ledger, today=AT.date() - timedelta(days=3))) == {
        "1-30": 1, "31-60": 2, "91-120": 1, "181+": 1}


async def test_the_portfolio_is_a_handful_of_queries_however_many_cases(ledger):
    async def statements() -> int:
        seen: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append(statement)

        event.listen(ledger.engine.sync_engine, "before_cursor_execute", count)
        try:
            await portfolio(ledger, today=TODAY)
        finally:
            event.remove(ledger.engine.sync_engine, "before_cursor_execute", count)
        return len(seen)

    await _hand_built_portfolio(ledger)
    few = await statements()
    for n in range(30):
        await _case(ledger, f"M-{n}", _opened("reminder", 1 + n * 7, grade="ABCDE"[n % 5]))
    assert few == await statements() <= 5
    async with ledger.engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM case_book"))).scalar_one() == 37
