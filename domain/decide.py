"""What a case does next: ``decide(case, strategy, now) -> Step``.

The workflow executes the step and asks again. Waiting steps carry the exact
time of the next thing due, so a case sleeps on one durable timer sized to it
instead of waking every day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from domain.case import CaseState
from domain.compliance import check_contact
from domain.stages import Channel, Stage
from domain.strategy import StageConfig, Strategy

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
    wakes: list[tuple[datetime, str]] = [(h.until, f"{h.kind} hold ends") for h in case.holds if h.until]

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
        # Escalation waits out any hold: nothing moves a disputed or paused case on.
        if case.exit_requested and following is not None:
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
                key = f"{index}:{treatment.channel.value}:{int(offset.total_seconds())}"
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
            if now >= ends_at:
                return Advance(following, why)
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
    return _midnight(case.intake_at.date() + timedelta(days=dpd - case.dpd_at_intake))


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
    return _contact(case, Channel.LETTER, VALIDATION_NOTICE, VALIDATION_NOTICE, now, wakes)


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


def mark_done(case: CaseState, key: str, *, sent: bool = True) -> None:
    """Remember that the treatment behind ``key`` ran (or was blocked), so it never runs twice."""
    case.deferred = [d for d in case.deferred if d.key != key]
    if key == VALIDATION_NOTICE:
        # Not sent (blocked, or failed for good): collection contacts stay blocked, visibly.
        case.validation_notice = "sent" if sent else "blocked"
        return
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
