"""Compliance in the running workflow (time-skipping server): checked at send time, visible in status."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import NO_RULES, PROFILES, eventually, events, make_loan, start_case, status, zone_where_it_is


async def test_a_borrower_asleep_is_deferred_not_contacted_and_reached_when_hours_open(env, worker):
    now = await env.get_current_time()
    zone = zone_where_it_is(2, now)
    handle = await start_case(env.client, worker, make_loan(timezone=zone), compliance=PROFILES["US"])
    state = await eventually(handle, lambda s: s["compliance"]["deferred"])
    # The validation notice went first (a letter: not bound to contact hours); the SMS waits.
    assert [e["detail"]["template"] for e in events(state, "letter_sent")] == ["validation_notice"]
    assert events(state, "sms_sent") == []
    deferred = state["compliance"]["deferred"][0]
    opens = datetime.fromisoformat(deferred["until"])
    assert deferred["channel"] == "sms" and opens.astimezone(ZoneInfo(zone)).hour == 8
    assert deferred["reason"] == f"outside contact hours 08:00-21:00 in {zone}"
    assert state["next_action"].startswith("sms deferred") and state["next_action_at"] == deferred["until"]
    assert events(state, status_="deferred")[0]["kind"] == "sms_deferred"

    await env.sleep(opens - now + timedelta(minutes=5))
    state = await status(handle)
    sent = events(state, "sms_sent")
    assert len(sent) == 1 and datetime.fromisoformat(sent[0]["at"]) >= opens
    assert datetime.fromisoformat(sent[0]["at"]).astimezone(ZoneInfo(zone)).hour == 8
    assert state["compliance"]["deferred"] == [] and state["compliance"]["profile"] == "US"


async def test_a_uk_breathing_space_stops_contact_for_sixty_days(env, worker):
    now = await env.get_current_time()
    loan = make_loan(jurisdiction="UK", currency="GBP", timezone=zone_where_it_is(11, now))
    handle = await start_case(env.client, worker, loan, compliance=PROFILES["UK"])
    await eventually(handle, lambda s: events(s, "sms_sent"))
    state = await handle.execute_update("hardship", {"reason": "debt adviser notice", "breathing_space": True})
    assert state["compliance"]["interest_frozen"] and state["paused"]
    hold = state["holds"][0]
    assert hold["kind"] == "moratorium" and hold["moratorium"]
    assert datetime.fromisoformat(hold["until"]) - now >= timedelta(days=60)
    await env.sleep(timedelta(days=59))
    state = await status(handle)
    assert state["paused"] and len(events(state, "sms_sent")) == 1
    await env.sleep(timedelta(days=2))
    state = await status(handle)
    assert not state["paused"] and not state["compliance"]["interest_frozen"]
    assert events(state, "breathing_space_ended")[0]["reason"] == "the breathing space's term is over"


async def test_a_case_started_without_a_profile_gets_its_jurisdictions_from_the_worker(env, worker):
    now = await env.get_current_time()
    loan = make_loan(jurisdiction="CN", currency="CNY", timezone=zone_where_it_is(12, now))
    handle = await start_case(env.client, worker, loan, compliance=None)
    state = await eventually(handle, lambda s: s["compliance"] is not None)
    assert state["compliance"]["profile"] == "CN" and state["compliance"]["production"]
    assert events(state, "compliance_profile")[0]["detail"]["label"].startswith("China")


async def test_a_vulnerable_borrower_gets_no_field_visit(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70), compliance=NO_RULES)
    await env.sleep(timedelta(days=1, hours=1))  # the visit is planned on day 1 of the stage
    await eventually(handle, lambda s: s["field_visit"] and s["field_visit"]["state"] == "in_progress")
    state = await handle.execute_update("vulnerability", {"vulnerable": True, "note": "bereavement"})
    assert state["compliance"]["vulnerable"]
    state = await eventually(handle, lambda s: events(s, "visit_blocked"))
    cancelled = events(state, "field_visit_cancelled")[0]
    assert cancelled["reason"] == "the borrower is flagged vulnerable"
    assert events(state, "visit_blocked")[0]["reason"] == "the borrower is flagged vulnerable: no field visits"
    assert "bereavement" not in str(state["events"])  # the note is not kept in the case's events


async def test_a_field_visit_in_china_waits_for_contact_hours_and_sends_two_staff(env, worker, data_dir):
    now = await env.get_current_time()
    zone = zone_where_it_is(23, now)
    loan = make_loan(jurisdiction="CN", currency="CNY", timezone=zone, days_past_due=70)
    handle = await start_case(env.client, worker, loan, compliance=PROFILES["CN"])
    await env.sleep(timedelta(days=1, hours=1))  # the visit falls due on day 1, at 23:xx local time
    state = await eventually(handle, lambda s: events(s, "visit_deferred"))
    assert events(state, "visit_deferred")[0]["reason"] == f"outside contact hours 08:00-22:00 in {zone}"
    await env.sleep(timedelta(hours=10))
    state = await eventually(handle, lambda s: s["field_visit"] and s["field_visit"]["state"] == "in_progress")
    plan = json.loads(next((data_dir / "queues" / "visits").glob("*.json")).read_text())
    scheduled = datetime.fromisoformat(plan["scheduled_for"]).astimezone(ZoneInfo(zone))
    assert 8 <= scheduled.hour < 22 and len(plan["agents"]) == 2
