"""Compliance properties (hypothesis): across random sequences of events, time zones and clocks,
no contact is ever sent outside its window, above a cap, during a hold or after a cease request;
and every deferred contact is sent once it becomes allowed, unless something blocks it. From the
second compliance pass on, also: a breathing space ends only by its term or ``breathing_space_ended``
and nothing reaches the borrower inside it; a stage with a legal notice is never left before the
notice went (or was blocked with its reason) and its response period ran; litigation never begins,
and no legal notice goes, inside the US validation period; a message that reaches the borrower late
(a queue, a slow provider) never does so after its ``not_after`` or outside its window; each dial an
agent reports counts against the caps, and a dial against the rules is recorded as a breach.

The simulator below runs the domain exactly as the workflow's loop does (``tick`` -> ``decide`` ->
execute the step -> sleep until the step's time or the next event), with commands going through
``handle`` as signals do. The invariants are checked by code written here, independently of
``check_contact``, against a log of what was actually sent.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.case import SECOND_PASS, CaseState, Deferral, open_case, tick
from domain.commands import handle
from domain.compliance import CALL_RESULTS, NOT_A_CONTACT, Profile, contact_deadline
from domain.decide import Act, Advance, Block, Defer, Finish, Wait, decide, mark_done, treatment_key
from domain.stages import Stage
from domain.stages import Channel
from domain.strategy import Strategy
from infra.compliance import profile_for
from tests.conftest import PROFILES, ROOT, make_loan, strategy

UTC = timezone.utc
DEFAULT = strategy()


def _stress() -> Strategy:
    """The default ladder with contacts crowded together, so caps, cooldowns and windows bind:
    texts every four hours, calls every two, and a strategy cap of two texts a day."""
    data = tomllib.loads((ROOT / "strategies" / "default.toml").read_text(encoding="utf-8"))
    data["name"] = "stress"
    data["stages"]["reminder"]["treatments"] = [
        {"channel": "sms", "template": "reminder_soft", "at": [f"{4 * n}h" for n in range(18)]},
        {"channel": "email", "template": "reminder_how_to_pay", "at": ["1h", "25h", "49h"]},
    ]
    data["stages"]["contact"]["treatments"] = [
        {"channel": "call", "at": [f"{2 * n}h" for n in range(40)]},
        {"channel": "email", "template": "repayment_options", "at": ["3h"]},
    ]
    data["compliance"] = {"caps": [{"channel": "sms", "max": 2, "per": "1d"}]}
    return Strategy.model_validate(data)


STRESS = _stress()
ZONES = {
    "US": ["America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "America/Anchorage"],
    "CN": ["Asia/Shanghai", "Asia/Urumqi"],
    "UK": ["Europe/London"],
}
INVALID_ZONE = "Mars/Olympus"  # as if removed from the zone database after intake


@dataclass
class Sent:
    at: datetime
    channel: Channel
    template: str | None
    key: str
    result: str | None = None  # calls: conversation / unanswered once an outcome is reported


@dataclass
class World:
    """The case, what was sent, what was deferred, and every verdict's fate."""

    case: CaseState
    strategy: Strategy
    profile: Profile
    zone: str
    now: datetime
    sent: list[Sent] = field(default_factory=list)
    deferrals: list[tuple[datetime, Deferral]] = field(default_factory=list)
    settled: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)  # key -> (when, how)
    blocked: list[tuple[datetime, Channel, str]] = field(default_factory=list)
    dropped: dict[str, list[datetime]] = field(default_factory=dict)  # left the deferred list unsent
    _waiting: set[str] = field(default_factory=set)
    # How long a message takes to reach the borrower after its check (a queue, a slow provider).
    delay: timedelta = timedelta(0)
    late: list[tuple[datetime, str]] = field(default_factory=list)  # (when, key): not_after passed first
    stages: list[tuple[datetime, Stage, Stage]] = field(default_factory=list)  # (when, from, to)
    dials_reported: list[tuple[datetime, list[datetime]]] = field(default_factory=list)

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return (f"World({self.profile.name}, zone={self.zone}, strategy={self.strategy.name}, "
                f"stage={self.case.stage.value}, dpd={self.case.dpd_at_intake}, start={self.case.intake_at})")

    # -- the workflow's loop ---------------------------------------------------------------
    def drive(self) -> datetime | None:
        """Run the loop at ``now`` until the case waits; return when it wants to wake."""
        case, now = self.case, self.now
        for _ in range(300):
            tick(case, self.strategy, now)
            case.withdraw_call_tasks(now)
            self.watch()
            step = decide(case, self.strategy, now)
            if isinstance(step, Finish):
                return None
            if isinstance(step, Wait):
                assert step.until is None or step.until > now
                self.no_deferral_overdue()
                return step.until
            if isinstance(step, Advance):
                before = case.stage
                self.check_may_leave(step)
                case.enter_stage(step.to, now, step.reason)
                self.stages.append((now, before, case.stage))
            elif isinstance(step, Block):
                case.record(now, f"{step.channel.value}_blocked", "blocked", reason=step.reason, treatment=step.key)
                mark_done(case, step.key, sent=False, now=now)
                self.blocked.append((now, step.channel, step.reason))
                self.settled.setdefault(step.key, []).append((now, "blocked"))
            elif isinstance(step, Defer):
                assert step.until > now, "a deferral is to a later time"
                deferral = Deferral(key=step.key, channel=step.channel, template=step.template, since=now,
                                    until=step.until, reason=step.reason)
                case.defer(deferral, now)
                self.deferrals.append((now, deferral))
            else:
                assert isinstance(step, Act)
                self.check_may_send(step)
                not_after = contact_deadline(case, step.channel, now) if case.uses(SECOND_PASS) else None
                if step.channel in (Channel.SMS, Channel.EMAIL) and self.delay and (
                        not_after is not None and now + self.delay > not_after):
                    # The activity refuses once not_after has passed; the case checks it again then.
                    self.late.append((now, step.key))
                    return not_after
                self.send(step)
                if step.channel in (Channel.SMS, Channel.EMAIL):
                    self.check_reaches_in_time(step, now + self.delay)
            self.watch()
        raise AssertionError("decide never settled on a Wait")

    def watch(self) -> None:
        """Note deferrals that left the list without being sent or blocked by a verdict: dropped
        by the case (its stage, promise or plan ended, it closed, a new deferral replaced it)."""
        now_waiting = {d.key for d in self.case.deferred}
        for key in self._waiting - now_waiting:
            if not any(at == self.now for at, _ in self.settled.get(key, [])):
                self.dropped.setdefault(key, []).append(self.now)
                recent = [e for e in self.case.events if e.at == self.now]
                assert any(e.status == "blocked" and e.detail.get("treatment") == key and e.reason
                           for e in recent), f"{key} dropped without a reason"
        self._waiting = now_waiting

    def send(self, step: Act) -> None:
        case, now = self.case, self.now
        if step.channel not in NOT_A_CONTACT:
            self.sent.append(Sent(now, step.channel, step.template, step.key))
        if step.channel is Channel.CALL:
            case.open_call_task(f"call-{len(self.sent)}", now)
            case.contacted(step.channel, None, now)
        elif step.channel in (Channel.SMS, Channel.EMAIL, Channel.LETTER):
            case.contacted(step.channel, step.template, now)
        mark_done(case, step.key, now=now, template=step.template)
        self.settled.setdefault(step.key, []).append((now, "sent"))

    def elapse(self, span: timedelta) -> None:
        """Let time pass as a durable timer would, waking at each Wait on the way."""
        target = self.now + span
        while True:
            wake = self.drive()
            if self.case.outcome is not None:
                self.now = target
                return
            self.now = min(wake, target) if wake is not None else target
            if self.now >= target:
                self.drive()
                return

    def command(self, name: str, payload: dict) -> None:
        moratorium = self.case.moratorium
        accepted = handle(name, payload, self.case, self.strategy, self.now)
        self.watch()
        if moratorium is not None and name != "breathing_space_ended" and self.case.uses(SECOND_PASS):
            now_held = self.case.moratorium
            assert now_held is not None and now_held.since == moratorium.since, \
                f"{name} ended or replaced the breathing space of {moratorium.since}"
        if accepted and name == "call_outcome":
            pending = [s for s in self.sent if s.channel is Channel.CALL and s.result is None]
            if pending:
                result = CALL_RESULTS[payload["outcome"]]
                dials = [datetime.fromisoformat(d) for d in payload.get("dialled_at", [])] or \
                    [self.now] * payload.get("dials", 1)
                # Each dial is a contact the caps count: the task's own attempt is the first.
                pending[-1].at, pending[-1].result = dials[0], result if len(dials) == 1 else "unanswered"
                for n, at in enumerate(dials[1:], start=2):
                    self.sent.append(Sent(at, Channel.CALL, None, f"dial:{n}",
                                          result if n == len(dials) else "unanswered"))
                self.sent.sort(key=lambda s: s.at)
                if self.case.uses(SECOND_PASS):
                    self.check_breaches_recorded(dials)
        self.drive()

    # -- the invariants, checked independently of check_contact --------------------------------
    def zones(self) -> list[ZoneInfo]:
        try:
            return [ZoneInfo(self.zone)]
        except (ZoneInfoNotFoundError, ValueError):
            return [ZoneInfo(z) for z in self.profile.zones]  # unknown: every zone of the jurisdiction

    def check_may_send(self, step: Act) -> None:
        case, profile, now, channel = self.case, self.profile, self.now, step.channel
        purpose = profile.purpose_of(step.template, channel)
        what = f"{channel.value} ({step.template or step.key}) at {now:%Y-%m-%d %H:%M} UTC"
        assert case.hold("dispute") is None, f"{what} while the debt is disputed"
        assert case.hold("hardship") is None, f"{what} during hardship"
        assert case.moratorium is None, f"{what} inside a breathing space"
        if case.uses(SECOND_PASS) and profile.validation_notice and purpose in ("legal_notice", "enforcement"):
            notice = [s.at for s in self.sent if s.template == "validation_notice"]
            # The period read independently: 30 days from receipt, received 5 business days (at least 5
            # calendar days) after sending: nothing of the kind before 35 days have passed.
            assert notice or case.validation_notice_at, f"{what} before the validation notice"
            sent_at = notice[0] if notice else case.validation_notice_at
            assert now >= sent_at + timedelta(days=35), f"{what} inside the validation period"
        if channel in NOT_A_CONTACT:
            return
        if case.paused:
            assert purpose == "courtesy" and all(h.kind == "promise" for h in case.holds), \
                f"{what}: a {purpose} contact while on hold ({case.pause_reason})"
        if channel in case.ceased:
            assert purpose in profile.after_cease, f"{what} after the borrower asked to cease it"
        if case.phone_invalid:
            assert channel not in (Channel.CALL, Channel.SMS), f"{what} to a number reported wrong"
        if channel is Channel.VISIT:
            assert not case.vulnerable or profile.visits_when_vulnerable, f"{what}: visit to a vulnerable borrower"
        if profile.validation_notice and purpose in ("collection", "courtesy"):
            assert any(s.template == "validation_notice" for s in self.sent), f"{what} before the validation notice"
        if profile.window is not None and channel in profile.windowed:
            for zone in self.zones():
                local = now.astimezone(zone).time()
                assert profile.window.start <= local < profile.window.end, \
                    f"{what} is {local:%H:%M} in {zone.key}, outside {profile.window.start}-{profile.window.end}"
        for cap in profile.caps:
            if cap.channel is channel:
                earlier = [s for s in self.sent if s.channel is channel and now - cap.per < s.at <= now
                           and (cap.counts == "attempts" or s.result in (None, "unanswered"))]
                assert len(earlier) < cap.max, f"{what}: cap of {cap.max} per {cap.per} already reached"
        for cooldown in profile.cooldowns:
            if cooldown.channel is channel:
                talks = [s.at for s in self.sent if s.channel is channel and s.result == "conversation"]
                assert not talks or now >= max(talks) + cooldown.lasts, f"{what}: within the cooldown"

    def check_may_leave(self, step: Advance) -> None:
        """A stage with a legal notice is left only once each went (or was blocked, with its reason) and
        its response period ran; litigation begins only after the validation period (US)."""
        case, now = self.case, self.now
        if not case.uses(SECOND_PASS):
            return
        config = self.strategy.stages[case.stage]
        for index, treatment in enumerate(config.treatments):
            if self.profile.purpose_of(treatment.template, treatment.channel) != "legal_notice":
                continue
            for offset in treatment.at:
                key = treatment_key(index, treatment, offset)
                fates = [(at, how) for at, how in self.settled.get(key, []) if at >= case.stage_entered_at]
                assert fates, f"left {case.stage.value} at {now} before {key} went or was blocked"
                sent = [at for at, how in fates if how == "sent"]
                if sent and config.dwell:
                    assert now >= sent[0] + config.dwell, f"left {case.stage.value} inside {key}'s response period"
        landing = step.to
        while landing in case.skip and landing.following() is not None:
            landing = landing.following()
        if landing is Stage.LITIGATION and self.profile.validation_notice:
            notice = [s.at for s in self.sent if s.template == "validation_notice"] or \
                ([case.validation_notice_at] if case.validation_notice_at else [])
            assert notice and now >= notice[0] + timedelta(days=35), f"litigation at {now} inside the validation period"

    def check_reaches_in_time(self, step: Act, reaches: datetime) -> None:
        """A message reaches the borrower inside the window it was allowed in (read independently)."""
        profile = self.profile
        if profile.window is None or step.channel not in profile.windowed:
            return
        for zone in self.zones():
            local = reaches.astimezone(zone)
            checked = (reaches - self.delay).astimezone(zone)
            assert local.date() == checked.date() and profile.window.start <= local.time() < profile.window.end, \
                f"{step.channel.value} checked at {checked:%H:%M} reached the borrower at {local:%H:%M} in {zone.key}"

    def check_breaches_recorded(self, dials: list[datetime]) -> None:
        """Every dial outside the contact hours is on record as a breach for the compliance officer."""
        profile = self.profile
        if profile.window is None:
            return
        outside = [d for d in dials if any(not profile.window.start <= d.astimezone(z).time() < profile.window.end
                                           for z in self.zones())]
        breaches = [e for e in self.case.events if e.kind == "compliance_breach" and e.at == self.now]
        assert len(breaches) >= len(outside), f"{len(outside)} dials outside the hours, {len(breaches)} breaches"

    def no_deferral_overdue(self) -> None:
        """Once a deferred contact's time has come it is sent, blocked or deferred again, unless
        a hold keeps the whole ladder still (then it is judged when the hold ends)."""
        for deferral in self.case.deferred:
            if deferral.until <= self.now:
                assert self.case.paused, f"{deferral.key} deferred to {deferral.until} is still waiting at {self.now}"

    def check_every_deferral_settled(self) -> None:
        """Each deferral ends sent, blocked, deferred again, or dropped with a reason (its stage,
        promise or plan ended, the case closed). It may go earlier than first thought (an answered
        call frees a cap); every send is checked against the rules by ``check_may_send`` anyway."""
        for when, deferral in self.deferrals:
            fates = [(at, how) for at, how in self.settled.get(deferral.key, []) if at >= when]
            later = [d for w, d in self.deferrals if d.key == deferral.key and w > when]
            waiting = any(d.key == deferral.key and d.until > self.now for d in self.case.deferred)
            dropped = any(at >= when for at in self.dropped.get(deferral.key, []))
            assert fates or later or waiting or dropped or self.case.outcome is not None, \
                f"{deferral.key} deferred at {when} to {deferral.until} ({deferral.reason}) was never settled"


def _world(jurisdiction: str, zone: str, start: datetime, strat: Strategy, dpd: int, vulnerable: bool, *,
           delay: timedelta = timedelta(0), features: tuple[str, ...] = (SECOND_PASS,)) -> World:
    currency = {"US": "USD", "CN": "CNY", "UK": "GBP"}[jurisdiction]
    loan = make_loan(jurisdiction=jurisdiction, currency=currency, days_past_due=dpd,
                     timezone=ZONES[jurisdiction][0])
    profile = profile_for(loan, strat, PROFILES)
    case = open_case(loan, strat, start, features=features)
    case.apply_compliance(profile, zone, vulnerable, start)
    return World(case=case, strategy=strat, profile=profile, zone=zone, now=start, delay=delay)


# -- random worlds ---------------------------------------------------------------------------------

_span = st.one_of(st.integers(1, 600).map(lambda m: timedelta(minutes=m)),
                  st.integers(1, 72).map(lambda h: timedelta(hours=h)),
                  st.integers(1, 20).map(lambda d: timedelta(days=d)))
_event = st.one_of(
    _span.map(lambda s: ("elapse", s)),
    # Call outcomes often, so conversations (cooldowns) and unanswered calls (caps) are common.
    *[st.sampled_from(list(CALL_RESULTS)).map(lambda o: ("call_outcome", {"outcome": o}))] * 4,
    st.just(("hardship", {"reason": "lost job"})),
    st.integers(1, 30).map(lambda d: ("hardship", {"reason": "illness", "until": ("days", d)})),
    st.just(("hardship", {"reason": "debt adviser", "breathing_space": True})),
    st.just(("hardship_resolved", {})),
    st.just(("dispute", {"reason": "not mine"})),
    st.just(("dispute_resolved", {"upheld": False})),
    st.lists(st.sampled_from(["sms", "email", "call", "visit", "letter"]), min_size=1, max_size=2, unique=True)
    .map(lambda c: ("cease_contact", {"channels": c})),
    st.sampled_from(["10.00", "50.00"]).map(lambda a: ("payment_received", {"amount": a, "reference": a})),
    st.integers(1, 10).map(lambda d: ("promise_to_pay", {"amount": "100.00", "due_date": ("days", d)})),
    st.just(("hold", {"reason": "review"})),
    st.just(("release", {})),
    st.sampled_from(["standard", "mental_health_crisis"]).map(lambda k: ("breathing_space", {"kind": k})),
    st.sampled_from(["cancelled_by_adviser", "crisis_treatment_ended", "debt_solution_entered"])
    .map(lambda r: ("breathing_space_ended", {"reason": r})),
    st.just(("escalate", {})),
    # An agent's report of several dials, some of them (minutes to hours back) outside the hours.
    st.tuples(st.sampled_from(list(CALL_RESULTS)), st.lists(st.integers(0, 14 * 60), min_size=1, max_size=4))
    .map(lambda t: ("call_outcome", {"outcome": t[0], "dials": len(t[1]),
                                     "dialled_at": ("minutes ago", sorted(t[1], reverse=True))})),
    st.booleans().map(lambda v: ("vulnerability", {"vulnerable": v})),
)


def _resolve(payload: dict, now: datetime) -> dict:
    def value(v):
        if isinstance(v, tuple) and v[0] == "minutes ago":
            return [(now - timedelta(minutes=m)).isoformat() for m in v[1]]
        return (now.date() + timedelta(days=v[1])).isoformat() if isinstance(v, tuple) else v
    return {k: value(v) for k, v in payload.items()}


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, list]:
    jurisdiction = draw(st.sampled_from(sorted(ZONES)))
    zone = draw(st.sampled_from([*ZONES[jurisdiction], INVALID_ZONE]))
    start = datetime(2026, 1, 5, tzinfo=UTC) + draw(st.integers(0, 364 * 24 * 4).map(lambda q: timedelta(minutes=15 * q)))
    strat = draw(st.sampled_from([DEFAULT, STRESS]))
    dpd = draw(st.sampled_from([1, 20, 35, 35, 35, 65, 95]))  # mostly calls: where caps bind
    delay = draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(minutes=10), timedelta(minutes=50)]))
    world = _world(jurisdiction, zone, start, strat, dpd, draw(st.booleans()), delay=delay)
    return world, draw(st.lists(_event, min_size=1, max_size=30))


def _run(world: World, events: list) -> None:
    world.drive()
    for name, payload in events:
        if name == "elapse":
            world.elapse(payload)
        else:
            world.command(name, _resolve(payload, world.now))
        if world.case.outcome is not None:
            break
    # Then lift what holds the case, and let it run to the end of the ladder: every deferral settles.
    for name, payload in (("dispute_resolved", {"upheld": False}), ("hardship_resolved", {}), ("release", {}),
                          ("breathing_space_ended", {"reason": "cancelled_by_adviser"})):
        if world.case.outcome is None:
            world.command(name, payload)
    for _ in range(12):
        if world.case.outcome is not None:
            break
        world.elapse(timedelta(days=30))
    world.check_every_deferral_settled()
    if world.case.outcome is None:
        assert world.case.deferred == [], f"left waiting: {world.case.deferred}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_no_contact_breaks_a_rule_and_every_deferral_settles(world_and_events):
    world, events = world_and_events
    _run(world, events)


# -- examples that show the properties are not vacuous ----------------------------------------------

def test_a_night_time_start_defers_then_sends_at_eight_local():
    world = _world("US", "America/New_York", datetime(2026, 3, 2, 4, 0, tzinfo=UTC), DEFAULT, 1, False)
    world.elapse(timedelta(days=2))
    first = world.sent[0]
    assert first.template == "validation_notice"  # letters are not windowed: the notice goes first
    texts = [s for s in world.sent if s.channel is Channel.SMS]
    assert texts and texts[0].at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert any(d.key == texts[0].key and d.until == texts[0].at for _, d in world.deferrals)
    world.check_every_deferral_settled()


def test_the_stress_ladder_hits_the_caps_and_they_hold():
    world = _world("US", "America/Chicago", datetime(2026, 6, 1, 14, 0, tzinfo=UTC), STRESS, 35, False)
    world.elapse(timedelta(days=6))
    calls = [s for s in world.sent if s.channel is Channel.CALL]
    assert len(calls) == 7, "the seventh call fills the 7-in-7-days cap; the rest wait"
    assert calls[-1].at - calls[0].at < timedelta(days=1), "calls every two hours: the cap fills on day one"
    assert any("7 call attempts in 7 days" in d.reason for _, d in world.deferrals)
    world.check_every_deferral_settled()


def test_a_conversation_starts_the_us_cooldown():
    world = _world("US", "America/New_York", datetime(2026, 6, 1, 14, 0, tzinfo=UTC), STRESS, 35, False)
    world.drive()
    world.command("call_outcome", {"outcome": "reached"})
    talked = world.sent[-1].at
    world.elapse(timedelta(days=9))
    later = [s.at for s in world.sent if s.channel is Channel.CALL and s.at > talked]
    assert later and min(later) >= talked + timedelta(days=7)


def test_cn_sends_at_most_six_unanswered_calls_a_day():
    world = _world("CN", "Asia/Shanghai", datetime(2026, 6, 1, 0, 0, tzinfo=UTC), STRESS, 35, False)
    world.drive()
    for _ in range(12):
        world.command("call_outcome", {"outcome": "no_answer"})
        world.elapse(timedelta(hours=2))
    first_day = [s for s in world.sent if s.channel is Channel.CALL and s.at < datetime(2026, 6, 2, tzinfo=UTC)]
    assert len(first_day) == 6
    assert any("6 call unanswered attempts in 1 day" in d.reason for _, d in world.deferrals)


def test_an_invalid_zone_reads_every_us_zone_strictly():
    world = _world("US", INVALID_ZONE, datetime(2026, 6, 1, 12, 0, tzinfo=UTC), STRESS, 1, False)
    world.elapse(timedelta(days=3))
    texts = [s.at for s in world.sent if s.channel is Channel.SMS]
    hours = {t.astimezone(ZoneInfo(z)).hour for t in texts for z in PROFILES["US"].zones}
    assert len(texts) >= 3 and min(hours) >= 8 and max(hours) < 21
    # Open everywhere only from 08:00 in Honolulu (18:00 UTC) to 21:00 in New York (01:00 UTC).
    assert all(t.hour >= 18 or t.hour < 1 for t in texts)


def test_a_deferral_dropped_by_a_cease_request_is_recorded_not_sent():
    world = _world("UK", "Europe/London", datetime(2026, 6, 1, 22, 0, tzinfo=UTC), DEFAULT, 1, False)
    world.drive()
    assert [d.channel for d in world.case.deferred] == [Channel.SMS]
    world.command("cease_contact", {"channels": ["sms"]})
    world.elapse(timedelta(days=1))
    assert not any(s.channel is Channel.SMS for s in world.sent)
    # Blocked at once, with its reason, rather than kept waiting for the morning.
    assert world.settled[world.deferrals[0][1].key] == [(datetime(2026, 6, 1, 22, 0, tzinfo=UTC), "blocked")]
    assert world.blocked[-1][2] == "borrower asked to cease contact on this channel"


def test_a_deferred_promise_reminder_is_dropped_when_the_promise_is_kept_first():
    world = _world("UK", "Europe/London", datetime(2026, 6, 1, 14, 0, tzinfo=UTC), DEFAULT, 1, False)
    world.drive()
    world.command("promise_to_pay", {"amount": "100.00", "due_date": "2026-06-05"})
    world.elapse(timedelta(days=2, hours=10, minutes=30))  # the reminder falls due at 01:00 in London
    deferred = world.case.deferral("promise_reminder")
    assert deferred is not None and deferred.until == datetime(2026, 6, 4, 7, 0, tzinfo=UTC)
    world.command("payment_received", {"amount": "100.00", "reference": "p1"})
    assert world.case.promise.state == "kept" and world.case.deferral("promise_reminder") is None
    assert world.case.events[-1].reason.startswith("the promise ended while it was deferred")
    world.elapse(timedelta(days=2))
    assert not any(s.template == "promise_reminder" for s in world.sent)
    world.check_every_deferral_settled()


# -- the second pass's rules, each shown to be what keeps the properties true ---------------------------
# Each example below passes; with the rule it exercises broken back to how the engine was before (or
# to a plausible bug), the same example fails the properties above.

def _breathing_space_then_hardship_commands(world: World) -> None:
    world.drive()
    world.command("breathing_space", {"kind": "standard"})
    world.command("hardship", {"reason": "lost job"})
    world.command("hardship_resolved", {})
    world.elapse(timedelta(days=10))


def _escalated_at_the_legal_letter(world: World) -> None:
    world.drive()
    world.command("escalate", {})
    world.elapse(timedelta(days=40))


def _dialled_three_times_then_left(world: World) -> None:
    world.drive()
    dials = [world.now - timedelta(minutes=m) for m in (3, 2, 1)]
    world.command("call_outcome", {"outcome": "no_answer", "dials": 3, "dialled_at": [d.isoformat() for d in dials]})
    world.elapse(timedelta(hours=20))


def _late_dial(world: World) -> None:
    """A call task made at 20:00 in London; the agent reports a second dial at 21:30."""
    world.drive()
    start = world.now
    world.elapse(timedelta(hours=2))
    world.command("call_outcome", {"outcome": "no_answer", "dials": 2, "dialled_at": [
        (start + timedelta(minutes=5)).isoformat(), (start + timedelta(minutes=90)).isoformat()]})


def _release_moratorium_with_hardship(original):
    def broken(self, kind, now):
        original(self, kind, now)
        if kind == "hardship":  # a breathing space held as hardship, as before the second pass
            original(self, "moratorium", now)
    return broken


def _uk(dpd=1, start=datetime(2026, 6, 1, 8, 0, tzinfo=UTC), strat=DEFAULT, **kw) -> World:
    return _world("UK", "Europe/London", start, strat, dpd, False, **kw)


def _us(dpd=1, start=datetime(2026, 6, 1, 14, 0, tzinfo=UTC), strat=DEFAULT, **kw) -> World:
    return _world("US", "America/New_York", start, strat, dpd, False, **kw)


@pytest.mark.parametrize("rule", ["moratorium", "required_treatment", "validation_period", "not_after", "dials",
                                  "breaches"])
def test_each_second_pass_rule_is_what_keeps_the_properties_true(rule, monkeypatch):
    import domain.case
    import domain.commands
    import domain.compliance
    import domain.decide
    import tests.test_compliance_properties as here

    scenarios = {
        "moratorium": (lambda: _uk(), _breathing_space_then_hardship_commands),
        "required_treatment": (lambda: _uk(dpd=95), _escalated_at_the_legal_letter),
        "validation_period": (lambda: _us(dpd=95), lambda w: w.elapse(timedelta(days=60))),
        # Checked at 20:30 in New York, reaching the borrower 50 minutes later: past 21:00.
        "not_after": (lambda: _us(start=datetime(2026, 6, 2, 0, 30, tzinfo=UTC), delay=timedelta(minutes=50)),
                      lambda w: w.elapse(timedelta(days=1))),
        "dials": (lambda: _uk(dpd=35, strat=STRESS), _dialled_three_times_then_left),
        "breaches": (lambda: _uk(dpd=35, start=datetime(2026, 6, 1, 19, 0, tzinfo=UTC)), _late_dial),
    }
    make, play = scenarios[rule]
    play(make())  # the rule as it is: the properties hold
    if rule == "moratorium":
        monkeypatch.setattr(domain.case.CaseState, "release_hold",
                            _release_moratorium_with_hardship(domain.case.CaseState.release_hold))
    elif rule == "required_treatment":
        monkeypatch.setattr(domain.decide, "still_owed", lambda *a: None)
        monkeypatch.setattr(domain.commands, "still_owed", lambda *a: None)
    elif rule == "validation_period":
        monkeypatch.setattr(domain.compliance, "_in_validation_period", lambda *a: None)
    elif rule == "not_after":
        monkeypatch.setattr(here, "contact_deadline", lambda case, channel, now: now + timedelta(days=1))
    elif rule == "dials":
        original = domain.case.CaseState.call_answered
        monkeypatch.setattr(domain.case.CaseState, "call_answered", lambda self, outcome, dials=None: original(
            self, outcome))
    elif rule == "breaches":
        monkeypatch.setattr(domain.commands, "dial_breaches", lambda *a: [])
    with pytest.raises(AssertionError, match=BROKEN[rule]):
        play(make())


# What the properties say when each rule is broken.
BROKEN = {
    "moratorium": "ended or replaced the breathing space",
    "required_treatment": "left legal_letter .*0:letter:0",
    "validation_period": "inside the validation period",
    "not_after": "reached the borrower at 21:",
    "dials": "cap of 3 per 1 day, 0:00:00 already reached",
    "breaches": "1 dials outside the hours, 0 breaches",
}
