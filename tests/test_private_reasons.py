"""What people write about a borrower's circumstances (hardship, dispute and hold reasons: often health
or family data) is kept in the ledger only, encrypted with the payload keys, and read back only by the
compliance role, each reading logged; other roles see that a reason was given, never its text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text, update

from activities.models import CaseEventsRequest
from domain.case import CaseEvent
from infra.codec import EncryptionCodec, codec_from_setting, generate_key
from infra.settings import Settings
from ledger import Ledger
from ledger.schema import case_events
from tests.conftest import make_loan, start_case, status
from tests.desk_fixtures import desk_on
from tests.test_desk_sessions import browser, log_in
from worker import build_activities, build_worker

KEYS = generate_key()
WORDS = "chemotherapy until March; her husband left"
AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
KEEP = datetime(2030, 1, 1).date()


def _hardship(seq: int, **private: str) -> dict:
    return {"seq": seq, "at": AT, "kind": "hardship", "status": "accepted", "actor": "agent-7",
            "detail": {"until": "2027-01-01"}, "private": private}


async def _raw(ledger: Ledger, loan_id: str) -> list[dict]:
    """The trail as anyone with the database sees it."""
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(text("SELECT * FROM case_events WHERE loan_id = :loan ORDER BY seq"),
                                        {"loan": loan_id})
        return [dict(row._mapping) for row in rows]


# -- in the ledger ---------------------------------------------------------------------------------

async def test_a_private_reason_is_encrypted_in_the_table_and_read_back_with_the_keys(ledger):
    ledger.codec = codec_from_setting(KEYS)
    await ledger.record_events("L-1", "loan-L-1", [_hardship(0, reason=WORDS), _hardship(1)], KEEP)
    raw = await _raw(ledger, "L-1")
    assert "chemotherapy" not in repr(raw) and "husband" not in repr(raw)
    assert raw[0]["reason"] is None and "reason" not in json.dumps(raw[0]["detail"])
    stored = json.loads(raw[0]["private"])
    assert stored["fields"] == ["reason"] and stored["key_id"] == ledger.codec.encrypting_key_id
    assert raw[1]["private"] is None
    trail = await ledger.events("L-1")
    assert [e["private_fields"] for e in trail] == [["reason"], []] and "private" not in trail[0]
    [found] = await ledger.private_reasons("L-1")
    assert (found["seq"], found["kind"], found["private"]) == (0, "hardship", {"reason": WORDS})


async def test_without_payload_keys_the_text_is_withheld_and_only_its_having_been_given_is_kept(ledger):
    assert ledger.codec is None
    await ledger.record_events("L-1", "loan-L-1", [_hardship(0, reason=WORDS)], KEEP)
    assert "chemotherapy" not in repr(await _raw(ledger, "L-1"))
    assert (await ledger.events("L-1"))[0]["private_fields"] == ["reason"]
    [found] = await ledger.private_reasons("L-1")
    assert "private" not in found and "ARREARS_PAYLOAD_KEYS" in found["unreadable"]


async def test_old_keys_still_read_other_keys_do_not_and_a_value_moved_to_another_row_is_refused(ledger):
    old = codec_from_setting(KEYS)
    ledger.codec = old
    await ledger.record_events("L-1", "loan-L-1", [_hardship(0, reason=WORDS), _hardship(1, note="x")], KEEP)
    ledger.codec = EncryptionCodec.from_setting(f"{generate_key()},{KEYS}")  # rotated: a new key first
    assert (await ledger.private_reasons("L-1"))[0]["private"] == {"reason": WORDS}
    ledger.codec = codec_from_setting(generate_key())
    assert "not configured" in (await ledger.private_reasons("L-1"))[0]["unreadable"]
    ledger.codec = old
    sealed = (await _raw(ledger, "L-1"))[0]["private"]
    async with ledger.engine.begin() as connection:  # a DBA copies event 0's reason onto event 1
        await connection.execute(text("DROP TRIGGER IF EXISTS case_events_append_only"
                                      + (" ON case_events" if ledger.dialect == "postgresql" else "")))
        await connection.execute(update(case_events).where(case_events.c.seq == 1).values(private=sealed))
    assert "moved" in (await ledger.private_reasons("L-1"))[1]["unreadable"]


async def test_the_activity_hands_the_events_private_text_to_the_ledger_sealed_with_the_workers_keys(data_dir):
    activities = build_activities(Settings(data_dir=data_dir, payload_keys=KEYS, letter_processes=0))
    try:
        events = [CaseEvent(at=AT, kind="dispute", status="accepted", actor="agent-7", private={"reason": WORDS})]
        await activities.record_case_events(CaseEventsRequest(loan_id="L-1", jurisdiction="US",
                                                              workflow_id="loan-L-1", first_seq=0, events=events))
        assert activities.ledger.codec is not None
        assert "chemotherapy" not in repr(await _raw(activities.ledger, "L-1"))
        assert (await activities.ledger.private_reasons("L-1"))[0]["private"] == {"reason": WORDS}
    finally:
        await activities.aclose()


# -- at the desk -----------------------------------------------------------------------------------

@pytest.fixture
async def sealed_ledger(data_dir):
    ledger = Ledger.connect(f"sqlite:///{data_dir / 'ledger.db'}", codec=codec_from_setting(KEYS))
    await ledger.migrate()
    await ledger.record_events("L-1", "loan-L-1", [_hardship(0, reason=WORDS)], KEEP)
    try:
        yield ledger
    finally:
        await ledger.close()


async def test_compliance_reads_private_reasons_and_the_reading_is_logged(env, sealed_ledger):
    async with desk_on(env, SimpleNamespace(ledger=sealed_ledger, task_queue="unused")) as desk:
        response = await desk.get("c1", "/api/v1/cases/L-1/private-reasons")
        assert response.status_code == 200, response.text
        [reason] = response.json()["reasons"]
        assert (reason["kind"], reason["private"], reason["actor"]) == ("hardship", {"reason": WORDS}, "agent-7")
        log = (await desk.get("c1", "/api/v1/access-log?loan_id=L-1")).json()["entries"]
        assert [(e["user"], e["what"], e["details"]) for e in log] == [("c1", "private_reasons", ["reason"])]


@pytest.mark.parametrize("user", ["a1", "s1", "f1", "ad", "p1"])
async def test_other_roles_are_refused_private_reasons_and_nothing_is_logged(env, sealed_ledger, user):
    async with desk_on(env, SimpleNamespace(ledger=sealed_ledger, task_queue="unused")) as desk:
        response = await desk.get(user, "/api/v1/cases/L-1/private-reasons")
        assert response.status_code == 403 and "private reasons" in response.json()["reason"]
        assert WORDS not in response.text
        assert (await desk.get("c1", "/api/v1/access-log?loan_id=L-1")).json()["entries"] == []


async def test_a_hardship_reason_sent_to_a_case_reaches_compliance_and_nobody_else(env, data_dir):
    """End to end: the command's reason leaves the case for the ledger, sealed; the status answer,
    the trail and raw SQL show only that one was given."""
    settings = Settings(data_dir=data_dir, payload_keys=KEYS, letter_processes=0)
    activities = build_activities(settings)
    try:
        async with build_worker(env.client, settings, task_queue="tq-private", activities=activities) as worker:
            worker.ledger = activities.ledger  # type: ignore[attr-defined]
            loan = make_loan(days_past_due=5)
            handle = await start_case(env.client, worker, loan)
            async with desk_on(env, worker, settings) as desk:
                sent = await desk.command("s1", loan.loan_id, "hardship", {"reason": WORDS})
                assert sent.status_code == 200, sent.text
                await env.sleep(timedelta(hours=1))
                for _ in range(100):
                    trail = await activities.ledger.events(loan.loan_id)
                    if any(e["private_fields"] for e in trail):
                        break
                    await env.sleep(timedelta(minutes=10))
                assert [e["kind"] for e in trail if e["private_fields"]] == ["hardship"]
                assert WORDS not in json.dumps(await status(handle), default=str)
                assert WORDS not in repr(await _raw(activities.ledger, loan.loan_id))
                refused = await desk.get("a1", f"/api/v1/cases/{loan.loan_id}/private-reasons")
                assert refused.status_code == 403
                read = (await desk.get("c1", f"/api/v1/cases/{loan.loan_id}/private-reasons")).json()
                assert [r["private"] for r in read["reasons"]] == [{"reason": WORDS}]
                # The workbench: compliance reads them on the case page (asking, with the form's token);
                # a supervisor sees the case, the marker that a reason was given, and no text.
                for user, allowed in (("c1", True), ("s1", False)):
                    async with browser(desk) as http:
                        assert (await log_in(http, user)).status_code == 303
                        csrf = (await http.get("/api/v1/me")).json()["csrf_token"]
                        page = await http.get(f"/cases/{loan.loan_id}")
                        assert page.status_code == 200 and WORDS not in page.text
                        assert ('id="read-private"' in page.text) is allowed
                        read_page = await http.post(f"/cases/{loan.loan_id}/private-reasons",
                                                    data={"csrf_token": csrf})
                        assert (read_page.status_code == 200) is allowed and (WORDS in read_page.text) is allowed
                async with browser(desk) as http:  # nobody logged in: refused, and nothing read
                    anonymous = await http.post(f"/cases/{loan.loan_id}/private-reasons", data={"csrf_token": "x"})
                    # the workbench sends a browser without a session to log in
                    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
                    assert WORDS not in anonymous.text
                log = (await desk.get("c1", f"/api/v1/access-log?loan_id={loan.loan_id}")).json()["entries"]
                assert [(e["user"], e["via"]) for e in log if e["what"] == "private_reasons"] == [
                    ("c1", "web"), ("c1", "api")]
    finally:
        await activities.aclose()
