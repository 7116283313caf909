"""The second compliance pass in the running workflow (time-skipping server): each finding of the
review in issue 14, as a case lives it. On the engine before it, each of these fails: the breathing
space ended by ordinary commands, the validation period overshadowed, a blocked notice letting the
ladder run on, a text still on its way after a dispute, a dial at 23:00 unnoticed, a reason in status."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowUpdateFailedError

from domain.stages import Channel, Stage
from domain.strategy import Treatment
from infra.settings import Settings
from tests.conftest import (
    NO_RULES, PROFILES, eventually, events, make_loan, start_case, status, strategy, zone_where_it_is,
)
from tests.sms_provider_stub import Reply, SmsProviderStub
from worker import build_activities, build_worker
from workflows.inputs import FEATURES, CaseInput, case_workflow_id
from workflows.loan_collection import LoanCollectionWorkflow


async def test_a_breathing_space_outlives_hardship_commands_and_an_arrangement(env, worker):
    now = await env.get_current_time()
    loan = make_loan(jurisdiction="UK", currency="GBP", timezone=zone_where_it_is(11, now))
    handle = await start_case(env.client, worker, loan, compliance=PROFILES["UK"])
    await eventually(handle, lambda s: events(s, "sms_sent"))
    state = await handle.execute_update("breathing_space", {"kind": "standard", "reference": "BS-2026-1",
                                                            "by": "comp-1"})
    assert state["compliance"]["breathing_space"]["kind"] == "standard"
    await handle.execute_update("hardship", {"reason": "lost job", "until": (now + timedelta(days=20)).isoformat()})
    await handle.execute_update("hardship_resolved", {})
    today = now.date()
    state = await handle.execute_update("propose_arrangement", {"kind": "instalments", "instalments": [
        {"due_date": (today + timedelta(days=10)).isoformat(), "amount": "150.00"},
        {"due_date": (today + timedelta(days=40)).isoformat(), "amount": "300.00"}]})
    assert state["compliance"]["interest_frozen"] and state["pause_reason"].startswith("moratorium: ")
    await env.sleep(timedelta(days=59))
    state = await status(handle)
    # Inside the 60 days: no text, no reminder of the plan, no instalment judged missed.
    assert len(events(state, "sms_sent")) == 1 and state["compliance"]["interest_frozen"]
    assert not events(state, "instalment_missed") and state["arrangement"]["state"] == "active"
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("breathing_space_ended", {"reason": "bored"})
    assert "reason" in str(refused.value.cause)
    state = await handle.execute_update("breathing_space_ended", {"reason": "cancelled_by_adviser"})
    assert not state["compliance"]["interest_frozen"] and state["compliance"]["breathing_space"] is None
    assert events(state, "breathing_space_ended")[0]["reason"] == "cancelled_by_adviser"


async def test_a_loan_taken_in_at_dpd_95_keeps_the_us_validation_period(env, worker):
    now = await env.get_current_time()
    loan = make_loan(days_past_due=95, timezone=zone_where_it_is(11, now))
    handle = await start_case(env.client, worker, loan, compliance=PROFILES["US"])
    state = await eventually(handle, lambda s: events(s, "letter_sent") and s["compliance"]["deferred"])
    assert [e["detail"]["template"] for e in events(state, "letter_sent")] == ["validation_notice"]
    ends = datetime.fromisoformat(state["compliance"]["validation_period_ends"])
    assert ends - now >= timedelta(days=35)
    deferred = state["compliance"]["deferred"][0]
    assert deferred["template"] == "legal_letter" and datetime.fromisoformat(deferred["until"]) == ends
    assert "1006.38" in deferred["reason"]
    await env.sleep(ends - now + timedelta(days=1))
    state = await status(handle)
    letters = [e for e in events(state, "letter_sent") if e["detail"]["template"] == "legal_letter"]
    assert len(letters) == 1 and datetime.fromisoformat(letters[0]["at"]) >= ends
    assert state["stage"] == "legal_letter"  # the letter's own 15 days run from its sending
    await env.sleep(timedelta(days=15))
    state = await eventually(handle, lambda s: s["stage"] == "litigation")
    entered = datetime.fromisoformat(events(state, "stage_entered")[-1]["at"])
    # 15 days from the letter's issue (the instant the case issued it; its event follows the print run)
    assert entered >= datetime.fromisoformat(letters[0]["at"]) + timedelta(days=15) - timedelta(seconds=1)


async def _start_with_letters_ceased(env, worker, loan):
    """A case whose borrower ceased letters before the notice could go (the cease arrives with the start)."""
    return await env.client.start_workflow(
        LoanCollectionWorkflow.run, CaseInput(loan=loan, strategy=strategy(), compliance=PROFILES["US"],
                                              features=list(FEATURES)),
        id=case_workflow_id(loan.loan_id), task_queue=worker.task_queue,
        start_signal="cease_contact", start_signal_args=[{"channels": ["letter"]}])


async def test_letters_ceased_the_validation_notice_goes_by_e_mail_with_e_sign_consent(env, worker):
    now = await env.get_current_time()
    loan = make_loan(timezone=zone_where_it_is(11, now), esign_consent="yes")
    handle = await _start_with_letters_ceased(env, worker, loan)
    state = await eventually(handle, lambda s: events(s, "email_sent"))
    assert events(state, "email_sent")[0]["detail"]["template"] == "validation_notice"
    assert state["compliance"]["validation_notice"] == "sent" and not events(state, "letter_sent")


async def test_a_blocked_validation_notice_stops_the_ladder_until_delivery_is_recorded(env, worker):
    now = await env.get_current_time()
    loan = make_loan(days_past_due=60, timezone=zone_where_it_is(11, now))
    handle = await _start_with_letters_ceased(env, worker, loan)
    state = await eventually(handle, lambda s: s["paused"])
    blocked = state["compliance"]["validation_notice_blocked"]
    assert "letter ceased by the borrower" in blocked["why"] and "notice_delivered" in blocked["unblock"]
    await env.sleep(timedelta(days=90))
    state = await status(handle)
    # No demand, no legal letter, no hand-off: the case stands where it was, and says why.
    assert state["stage"] == "field_visit" or state["stage"] == "contact"
    assert [e for e in state["events"] if e["status"] == "sent"] == []
    assert state["pause_reason"].startswith("notice: ")
    at = (await env.get_current_time()) - timedelta(hours=1)
    state = await handle.execute_update("notice_delivered", {"channel": "in_person", "at": at.isoformat(),
                                                             "reference": "branch-7"})
    assert not state["paused"] and state["compliance"]["validation_notice"] == "sent"
    await env.sleep(timedelta(days=1))
    state = await status(handle)
    assert [e for e in state["events"] if e["status"] == "sent"], "the ladder goes on"


@pytest.mark.parametrize("stop, payload", [("dispute", {"reason": "not mine"}), ("cease_contact", {"channels": ["sms"]})])
async def test_a_dispute_or_cease_cancels_a_text_still_on_its_way(env, data_dir, stop, payload):
    with SmsProviderStub() as provider:
        provider.script(*[Reply(503)] * 200)  # the provider is down: the send waits between retries
        activities = build_activities(Settings(data_dir=data_dir, sms_url=provider.url, letter_processes=0))
        activities.sms.backoff = activities.sms.max_backoff = 0.01
        try:
            async with build_worker(env.client, Settings(data_dir=data_dir, sms_url=provider.url, letter_processes=0),
                                    task_queue=f"tq-{uuid.uuid4().hex}", activities=activities) as running:
                handle = await start_case(env.client, running, make_loan(), compliance=NO_RULES)
                for _ in range(200):
                    pending = (await handle.describe()).raw_description.pending_activities
                    if any(p.activity_type.name == "send_sms" and p.attempt >= 2 for p in pending):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the text never went into retry")
                await handle.execute_update(stop, payload)
                state = await eventually(handle, lambda s: events(s, "sms_cancelled"))
                provider.reset()  # the provider is back: nothing may go out now
                await env.sleep(timedelta(hours=2))
                state = await status(handle)
        finally:
            await activities.aclose()
    cancelled = events(state, "sms_cancelled")[0]
    assert cancelled["status"] == "blocked" and "cancelled before it was sent" in cancelled["reason"]
    assert provider.messages == [] and events(state, "sms_sent") == []


async def test_each_dial_counts_and_a_dial_outside_the_window_is_a_breach(env, worker):
    now = await env.get_current_time()
    loan = make_loan(jurisdiction="UK", currency="GBP", days_past_due=40, timezone=zone_where_it_is(11, now))
    handle = await start_case(env.client, worker, loan, compliance=PROFILES["UK"])
    state = await eventually(handle, lambda s: s["open_call_tasks"])
    dials = [now + timedelta(minutes=5), now + timedelta(minutes=20), now + timedelta(hours=12)]  # 23:00 local
    await env.sleep(timedelta(hours=13))
    state = await handle.execute_update("call_outcome", {"outcome": "no_answer", "dials": 3, "by": "agent-7",
                                                         "dialled_at": [d.isoformat() for d in dials]})
    breaches = events(state, "compliance_breach")
    assert len(breaches) == 1 and breaches[0]["reason"].startswith("dial 3") and breaches[0]["actor"] == "agent-7"
    # Three dials against a cap of three a day: no new call task until a day after the first.
    assert state["compliance"]["contacts_last_31_days"] >= 3


async def test_a_hardship_reason_never_reaches_the_status_answer(env, worker):
    handle = await start_case(env.client, worker, make_loan())
    await handle.execute_update("hardship", {"reason": "chemotherapy until spring",
                                             "until": (date.today() + timedelta(days=30)).isoformat()})
    await handle.execute_update("hold", {"reason": "husband's funeral"})
    state = await status(handle)
    text = json.dumps(state)
    assert "chemotherapy" not in text and "funeral" not in text
    assert state["pause_reason"] == "hardship: hardship reported"
    description = await handle.describe()
    assert "chemotherapy" not in str(description.raw_description)


async def test_a_text_checked_at_20_55_never_reaches_the_borrower_after_21_00(env, data_dir):
    """The provider is down when the text is checked at 20:55 in London: it is retried until 21:00 (its
    not_after, the activity's schedule-to-close), then recorded late and deferred to 08:00, when it goes."""
    now = await env.get_current_time()
    zone = zone_where_it_is(19, now)
    local = now.astimezone(ZoneInfo(zone))
    first_text = timedelta(hours=1, minutes=55 - local.minute, seconds=-local.second)  # at 20:55 local
    base = strategy()
    reminder = base.stages[Stage.REMINDER].model_copy(update={"treatments": [
        Treatment(channel=Channel.SMS, template="reminder_soft", at=[first_text])]})
    strat = base.model_copy(update={"stages": {**base.stages, Stage.REMINDER: reminder}})
    loan = make_loan(jurisdiction="UK", currency="GBP", timezone=zone)
    with SmsProviderStub() as provider:
        provider.script(*[Reply(503)] * 400)
        settings = Settings(data_dir=data_dir, sms_url=provider.url, letter_processes=0)
        activities = build_activities(settings)
        activities.sms.backoff = activities.sms.max_backoff = 0.01
        try:
            async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                    activities=activities) as running:
                handle = await start_case(env.client, running, loan, strat, compliance=PROFILES["UK"])
                await env.sleep(first_text + timedelta(minutes=6))  # past 21:00 local
                state = await eventually(handle, lambda s: events(s, "sms_late"))
                provider.reset()  # the provider is back; the text must still wait for the morning
                await env.sleep(timedelta(hours=12))
                state = await status(handle)
        finally:
            await activities.aclose()
    # Given up by 21:00 (the server stops retrying once the next try would start after not_after).
    late = [datetime.fromisoformat(e["at"]).astimezone(ZoneInfo(zone)) for e in events(state, "sms_late")]
    assert late and all(t.strftime("%H:%M") in ("20:59", "21:00") for t in late)
    deferred = [e for e in events(state, "sms_deferred") if datetime.fromisoformat(e["at"]) >= late[-1]]
    assert deferred and datetime.fromisoformat(deferred[0]["detail"]["until"]).astimezone(ZoneInfo(zone)).hour == 8
    sent = events(state, "sms_sent")
    assert len(sent) == 1 and len(provider.messages) == 1
    assert datetime.fromisoformat(sent[0]["at"]).astimezone(ZoneInfo(zone)).hour == 8
