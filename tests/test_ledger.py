"""The case ledger on SQLite and PostgreSQL: migrations, exactly-once claims, the append-only
event trail, work queues and retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger import Ledger, LedgerError
from alembic.script import ScriptDirectory

from ledger.migrate import config, current_revision
from ledger.store import async_url, retain_until

KEEP = date(2029, 11, 22)
HEAD = ScriptDirectory.from_config(config()).get_current_head()  # the newest migration
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


async def _claim(ledger: Ledger, key: str = "L-1/00001/reminder/sms", **overrides):
    fields = dict(loan_id="L-1", jurisdiction="US", channel="sms", template="reminder_soft", retain_until=KEEP)
    fields.update(overrides)
    return await ledger.claim(key, **fields)


# -- schema ----------------------------------------------------------------------------------------

async def test_migrations_bring_the_schema_to_head_and_running_them_again_changes_nothing(ledger):
    async with ledger.engine.connect() as connection:
        assert await connection.run_sync(current_revision) == HEAD
    await ledger.migrate()
    async with ledger.engine.connect() as connection:
        assert await connection.run_sync(current_revision) == HEAD
        tables = await connection.run_sync(
            lambda c: set(__import__("sqlalchemy").inspect(c).get_table_names()))
    assert {"contact_attempts", "case_events", "work_items", "alembic_version"} <= tables


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///.data/arrears.db", "sqlite+aiosqlite:///.data/arrears.db"),
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
    ("postgresql+asyncpg://u:p@db/x", "postgresql+asyncpg://u:p@db/x"),
])
def test_database_urls_are_written_as_users_write_them(url, expected):
    assert async_url(url) == expected


@pytest.mark.parametrize(("url", "reason"), [("mysql://db/x", "'mysql' is not supported"),
                                             ("not a url", "is not a database URL")])
def test_a_bad_database_url_names_the_setting(url, reason):
    with pytest.raises(LedgerError, match=rf"ARREARS_DATABASE_URL: .*{reason}"):
        async_url(url)


def test_retention_counts_years_from_the_day_and_keeps_seven_where_no_profile_says():
    assert retain_until(date(2026, 11, 22), 3) == date(2029, 11, 22)
    assert retain_until(date(2028, 2, 29), 2) == date(2030, 2, 28)
    assert retain_until(date(2026, 1, 1), None) == date(2033, 1, 1)


# -- exactly once -------------------------------------------------------------------------------

async def test_a_claimed_key_is_sent_once_and_a_retry_gets_the_receipt_back(ledger):
    first = await _claim(ledger)
    assert (first.state, first.tries) == ("sending", 1)
    await ledger.sent(first.idempotency_key, message_id="m-1", location="/x/1.json", sha256="ab" * 32)
    again = await _claim(ledger)
    assert (again.state, again.provider_message_id, again.location) == ("sent", "m-1", "/x/1.json")
    rows = await ledger.attempts("L-1")
    assert len(rows) == 1 and rows[0]["state"] == "sent" and rows[0]["completed_at"] is not None


async def test_a_claim_that_never_completed_is_tried_again_and_counted(ledger):
    await _claim(ledger)                # the worker died before the provider answered
    again = await _claim(ledger)
    assert (again.state, again.tries) == ("sending", 2)
    await ledger.failed(again.idempotency_key, "provider: invalid number")
    third = await _claim(ledger)
    assert (third.state, third.tries) == ("sending", 3)
    assert (await ledger.attempts("L-1"))[0]["reason"] is None


async def test_concurrent_claims_of_one_key_make_one_row_and_one_first_try(ledger):
    claims = await asyncio.gather(*(_claim(ledger) for _ in range(8)))
    assert sorted(c.tries for c in claims) == list(range(1, 9))
    assert len(await ledger.attempts("L-1")) == 1


async def test_a_key_reused_for_another_loan_is_refused_naming_both(ledger):
    await _claim(ledger)
    with pytest.raises(LedgerError, match=r"was used for L-1/sms, not L-2/sms"):
        await _claim(ledger, loan_id="L-2")


async def test_the_unique_key_is_enforced_by_the_database_itself(ledger):
    await _claim(ledger)
    async with ledger.engine.connect() as connection:
        with pytest.raises(IntegrityError):
            await connection.execute(text(
                "INSERT INTO contact_attempts (idempotency_key, loan_id, jurisdiction, channel, state, tries, "
                "created_at, retain_until) VALUES ('L-1/00001/reminder/sms', 'L-1', 'US', 'sms', 'sent', 1, "
                "'2026-11-22 00:00:00+00', '2029-11-22')"))


# -- the audit trail -------------------------------------------------------------------------

def _event(seq: int, kind: str = "promise_to_pay", **extra):
    return {"seq": seq, "at": AT, "kind": kind, "status": "accepted", "actor": "agent-7",
            "detail": {"amount": "100.00", "due_date": "2026-11-30"}, **extra}


async def test_events_are_appended_once_however_often_they_are_written(ledger):
    assert await ledger.record_events("L-1", "loan-L-1", [_event(0), _event(1, "payment_received")], KEEP) == 2
    assert await ledger.record_events("L-1", "loan-L-1", [_event(1, "payment_received"), _event(2, "hold")], KEEP) == 1
    rows = await ledger.events("L-1")
    assert [(r["seq"], r["kind"], r["actor"]) for r in rows] == [
        (0, "promise_to_pay", "agent-7"), (1, "payment_received", "agent-7"), (2, "hold", "agent-7")]
    assert rows[0]["detail"] == {"amount": "100.00", "due_date": "2026-11-30"}
    assert rows[0]["at"].replace(tzinfo=UTC) == AT


async def test_the_event_trail_refuses_changes(ledger):
    await ledger.record_events("L-1", "loan-L-1", [_event(0)], KEEP)
    with pytest.raises(DBAPIError, match="append-only"):
        async with ledger.engine.begin() as connection:
            await connection.execute(text("UPDATE case_events SET kind = 'forged' WHERE seq = 0"))
    assert (await ledger.events("L-1"))[0]["kind"] == "promise_to_pay"


# -- work queues ----------------------------------------------------------------------------

async def test_work_items_are_queued_once_pulled_by_agent_and_closed_with_an_outcome(ledger):
    call, created = await ledger.add_work("L-1/00002/contact/call", loan_id="L-1", workflow_id="loan-L-1",
                                          queue="calls", payload={"phone_tail": "0123"}, assigned_to="agent-7",
                                          retain_until=KEEP)
    assert created and call.state == "open"
    _, created_again = await ledger.add_work("L-1/00002/contact/call", loan_id="L-1", workflow_id="loan-L-1",
                                             queue="calls", payload={}, assigned_to=None, retain_until=KEEP)
    assert not created_again
    await ledger.add_work("L-2/00001/field_visit/visit", loan_id="L-2", workflow_id="loan-L-2", queue="visits",
                          payload={}, assigned_to="field-01,field-02", retain_until=KEEP)
    assert [w.item_key for w in await ledger.open_work("calls", assigned_to="agent-7")] == ["L-1/00002/contact/call"]
    assert await ledger.open_work("calls", assigned_to="agent-9") == []
    assert [w.loan_id for w in await ledger.open_work("visits", assigned_to="field-02")] == ["L-2"]
    assert await ledger.open_work("visits", assigned_to="field-0") == []  # a team member, not a prefix
    assert await ledger.open_work("calls", assigned_to="agent-%") == []

    done = await ledger.complete_work("L-1/00002/contact/call", outcome="no_answer", reported_by="agent-7")
    assert (done.state, done.outcome) == ("done", "no_answer")
    assert await ledger.open_work("calls") == []
    # Reporting the same outcome twice is harmless; a different one is refused.
    await ledger.complete_work("L-1/00002/contact/call", outcome="no_answer", reported_by="agent-7")
    with pytest.raises(LedgerError, match=r"already done with outcome 'no_answer'"):
        await ledger.complete_work("L-1/00002/contact/call", outcome="reached", reported_by="agent-7")
    with pytest.raises(LedgerError, match=r"'nope': no such item"):
        await ledger.complete_work("nope", outcome="reached", reported_by="agent-7")


# -- retention --------------------------------------------------------------------------------

async def test_purge_removes_only_loans_whose_last_activity_is_past_their_retention(ledger):
    await _claim(ledger, "old", loan_id="L-0", retain_until=date(2026, 1, 1))
    await ledger.record_events("L-0", "loan-L-0", [_event(0)], date(2026, 1, 1))
    # L-1 began as long ago, and is still being collected: its early rows stay with it.
    await _claim(ledger, "early", retain_until=date(2026, 1, 1))
    await ledger.record_events("L-1", "loan-L-1", [_event(0)], date(2026, 1, 1))
    await ledger.record_events("L-1", "loan-L-1", [_event(1)], KEEP)
    removed = await ledger.purge_expired(date(2026, 11, 22))
    assert removed == {"contact_attempts": 1, "case_events": 1, "work_items": 0, "case_book": 1, "files": 0}
    assert [a["idempotency_key"] for a in await ledger.attempts()] == ["early"]
    assert [e["seq"] for e in await ledger.events("L-1")] == [0, 1]
    assert await ledger.standing("L-0") is None


# -- set-up: the worker and the command line ------------------------------------------------------

@pytest.mark.parametrize("url", ["mysql://db/arrears", "postgresql://postgres@127.0.0.1:1/none"])
def test_the_worker_refuses_to_start_without_a_usable_ledger(url, tmp_path, monkeypatch):
    import worker
    from infra.settings import Settings

    monkeypatch.setattr(worker.Settings, "from_env", classmethod(
        lambda cls, env=None: Settings(data_dir=tmp_path, database_url=url, temporal_address="127.0.0.1:1")))
    with pytest.raises(SystemExit) as stopped:
        asyncio.run(worker.main())
    assert stopped.value.code == 2


def test_the_command_line_migrates_the_default_sqlite_ledger_and_says_where_it_stands(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "ARREARS_DATA_DIR": str(tmp_path / "data")}
    env.pop("ARREARS_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "ledger", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sqlite: schema at {HEAD}"
    assert (tmp_path / "data" / "arrears.db").exists()
    refused = subprocess.run([sys.executable, "-m", "ledger", "current"], cwd=ROOT,
                             env={**env, "ARREARS_DATABASE_URL": "oracle://x/y"}, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "ARREARS_DATABASE_URL: 'oracle' is not supported" in refused.stderr


async def test_of_two_agents_closing_one_item_at_once_one_wins_and_the_other_is_told(ledger):
    await ledger.add_work("L-9/00001/contact/call", loan_id="L-9", workflow_id="loan-L-9", queue="calls",
                          payload={}, assigned_to="agent-1", retain_until=KEEP)
    results = await asyncio.gather(
        ledger.complete_work("L-9/00001/contact/call", outcome="reached", reported_by="agent-1"),
        ledger.complete_work("L-9/00001/contact/call", outcome="no_answer", reported_by="agent-2"),
        return_exceptions=True)
    refused = [r for r in results if isinstance(r, LedgerError)]
    closed = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(closed) == 1 and "already done" in str(refused[0])
    [row] = [w for w in [await ledger.work_item("L-9/00001/contact/call")]]
    assert row.outcome == closed[0].outcome


async def test_events_quoting_what_an_operator_sent_fit_the_columns(ledger):
    added = await ledger.record_events("L-8", "loan-L-8", [
        dict(seq=0, at=AT, kind="k" * 100, status="rejected", reason="bad\x00name", actor="a\x00b" * 40,
             detail={"note": "x\x00y", "list": ["\x00"]})], retain_until=KEEP)
    assert added == 1
    [event] = await ledger.events("L-8")
    assert event["kind"] == "k" * 64 and len(event["actor"]) == 64 and "\x00" not in event["reason"]
    assert event["detail"] == {"note": "x\ufffdy", "list": ["\ufffd"]}
