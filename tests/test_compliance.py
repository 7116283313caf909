"""check_contact: every rule of the profiles table, one verdict at a time (pure, no Temporal)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from domain.case import CaseState, Deferral, Hold, open_case
from domain.commands import handle
from domain.compliance import (
    ALLOW, Cap, ContactAttempt, Tightening, Window, check_contact, defer_until, next_open, remember, resolve,
)
from domain.decide import Act, Block, Defer, decide, mark_done
from domain.stages import Channel, Stage
from infra.compliance import ComplianceError, check_tightening, load_profiles
from tests.conftest import PROFILES, make_loan, strategy

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT = strategy()


def case_for(jurisdiction: str = "US", zone: str = "America/New_York", *, at: datetime | None = None,
             notice_sent: bool = True, **loan) -> CaseState:
    at = at or datetime(2026, 3, 2, 15, tzinfo=UTC)
    case = open_case(make_loan(jurisdiction=jurisdiction, timezone=zone, **loan), DEFAULT, at, PROFILES[jurisdiction])
    if notice_sent:
        case.validation_notice = "sent"
    return case


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def calls(*ats: datetime, result: str = "unanswered") -> list[ContactAttempt]:
    return [ContactAttempt(at=at, channel=Channel.CALL, result=result) for at in ats]


# -- the contact window, in the borrower's local time ------------------------------------------

@pytest.mark.parametrize("hour, minute, allowed", [(7, 59, False), (8, 0, True), (20, 59, True), (21, 0, False)])
def test_us_contacts_only_between_8_and_21_local_time(hour, minute, allowed):
    now = local(NY, 2026, 7, 1, hour, minute)
    verdict = check_contact(case_for(), [], Channel.SMS, now)
    if allowed:
        assert verdict == ALLOW
    else:
        opens = local(NY, 2026, 7, 1 if hour < 8 else 2, 8, 0)
        assert verdict == defer_until(opens, "outside contact hours 08:00-21:00 in America/New_York")


def test_cn_allows_until_22_local_and_letters_are_not_windowed():
    case = case_for("CN", "Asia/Shanghai", currency="CNY")
    assert check_contact(case, [], Channel.CALL, local(SHANGHAI, 2026, 7, 1, 21, 30)) == ALLOW
    late = check_contact(case, [], Channel.CALL, local(SHANGHAI, 2026, 7, 1, 22, 0))
    assert late.kind == "defer" and late.until == local(SHANGHAI, 2026, 7, 2, 8, 0)
    assert check_contact(case, [], Channel.LETTER, local(SHANGHAI, 2026, 7, 1, 3, 0)) == ALLOW


def test_the_window_follows_daylight_saving_time():
    case = case_for()
    # 12:30 UTC is 07:30 in New York in winter (EST) but 08:30 in summer (EDT).
    assert check_contact(case, [], Channel.SMS, datetime(2026, 1, 15, 12, 30, tzinfo=UTC)).kind == "defer"
    assert check_contact(case, [], Channel.SMS, datetime(2026, 7, 15, 12, 30, tzinfo=UTC)) == ALLOW


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "not a zone"])
def test_an_unknown_zone_is_read_strictly_as_every_zone_of_the_jurisdiction(zone):
    case = case_for()
    case.timezone = zone
    # 14:00 UTC is 10:00 in New York but 04:00 in Honolulu: not allowed until 08:00 in Hawaii.
    verdict = check_contact(case, [], Channel.CALL, datetime(2026, 7, 1, 14, tzinfo=UTC))
    assert verdict.kind == "defer" and verdict.until == local(ZoneInfo("Pacific/Honolulu"), 2026, 7, 1, 8, 0)
    assert "every US time zone" in verdict.reason
    # 01:30 UTC is 21:30 in New York (closed), although still 15:30 in Honolulu.
    assert check_contact(case, [], Channel.CALL, datetime(2026, 7, 2, 1, 30, tzinfo=UTC)).kind == "defer"


def test_the_demo_profile_contacts_at_any_hour_and_says_it_is_not_for_production():
    case = open_case(make_loan(), DEFAULT, datetime(2026, 3, 2, tzinfo=UTC), PROFILES["demo"])
    assert check_contact(case, calls(*[datetime(2026, 3, 2, h, tzinfo=UTC) for h in range(9)]),
                         Channel.CALL, local(NY, 2026, 3, 2, 3, 0)) == ALLOW
    assert not PROFILES["demo"].production and "not for production" in PROFILES["demo"].label


# -- caps and cooldowns over rolling windows ----------------------------------------------------

def test_us_allows_seven_call_attempts_in_seven_days_then_defers_until_the_oldest_leaves_the_window():
    case = case_for()
    first = local(NY, 2026, 7, 1, 10, 0)
    history = calls(*[first + timedelta(days=d) for d in range(7)])
    now = first + timedelta(days=6, hours=2)
    assert check_contact(case, history[:6], Channel.CALL, now) == ALLOW
    verdict = check_contact(case, history, Channel.CALL, now)
    assert verdict.kind == "defer" and verdict.until == first + timedelta(days=7)
    assert verdict.reason == "7 call attempts in 7 days reached (12 CFR 1006.14(b)(2)(i))"
    assert check_contact(case, history, Channel.SMS, now) == ALLOW  # the cap is per channel


def test_us_waits_seven_days_after_a_conversation():
    case = case_for()
    talked = local(NY, 2026, 7, 1, 10, 0)
    verdict = check_contact(case, calls(talked, result="conversation"), Channel.CALL, talked + timedelta(days=3))
    assert verdict.kind == "defer" and verdict.until == talked + timedelta(days=7)
    assert "after a conversation" in verdict.reason


def test_a_deferral_lands_inside_the_window_even_when_the_cap_frees_at_night():
    case = case_for()
    first = local(NY, 2026, 7, 1, 20, 30)
    history = calls(*[first + timedelta(days=d) for d in range(7)])
    verdict = check_contact(case, history, Channel.CALL, first + timedelta(days=6, minutes=20))
    assert verdict.until == first + timedelta(days=7)  # the cap frees at 20:30 local: still open
    late_first = local(NY, 2026, 7, 1, 20, 59)
    history = calls(late_first, *[late_first + timedelta(days=d) for d in range(1, 7)])
    verdict = check_contact(case, history, Channel.CALL, late_first + timedelta(days=6, minutes=1))
    assert verdict.until == late_first + timedelta(days=7)
    assert check_contact(case, history, Channel.CALL, late_first + timedelta(days=7, minutes=1)).until == \
        local(NY, 2026, 7, 9, 8, 0)  # the cap is free but it is 21:00: next morning


def test_cn_counts_only_unanswered_calls_six_a_day():
    case = case_for("CN", "Asia/Shanghai", currency="CNY")
    morning = local(SHANGHAI, 2026, 7, 1, 9, 0)
    answered = calls(*[morning + timedelta(minutes=m) for m in range(10)], result="conversation")
    assert check_contact(case, answered, Channel.CALL, morning + timedelta(hours=1)) == ALLOW
    unanswered = calls(*[morning + timedelta(minutes=10 * m) for m in range(6)])
    verdict = check_contact(case, unanswered, Channel.CALL, morning + timedelta(hours=2))
    assert verdict.kind == "defer" and verdict.until == morning + timedelta(days=1)
    pending = calls(*[morning + timedelta(minutes=10 * m) for m in range(6)], result="pending")
    assert check_contact(case, pending, Channel.CALL, morning + timedelta(hours=2)).kind == "defer"


def test_the_history_forgets_what_no_window_looks_at():
    start = datetime(2026, 7, 1, tzinfo=UTC)
    history: list[ContactAttempt] = []
    for day in range(60):
        history = remember(history, ContactAttempt(at=start + timedelta(days=day), channel=Channel.SMS))
    assert len(history) == 31 and history[0].at == start + timedelta(days=29)


# -- holds, requests and who may be contacted ----------------------------------------------------

def test_cease_blocks_the_channel_but_a_us_remedy_notice_may_still_go_by_letter():
    case = case_for()
    handle("cease_contact", {}, case, DEFAULT, datetime(2026, 7, 1, 15, tzinfo=UTC))
    now = local(NY, 2026, 7, 1, 12, 0)
    assert check_contact(case, [], Channel.SMS, now).reason == "borrower asked to cease contact on this channel"
    assert check_contact(case, [], Channel.LETTER, now, template="reminder_soft").kind == "block"
    assert check_contact(case, [], Channel.LETTER, now, template="legal_letter") == ALLOW  # 1006.6(c)(2)
    uk = case_for("UK", "Europe/London", currency="GBP")
    handle("cease_contact", {}, uk, DEFAULT, datetime(2026, 7, 1, 15, tzinfo=UTC))
    assert check_contact(uk, [], Channel.LETTER, now, template="legal_letter").kind == "block"


@pytest.mark.parametrize("command, payload, reason", [
    ("dispute", {"reason": "not mine"}, "the debt is disputed: collection stops until it is verified"),
    ("hardship", {"reason": "lost job"}, "hardship: no payment demands while the borrower is in hardship"),
])
def test_a_dispute_or_hardship_blocks_every_contact_and_the_legal_hand_off(command, payload, reason):
    case = case_for()
    handle(command, payload, case, DEFAULT, datetime(2026, 7, 1, 15, tzinfo=UTC))
    for channel in Channel:
        assert check_contact(case, [], channel, local(NY, 2026, 7, 1, 12, 0)).reason == reason


def test_uk_breathing_space_lasts_sixty_days_blocks_demands_and_freezes_interest():
    at = datetime(2026, 7, 1, 15, tzinfo=UTC)
    case = case_for("UK", "Europe/London", currency="GBP")
    assert handle("hardship", {"reason": "debt adviser notice DRS-123", "breathing_space": True}, case, DEFAULT, at)
    hold = case.hold("hardship")
    assert hold.moratorium and hold.until == at + timedelta(days=60)
    verdict = check_contact(case, [], Channel.SMS, at + timedelta(days=10))
    assert verdict.reason == ("breathing space until 2026-08-30: no contact demanding payment, no enforcement")
    us = case_for()
    assert not handle("hardship", {"reason": "x", "breathing_space": True}, us, DEFAULT, at)
    assert us.events[-1].reason == "breathing_space: the US profile has no breathing-space scheme"
    uk = case_for("UK", "Europe/London", currency="GBP")
    assert not handle("hardship", {"reason": "x", "breathing_space": True, "until": "2026-07-20"}, uk, DEFAULT, at)
    assert uk.events[-1].reason.startswith("until: a breathing space lasts 60 days by law")


def test_no_field_visit_for_a_vulnerable_borrower_and_two_staff_in_china():
    now = local(SHANGHAI, 2026, 7, 1, 10, 0)
    cn = case_for("CN", "Asia/Shanghai", currency="CNY")
    assert check_contact(cn, [], Channel.VISIT, now, staff=2) == ALLOW
    assert check_contact(cn, [], Channel.VISIT, now, staff=1).reason == \
        "a field visit needs at least 2 staff; the plan sends 1"
    vulnerable = case_for("UK", "Europe/London", currency="GBP", vulnerable="yes")
    assert vulnerable.vulnerable
    assert check_contact(vulnerable, [], Channel.VISIT, datetime(2026, 7, 1, 10, tzinfo=UTC)).reason == \
        "the borrower is flagged vulnerable: no field visits"
    assert check_contact(vulnerable, [], Channel.SMS, datetime(2026, 7, 1, 10, tzinfo=UTC)) == ALLOW


def test_third_parties_are_never_told_about_the_debt():
    now = local(NY, 2026, 7, 1, 12, 0)
    us, cn, uk = case_for(), case_for("CN", "Asia/Shanghai", currency="CNY"), case_for("UK", "Europe/London",
                                                                                      currency="GBP")
    cn_now = local(SHANGHAI, 2026, 7, 1, 12, 0)
    for case, at in ((us, now), (cn, cn_now), (uk, now)):
        assert check_contact(case, [], Channel.CALL, at, recipient="third_party").reason == \
            "a third party is never told about the debt"
    # Location information only (a template marked so): the US at any time, China only when the
    # borrower cannot be reached, the UK never.
    location = dict(template="location", recipient="third_party")
    us.compliance = us.compliance.model_copy(update={"purposes": {"location": "location"}})
    cn.compliance = cn.compliance.model_copy(update={"purposes": {"location": "location"}})
    uk.compliance = uk.compliance.model_copy(update={"purposes": {"location": "location"}})
    assert check_contact(us, [], Channel.CALL, now, **location) == ALLOW
    assert "only when the borrower cannot be reached" in check_contact(cn, [], Channel.CALL, cn_now, **location).reason
    cn.phone_invalid = True
    assert check_contact(cn, [], Channel.EMAIL, cn_now, **location) == ALLOW
    assert check_contact(uk, [], Channel.CALL, now, **location).reason == "UK: no contact with third parties"
    # A guarantor may be contacted about the debt in China, not in the US.
    assert check_contact(cn, [], Channel.EMAIL, cn_now, recipient="guarantor") == ALLOW
    assert "guarantor is a third party" in check_contact(us, [], Channel.CALL, now, recipient="guarantor").reason


def test_us_sends_the_validation_notice_before_any_collection_contact():
    start = local(NY, 2026, 7, 1, 10, 0)
    case = case_for(at=start, notice_sent=False)
    assert check_contact(case, [], Channel.SMS, start).reason == "the validation notice has not been sent yet"
    step = decide(case, DEFAULT, start)
    assert step == Act(Channel.LETTER, "validation_notice", "validation_notice")
    mark_done(case, step.key)
    assert case.validation_notice_sent
    step = decide(case, DEFAULT, start)
    assert isinstance(step, Act) and step.channel is Channel.SMS
    cn = case_for("CN", "Asia/Shanghai", currency="CNY", notice_sent=False)
    assert decide(cn, DEFAULT, local(SHANGHAI, 2026, 7, 1, 10, 0)).template != "validation_notice"


def test_a_blocked_validation_notice_keeps_collection_blocked_visibly():
    start = local(NY, 2026, 7, 1, 10, 0)
    case = case_for(at=start, notice_sent=False)
    mark_done(case, "validation_notice", sent=False)
    step = decide(case, DEFAULT, start)
    assert isinstance(step, Block) and step.reason == "the validation notice has not been sent yet"


# -- decide: deferred, then sent; the stage ending drops it with a reason -------------------------

def test_a_contact_due_at_night_is_deferred_once_and_sent_when_hours_open():
    night = local(NY, 2026, 7, 1, 3, 0)
    case = case_for(at=night)
    step = decide(case, DEFAULT, night)
    assert isinstance(step, Defer) and step.until == local(NY, 2026, 7, 1, 8, 0)
    case.defer(Deferral(key=step.key, channel=step.channel, template=step.template, since=night,
                        until=step.until, reason=step.reason), night)
    waiting = decide(case, DEFAULT, night)
    assert waiting.until == step.until and waiting.reason.startswith("sms deferred: outside contact hours")
    assert decide(case, DEFAULT, step.until) == Act(step.channel, step.template, step.key)
    mark_done(case, step.key)
    assert case.deferred == []


def test_leaving_the_stage_drops_its_deferred_contacts_with_a_reason():
    night = local(NY, 2026, 7, 1, 3, 0)
    case = case_for(at=night)
    case.defer(Deferral(key="0:sms:0", channel=Channel.SMS, since=night, until=night + timedelta(hours=5),
                        reason="outside contact hours"), night)
    case.enter_stage(Stage.CONTACT, night + timedelta(hours=1), "test")
    assert case.deferred == []
    dropped = case.events[-2]
    assert dropped.status == "blocked" and dropped.reason == \
        "the stage ended while it was deferred (outside contact hours)"


# -- profiles as data; strategies tighten, never loosen ---------------------------------------

def test_a_strategy_narrows_the_window_and_adds_caps_but_cannot_widen_hours():
    narrow = Tightening(window=Window(start=time(9), end=time(20)),
                        caps=[Cap(channel=Channel.SMS, max=1, per=timedelta(days=1))])
    profile = resolve(PROFILES, "US", narrow, "house")
    assert profile.window == Window(start=time(9), end=time(20)) and len(profile.caps) == 2
    assert profile.tightened_by == "strategy house"
    wide = resolve(PROFILES, "CN", Tightening(window=Window(start=time(6), end=time(23))), "loose")
    assert wide.window == PROFILES["CN"].window
    with pytest.raises(ValueError, match="do not overlap"):
        resolve(PROFILES, "US", Tightening(window=Window(start=time(21, 30), end=time(23))), "night")
    assert resolve(PROFILES, "US", Tightening(profile="demo"), "demo").name == "demo"
    check_tightening(strategy("demo"))
    night_shift = strategy().model_copy(update={"compliance": Tightening(window=Window(start=time(22), end=time(23)))})
    with pytest.raises(ComplianceError, match="strategy default: compliance: contact windows"):
        check_tightening(night_shift)


def test_a_bad_profiles_file_names_the_key_and_the_reason(tmp_path: Path):
    good = Path("compliance/profiles.toml").read_text(encoding="utf-8")
    bad = tmp_path / "profiles.toml"
    bad.write_text(good.replace('window = { start = "08:00", end = "22:00" }',
                                'window = { start = "22:00", end = "08:00" }'), encoding="utf-8")
    with pytest.raises(ComplianceError, match=r"profiles\.CN\.window: Value error, end 08:00:00 must be after"):
        load_profiles(bad)
    bad.write_text(good.replace("[profiles.UK]", "[profiles.FR]"), encoding="utf-8")
    with pytest.raises(ComplianceError, match="profiles missing for UK"):
        load_profiles(bad)


def test_every_shipped_profile_is_complete():
    profiles = load_profiles()
    assert {"US", "CN", "UK", "demo"} <= set(profiles)
    for name in ("US", "CN", "UK"):
        profile = profiles[name]
        assert profile.production and profile.window is not None and profile.caps and profile.zones
        assert profile.purposes["legal_letter"] == "legal_notice"
    assert profiles["US"].records_years == 3 and profiles["CN"].records_years == 2
    assert profiles["UK"].breathing_space_days == 60 and profiles["CN"].field_visit_min_staff == 2


def test_a_case_before_compliance_keeps_its_old_checks():
    case = open_case(make_loan(), DEFAULT, datetime(2026, 7, 1, 7, tzinfo=UTC))  # no profile: an old case
    assert case.compliance is None
    assert check_contact(case, [], Channel.SMS, local(NY, 2026, 7, 1, 3, 0)) == ALLOW
    case.holds.append(Hold(kind="dispute", reason="x", since=datetime(2026, 7, 1, tzinfo=UTC)))
    assert check_contact(case, [], Channel.SMS, local(NY, 2026, 7, 1, 3, 0)) == ALLOW


def test_next_open_is_the_first_moment_inside_contact_hours():
    us = PROFILES["US"]
    assert next_open(us, "America/New_York", local(NY, 2026, 7, 1, 3, 0)) == local(NY, 2026, 7, 1, 8, 0)
    assert next_open(us, "America/New_York", local(NY, 2026, 7, 1, 12, 0)) == local(NY, 2026, 7, 1, 12, 0)
    assert next_open(PROFILES["demo"], "America/New_York", local(NY, 2026, 7, 1, 3, 0)) == local(NY, 2026, 7, 1, 3, 0)
    assert next_open(None, None, local(NY, 2026, 7, 1, 3, 0)) == local(NY, 2026, 7, 1, 3, 0)
