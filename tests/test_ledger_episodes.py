"""A loan's delinquency episodes in the ledger (SQLite and PostgreSQL): a loan cured and delinquent again
is a new case numbering its events from the start, under keys naming its episode; the ledger keeps both
cases' rows apart (events, contact attempts, work items), closes only the case's own work, seals private
text to its episode, and the book shows where the loan stands now, its latest episode. Migration 0007
makes every row already there a case from before episodes (episode "")."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text, update
from temporalio.api.common.v1 import Payload
from temporalio.testing import ActivityEnvironment

from activities.models import CaseEventsRequest, CaseFacts, ContactRequest, VisitRequest, WorkItemRequest
from domain.case import CaseEvent
from domain.episodes import key_prefix
from infra.codec import codec_from_setting, generate_key
from infra.settings import Settings
from ledger import Ledger, LedgerError
from ledger.book import episode_order
from ledger.migrate import config, current_revision, upgrade_connection
from ledger.schema import case_events
from tests.conftest import make_loan
from tests.ledger_fixtures import BACKENDS, drop_ledger, open_ledger
from worker import build_activities

KEEP = date(2030, 1, 1)
LATER = date(2033, 1, 1)
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
LOAN = "L-1"
FIRST, SECOND = "2026-10-18", "2027-03-01"  # two delinquencies of the loan
KEYS = generate_key()
WORDS = "chemotherapy until March"


def _event(seq: int, kind: str, status: str = "info", **detail: Any) -> dict[str, Any]:
    return {"seq": seq, "at": AT, "kind": kind, "status": status, "detail": detail}


def _opened(stage: str, past_due: str) -> dict[str, Any]:
    return _event(0, "case_opened", stage=stage, days_past_due=35, currency="USD", amount_past_due=past_due,
                  outstanding="5000.00", risk_grade="C", product="personal_loan", jurisdiction="US")


def _hardship(seq: int) -> dict[str, Any]:
    return {**_event(seq, "hardship", "accepted", until="2027-01-01"), "private": {"reason": WORDS}}


async def _record(ledger: Ledger, episode: str, *events: dict[str, Any], keep: date = KEEP) -> int:
    return await ledger.record_events(LOAN, f"loan-{LOAN}", list(events), keep, episode=episode)


def _key(episode: str, rest: str) -> str:
    return f"{key_prefix(LOAN, episode)}/{rest}"


async def _claim(ledger: Ledger, episode: str, rest: str = "00001/reminder/sms"):
    return await ledger.claim(_key(episode, rest), loan_id=LOAN, jurisdiction="US", channel="sms",
                              template="reminder_soft", retain_until=KEEP, episode=episode)


async def _queue(ledger: Ledger, episode: str, rest: str, *, queue: str = "calls", case_ref: str | None = None):
    item, created = await ledger.add_work(_key(episode, rest), loan_id=LOAN, workflow_id=f"loan-{LOAN}", queue=queue,
                                          payload={}, assigned_to="agent-1", retain_until=KEEP, episode=episode,
                                          case_ref=case_ref)
    assert created
    return item


async def _rows(ledger: Ledger, table: str) -> list[dict[str, Any]]:
    """A table's rows for the loan as anyone with the database sees them."""
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(text(f"SELECT * FROM {table} WHERE loan_id = :loan ORDER BY id"),
                                        {"loan": LOAN})
        return [dict(row._mapping) for row in rows]


async def _state(ledger: Ledger, item_id: str) -> str:
    item = await ledger.work_item_by_id(item_id)
    assert item is not None
    return item.state


# -- two episodes, two cases ---------------------------------------------------------------------------

async def test_two_episodes_numbered_from_zero_are_both_kept_and_the_first_ones_rows_stay_as_they_were(ledger):
    await _record(ledger, FIRST, _opened("reminder", "450.00"), _event(1, "sms_sent", "sent"),
                  _event(2, "case_closed", outcome="cured"))
    await _claim(ledger, FIRST)
    await ledger.sent(_key(FIRST, "00001/reminder/sms"), message_id="m-1")
    await _queue(ledger, FIRST, "00002/contact/call")
    first = {table: await _rows(ledger, table) for table in ("case_events", "contact_attempts", "work_items")}

    assert await _record(ledger, SECOND, _opened("contact", "300.00"), _event(1, "sms_sent", "sent"),
                         _event(2, "stage_entered", stage="contact")) == 3
    await _claim(ledger, SECOND)
    await _queue(ledger, SECOND, "00002/contact/call")

    trail = await ledger.events(LOAN)
    assert [(e["episode"], e["seq"], e["kind"]) for e in trail] == [
        (FIRST, 0, "case_opened"), (FIRST, 1, "sms_sent"), (FIRST, 2, "case_closed"),
        (SECOND, 0, "case_opened"), (SECOND, 1, "sms_sent"), (SECOND, 2, "stage_entered")]
    assert [e["detail"]["amount_past_due"] for e in trail if e["kind"] == "case_opened"] == ["450.00", "300.00"]
    assert [e["seq"] for e in await ledger.events(LOAN, SECOND)] == [0, 1, 2]
    assert [a["episode"] for a in await ledger.attempts(LOAN)] == [FIRST, SECOND]
    after = {table: await _rows(ledger, table) for table in first}
    for table, rows in first.items():
        assert after[table][:len(rows)] == rows, table  # the first case's rows, unchanged
        assert [r["episode"] for r in after[table][len(rows):]] == [SECOND] * len(after[table][len(rows):])
    # Writing the second episode's events again adds nothing.
    assert await _record(ledger, SECOND, _event(1, "sms_sent", "sent")) == 0


async def test_the_same_key_in_a_second_episode_claims_afresh_and_a_key_is_never_taken_for_another_episode(ledger):
    await _claim(ledger, FIRST)
    await ledger.sent(_key(FIRST, "00001/reminder/sms"), message_id="m-1")
    assert (await _claim(ledger, FIRST)).state == "sent"  # a retry of the first case's text

    again = await _claim(ledger, SECOND)
    assert (again.idempotency_key, again.state, again.tries) == (f"{LOAN}/{SECOND}/00001/reminder/sms", "sending", 1)
    with pytest.raises(LedgerError, match=rf"was used for {LOAN}/{FIRST}/sms, not {LOAN}/{SECOND}/sms"):
        await ledger.claim(_key(FIRST, "00001/reminder/sms"), loan_id=LOAN, jurisdiction="US", channel="sms",
                           template="reminder_soft", retain_until=KEEP, episode=SECOND)
    first = await _queue(ledger, FIRST, "00002/contact/call")
    second = await _queue(ledger, SECOND, "00002/contact/call")
    assert first.item_id != second.item_id and (first.episode, second.episode) == (FIRST, SECOND)


# -- the book: where the loan stands now -----------------------------------------------------------

def test_episodes_follow_each_other_by_their_date_then_their_number():
    names = ["2027-03-01", "2026-11-26.10", "", "2026-11-26.2", "2026-11-26", "2026-10-18.3"]
    assert sorted(names, key=episode_order) == [
        "", "2026-10-18.3", "2026-11-26", "2026-11-26.2", "2026-11-26.10", "2027-03-01"]


async def test_the_book_shows_the_latest_episode_and_ignores_late_events_of_an_older_one(ledger):
    await _record(ledger, FIRST, _opened("reminder", "450.00"), _event(1, "assign", "accepted", agent="agent-7"),
                  _event(2, "case_closed", outcome="cured", amount_past_due="0.00"))
    assert (await ledger.standing(LOAN))["outcome"] == "cured"

    await _record(ledger, SECOND, _opened("contact", "300.00"))
    standing = await ledger.standing(LOAN)
    assert (standing["episode"], standing["stage"], standing["outcome"], str(standing["amount_past_due"])) == (
        SECOND, "contact", None, "300.00")
    assert (standing["assigned_agent"], standing["last_seq"]) == (None, 0)  # the first case's agent is not its

    # The first case's late events (a retried trail) and a case from before episodes change nothing but
    # how long the loan is kept; the second case goes on from where it was.
    await _record(ledger, FIRST, _event(3, "hold", "accepted", reason="late"), keep=LATER)
    await _record(ledger, "", _event(9, "assign", "accepted", agent="agent-9"))
    after = await ledger.standing(LOAN)
    assert {k: v for k, v in after.items() if k not in ("retain_until", "updated_at")} == {
        k: v for k, v in standing.items() if k not in ("retain_until", "updated_at")}
    assert after["retain_until"] == LATER
    await _record(ledger, SECOND, _event(1, "hold", "accepted", reason="complaint"))
    assert ((await ledger.standing(LOAN))["holds"], (await ledger.standing(LOAN))["last_seq"]) == (["operator"], 1)


async def test_a_reopened_case_numbered_ten_is_newer_than_the_one_numbered_two(ledger):
    await _record(ledger, "2026-11-26.10", _opened("legal_letter", "90.00"))
    await _record(ledger, "2026-11-26.2", _opened("reminder", "10.00"), _event(1, "stage_entered", stage="contact"))
    standing = await ledger.standing(LOAN)
    assert (standing["episode"], standing["stage"]) == ("2026-11-26.10", "legal_letter")
    assert [e["episode"] for e in await ledger.events(LOAN)] == ["2026-11-26.2", "2026-11-26.2", "2026-11-26.10"]


# -- work follows its own case ----------------------------------------------------------------------

async def test_the_second_episodes_events_close_and_move_only_its_own_work(ledger):
    call = await _queue(ledger, FIRST, "00002/contact/call", case_ref="first-call")
    visit = await _queue(ledger, FIRST, "00005/field_visit/visit/plan-1", queue="visits", case_ref="loan-L-1-visit-5")
    # The second case's visit has the same name as the first's (its child workflow's id): not a next attempt.
    other = await _queue(ledger, SECOND, "00005/field_visit/visit/plan-1", queue="visits",
                         case_ref="loan-L-1-visit-5")
    own = await _queue(ledger, SECOND, "00002/contact/call", case_ref="second-call")
    assert await _state(ledger, visit.item_id) == "open"

    await _record(ledger, SECOND, _event(0, "assign", "accepted", agent="agent-9"),
                  _event(1, "stage_entered", stage="field_visit"))
    assert (await ledger.work_item_by_id(call.item_id)).assigned_to == "agent-1"
    assert (await _state(ledger, call.item_id), await _state(ledger, own.item_id)) == ("open", "withdrawn")
    await _record(ledger, SECOND, _event(2, "field_visit_cancelled", visit_id="loan-L-1-visit-5"),
                  _event(3, "case_closed", outcome="cured"))
    assert await _state(ledger, other.item_id) == "withdrawn"
    assert [await _state(ledger, item.item_id) for item in (call, visit)] == ["open", "open"]
    # The first case's own closing events still close its own.
    await _record(ledger, FIRST, _event(0, "case_closed", outcome="cured"))
    assert [await _state(ledger, item.item_id) for item in (call, visit)] == ["withdrawn", "withdrawn"]


# -- private text is sealed to its row ----------------------------------------------------------------

async def test_private_reasons_read_back_for_both_kinds_of_case_and_never_from_another_episodes_row(ledger):
    ledger.codec = codec_from_setting(KEYS)
    await _record(ledger, "", _hardship(0))
    await _record(ledger, FIRST, _hardship(0))
    await _record(ledger, SECOND, _hardship(0))
    reasons = await ledger.private_reasons(LOAN)
    assert [(r["episode"], r["seq"], r.get("private")) for r in reasons] == [
        ("", 0, {"reason": WORDS}), (FIRST, 0, {"reason": WORDS}), (SECOND, 0, {"reason": WORDS})]

    sealed = {row["episode"]: row["private"] for row in await _rows(ledger, "case_events")}
    async with ledger.engine.begin() as connection:  # a DBA copies values between rows of the same number
        await connection.execute(text("DROP TRIGGER IF EXISTS case_events_append_only"
                                      + (" ON case_events" if ledger.dialect == "postgresql" else "")))
        for to, source in ((SECOND, FIRST), (FIRST, ""), ("", SECOND)):
            await connection.execute(update(case_events).where(case_events.c.episode == to)
                                     .values(private=sealed[source]))
    assert ["moved" in r.get("unreadable", "") for r in await ledger.private_reasons(LOAN)] == [True, True, True]


# -- the activities pass the episode ------------------------------------------------------------------

async def test_the_activities_write_every_row_with_the_cases_episode(data_dir):
    activities = build_activities(Settings(data_dir=data_dir, letter_processes=0))
    loan = make_loan(loan_id=LOAN)
    facts = CaseFacts(stage="contact", days_past_due=35, amount_past_due="450.00", outstanding="5000.00")
    try:
        for episode in (FIRST, SECOND):
            trail = CaseEventsRequest(loan_id=LOAN, jurisdiction="US", workflow_id=f"loan-{LOAN}", first_seq=0,
                                      episode=episode, events=[CaseEvent(at=AT, kind="note", status="info")])
            await activities.send_sms(ContactRequest(idempotency_key=_key(episode, "00001/reminder/sms"), loan=loan,
                                                     template="reminder_soft", facts=facts, trail=trail,
                                                     episode=episode))
            await activities.create_call_task(WorkItemRequest(idempotency_key=_key(episode, "00002/contact/call"),
                                                              loan=loan, facts=facts, episode=episode))
            await ActivityEnvironment().run(activities.plan_field_visit, VisitRequest(
                idempotency_key=_key(episode, "00003/field_visit/visit/plan-1"), loan=loan, facts=facts, attempt=1,
                staff=1, scheduled_for=AT, report_due=AT, episode=episode))
            await activities.record_case_events(trail.model_copy(update={"first_seq": 1}))
        ledger = activities.ledger
        assert [(e["episode"], e["seq"]) for e in await ledger.events(LOAN)] == [
            (FIRST, 0), (FIRST, 1), (SECOND, 0), (SECOND, 1)]
        assert [a["episode"] for a in await ledger.attempts(LOAN)] == [FIRST, SECOND]
        assert [row["episode"] for row in await _rows(ledger, "work_items")] == [FIRST, FIRST, SECOND, SECOND]
        assert (await ledger.standing(LOAN))["episode"] == SECOND
    finally:
        await activities.aclose()


# -- migration 0007 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migration_keeps_every_row_as_a_case_from_before_episodes(backend, tmp_path):
    codec = codec_from_setting(KEYS)
    # What the ledger sealed before episodes: the loan and the event's number, nothing else.
    plain = json.dumps({"loan_id": LOAN, "seq": 1, "private": {"reason": WORDS}}).encode()
    legacy = json.dumps({"fields": ["reason"], "key_id": codec.encrypting_key_id, "sealed": base64.b64encode(
        codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=plain)).SerializeToString()).decode()})
    ledger, _ = await open_ledger(backend, tmp_path, migrated=False)
    ledger.codec = codec
    try:
        async with ledger._write() as connection:
            await connection.run_sync(upgrade_connection, "0004")
            await connection.execute(text(
                "INSERT INTO case_events (loan_id, seq, at, kind, status, detail, workflow_id, recorded_at, "
                "retain_until) VALUES ('L-1', 0, :at, 'stage_entered', 'info', '{\"stage\": \"contact\"}', "
                "'loan-L-1', :at, '2030-01-01')"), {"at": AT})
            await connection.run_sync(upgrade_connection, "0006")  # the book, filled from the trail
            await connection.execute(text(
                "INSERT INTO case_events (loan_id, seq, at, kind, status, detail, workflow_id, recorded_at, "
                "retain_until, private) VALUES ('L-1', 1, :at, 'hardship', 'accepted', '{}', 'loan-L-1', :at, "
                "'2030-01-01', :private)"), {"at": AT, "private": legacy})
            await connection.execute(text(
                "INSERT INTO contact_attempts (idempotency_key, loan_id, jurisdiction, channel, state, tries, "
                "created_at, retain_until) VALUES ('L-1/00002/contact/sms', 'L-1', 'US', 'sms', 'sent', 1, :at, "
                "'2030-01-01')"), {"at": AT})
            await connection.execute(text(
                "INSERT INTO work_items (item_key, item_id, loan_id, workflow_id, queue, state, payload, created_at, "
                "due_at, retain_until) VALUES ('L-1/00003/contact/call', 'L-1_00003_contact_call', 'L-1', "
                "'loan-L-1', 'calls', 'open', '{}', :at, :at, '2030-01-01')"), {"at": AT})
            before = {table: await _count(connection, table)
                      for table in ("case_events", "contact_attempts", "work_items", "case_book")}
            await connection.run_sync(upgrade_connection, "0007")
            assert await connection.run_sync(current_revision) == "0007"
            for table, count in before.items():
                episodes = (await connection.execute(text(f"SELECT episode FROM {table}"))).scalars().all()
                assert episodes == [""] * count and count > 0, table
        await ledger.migrate()  # what the worker does at start: to the newest, through 0007
        async with ledger.engine.connect() as connection:
            head = await connection.run_sync(current_revision)
        assert "0007" in {script.revision for script in ScriptDirectory.from_config(config()).iterate_revisions(
            head, "base")}

        assert [(e["episode"], e["seq"]) for e in await ledger.events(LOAN)] == [("", 0), ("", 1)]
        assert [(r["episode"], r.get("private")) for r in await ledger.private_reasons(LOAN)] == [
            ("", {"reason": WORDS})]
        assert (await ledger.work_item("L-1/00003/contact/call")).episode == ""
        # The case from before goes on; the loan's next delinquency is kept beside it.
        await _record(ledger, "", _event(2, "stage_entered", stage="field_visit"))
        assert ((await ledger.standing(LOAN))["stage"], (await ledger.standing(LOAN))["last_seq"]) == (
            "field_visit", 2)
        await _record(ledger, FIRST, _opened("reminder", "80.00"))
        assert [(e["episode"], e["seq"]) for e in await ledger.events(LOAN)] == [
            ("", 0), ("", 1), ("", 2), (FIRST, 0)]
        assert ((await ledger.standing(LOAN))["episode"], (await ledger.standing(LOAN))["stage"]) == (
            FIRST, "reminder")
    finally:
        await drop_ledger(ledger)


async def _count(connection: Any, table: str) -> int:
    return (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
