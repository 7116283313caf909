"""Retention on SQLite and PostgreSQL: a loan's rows are kept until its last activity is past its
jurisdiction's rule, then purged with the outbox copies, letters and queue files they name (and only
files under the data folder); `python -m ledger purge` says how many of each."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from activities.outbox import CHANNEL_FOLDERS, FileOutbox
from infra.settings import Settings
from ledger import Ledger
from ledger.migrate import upgrade_connection
from tests.conftest import ROOT
from tests.ledger_fixtures import BACKENDS, drop_ledger, open_ledger, scratch_database

OLD = date(2020, 1, 1)     # long past
EARLY = date(2027, 1, 1)   # a long case's first activity's date
LATER = date(2030, 1, 1)   # its last activity's
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def _event(seq: int, kind: str = "stage_entered") -> dict:
    return {"seq": seq, "at": AT, "kind": kind, "status": "info", "detail": {"stage": "reminder"}}


async def _sent(ledger: Ledger, outbox: FileOutbox, loan: str, channel: str, keep: date, *,
                content: bytes = b"Dear Ada", location: str | None = None) -> str:
    """A contact attempt for ``loan`` sent through ``channel``, its copy kept (unless ``location``
    says where it is)."""
    key = f"{loan}/00001/reminder/{channel}"
    await ledger.claim(key, loan_id=loan, jurisdiction="US", channel=channel, template="reminder_soft",
                       retain_until=keep)
    if location is None:
        folder, suffix = CHANNEL_FOLDERS[channel]
        location = str((await outbox.keep(folder, key, suffix, content)).path)
    await ledger.sent(key, message_id="m-1", location=location)
    return location


async def _loan_with_files(ledger: Ledger, outbox: FileOutbox, loan: str, keep: date) -> list[Path]:
    """A loan with events, an SMS and a letter kept in the outbox, and a call task in its queue folder."""
    await ledger.record_events(loan, f"loan-{loan}", [_event(0)], keep)
    files = [Path(await _sent(ledger, outbox, loan, "sms", keep)), Path(await _sent(ledger, outbox, loan, "letter", keep))]
    key = f"{loan}/00002/contact/call"
    await ledger.add_work(key, loan_id=loan, workflow_id=f"loan-{loan}", queue="calls", payload={"phone": "+1555"},
                          assigned_to=None, retain_until=keep)
    files.append((await outbox.keep("queues/calls", key, ".json", b'{"phone": "+1555"}')).path)
    return files


# -- the purge ---------------------------------------------------------------------------------

async def test_a_purge_removes_the_rows_past_retention_with_their_files_and_counts_them(ledger, tmp_path):
    outbox = FileOutbox(tmp_path / "data")
    gone = await _loan_with_files(ledger, outbox, "L-0", OLD)
    # A copy someone removed already, and a location outside the data folder (never touched).
    await _sent(ledger, outbox, "L-0", "email", OLD, location=str(tmp_path / "data" / "outbox" / "email" / "x.eml"))
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(b"not the ledger's")
    await ledger.claim("L-2/00001/legal_letter/letter", loan_id="L-2", jurisdiction="US", channel="letter",
                       template="legal_letter", retain_until=OLD)
    await ledger.sent("L-2/00001/legal_letter/letter", message_id="m-2", location=str(outside))
    kept = await _loan_with_files(ledger, outbox, "L-1", LATER)

    removed = await ledger.purge_expired(date(2026, 11, 22), outbox)

    assert removed == {"contact_attempts": 4, "case_events": 1, "work_items": 1, "case_book": 1, "files": 3}
    assert not any(path.exists() for path in gone)
    assert all(path.exists() for path in kept) and outside.exists()
    assert {a["loan_id"] for a in await ledger.attempts()} == {"L-1"}
    assert await ledger.standing("L-0") is None and await ledger.standing("L-1") is not None
    assert await ledger.purge_expired(date(2026, 11, 22), outbox) == {
        "contact_attempts": 0, "case_events": 0, "work_items": 0, "case_book": 0, "files": 0}


async def test_a_copy_a_try_never_recorded_goes_with_its_row(ledger, tmp_path):
    """The worker kept the text, then the provider refused it: the row has no location, the file is
    where its channel keeps it under the key."""
    outbox = FileOutbox(tmp_path / "data")
    key = "L-0/00001/reminder/sms"
    await ledger.claim(key, loan_id="L-0", jurisdiction="US", channel="sms", template="reminder_soft", retain_until=OLD)
    copy = (await outbox.keep("outbox/sms", key, ".json", b"{}")).path
    await ledger.failed(key, "OptedOut: refused")
    assert (await ledger.purge_expired(date(2026, 11, 22), outbox))["files"] == 1
    assert not copy.exists()


def test_files_are_removed_only_inside_the_data_folder(tmp_path):
    outbox = FileOutbox(tmp_path / "data")
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    (tmp_path / "data" / "outbox" / "sms").mkdir(parents=True)
    link = tmp_path / "data" / "outbox" / "sms" / "link.json"
    link.symlink_to(secret)
    rows = [{"idempotency_key": "../../secret", "channel": "sms", "location": str(secret)},
            {"idempotency_key": "k", "channel": "sms", "location": "data/../secret.txt"},
            {"idempotency_key": "k2", "channel": "sms", "location": str(link)}]
    assert outbox.forget("contact_attempts", rows) == 0
    assert outbox.forget("work_items", [{"item_key": "x", "queue": "../../.."}]) == 0
    assert secret.read_text() == "keep me" and link.is_symlink()


# -- a long case -------------------------------------------------------------------------------

async def test_a_long_case_keeps_its_early_events_until_its_last_activity_is_old_enough(ledger):
    await ledger.record_events("L-1", "loan-L-1", [_event(0), _event(1, "sms_sent")], EARLY)
    await ledger.record_events("L-1", "loan-L-1", [_event(2, "sms_sent")], LATER)
    assert (await ledger.purge_expired(date(2028, 6, 1)))["case_events"] == 0
    assert [e["seq"] for e in await ledger.events("L-1")] == [0, 1, 2]
    assert (await ledger.standing("L-1"))["retain_until"] == LATER
    removed = await ledger.purge_expired(date(2030, 1, 2))
    assert (removed["case_events"], removed["case_book"]) == (3, 1)


async def test_a_contact_or_work_without_events_also_keeps_the_loan(ledger):
    await ledger.record_events("L-1", "loan-L-1", [_event(0)], EARLY)
    await ledger.claim("L-1/00005/contact/sms", loan_id="L-1", jurisdiction="US", channel="sms",
                       template="missed_call", retain_until=date(2029, 1, 1))
    await ledger.add_work("L-1/00006/contact/call", loan_id="L-1", workflow_id="loan-L-1", queue="calls",
                          payload={}, assigned_to=None, retain_until=LATER)
    assert (await ledger.standing("L-1"))["retain_until"] == LATER
    removed = await ledger.purge_expired(date(2029, 6, 1))
    assert (removed["case_events"], removed["contact_attempts"], removed["work_items"]) == (0, 0, 0)
    assert [e["seq"] for e in await ledger.events("L-1")] == [0]
    # An older date never shortens it.
    await ledger.record_events("L-1", "loan-L-1", [_event(1)], EARLY)
    assert (await ledger.standing("L-1"))["retain_until"] == LATER


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migration_keeps_a_loan_as_long_as_its_latest_row(backend, tmp_path):
    ledger, _ = await open_ledger(backend, tmp_path, migrated=False)
    try:
        async with ledger._write() as connection:
            await connection.run_sync(upgrade_connection, "0004")
            # An early event, and a contact years later (each row kept from its own date, then).
            await connection.exec_driver_sql(
                "INSERT INTO case_events (loan_id, seq, at, kind, status, detail, workflow_id, recorded_at, "
                "retain_until) VALUES ('L-1', 0, '2026-11-22 09:30:00+00:00', 'stage_entered', 'info', "
                "'{\"stage\": \"reminder\"}', 'loan-L-1', '2026-11-22 09:30:00+00:00', '2027-01-01')")
            await connection.exec_driver_sql(
                "INSERT INTO contact_attempts (idempotency_key, loan_id, jurisdiction, channel, state, tries, "
                "created_at, retain_until) VALUES ('L-1/00009/contact/sms', 'L-1', 'US', 'sms', 'sent', 1, "
                "'2026-11-22 09:30:00+00:00', '2030-01-01')")
            await connection.run_sync(upgrade_connection, "0005")
            # The book followed the events only (read as it stood then: later columns are not there yet).
            kept = (await connection.exec_driver_sql("SELECT retain_until FROM case_book")).scalar_one()
        assert date.fromisoformat(str(kept)) == EARLY
        await ledger.migrate()
        assert (await ledger.standing("L-1"))["retain_until"] == LATER
        assert (await ledger.purge_expired(date(2028, 1, 1)))["case_events"] == 0
    finally:
        await drop_ledger(ledger)


# -- the command -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
async def test_ledger_purge_prints_the_rows_and_files_it_removed(backend, tmp_path):
    data = tmp_path / "data"
    async with scratch_database(backend, tmp_path) as url:
        ledger = Ledger.connect(url)
        try:
            await ledger.migrate()
            gone = await _loan_with_files(ledger, FileOutbox(data), "L-0", OLD)
        finally:
            await ledger.close()
        done = subprocess.run([sys.executable, "-m", "ledger", "purge"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "ARREARS_DATABASE_URL": url, "ARREARS_DATA_DIR": str(data)},
                              timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "contact_attempts: 2 removed, case_events: 1 removed, work_items: 1 removed, case_book: 1 removed",
        "files: 3 removed"]
    assert not any(path.exists() for path in gone)


# -- the setting -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "copies"), [(None, False), ("", False), ("0", False), ("yes", True),
                                               ("TRUE", True), ("on", True)])
def test_outbox_copies_are_off_unless_asked_for(value, copies):
    env = {} if value is None else {"ARREARS_OUTBOX_COPIES": value}
    assert Settings.from_env(env).outbox_copies is copies


def test_a_bad_outbox_copies_value_names_the_setting():
    with pytest.raises(ValueError, match="ARREARS_OUTBOX_COPIES: 'sometimes'"):
        Settings.from_env({"ARREARS_OUTBOX_COPIES": "sometimes"})
