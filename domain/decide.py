"""What a case does next: ``decide(case, strategy, now) -> Step``.

The workflow executes the step and asks again. Waiting steps carry the exact
time of the next thing due, so a case sleeps on one durable timer sized to it
instead of waking every day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from domain.case import NOTICE_BLOCKED, SECOND_PASS, CaseState, Deferral
from domain.compliance import check_contact, validation_period_ends
from domain.stages import Channel, Stage
from domain.strategy import StageConfig, Strategy, Treatment

MISSED_CALL_OUTCOMES = ("no_answer", "left_message")


@dataclass(frozen=True)
class Finish:
    """The case has an outcome; the workflow completes."""


@dataclass(frozen=True)
class Advance:
    to: Stage
    reason: str


@dataclass(frozen=True)
class Act:
    """Carry out one treatment: a contact, a visit, a letter or the legal hand-off."""

    channel: Channel
    template: str | None
    key: str  # which treatment of the stage this is, so it runs once


@dataclass(frozen=True)
class Block:
    """A treatment that is due but may not happen; recorded with its reason, never silently dropped."""

    channel: Channel
    key: str
    reason: str


@dataclass(frozen=True)
class Defer:
    """A treatment that is due but may not happen yet (quiet hours, a cap, a cooldown): recorded,
    and tried again at ``until`` on a durable timer."""

    channel: Channel
    template: str | None
    key: str
    until: datetime
    reason: str


@dataclass(frozen=True)
class Wait:
    until: datetime | None  # None: nothing is scheduled; only a signal or update wakes the case
    reason: str


Step = Finish | Advance | Act | Block | Defer | Wait
Contact = Act | Block | Defer
VALIDATION_NOTICE = "validation_notice"


def _blocked(case: CaseState, channel: Channel) -> str | None:
    """The checks of a case from before compliance profiles (it replays its old history)."""
    if channel in case.ceased:
        return "borrower asked to cease contact on this channel"
    if case.phone_invalid and channel in (Channel.CALL, Channel.SMS):
        return "phone number reported wrong"
    return None


def decide(case: CaseState, strategy: Strategy, now: datetime) -> Step:
    if case.outcome is not None:
        return Finish()
    following = case.stage.following()
    config = strategy.stages[case.stage]
    wakes: list[tuple[datetime, str]] = [(h.until, f"{h.kind} hold ends") for h in case.holds
                                         if h.until and not (h.kind == "promise" and case.promise_suspended)]

    promise = case.promise
    if promise is not None and promise.state == "pending":
        policy = strategy.promise
        # A courtesy reminder, not a demand: never while a dispute, hardship or operator hold applies.
        only_promise_hold = all(h.kind == "promise" for h in case.holds)
        remind_at = (_midnight(promise.due_date) - policy.reminder_before
                     if policy.reminder_before is not None else None)
        # No reminder for a promise made after its reminder time (due today or tomorrow).
        if (remind_at is not None and remind_at > promise.made_at and policy.reminder_template
                and not promise.reminded and only_promise_hold):
            if now >= remind_at:
                step = _contact(case, Channel.SMS, policy.reminder_template, "promise_reminder", now, wakes)
                if step is not None:
                    return step
            else:
                wakes.append((remind_at, "promise reminder"))
        if not case.promise_suspended:  # on hold it is judged when the hold ends, not at its deadline
            wakes.append((promise.deadline, "promise due"))

    arrangement = case.arrangement
    if arrangement is not None and arrangement.state == "active":
        step = _arrangement_step(case, strategy, now, wakes)
        if step is not None:
            return step

    notice = _validation_notice(case, now, wakes)
    if notice is not None:
        return notice

    if not case.paused:
        owed = still_owed(case, strategy, now) if case.uses(SECOND_PASS) else None
        if owed is not None and owed[0] is not None:
            wakes.append((owed[0], f"{owed[1]} over"))
        # Escalation waits out any hold: nothing moves a disputed or paused case on; nor leaves a
        # stage before what the law requires of it is done.
        if case.exit_requested and following is not None and owed is None:
            return Advance(following, case.exit_requested)
        clock = case.stage_clock(now)
        for task in case.calls:
            if task.outcome in MISSED_CALL_OUTCOMES and not task.followed_up and config.missed_call_sms:
                step = _contact(case, Channel.SMS, config.missed_call_sms, f"missed_call:{task.task_id}", now, wakes)
                if step is not None:
                    return step
        for index, treatment in enumerate(config.treatments):
            staff = config.visit.staff if config.visit is not None else None
            for offset in treatment.at:
                key = treatment_key(index, treatment, offset)
                if key in case.done:
                    continue
                if clock >= offset:
                    step = _contact(case, treatment.channel, treatment.template, key, now, wakes, staff=staff)
                    if step is not None:
                        return step
                else:
                    wakes.append((now + (offset - clock), f"{treatment.channel.value} due"))
        end = _stage_end(case, config, now, clock) if following is not None else None
        if end is not None:
            ends_at, why = end
            if now >= ends_at and owed is None:
                return Advance(following, why)
            if now < ends_at:
                wakes.append((ends_at, f"{case.stage.value} ends"))

    if case.amount_past_due > 0:
        dpd = case.days_past_due(now)
        bucket = next((b for b in strategy.dpd_buckets if b > dpd), None)
        if bucket is not None:
            at = _dpd_reached(case, bucket)
            if all(when != at for when, _ in wakes):  # a stage ending then says more than the bucket
                wakes.append((at, f"DPD reaches {bucket}"))

    if not wakes:
        return Wait(None, "waiting for an operator" if not case.paused else f"paused ({case.pause_reason})")
    until, reason = min(wakes)
    return Wait(until, reason)


def treatment_key(index: int, treatment: Treatment, offset: timedelta) -> str:
    """Which treatment of its stage a contact is (``index:channel:seconds``), so it runs once."""
    return f"{index}:{treatment.channel.value}:{int(offset.total_seconds())}"


def _arrangement_step(case: CaseState, strategy: Strategy, now: datetime,
                      wakes: list[tuple[datetime, str]]) -> Contact | None:
    """A courtesy reminder before each instalment; and a wake-up when the next one is judged."""
    arrangement, policy = case.arrangement, strategy.arrangements
    assert arrangement is not None
    if case.commitments_suspended:
        return None  # nothing is asked of the borrower, nor judged, during hardship, dispute or hold
    pending = [(index, i) for index, i in enumerate(arrangement.schedule) if i.state == "pending"]
    if pending:
        wakes.append((arrangement.deadline(pending[0][1], policy.grace), "instalment due"))
    if policy.reminder_before is None or not policy.reminder_template:
        return None
    for index, instalment in pending:
        # Only an instalment still ahead is reminded of; one awaiting judgment does not hold back the next.
        if instalment.reminded or instalment.remaining == 0 or now >= _midnight(instalment.due_date):
            continue
        remind_at = _midnight(instalment.due_date) - policy.reminder_before
        if remind_at <= arrangement.agreed_at:
            continue  # agreed too close to the date for a reminder
        if now >= remind_at:
            step = _contact(case, Channel.SMS, policy.reminder_template,
                            f"arrangement_reminder:{arrangement.key}:{index}", now, wakes)
            if step is not None:
                return step
        else:
            wakes.append((remind_at, "instalment reminder"))
        break
    return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _dpd_reached(case: CaseState, dpd: int) -> datetime:
    """The moment (UTC midnight) the case's days past due reach ``dpd``."""
    return _midnight(case.first_day_past_due + timedelta(days=dpd))


def _stage_end(case: CaseState, config: StageConfig, now: datetime, clock: timedelta) -> tuple[datetime, str] | None:
    """When the current stage ends, given the stage clock runs from ``now`` (the case is not on hold)."""
    ends: list[tuple[datetime, str]] = []
    if config.dwell is not None:
        ends.append((now + (config.dwell - clock), f"{case.stage.value} dwell of {config.dwell} over"))
    if config.leave_at_dpd is not None:
        by_dpd = max(_dpd_reached(case, config.leave_at_dpd), now + (config.min_dwell - clock))
        ends.append((by_dpd, f"days past due reached {config.leave_at_dpd}"))
    return min(ends) if ends else None


def _validation_notice(case: CaseState, now: datetime, wakes: list[tuple[datetime, str]]) -> Contact | None:
    """Where the profile requires it, the validation notice goes before any collection contact."""
    profile = case.compliance
    if (profile is None or not profile.validation_notice or case.validation_notice is not None
            or case.commitments_suspended):
        return None
    if not case.uses(SECOND_PASS):
        return _contact(case, Channel.LETTER, VALIDATION_NOTICE, VALIDATION_NOTICE, now, wakes)
    routes = notice_routes(case)
    if not routes:
        return Block(Channel.LETTER, VALIDATION_NOTICE, _no_route(case))
    # The first route that is not stopped for good: a route deferred (quiet hours) is waited for.
    for channel in routes:
        step = _contact(case, channel, VALIDATION_NOTICE, VALIDATION_NOTICE, now, wakes)
        if not isinstance(step, Block):
            return step
    return Block(routes[-1], VALIDATION_NOTICE, f"{_no_route(case)}; {step.reason}")


def notice_routes(case: CaseState) -> list[Channel]:
    """How the validation notice may still go: by post, or by e-mail where the profile allows it with
    the borrower's E-SIGN consent (12 CFR 1006.42); a route ceased or tried and failed is no route."""
    profile = case.compliance
    assert profile is not None
    routes = [Channel.LETTER]
    if profile.validation_by_email == "esign_consent" and case.esign_consent:
        routes.append(Channel.EMAIL)
    return [c for c in routes if c not in case.ceased and c not in case.notice_failed]


def _no_route(case: CaseState) -> str:
    tried = [f"{c.value} ceased by the borrower" for c in (Channel.LETTER, Channel.EMAIL) if c in case.ceased]
    tried += [f"{c.value} failed" for c in case.notice_failed]
    if not case.esign_consent:
        tried.append("no e-sign consent for e-mail")
    return f"no route left for the validation notice ({', '.join(tried)}); {NOTICE_BLOCKED}"


def still_owed(case: CaseState, strategy: Strategy, now: datetime) -> tuple[datetime | None, str] | None:
    """What the law still requires before the case may leave its stage: a legal notice of the stage not
    yet sent (or blocked, with its reason), its response period, and (before litigation) the validation
    notice and its period. ``(until, what)``: ``until`` None while it waits on the notice itself."""
    profile = case.compliance
    config = strategy.stages[case.stage]
    if profile is None:
        return None
    owed: list[tuple[datetime | None, str]] = []
    response = config.dwell or timedelta(0)  # the stage's dwell is the response period its letter gives
    for index, treatment in enumerate(config.treatments):
        if profile.purpose_of(treatment.template, treatment.channel) != "legal_notice":
            continue
        for offset in treatment.at:
            key = treatment_key(index, treatment, offset)
            name = f"the {treatment.template or treatment.channel.value}"
            if key not in case.done:
                owed.append((None, f"{name} (not sent yet)"))
            elif key in case.notices and case.notices[key] + response > now:
                ends = case.notices[key] + response
                owed.append((ends, f"{name}'s response period until {ends:%Y-%m-%d}"))
    if profile.validation_notice and _landing(case, case.stage.following()) is Stage.LITIGATION:
        ends = validation_period_ends(case)
        if case.validation_notice != "sent":
            owed.append((None, "the validation notice (not delivered yet)"))
        elif ends is not None and ends > now:
            owed.append((ends, f"the validation period until {ends:%Y-%m-%d} (12 CFR 1006.38)"))
    if not owed:
        return None
    waiting = [o for o in owed if o[0] is None]
    return waiting[0] if waiting else max(owed, key=lambda o: o[0])  # type: ignore[arg-type,return-value]


def _landing(case: CaseState, stage: Stage | None) -> Stage | None:
    """The stage the case lands on when it enters ``stage`` (a segment may skip some)."""
    while stage is not None and stage in case.skip and stage.following() is not None:
        stage = stage.following()
    return stage


def _contact(case: CaseState, channel: Channel, template: str | None, key: str, now: datetime,
             wakes: list[tuple[datetime, str]], *, staff: int | None = None) -> Contact | None:
    """Check a due contact at the moment it would be sent. None: deferred already, look further."""
    if case.compliance is None:
        reason = _blocked(case, channel)
        return Block(channel, key, reason) if reason is not None else Act(channel, template, key)
    verdict = check_contact(case, case.contacts, channel, now, template=template, staff=staff)
    if verdict.kind == "allow":
        return Act(channel, template, key)
    if verdict.kind == "block":
        return Block(channel, key, verdict.reason)
    assert verdict.until is not None
    known = case.deferral(key)
    if known is not None and known.until == verdict.until:
        wakes.append((verdict.until, f"{channel.value} deferred: {verdict.reason}"))
        return None
    return Defer(channel, template, key, verdict.until, verdict.reason)


def settle(case: CaseState, step: Block | Defer, now: datetime) -> None:
    """Record a verdict that is not a send: a contact blocked (done, unsent, with its reason) or
    deferred (waiting on a durable timer, with the time it may go)."""
    if isinstance(step, Block):
        case.record(now, f"{step.channel.value}_blocked", "blocked", reason=step.reason, treatment=step.key)
        mark_done(case, step.key, sent=False, now=now)
    else:
        case.defer(Deferral(key=step.key, channel=step.channel, template=step.template, since=now,
                            until=step.until, reason=step.reason), now)


def send_failed(case: CaseState, key: str, channel: Channel, now: datetime) -> None:
    """A contact failed for good. The validation notice tries its next route first (a letter that
    cannot be rendered goes by e-mail where that is allowed); anything else is done, unsent."""
    if key == VALIDATION_NOTICE and case.uses(SECOND_PASS):
        case.notice_failed = sorted({*case.notice_failed, channel})
        if notice_routes(case):
            case.deferred = [d for d in case.deferred if d.key != key]
            return
        case.record(now, f"{channel.value}_blocked", "blocked", reason=_no_route(case), treatment=key)
    mark_done(case, key, sent=False, now=now)


def mark_done(case: CaseState, key: str, *, sent: bool = True, now: datetime | None = None,
              template: str | None = None) -> None:
    """Remember that the treatment behind ``key`` ran (or was blocked), so it never runs twice."""
    case.deferred = [d for d in case.deferred if d.key != key]
    if key == VALIDATION_NOTICE:
        # Not sent (blocked, or failed for good): collection contacts stay blocked, visibly.
        case.validation_notice = "sent" if sent else "blocked"
        if case.uses(SECOND_PASS) and now is not None:
            if sent:
                case.validation_notice_at = now
            else:
                # No demand at all until it reaches the borrower: the ladder stops, and says why.
                case.hold_for("notice", NOTICE_BLOCKED, now)
        return
    parts = key.split(":")
    if (sent and now is not None and case.uses(SECOND_PASS) and case.compliance is not None and parts[0].isdigit()
            and case.compliance.purpose_of(template, Channel(parts[1])) == "legal_notice"):
        case.notices[key] = now  # its response period runs from here
    if key == "promise_reminder" and case.promise is not None:
        case.promise.reminded = True
    elif key.startswith("arrangement_reminder:"):
        _, plan, index = key.split(":")
        arrangement = case.arrangement
        # The plan may have ended, and another begun, while the reminder was on its way.
        if arrangement is not None and arrangement.key == plan and int(index) < len(arrangement.schedule):
            arrangement.schedule[int(index)].reminded = True
    elif key.startswith("missed_call:"):
        task_id = key.split(":", 1)[1]
        for task in case.calls:
            if task.task_id == task_id:
                task.followed_up = True
    else:
        case.done.append(key)
