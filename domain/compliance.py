"""Compliance guardrails: may this contact happen now? ``check_contact`` answers, purely.

The rules are data: a jurisdiction profile per loan (``compliance/profiles.toml``),
which a strategy may tighten but never loosen. Every contact is checked at send
time and the verdict recorded: ``allow``, ``defer_until(t)`` (a durable timer waits
for it) or ``block(reason)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.durations import Duration
from domain.stages import Channel

if TYPE_CHECKING:
    from domain.case import CaseState

# The second compliance pass (issue 14): the statutory moratorium as its own hold, legally required
# treatments that cannot be skipped, the validation notice's other routes, contacts checked when they
# reach the borrower, free-text reasons kept out of the case. A case runs with it when its workflow
# says so (``CaseState.features``); one started before replays as it ran.
SECOND_PASS = "compliance-second-pass"

# What a message is for. A "collection" contact asks for payment; a "courtesy" one reminds of the
# borrower's own promise or plan; a "validation" notice tells the borrower about the debt and their
# rights; a "legal_notice" says a remedy is (or may be) invoked; "location" asks a third party only
# how to reach the borrower; "enforcement" is work that moves toward court (the legal hand-off).
Purpose = Literal["collection", "courtesy", "validation", "legal_notice", "location", "enforcement"]
Recipient = Literal["borrower", "guarantor", "third_party"]
CallResult = Literal["pending", "conversation", "unanswered"]
# Call outcomes (call_outcome) by what they mean for caps and cooldowns.
CALL_RESULTS: dict[str, CallResult] = {
    "reached": "conversation", "refused": "conversation",
    "no_answer": "unanswered", "left_message": "unanswered", "wrong_number": "unanswered",
}
# Work the engine does that is not a message to a person.
NOT_A_CONTACT = (Channel.LEGAL_HANDOFF,)
# Far enough back for every rolling window a profile uses; older attempts are forgotten.
HISTORY_KEPT = timedelta(days=31)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Model):
    """Contact hours in the borrower's local time: from ``start`` up to (not including) ``end``."""

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    def narrowed(self, other: "Window | None") -> "Window":
        if other is None:
            return self
        start, end = max(self.start, other.start), min(self.end, other.end)
        if end <= start:
            raise ValueError(f"contact windows {self.start}-{self.end} and {other.start}-{other.end} do not overlap")
        return Window(start=start, end=end)


class Cap(_Model):
    """At most ``max`` ``counts`` on ``channel`` in any rolling ``per``."""

    channel: Channel
    max: int = Field(ge=1)
    per: Duration
    counts: Literal["attempts", "unanswered"] = "attempts"
    cite: str = ""


class Cooldown(_Model):
    """No contact on ``channel`` for ``lasts`` after a conversation on it."""

    channel: Channel
    lasts: Duration
    cite: str = ""


class Profile(_Model):
    """The rules for one jurisdiction (or the demo). ``name`` says which, ``tightened_by`` by what."""

    name: str
    label: str = ""
    production: bool = True
    # Hours for contacts on ``windowed``; None means any hour (only the demo profile).
    window: Window | None
    windowed: list[Channel] = [Channel.CALL, Channel.SMS, Channel.EMAIL, Channel.VISIT]
    # The zones a borrower of this jurisdiction may live in: an unknown or invalid zone must fit all.
    zones: list[str] = []
    caps: list[Cap] = []
    cooldowns: list[Cooldown] = []
    opt_out_required: list[Channel] = []
    # Contacts still allowed on a channel the borrower asked to stop (US 1006.6(c): notices only).
    after_cease: list[Purpose] = []
    validation_notice: bool = False
    # How the validation notice may go besides by post: by e-mail with the borrower's E-SIGN consent
    # (12 CFR 1006.42), or never.
    validation_by_email: Literal["never", "esign_consent"] = "never"
    # The validation period: days to dispute once the notice is received (1006.34(b)(5)), received
    # counting from this many business days after it was sent (1006.34(b)(5) safe harbour). No legal
    # notice or enforcement inside it: a demand must not overshadow the right to dispute (1006.38).
    validation_period_days: int = 30
    validation_receipt_business_days: int = 5
    breathing_space_days: int | None = None
    # A mental-health crisis breathing space lasts while the crisis treatment lasts and this long after.
    crisis_breathing_space_extra_days: int = 30
    field_visit_min_staff: int = 1
    visits_when_vulnerable: bool = False
    guarantor_contact: bool = False
    # Third parties may be asked where the borrower is, never told about the debt; only when the
    # borrower cannot be reached if this says so.
    third_party_location: Literal["never", "any_time", "when_unreachable"] = "never"
    records_years: int | None = None
    # Which template is for what; a template not named is a collection contact.
    purposes: dict[str, Purpose] = {}
    tightened_by: str | None = None

    @field_validator("window", mode="before")
    @classmethod
    def _no_window(cls, value: object) -> object:
        return None if value == "none" else value  # TOML has no null: `window = "none"`

    def purpose_of(self, template: str | None, channel: Channel) -> Purpose:
        if channel is Channel.LEGAL_HANDOFF:
            return "enforcement"
        return self.purposes.get(template or "", "collection")


class Tightening(_Model):
    """A strategy's ``[compliance]``: stricter hours, caps and cooldowns on top of the loan's profile.

    ``profile = "demo"`` is the one exception: it runs every loan under the demo profile, which has
    no quiet hours and no caps, and is not for production.
    """

    profile: Literal["demo"] | None = None
    window: Window | None = None
    caps: list[Cap] = []
    cooldowns: list[Cooldown] = []


def resolve(profiles: dict[str, Profile], jurisdiction: str, tightening: Tightening | None,
            strategy_name: str) -> Profile:
    """The loan's profile, tightened by its strategy (never loosened)."""
    if tightening is not None and tightening.profile == "demo":
        return profiles["demo"].model_copy(update={"tightened_by": f"strategy {strategy_name} runs the demo profile"})
    profile = profiles[jurisdiction]
    if tightening is None:
        return profile
    window = tightening.window if profile.window is None else profile.window.narrowed(tightening.window)
    return profile.model_copy(update={
        "window": window,
        "caps": [*profile.caps, *tightening.caps],  # both apply: a cap can only add strictness
        "cooldowns": [*profile.cooldowns, *tightening.cooldowns],
        "tightened_by": f"strategy {strategy_name}",
    })


class ContactAttempt(BaseModel):
    """One contact the case made, as the caps and cooldowns count it."""

    at: datetime
    channel: Channel
    template: str | None = None
    result: CallResult | None = None  # calls only


@dataclass(frozen=True)
class Verdict:
    kind: Literal["allow", "defer", "block"]
    until: datetime | None = None
    reason: str = ""


ALLOW = Verdict("allow")


def defer_until(at: datetime, reason: str) -> Verdict:
    return Verdict("defer", at, reason)


def block(reason: str) -> Verdict:
    return Verdict("block", None, reason)


def check_contact(case: CaseState, history: Sequence[ContactAttempt], channel: Channel, now: datetime, *,
                  template: str | None = None, recipient: Recipient = "borrower",
                  staff: int | None = None) -> Verdict:
    """May the case contact someone on ``channel`` at ``now``? Pure: everything it needs is passed in."""
    profile = case.compliance
    if profile is None:
        return ALLOW  # a case from before compliance checks, replaying its old history
    purpose = profile.purpose_of(template, channel)
    verdict = _holds_and_requests(case, profile, channel, purpose, recipient, staff)
    if verdict is None:
        verdict = _in_validation_period(case, purpose, now)
    if verdict is not None or channel in NOT_A_CONTACT:
        return verdict or ALLOW
    return _timing(case, profile, history, channel, now)


def _holds_and_requests(case: CaseState, profile: Profile, channel: Channel, purpose: Purpose,
                        recipient: Recipient, staff: int | None) -> Verdict | None:
    """Rules that say no, whatever the time: holds, the borrower's requests, who may be contacted."""
    hardship, moratorium = case.hold("hardship"), case.moratorium
    if case.hold("dispute") is not None:
        return block("the debt is disputed: collection stops until it is verified")
    if moratorium is not None:
        return block(f"breathing space until {moratorium.until:%Y-%m-%d}: no contact demanding payment, "
                     "no enforcement" if moratorium.until else "breathing space: no contact demanding payment")
    if hardship is not None:
        return block("hardship: no payment demands while the borrower is in hardship")
    if channel in NOT_A_CONTACT:
        return None
    if channel in case.ceased and purpose not in profile.after_cease:
        return block("borrower asked to cease contact on this channel")
    if case.phone_invalid and channel in (Channel.CALL, Channel.SMS):
        return block("phone number reported wrong")
    if channel is Channel.VISIT:
        if case.vulnerable and not profile.visits_when_vulnerable:
            return block("the borrower is flagged vulnerable: no field visits")
        if staff is not None and staff < profile.field_visit_min_staff:
            return block(f"a field visit needs at least {profile.field_visit_min_staff} staff; "
                         f"the plan sends {staff}")
    verdict = _recipient(case, profile, purpose, recipient)
    if verdict is not None:
        return verdict
    if (profile.validation_notice and purpose in ("collection", "courtesy")
            and not case.validation_notice_sent):
        return block("the validation notice has not been sent yet")
    if (profile.validation_notice and purpose in ("legal_notice", "enforcement") and case.uses(SECOND_PASS)
            and not case.validation_notice_sent):
        return block("the validation notice has not been delivered: no legal notice or enforcement before it")
    return None


def validation_period_ends(case: CaseState) -> datetime | None:
    """When the borrower's time to dispute runs out: the notice's assumed receipt (business days after
    it was sent) plus the period. None: no notice is required, or it has not gone yet."""
    profile = case.compliance
    if profile is None or not profile.validation_notice or case.validation_notice_at is None:
        return None
    received, days = case.validation_notice_at, profile.validation_receipt_business_days
    while days > 0:
        received += timedelta(days=1)
        if received.weekday() < 5:
            days -= 1
    # A public holiday may fall in the receipt days: one day more reads the rule conservatively.
    return _end_of_day(received + timedelta(days=1 + profile.validation_period_days))


def _end_of_day(at: datetime) -> datetime:
    return datetime.combine(at.date() + timedelta(days=1), time.min, tzinfo=timezone.utc)


def _in_validation_period(case: CaseState, purpose: Purpose, now: datetime) -> Verdict | None:
    """A legal notice or enforcement inside the validation period would overshadow the right to
    dispute (12 CFR 1006.38): it waits for the period's end."""
    if purpose not in ("legal_notice", "enforcement") or not case.uses(SECOND_PASS):
        return None
    ends = validation_period_ends(case)
    if ends is None or now >= ends:
        return None
    return defer_until(ends, f"validation period until {ends:%Y-%m-%d}: no legal notice or enforcement may "
                             "overshadow the borrower's right to dispute (12 CFR 1006.38)")


def send_stopped(case: CaseState, channel: Channel, template: str | None) -> str | None:
    """Why a message on its way (its provider not yet reached) must stop now: a hold, a dispute, a
    moratorium or the borrower's cease request arrived after it was checked. None: it may go on."""
    profile = case.compliance
    if profile is None:
        return None
    if case.hold("operator") is not None:
        return "the case was put on hold"
    verdict = _holds_and_requests(case, profile, channel, profile.purpose_of(template, channel), "borrower", None)
    return verdict.reason if verdict is not None and verdict.kind == "block" else None


# How late a message may reach the borrower after its check, even inside its window: a text or e-mail
# queued while the workers were down is checked again rather than sent hours late.
FRESHNESS = timedelta(hours=1)


def contact_deadline(case: CaseState, channel: Channel, now: datetime) -> datetime | None:
    """The last instant a contact allowed at ``now`` may reach the borrower: the end of the contact
    window it was allowed in, and no more than :data:`FRESHNESS` after ``now``. None: no window
    applies to the channel (a letter) or the case (from before the checks)."""
    profile = case.compliance
    if profile is None or channel not in profile.windowed or channel in NOT_A_CONTACT:
        return None
    closes = window_closes(profile, case.timezone, now)
    return min(closes, now + FRESHNESS) if closes is not None else now + FRESHNESS


def call_window(case: CaseState, now: datetime) -> tuple[datetime | None, datetime | None]:
    """When an agent may dial a call task made at ``now``: from now to the end of the borrower's
    contact hours that day (no end where the profile has no hours). ``(None, None)`` on a case from
    before the second pass or the checks."""
    if case.compliance is None or not case.uses(SECOND_PASS):
        return None, None
    return now, window_closes(case.compliance, case.timezone, now)


def window_closes(profile: Profile, zone_name: str | None, at: datetime) -> datetime | None:
    """When the contact window open at ``at`` closes (in every zone read when the borrower's is
    unknown). None: the profile has no window, or it is not open at ``at``."""
    window = profile.window
    if window is None:
        return None
    zones = _zones(profile, zone_name)
    if not zones or not all(_inside(window, at, z) for z in zones):
        return None
    return min(datetime.combine(at.astimezone(z).date(), window.end, tzinfo=z).astimezone(timezone.utc)
               for z in zones)


def dial_breaches(case: CaseState, dials: Sequence[datetime], callable_from: datetime | None,
                  callable_until: datetime | None) -> list[str]:
    """Which of an agent's dials broke a rule: outside the task's callable window or the contact
    hours, above a call cap or inside a cooldown, counted with the dials before it (the caps and
    cooldowns read as for any call, ``_caps``). For the compliance officer."""
    profile = case.compliance
    if profile is None:
        return []
    found = []
    history = [a for a in case.contacts if a.channel is Channel.CALL]
    pending = [a for a in history if a.result == "pending"]
    if pending:
        history.remove(pending[-1])  # the task's own attempt: its first dial, counted below
    for n, at in enumerate(dials, start=1):
        if (callable_from is not None and at < callable_from) or (callable_until is not None and at >= callable_until):
            found.append(f"dial {n} at {at:%Y-%m-%d %H:%M} UTC outside the task's callable window")
        elif Channel.CALL in profile.windowed and profile.window is not None and window_closes(
                profile, case.timezone, at) is None:
            found.append(f"dial {n} at {at:%Y-%m-%d %H:%M} UTC outside contact hours")
        for _, rule in _caps(profile, history, Channel.CALL, at):
            found.append(f"dial {n} at {at:%Y-%m-%d %H:%M} UTC: {rule}")
        history.append(ContactAttempt(at=at, channel=Channel.CALL, result="unanswered"))
    return found


def _recipient(case: CaseState, profile: Profile, purpose: Purpose, recipient: Recipient) -> Verdict | None:
    if recipient == "borrower":
        return None
    if recipient == "guarantor":
        return None if profile.guarantor_contact else block(
            f"{profile.name}: a guarantor is a third party here; the debt is not discussed with them")
    if purpose != "location":
        return block("a third party is never told about the debt")
    if profile.third_party_location == "never":
        return block(f"{profile.name}: no contact with third parties")
    if profile.third_party_location == "when_unreachable" and not case.phone_invalid:
        return block(f"{profile.name}: third parties only when the borrower cannot be reached")
    return None


def _timing(case: CaseState, profile: Profile, history: Sequence[ContactAttempt], channel: Channel,
            now: datetime) -> Verdict:
    """Caps, cooldowns and the contact window, which say "not yet" rather than "no"."""
    at, reasons = now, []
    for _ in range(8):  # each rule can only push the time later; a few rounds settle it
        moved = False
        for rule_at, reason in _caps(profile, history, channel, at):
            if rule_at > at:
                at, moved = rule_at, True
                reasons.append(reason)
        if channel in profile.windowed and profile.window is not None:
            opens, reason = _window(profile, case.timezone, at)
            if opens is None:
                return block(reason)
            if opens > at:
                at, moved = opens, True
                reasons.append(reason)
        if not moved:
            break
    if at == now:
        return ALLOW
    return defer_until(at, "; ".join(dict.fromkeys(reasons)))


def _caps(profile: Profile, history: Sequence[ContactAttempt], channel: Channel,
          at: datetime) -> list[tuple[datetime, str]]:
    found = []
    for cap in profile.caps:
        if cap.channel is not channel:
            continue
        counted = sorted(a.at for a in history if a.channel is channel and at - cap.per < a.at <= at
                         and (cap.counts == "attempts" or a.result in ("unanswered", "pending")))
        if len(counted) >= cap.max:
            # The moment enough of them have left the rolling window.
            frees = counted[len(counted) - cap.max] + cap.per
            what = "attempts" if cap.counts == "attempts" else "unanswered attempts"
            found.append((frees, f"{cap.max} {channel.value} {what} in {_span(cap.per)} reached"
                                 + (f" ({cap.cite})" if cap.cite else "")))
    for cooldown in profile.cooldowns:
        if cooldown.channel is not channel:
            continue
        talks = [a.at for a in history if a.channel is channel and a.result == "conversation" and a.at <= at]
        if talks and max(talks) + cooldown.lasts > at:
            found.append((max(talks) + cooldown.lasts, f"{_span(cooldown.lasts)} after a conversation"
                                                       + (f" ({cooldown.cite})" if cooldown.cite else "")))
    return found


def next_open(profile: Profile | None, zone_name: str | None, at: datetime) -> datetime:
    """The first moment from ``at`` inside the profile's contact hours (``at`` if there are none)."""
    if profile is None or profile.window is None:
        return at
    opens, _ = _window(profile, zone_name, at)
    return opens or at


def _window(profile: Profile, zone_name: str | None, at: datetime) -> tuple[datetime | None, str]:
    """When the window is next open (``at`` itself if it is), in the borrower's zone or, if that
    is unknown or invalid, in every zone of the jurisdiction at once."""
    window = profile.window
    assert window is not None
    zone, zones = _zone(zone_name), _zones(profile, zone_name)
    hours = f"{window.start:%H:%M}-{window.end:%H:%M}"
    if not zones:
        return None, f"time zone {zone_name!r} unknown and {profile.name} names no zones to read strictly"
    where = zone_name if zone is not None else f"every {profile.name} time zone (borrower's zone unknown)"
    candidates = [at] + sorted(
        datetime.combine(day, window.start, tzinfo=z).astimezone(timezone.utc)
        for z in zones for day in _days_around(at, z))
    for candidate in candidates:
        if candidate >= at and all(_inside(window, candidate, z) for z in zones):
            return candidate, f"outside contact hours {hours} in {where}"
    return None, f"no time is inside contact hours {hours} in {where}"


def _zones(profile: Profile, zone_name: str | None) -> list[ZoneInfo]:
    """The borrower's zone, or (unknown or invalid) every zone of the jurisdiction, read strictly."""
    zone = _zone(zone_name)
    return [zone] if zone is not None else [z for z in map(_zone, profile.zones) if z is not None]


def _days_around(at: datetime, zone: ZoneInfo) -> list[date]:
    today = at.astimezone(zone).date()
    return [today + timedelta(days=n) for n in range(-1, 3)]


def _inside(window: Window, at: datetime, zone: ZoneInfo) -> bool:
    local = at.astimezone(zone).time()
    return window.start <= local < window.end


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _span(duration: timedelta) -> str:
    days = duration.days
    if duration == timedelta(days=days):
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{int(duration.total_seconds() // 3600)} hours"


def remember(history: list[ContactAttempt], attempt: ContactAttempt) -> list[ContactAttempt]:
    """Add an attempt, forgetting those older than any window looks back."""
    cutoff = attempt.at - HISTORY_KEPT
    return [a for a in history if a.at > cutoff] + [attempt]
