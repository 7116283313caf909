"""Operator and borrower commands: each a typed payload with a check and an effect.

Every signal of the public contract is also an update of the same name. Both go
through :func:`parse`: the update's validator calls it alone (so a bad update
is refused before it touches history), the signal handler calls it and then
:meth:`Command.apply`, recording a refusal in the case's events instead of failing.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from domain import arrangement_rules
from domain.arrangement_commands import ProposeArrangement
from domain.case import (
    SECOND_PASS, BreathingSpaceKind, CaseState, Hold, Payment, PromiseToPay, cure_if_paid, promise_deadline, tick,
)
from domain.episodes import FOLLOWS_LOAN
from domain.compliance import dial_breaches
from domain.command_base import AmountText, Command, Name, Text
from domain.errors import Rejected
from domain.money import parse_amount
from domain.stages import Channel, Outcome
from domain.strategy import CALL_OUTCOMES, VISIT_OUTCOMES, Strategy
from domain.decide import still_owed

def _as_deadline(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.combine(value, time.min, tzinfo=timezone.utc)


def _check_until(until: datetime | None, now: datetime, longest: timedelta | None) -> None:
    if until is None:
        return
    if until <= now:
        raise Rejected("until", f"{until.isoformat()} is not in the future")
    if longest is not None and until - now > longest:
        raise Rejected("until", f"is more than {longest.days} days away (the strategy's limit)")


class PaymentReceived(Command):
    name = "payment_received"
    amount: AmountText
    reference: str = Name
    # The value date: when the money moved (the payments system's word). It decides what the payment
    # met; the case hears of it when it is posted, up to the strategy's posting lag later.
    paid_at: datetime | None = None
    PRIVATE: ClassVar[tuple[str, ...]] = ()

    @field_validator("paid_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)

    def check(self, case, strategy, now):
        parse_amount(self.amount, case.currency, "amount")
        if self.paid_at is None or not case.uses(FOLLOWS_LOAN):
            return
        if self.paid_at > now + CLOCK_SKEW:
            raise Rejected("paid_at", f"{self.paid_at.isoformat()} is in the future")

    def apply(self, case, strategy, now):
        if self.reference in case.payment_refs:
            case.record(now, self.name, "duplicate", reason=f"payment {self.reference} was already applied",
                        reference=self.reference)
            return
        amount = parse_amount(self.amount, case.currency, "amount")
        case.payment_refs.append(self.reference)
        case.paid_total += amount
        to_arrears = min(amount, case.amount_past_due)
        case.amount_past_due -= to_arrears
        excess = amount - min(amount, case.outstanding)
        case.outstanding -= amount - excess
        follows = case.uses(FOLLOWS_LOAN)
        value_date, note = now, None
        if self.paid_at is not None and follows:
            # A value date further back than the posting lag is not believed for what the payment met
            # (a promise judged long ago stays judged); the money counts all the same.
            earliest = now - strategy.payments.posting_lag
            value_date = min(max(self.paid_at, earliest), now)
            if self.paid_at < earliest:
                note = (f"paid_at {self.paid_at:%Y-%m-%d} is more than the posting lag "
                        f"({strategy.payments.posting_lag.days} days) before it was posted; valued at {earliest:%Y-%m-%d}")
        payment = Payment(reference=self.reference, amount=amount, paid_at=value_date, posted_at=now,
                          to_arrears=to_arrears, to_outstanding=amount - excess)
        if follows:
            case.payments.append(payment)
        case.record(now, self.name, "accepted", reference=self.reference, amount=str(amount),
                    amount_past_due=str(case.amount_past_due), outstanding=str(case.outstanding),
                    excess=str(excess) if excess else None,
                    paid_at=value_date.isoformat() if self.paid_at is not None and follows else None, note=note)
        to_plan = amount
        if follows and value_date < now - CLOCK_SKEW and case.arrangement is not None:
            to_plan = arrangement_rules.paid_in_time(case, amount, value_date, strategy, now)
        if case.arrangement_active:
            left = arrangement_rules.pay(case, to_plan, strategy, now)
            payment.to_instalments = amount - left  # what the plan took, a reversal gives back
            return  # while an arrangement runs, it decides how the case ends
        promise = case.promise
        if promise is not None and promise.state == "pending":
            promise.paid += amount
            payment.toward_promise, payment.promise_made_at = True, promise.made_at
            if promise.paid >= promise.amount:
                promise.state = "kept"
                case.promises_kept += 1
                case.release_hold("promise", now)
                case.record(now, "promise_kept", "info", amount=str(promise.amount), paid=str(promise.paid))
        elif (follows and promise is not None and promise.state == "broken" and promise.broken_at is not None
              and value_date <= promise.deadline):
            # Paid in time, posted after the promise was judged: it was kept after all.
            promise.paid += amount
            payment.toward_promise, payment.promise_made_at = True, promise.made_at
            if promise.paid >= promise.amount:
                _kept_after_all(case, promise, now)
        if follows:
            cure_if_paid(case, strategy, now, "past-due amount paid")
        elif case.amount_past_due == 0:
            case.close(Outcome.CURED, "past-due amount paid", now)


def _kept_after_all(case: CaseState, promise: PromiseToPay, now: datetime) -> None:
    promise.state, promise.broken_at = "kept", None
    case.promises_broken -= 1
    case.promises_kept += 1
    if case.exit_requested == f"{case.promises_broken + 1} broken promises":
        case.exit_requested = None  # the broken promise it counted was not broken
    case.record(now, "promise_kept", "info", amount=str(promise.amount), paid=str(promise.paid),
                reason="paid by its deadline, posted after it was judged (within the posting lag)")


class PaymentReversed(Command):
    """A payment the case applied came back (a bounced direct debit, a chargeback): it no longer counts.
    A promise it kept is broken again, an instalment it paid is open again. (A case it cured has closed:
    the client reopens it as a new episode, infra/episodes.py.)"""

    name = "payment_reversed"
    reference: str = Name
    reason: str = Text
    PRIVATE: ClassVar[tuple[str, ...]] = ()  # the bank's reason (returned unpaid), not a person's words

    def check(self, case, strategy, now):
        if not case.uses(FOLLOWS_LOAN):
            raise Rejected("", "this case began before payments could be reversed")
        if not any(p.reference == self.reference for p in case.payments):
            raise Rejected("reference", f"no payment {self.reference!r} was applied to this case")

    def apply(self, case, strategy, now):
        payment = next(p for p in case.payments if p.reference == self.reference)
        if payment.reversed:
            case.record(now, self.name, "duplicate", reason=f"payment {self.reference} was reversed already",
                        reference=self.reference)
            return
        payment.reversed = True
        case.paid_total -= payment.amount
        case.amount_past_due += payment.to_arrears
        case.outstanding += payment.to_outstanding
        case.record(now, self.name, "accepted", **self.audit(), amount=str(payment.amount),
                    amount_past_due=str(case.amount_past_due), outstanding=str(case.outstanding))
        plan = case.arrangement
        if payment.to_instalments and plan is not None:
            reopened = plan.deallocate(payment.to_instalments)
            if reopened:
                case.record(now, "instalment_reopened", "info", due_dates=reopened, reference=self.reference)
            if reopened and plan.state == "completed":  # the payment that completed it did not stay
                plan.state, plan.ended_at = "active", None
                case.hold_for("arrangement", f"{plan.kind} arrangement", now)
                case.record(now, "arrangement_reinstated", "info", arrangement_kind=plan.kind,
                            reason=f"the payment that completed it ({self.reference}) was reversed")
        promise = case.promise
        # Only the promise the payment counted toward (a later promise is another).
        if payment.toward_promise and promise is not None and promise.made_at == payment.promise_made_at:
            promise.paid = max(Decimal(0), promise.paid - payment.amount)
            if promise.state == "kept" and promise.paid < promise.amount:
                promise.state, promise.broken_at = "broken", now
                case.promises_kept -= 1
                case.promises_broken += 1
                case.record(now, "promise_broken", "info", amount=str(promise.amount), paid=str(promise.paid),
                            due_date=promise.due_date.isoformat(), broken_total=case.promises_broken,
                            reason=f"the payment that kept it ({self.reference}) was reversed")
                if case.promises_broken % strategy.promise.broken_to_escalate == 0 and case.stage.following():
                    case.exit_requested = f"{case.promises_broken} broken promises"


class LoanUpdate(Command):
    """The loan as the servicing system sees it today: its figures win over the case's own arithmetic,
    days past due included. Payments the case heard of valued after ``as_of`` are not in them yet and
    count on top. Nothing past due (``current``, or a residual below the tolerance) cures the case."""

    name = "loan_update"
    as_of: date
    amount_past_due: AmountText | None = None
    outstanding: AmountText | None = None
    days_past_due: int | None = Field(default=None, ge=0, le=100_000)
    fees: AmountText | None = None
    current: bool = False
    reason: str | None = Field(default=None, max_length=500)
    PRIVATE: ClassVar[tuple[str, ...]] = ()  # the servicer's words

    def check(self, case, strategy, now):
        if not case.uses(FOLLOWS_LOAN):
            raise Rejected("", "this case began before it followed the servicer's figures")
        if self.as_of > (now + timedelta(days=1)).date():
            raise Rejected("as_of", f"{self.as_of} is in the future")
        if case.loan_as_of is not None and self.as_of < case.loan_as_of:
            raise Rejected("as_of", f"{self.as_of} is older than the figures applied already (as of {case.loan_as_of})")
        if not self.current:
            for field in ("amount_past_due", "outstanding", "days_past_due"):
                if getattr(self, field) is None:
                    raise Rejected(field, "is required unless current is true")
        past_due, outstanding, fees = self._amounts(case)
        if outstanding is not None and past_due > outstanding:
            raise Rejected("amount_past_due", "is larger than outstanding")
        if past_due > 0 and not self.days_past_due:
            raise Rejected("days_past_due", "must be at least 1 while an amount is past due")

    def _amounts(self, case: CaseState) -> tuple[Decimal, Decimal | None, Decimal | None]:
        def amount(field: str) -> Decimal | None:
            value = getattr(self, field)
            return None if value is None else parse_amount(value, case.currency, field, allow_zero=True)
        past_due = Decimal(0) if self.current else amount("amount_past_due")
        return past_due or Decimal(0), amount("outstanding"), amount("fees")

    def _figures(self) -> str:
        return "|".join(str(v) for v in (self.as_of, self.amount_past_due, self.outstanding, self.days_past_due,
                                         self.fees, self.current))

    def apply(self, case, strategy, now):
        if case.loan_as_of == self.as_of and case.loan_figures == self._figures():
            case.record(now, self.name, "duplicate", reason=f"the figures as of {self.as_of} were applied already",
                        as_of=self.as_of.isoformat())
            return
        past_due, outstanding, fees = self._amounts(case)
        # Payments the servicer's figures of ``as_of`` do not hold yet (valued after its end).
        end_of_day = datetime.combine(self.as_of + timedelta(days=1), time.min, tzinfo=timezone.utc)
        later = sum((p.amount for p in case.payments if not p.reversed and p.paid_at >= end_of_day), Decimal(0))
        before = (str(case.amount_past_due), case.days_past_due(now))
        case.loan_as_of, case.loan_figures = self.as_of, self._figures()
        case.amount_past_due = max(Decimal(0), past_due - later).quantize(case.amount_past_due)
        if outstanding is not None:
            case.outstanding = max(Decimal(0), outstanding - later).quantize(case.outstanding)
        if fees is not None:
            case.fees = fees
        dpd = 0 if self.current else self.days_past_due or 0
        case.overdue_since = self.as_of - timedelta(days=dpd) if dpd else None
        case.record(now, self.name, "accepted", **self.audit(), previous_amount_past_due=before[0],
                    previous_days_past_due=before[1], days_past_due_now=case.days_past_due(now),
                    later_payments=str(later) if later else None)
        why = self.reason or f"the servicer reports nothing past due as of {self.as_of}"
        if case.arrangement_active and case.amount_past_due < strategy.payments.tolerance(case.currency):
            arrangement_rules.cancel(case, now)  # nothing left to arrange: the servicer says so
        cure_if_paid(case, strategy, now, why)


class PromiseToPayCommand(Command):
    name = "promise_to_pay"
    amount: AmountText
    due_date: date
    agent: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=32)

    def check(self, case, strategy, now):
        amount = parse_amount(self.amount, case.currency, "amount")
        if amount > case.outstanding:
            raise Rejected("amount", f"is more than the outstanding {case.outstanding} {case.currency}")
        floor = min(case.amount_past_due, case.amount_past_due * strategy.promise.min_share)
        if amount < floor:
            raise Rejected("amount", f"is below {strategy.promise.min_share:%} of the past-due amount "
                                     f"({floor:.2f} {case.currency})")
        if self.due_date < now.date():
            raise Rejected("due_date", f"{self.due_date} is in the past")
        latest = (now + strategy.promise.horizon).date()
        if self.due_date > latest:
            raise Rejected("due_date", f"is after {latest}, beyond the strategy's promise horizon")
        if case.promise is not None and case.promise.state == "pending":
            raise Rejected("", f"a promise is already pending (due {case.promise.due_date})")
        if case.arrangement_active:
            raise Rejected("", "the case has an active repayment arrangement")

    def apply(self, case, strategy, now):
        deadline = promise_deadline(self.due_date, strategy.promise.grace)
        case.promise = PromiseToPay(amount=parse_amount(self.amount, case.currency, "amount"),
                                    due_date=self.due_date, made_at=now, deadline=deadline,
                                    agent=self.agent, channel=self.channel)
        case.put_on_hold(Hold(kind="promise", reason=f"promise to pay by {self.due_date}", since=now,
                              until=deadline), now)
        if case.uses(FOLLOWS_LOAN) and case.commitments_suspended:
            case.promise.suspended_since = now  # made on hold: judged the time held after it ends
        case.record(now, self.name, "accepted", **self.audit())


class HardshipReported(Command):
    name = "hardship"
    reason: str = Text
    until: datetime | date | None = None
    # A statutory moratorium the lender was notified of (UK breathing space): it lasts the
    # profile's fixed term from now, and no payment is demanded nor anything enforced meanwhile.
    breathing_space: bool = False

    def check(self, case, strategy, now):
        if self.breathing_space:
            days = case.compliance.breathing_space_days if case.compliance is not None else None
            if days is None:
                profile = case.compliance.name if case.compliance is not None else "this case's"
                raise Rejected("breathing_space", f"the {profile} profile has no breathing-space scheme")
            if self.until is not None:
                raise Rejected("until", f"a breathing space lasts {days} days by law; leave until out")
            if case.uses(SECOND_PASS):
                BreathingSpace(kind="standard").check(case, strategy, now)  # one at a time, never restarted
            return
        _check_until(self.deadline, now, strategy.hardship_max)

    @property
    def deadline(self) -> datetime | None:
        return _as_deadline(self.until) if self.until is not None else None

    def apply(self, case, strategy, now):
        if self.breathing_space and case.uses(SECOND_PASS):
            # The moratorium is a hold of its own: a later hardship, plan or release never touches it.
            BreathingSpace(kind="standard").start(case, now)
            case.record(now, self.name, "accepted", **self.audit())
            return
        until, moratorium = self.deadline, False
        if self.breathing_space and case.compliance is not None and case.compliance.breathing_space_days:
            until, moratorium = now + timedelta(days=case.compliance.breathing_space_days), True
        case.put_on_hold(Hold(kind="hardship", reason=_said(case, self.reason), since=now, until=until,
                              moratorium=moratorium), now)
        case.record(now, self.name, "accepted", **self.audit())


def _said(case: CaseState, text: str, generic: str = "see the ledger") -> str:
    """A person's own words kept on the case: from the second pass on they go to the ledger only."""
    return generic if case.uses(SECOND_PASS) else text


BREATHING_SPACE_ENDINGS = ("cancelled_by_adviser", "debt_solution_entered", "crisis_treatment_ended",
                           "debtor_request", "other")


class BreathingSpace(Command):
    """A statutory moratorium the lender was notified of (the UK Debt Respite Scheme): a standard
    breathing space lasts the profile's fixed term; a mental-health crisis one lasts while the crisis
    treatment does, and the profile's extra days after. No payment is demanded, nothing enforced,
    interest and fees are frozen meanwhile; only its end by law or ``breathing_space_ended`` ends it."""

    name = "breathing_space"
    kind: BreathingSpaceKind = "standard"
    reference: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=500)
    PRIVATE: ClassVar[tuple[str, ...]] = ("note",)

    def check(self, case, strategy, now):
        if case.compliance is None or case.compliance.breathing_space_days is None:
            profile = case.compliance.name if case.compliance is not None else "this case's"
            raise Rejected("kind", f"the {profile} profile has no breathing-space scheme")
        if not case.uses(SECOND_PASS):
            raise Rejected("", "this case began before breathing spaces were holds of their own: use hardship "
                               "with breathing_space")
        current = case.moratorium
        if current is not None:
            raise Rejected("", f"a {current.scheme or 'standard'} breathing space is in force since "
                               f"{current.since:%Y-%m-%d}")

    def start(self, case: CaseState, now: datetime) -> None:
        assert case.compliance is not None and case.compliance.breathing_space_days is not None
        until = now + timedelta(days=case.compliance.breathing_space_days) if self.kind == "standard" else None
        case.put_on_hold(Hold(kind="moratorium", reason=f"{self.kind.replace('_', ' ')} breathing space", since=now,
                              until=until, moratorium=True, scheme=self.kind, reference=self.reference), now)

    def apply(self, case, strategy, now):
        self.start(case, now)
        hold = case.moratorium
        assert hold is not None
        detail = self.audit()
        detail["scheme"] = detail.pop("kind")
        case.record(now, self.name, "accepted", **detail, until=hold.until.isoformat() if hold.until else None)


class BreathingSpaceEnded(Command):
    """The scheme says the moratorium ends: the debt adviser cancelled it, the debtor entered a debt
    solution, ... A mental-health crisis breathing space whose crisis treatment ended runs on for the
    profile's extra days; every other reason ends it now. Audited with who sent it and why."""

    name = "breathing_space_ended"
    reason: Literal[BREATHING_SPACE_ENDINGS]  # type: ignore[valid-type]
    note: str | None = Field(default=None, max_length=500)
    PRIVATE: ClassVar[tuple[str, ...]] = ("note",)

    def check(self, case, strategy, now):
        hold = case.moratorium
        if hold is None:
            raise Rejected("", "no breathing space is in force")
        if self.reason == "crisis_treatment_ended":
            if hold.scheme != "mental_health_crisis":
                raise Rejected("reason", "crisis_treatment_ended ends only a mental-health crisis breathing space")
            if hold.until is not None:
                raise Rejected("reason", f"the crisis treatment's end was recorded already; the breathing space "
                                         f"ends {hold.until:%Y-%m-%d}")

    def apply(self, case, strategy, now):
        hold = case.moratorium
        assert hold is not None and case.compliance is not None
        if self.reason == "crisis_treatment_ended":
            until = now + timedelta(days=case.compliance.crisis_breathing_space_extra_days)
            case.put_on_hold(hold.model_copy(update={"until": until}), now)
            case.record(now, self.name, "accepted", **self.audit(), until=until.isoformat())
            return
        case.release_hold(hold.kind, now)
        case.record(now, self.name, "accepted", **self.audit(), scheme=hold.scheme)


class NoticeDelivered(Command):
    """The validation notice reached the borrower by another route (in person, by e-mail outside the
    engine, ...): recorded with its reference, and the ladder goes on from there."""

    name = "notice_delivered"
    channel: Literal["email", "letter", "in_person", "other"]
    at: datetime
    reference: str = Field(min_length=1, max_length=128)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

    def check(self, case, strategy, now):
        if case.compliance is None or not case.compliance.validation_notice:
            raise Rejected("", "this case's profile requires no validation notice")
        if case.validation_notice == "sent":
            raise Rejected("", "the validation notice was delivered already")
        if self.at > now:
            raise Rejected("at", f"{self.at.isoformat()} is in the future")
        if self.at < case.intake_at - timedelta(days=60):
            raise Rejected("at", f"{self.at.isoformat()} is long before the case began")

    def apply(self, case, strategy, now):
        case.validation_notice, case.validation_notice_at = "sent", self.at
        case.deferred = [d for d in case.deferred if d.key != "validation_notice"]
        if case.hold("notice") is not None:
            case.release_hold("notice", now)
        case.record(now, self.name, "accepted", **self.audit())


class HardshipResolved(Command):
    name = "hardship_resolved"

    def check(self, case, strategy, now):
        if case.hold("hardship") is None:
            raise Rejected("", "the case is not paused for hardship")

    def apply(self, case, strategy, now):
        hold = case.hold("hardship")
        case.release_hold("hardship", now)
        case.record(now, self.name, "accepted")
        if hold is not None and hold.moratorium and not case.uses(SECOND_PASS):
            return  # before the second pass, this ended a breathing space held as hardship


class DisputeRaised(Command):
    name = "dispute"
    reason: str = Text

    def check(self, case, strategy, now):
        if case.hold("dispute") is not None:
            raise Rejected("", "the debt is already disputed")

    def apply(self, case, strategy, now):
        case.put_on_hold(Hold(kind="dispute", reason=_said(case, self.reason), since=now), now)
        case.record(now, self.name, "accepted", **self.audit())


class DisputeResolved(Command):
    name = "dispute_resolved"
    upheld: bool
    note: str | None = Field(default=None, max_length=500)

    def check(self, case, strategy, now):
        if case.hold("dispute") is None:
            raise Rejected("", "there is no open dispute")

    def apply(self, case, strategy, now):
        case.release_hold("dispute", now)
        case.record(now, self.name, "accepted", **self.audit())
        if self.upheld:
            case.close(Outcome.CLOSED, f"dispute upheld: {_said(case, self.note or 'no note', 'see the ledger')}", now)


class CeaseContact(Command):
    name = "cease_contact"
    channels: list[Channel] | None = None

    @field_validator("channels")
    @classmethod
    def _contact_channels_only(cls, value: list[Channel] | None) -> list[Channel] | None:
        if value is not None and Channel.LEGAL_HANDOFF in value:
            raise ValueError("legal_handoff is not a contact channel")
        if value is not None and not value:
            raise ValueError("name at least one channel, or omit channels to cease all contact")
        return value

    def apply(self, case, strategy, now):
        wanted = self.channels or [c for c in Channel if c.is_borrower_contact]
        case.ceased = sorted(set(case.ceased) | set(wanted))
        case.record(now, self.name, "accepted", channels=[c.value for c in case.ceased])


# How far ahead of the case's clock a reported time may be (an agent's phone or PC clock).
CLOCK_SKEW = timedelta(minutes=5)


class CallOutcome(Command):
    name = "call_outcome"
    outcome: str
    note: str | None = Field(default=None, max_length=500)
    agent: str | None = Field(default=None, max_length=64)
    # The call task reported on (its work item); without it, the open task.
    task_id: str | None = Field(default=None, max_length=200)
    # How many times the agent dialled on the task, and when (optional; each dial counts against the caps).
    dials: int = Field(default=1, ge=1, le=20)
    dialled_at: list[datetime] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _dials_agree(self) -> "CallOutcome":
        if self.dialled_at is not None:
            self.dialled_at = [t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in self.dialled_at]
            if len(self.dialled_at) != self.dials:
                raise ValueError(f"dialled_at names {len(self.dialled_at)} times for {self.dials} dials")
            if self.dialled_at != sorted(self.dialled_at):
                raise ValueError("dialled_at must be in the order the dials were made")
        return self

    def check(self, case, strategy, now):
        if self.dialled_at and self.dialled_at[-1] > now + CLOCK_SKEW:
            raise Rejected("dialled_at", f"{self.dialled_at[-1].isoformat()} is in the future")
        if self.outcome not in CALL_OUTCOMES:
            raise Rejected("outcome", f"{self.outcome!r} is not one of {', '.join(CALL_OUTCOMES)}")
        if not any(task.outcome is None for task in case.calls):
            raise Rejected("", "no call task is open for this case")
        if self.task_id is not None and not any(t.task_id == self.task_id and t.outcome is None for t in case.calls):
            raise Rejected("task_id", f"call task {self.task_id} is no longer open (withdrawn, expired or reported)")

    def apply(self, case, strategy, now):
        task = next(task for task in case.calls if task.outcome is None
                    and self.task_id in (None, task.task_id))
        task.outcome = self.outcome
        if not case.uses(SECOND_PASS):
            case.call_answered(self.outcome)
        else:
            dials = self.dialled_at or [now] * self.dials
            breaches = dial_breaches(case, dials, task.callable_from, task.callable_until)
            case.call_answered(self.outcome, dials)
            for breach in breaches:
                # For the compliance officer: the rule, the dial and who made it (the event is signed).
                case.record(now, "compliance_breach", "info", reason=breach, task_id=task.task_id, channel="call")
        if self.outcome == "wrong_number":
            case.phone_invalid = True
        case.record(now, self.name, "accepted", **{**self.audit(), "task_id": task.task_id})
        if self.outcome in strategy.stages[case.stage].exit_on:
            case.exit_requested = f"call outcome {self.outcome}"


class FieldVisitReport(Command):
    name = "field_visit_report"
    outcome: str
    note: str | None = Field(default=None, max_length=500)
    agents: list[str] | None = None
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {"agents": (4, 64)}  # (names, characters each)
    # The visit reported on (its work item's case_ref); without it, the visit in progress.
    visit_id: str | None = Field(default=None, max_length=200)

    @field_validator("agents")
    @classmethod
    def _distinct_people(cls, value: list[str] | None) -> list[str] | None:
        # The staff a visit needs are people: one name twice does not make two of them.
        seen: set[str] = set()
        for name in value or []:
            if name.strip().casefold() in seen:
                raise ValueError(f"{name.strip()!r} is named more than once; name each agent once")
            seen.add(name.strip().casefold())
        return value

    def check(self, case, strategy, now):
        if self.outcome not in VISIT_OUTCOMES:
            raise Rejected("outcome", f"{self.outcome!r} is not one of {', '.join(VISIT_OUTCOMES)}")
        visit = case.visit
        if self.visit_id is not None and (visit is None or visit.visit_id != self.visit_id
                                          or visit.state != "in_progress"):
            raise Rejected("visit_id", f"visit {self.visit_id} is no longer in progress (cancelled, completed "
                                       f"or replaced)")
        if visit is None or visit.state != "in_progress":
            raise Rejected("", "no field visit is in progress for this case")

    def apply(self, case, strategy, now):
        assert case.visit is not None
        case.visit.unforwarded_reports.append(self.audit())
        case.visit.last_report_outcome = self.outcome
        case.record(now, self.name, "accepted", **{"visit_id": case.visit.visit_id, **self.audit()})


class Escalate(Command):
    name = "escalate"
    reason: str | None = Field(default=None, max_length=500)

    def check(self, case, strategy, now):
        if case.stage.following() is None:
            raise Rejected("", f"the case is already at the last stage ({case.stage.value})")
        if case.arrangement_active:
            raise Rejected("", "the case is following a repayment arrangement; it escalates only if the plan breaks")
        owed = still_owed(case, strategy, now) if case.uses(SECOND_PASS) else None
        if owed is not None:
            raise Rejected("", f"the {case.stage.value} stage cannot be left before the law's requirements are met: "
                               f"{owed[1]} is still owed")

    def apply(self, case, strategy, now):
        case.exit_requested = f"operator: {self.reason or 'escalated'}"
        case.record(now, self.name, "accepted", **self.audit())


class OperatorHold(Command):
    name = "hold"
    reason: str = Text
    until: datetime | date | None = None

    def check(self, case, strategy, now):
        _check_until(self.deadline, now, None)

    @property
    def deadline(self) -> datetime | None:
        return _as_deadline(self.until) if self.until is not None else None

    def apply(self, case, strategy, now):
        case.put_on_hold(Hold(kind="operator", reason=_said(case, self.reason), since=now, until=self.deadline), now)
        case.record(now, self.name, "accepted", **self.audit())


class Release(Command):
    name = "release"

    def check(self, case, strategy, now):
        if case.hold("operator") is None:
            raise Rejected("", "the case is not on an operator hold")

    def apply(self, case, strategy, now):
        case.release_hold("operator", now)
        case.record(now, self.name, "accepted")


class Close(Command):
    name = "close"
    outcome: Outcome
    note: str = Text
    PRIVATE: ClassVar[tuple[str, ...]] = ()  # the closing note is the case's outcome, shown as such

    def check(self, case, strategy, now):
        if self.outcome is Outcome.CURED and case.amount_past_due > 0:
            raise Rejected("outcome", f"cured means the past-due amount is paid; "
                                      f"{case.amount_past_due} {case.currency} is still past due")

    def apply(self, case, strategy, now):
        case.record(now, self.name, "accepted", **self.audit())
        case.close(self.outcome, self.note, now)


class Assign(Command):
    name = "assign"
    agent: str = Name

    def apply(self, case, strategy, now):
        case.agent = self.agent
        case.record(now, self.name, "accepted", **self.audit())


class Vulnerability(Command):
    """A vulnerability became known (or no longer applies): no field visits while it does."""

    name = "vulnerability"
    vulnerable: bool
    note: str | None = Field(default=None, max_length=500)

    def apply(self, case, strategy, now):
        case.vulnerable = self.vulnerable
        # Only the flag goes into the case's events: the note is likely health or family data.
        case.record(now, self.name, "accepted", vulnerable=self.vulnerable)


COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (PaymentReceived, PromiseToPayCommand, HardshipReported, HardshipResolved, DisputeRaised,
                DisputeResolved, CeaseContact, CallOutcome, FieldVisitReport, ProposeArrangement, Escalate,
                OperatorHold, Release, Close, Assign, Vulnerability, BreathingSpace, BreathingSpaceEnded,
                NoticeDelivered, PaymentReversed, LoanUpdate)
}


# What one command may carry (from the case-follows-loan feature on): a case lives for years on its
# history, and one oversized or endless payload must not end it. Per command, ``Command.LIMITS`` may
# bound a list tighter (a visit's agents).
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_TEXT = 1000
MAX_LIST = 100


def _bounded(cls: type[Command], payload: dict[str, Any]) -> None:
    """Refuse a payload past its bounds, naming the field and the limit."""
    size = len(json.dumps(payload, default=str, ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise Rejected("", f"the payload is {size} bytes; a command carries at most {MAX_PAYLOAD_BYTES} bytes")

    def walk(value: Any, field: str, items: int, text: int) -> None:
        if isinstance(value, str) and len(value) > text:
            raise Rejected(field, f"is {len(value)} characters; at most {text}")
        if isinstance(value, list):
            if len(value) > items:
                raise Rejected(field, f"names {len(value)} items; at most {items}")
            for n, item in enumerate(value):
                walk(item, f"{field}.{n}", MAX_LIST, text)
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{field}.{key}" if field else str(key), MAX_LIST, MAX_TEXT)

    for key, value in payload.items():
        items, text = cls.LIMITS.get(str(key), (MAX_LIST, MAX_TEXT))
        walk(value, str(key), items, text)


def parse(name: str, payload: Any, case: CaseState, strategy: Strategy, now: datetime) -> Command:
    """Validate a command against its schema and the case; raise :class:`Rejected` if it does not fit."""
    cls = COMMANDS.get(name)
    if cls is None:
        raise Rejected("", f"unknown command {name!r}")
    if case.outcome is not None:
        raise Rejected("", f"the case is closed ({case.outcome.value})")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise Rejected("", f"the payload must be a JSON object, not {type(payload).__name__}")
    if case.uses(FOLLOWS_LOAN):
        _bounded(cls, payload)
    try:
        command = cls.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise Rejected(field, first["msg"]) from None
    command.check(case, strategy, now)
    return command


def validate(name: str, payload: Any, case: CaseState, strategy: Strategy, now: datetime) -> None:
    """:func:`parse` against the case as it stands at ``now`` (after whatever fell due), without
    changing it: what an update's validator runs."""
    probe = case.model_copy(deep=True)
    tick(probe, strategy, now)
    parse(name, payload, probe, strategy, now)


def handle(name: str, payload: Any, case: CaseState, strategy: Strategy, now: datetime) -> bool:
    """Apply a command, or record its refusal in the case's events. Never raises for bad input.

    Whatever fell due first (a promise deadline, the end of a hold) is applied first: after an
    outage a signal can arrive in the same workflow task as the timer that was due before it.
    """
    tick(case, strategy, now)
    try:
        command = parse(name, payload, case, strategy, now)
    except Rejected as err:
        case.record(now, name, "rejected", reason=str(err))
        _signed(case, case.total_events - 1, _claimed_actor(payload))
        return False
    before = case.total_events
    command.apply(case, strategy, now)
    _signed(case, before, command.by)
    if case.uses(SECOND_PASS):
        _kept_private(case, before, command)
    return True


def _kept_private(case: CaseState, since: int, command: Command) -> None:
    """Move a person's own words (a reason, a note) out of the command's events into ``private``:
    the ledger keeps them, encrypted; the case, its status and the UI never show them."""
    fields = command.private_fields()
    for event in case.events[max(0, since - case.events_dropped):]:
        if event.kind != command.name:
            continue
        for name in fields:
            value = event.detail.pop(name, None)
            if name == "reason" and event.reason:  # ``record`` keeps a reason beside the detail
                value, event.reason = event.reason, None
            if isinstance(value, str) and value:
                event.private[name] = value


def _claimed_actor(payload: Any) -> str | None:
    """The ``by`` of a refused payload, when it is a plausible id (it was not validated)."""
    by = payload.get("by") if isinstance(payload, dict) else None
    if not isinstance(by, str):
        return None
    return "".join(ch for ch in by if ch.isprintable()).strip()[:64] or None


def _signed(case: CaseState, since: int, actor: str | None) -> None:
    """Name who sent the command on the events it caused (counted from ``since``)."""
    if actor is None:
        return
    for event in case.events[max(0, since - case.events_dropped):]:
        event.actor = actor
