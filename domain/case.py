"""The state of one collection case and the time-driven rules that change it.

``CaseState`` is everything a case knows; it is carried whole across
continue-as-new. The functions here mutate it given ``now`` and never read a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel

from domain import arrangement_rules
from domain.arrangements import Arrangement
from domain.assignment import Arm
from domain.compliance import CALL_RESULTS, SECOND_PASS, ContactAttempt, Profile, remember
from domain.episodes import FOLLOWS_LOAN, Reopening, key_prefix
from domain.loan import Loan
from domain.scorecard import Features, Scorecard, is_right_party_contact
from domain.stages import Channel, Outcome, Stage
from domain.strategy import Strategy

HoldKind = Literal["moratorium", "dispute", "hardship", "operator", "notice", "arrangement", "promise"]
# Which hold a supervisor sees as *the* reason when several apply at once.
_HOLD_PRIORITY: tuple[HoldKind, ...] = ("moratorium", "dispute", "hardship", "operator", "notice", "arrangement",
                                        "promise")
# Holds that suspend the borrower's own commitments (promise and arrangement are those commitments).
SUSPENDING_HOLDS: tuple[HoldKind, ...] = ("moratorium", "dispute", "hardship", "operator")
MAX_EVENTS = 500
BreathingSpaceKind = Literal["standard", "mental_health_crisis"]


class Hold(BaseModel):
    kind: HoldKind
    reason: str
    since: datetime
    until: datetime | None = None
    # A statutory moratorium (UK breathing space): no payment demands, no enforcement, interest
    # and fees frozen. Its own kind of hold ("moratorium") from the second pass on; before, a
    # hardship hold with this flag.
    moratorium: bool = False
    scheme: BreathingSpaceKind | None = None  # the moratorium's kind
    reference: str | None = None  # the scheme's reference (the Insolvency Service's, say)

    @property
    def shown_reason(self) -> str:
        """The reason as anyone reading the case may see it: a person's own words (a hardship's, a
        dispute's, an operator's) may be health or family data and stay in the ledger."""
        return PRIVATE_HOLD_REASONS.get(self.kind, self.reason)


# What the case shows for holds whose reason a person wrote (the words themselves are private).
PRIVATE_HOLD_REASONS = {"hardship": "hardship reported", "dispute": "the debt is disputed",
                        "operator": "held by an operator"}


class PromiseToPay(BaseModel):
    amount: Decimal
    due_date: date
    made_at: datetime
    deadline: datetime
    agent: str | None = None
    channel: str | None = None
    paid: Decimal = Decimal(0)
    state: Literal["pending", "kept", "broken"] = "pending"
    reminded: bool = False
    # Since when a hardship, dispute or operator hold has kept the promise from being judged: when the
    # last such hold ends, the deadline moves on by the time held (a hold never breaks a promise).
    suspended_since: datetime | None = None
    broken_at: datetime | None = None


class Payment(BaseModel):
    """A payment the case applied: its value date decides what it met, a reversal undoes it."""

    reference: str
    amount: Decimal
    paid_at: datetime  # the value date (the day the money moved), as the payments system says
    posted_at: datetime  # when the case heard of it
    to_arrears: Decimal  # how much of it went to the past-due amount
    to_outstanding: Decimal
    toward_promise: bool = False  # counted toward the promise pending then
    promise_made_at: datetime | None = None  # which promise that was (a later one is another)
    to_instalments: Decimal = Decimal(0)  # allocated to the arrangement's instalments
    reversed: bool = False


class CallTask(BaseModel):
    task_id: str
    created_at: datetime
    outcome: str | None = None
    followed_up: bool = False
    # When the agent may dial (the borrower's contact hours on the day the task was made).
    callable_from: datetime | None = None
    callable_until: datetime | None = None


class FieldVisit(BaseModel):
    visit_id: str
    started_at: datetime
    treatment_key: str
    state: Literal["in_progress", "completed", "cancelled"] = "in_progress"
    outcome: str | None = None
    # The outcome of the last report the case accepted for this visit.
    last_report_outcome: str | None = None
    # Reports received by the case and not yet passed on to the visit's child workflow.
    unforwarded_reports: list[dict[str, Any]] = []

    @property
    def reported_final(self) -> bool:
        """A report other than 'nobody home' settles the visit, whatever happens to the case next."""
        return self.last_report_outcome not in (None, "not_home")


class Deferral(BaseModel):
    """A contact that was due but may not happen yet; it waits on a durable timer."""

    key: str
    channel: Channel
    template: str | None = None
    since: datetime
    until: datetime
    reason: str


class CaseEvent(BaseModel):
    at: datetime
    kind: str
    status: Literal["accepted", "rejected", "duplicate", "sent", "blocked", "deferred", "failed", "info"]
    reason: str | None = None
    detail: dict[str, Any] = {}
    actor: str | None = None
    # Free text a person wrote that may be health or family data (a hardship's or a dispute's reason):
    # it goes to the ledger only, encrypted there with the payload keys, and is dropped from the case
    # once the ledger has it. Never in ``status``, the UI's details or a search attribute.
    private: dict[str, str] = {}


class CaseState(BaseModel):
    loan_id: str
    currency: str
    stage: Stage
    stage_entered_at: datetime
    # The stage clock: dwell and treatment offsets count only time not on hold.
    clock_used: timedelta = timedelta(0)
    clock_since: datetime | None = None
    skip: list[Stage] = []
    intake_at: datetime
    dpd_at_intake: int
    amount_past_due: Decimal
    outstanding: Decimal
    paid_total: Decimal = Decimal(0)
    payment_refs: list[str] = []
    holds: list[Hold] = []
    promise: PromiseToPay | None = None
    promises_kept: int = 0
    promises_broken: int = 0
    arrangement: Arrangement | None = None
    arrangements_broken: int = 0
    ceased: list[Channel] = []
    phone_invalid: bool = False
    agent: str | None = None
    done: list[str] = []
    calls: list[CallTask] = []
    visit: FieldVisit | None = None
    exit_requested: str | None = None
    outcome: Outcome | None = None
    close_note: str | None = None
    seq: int = 0
    events: list[CaseEvent] = []
    events_dropped: int = 0
    # How many events (counted from the first, dropped ones included) the ledger already holds.
    ledger_seq: int = 0
    # Compliance (None on a case from before the checks, while it replays its old history).
    compliance: Profile | None = None
    timezone: str | None = None
    vulnerable: bool = False
    validation_notice: Literal["sent", "blocked"] | None = None
    contacts: list[ContactAttempt] = []
    deferred: list[Deferral] = []
    # -- the second compliance pass (empty / None on a case from before it) --
    features: list[str] = []
    esign_consent: bool = False  # the borrower consented to notices by e-mail (E-SIGN)
    validation_notice_at: datetime | None = None  # when the validation notice was delivered
    # Legally required notices of the stage (a legal letter) by treatment key: when each was sent.
    notices: dict[str, datetime] = {}
    # Messages that asked for payment or reminded of it (a letter's wording follows the history).
    reminders_sent: int = 0
    # Routes of the validation notice that failed for good (a letter that could not be rendered).
    notice_failed: list[Channel] = []
    # -- the case follows the loan (empty / None on a case from before) --
    # The delinquency episode this run collects (domain/episodes.py); "" on a case from before episodes.
    episode: str = ""
    # The first day past due, as the servicer last said it (None: counted from the DPD at intake).
    overdue_since: date | None = None
    loan_as_of: date | None = None  # the servicer's last figures applied (loan_update) were as of this day
    loan_figures: str | None = None  # those figures, to tell a repeat from a correction of the same day
    fees: Decimal | None = None  # fees and charges the servicer reports on the loan
    payments: list[Payment] = []
    # -- the risk grade re-scored on the case's behaviour (a case whose input carries a scorecard) --
    risk_grade: str | None = None  # the grade now, once the case re-graded itself (None: the loan's stands)
    score: int | None = None  # the card's score of the case now
    right_party_contact: bool = False  # someone reached the borrower (domain/scorecard.py)
    behaviour_read_to: int = 0  # how many of the case's events the grade has read for contacts

    # -- reading -------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return bool(self.holds)

    @property
    def pause_reason(self) -> str | None:
        for kind in _HOLD_PRIORITY:
            for hold in self.holds:
                if hold.kind == kind:
                    return f"{kind}: {hold.shown_reason}"
        return None

    def hold(self, kind: HoldKind) -> Hold | None:
        return next((h for h in self.holds if h.kind == kind), None)

    def uses(self, feature: str) -> bool:
        return feature in self.features

    @property
    def moratorium(self) -> Hold | None:
        """The statutory moratorium in force, if any (a hardship hold carried it before the second pass)."""
        found = self.hold("moratorium")
        if found is None:
            found = next((h for h in self.holds if h.kind == "hardship" and h.moratorium), None)
        return found

    @property
    def validation_notice_sent(self) -> bool:
        return self.validation_notice == "sent"

    @property
    def total_events(self) -> int:
        """Events recorded since the case opened, those dropped from ``events`` included."""
        return self.events_dropped + len(self.events)

    def unrecorded_events(self) -> tuple[int, list[CaseEvent]]:
        """The events the ledger does not hold yet, and the sequence number of the first."""
        first = max(self.ledger_seq, self.events_dropped)
        return first, self.events[first - self.events_dropped:]

    def deferral(self, key: str) -> Deferral | None:
        return next((d for d in self.deferred if d.key == key), None)

    def stage_clock(self, now: datetime) -> timedelta:
        running = now - self.clock_since if self.clock_since is not None else timedelta(0)
        return self.clock_used + running

    def days_past_due(self, now: datetime) -> int:
        """Days past due advance with calendar time until the arrears are cleared (the servicer's
        figure, once a ``loan_update`` gave one, counts on from its day)."""
        if self.amount_past_due == 0:
            return 0
        return max(0, (now.date() - self.first_day_past_due).days)

    @property
    def first_day_past_due(self) -> date:
        if self.overdue_since is not None:
            return self.overdue_since
        return self.intake_at.date() - timedelta(days=self.dpd_at_intake)

    # -- changing ------------------------------------------------------------
    def record(self, now: datetime, kind: str, status: str, reason: str | None = None, **detail: Any) -> None:
        self.events.append(CaseEvent(at=now, kind=kind, status=status, reason=reason, detail=detail))
        if len(self.events) > MAX_EVENTS:
            overflow = len(self.events) - MAX_EVENTS
            if self.uses(FOLLOWS_LOAN):
                # Only what the ledger holds already is let go; the case writes the ledger before it
                # does anything else once that many wait (workflows/loan_collection.py).
                overflow = min(overflow, max(0, self.ledger_seq - self.events_dropped))
            del self.events[:overflow]
            self.events_dropped += overflow

    @property
    def ledger_behind(self) -> int:
        """How many events the ledger does not hold yet."""
        return self.total_events - max(self.ledger_seq, self.events_dropped)

    def apply_compliance(self, profile: Profile, timezone_name: str, vulnerable: bool, now: datetime) -> None:
        self.compliance, self.timezone, self.vulnerable = profile, timezone_name, self.vulnerable or vulnerable
        self.record(now, "compliance_profile", "info", profile=profile.name, label=profile.label,
                    tightened_by=profile.tightened_by, production=profile.production)

    def defer(self, deferral: Deferral, now: datetime) -> None:
        known = self.deferral(deferral.key)
        if known is not None:
            deferral = deferral.model_copy(update={"since": known.since})
        self.deferred = [d for d in self.deferred if d.key != deferral.key] + [deferral]
        self.record(now, f"{deferral.channel.value}_deferred", "deferred", reason=deferral.reason,
                    treatment=deferral.key, until=deferral.until.isoformat())

    def drop_deferred(self, now: datetime, why: str, *, stage_only: bool = False,
                      only: Callable[[Deferral], bool] | None = None) -> None:
        for deferral in list(self.deferred):
            if stage_only and deferral.key.startswith(("promise_reminder", "arrangement_reminder")):
                continue  # those belong to the promise or plan, not to the stage
            if only is not None and not only(deferral):
                continue
            self.deferred.remove(deferral)
            self.record(now, f"{deferral.channel.value}_blocked", "blocked", treatment=deferral.key,
                        reason=f"{why} while it was deferred ({deferral.reason})")

    def contacted(self, channel: Channel, template: str | None, now: datetime) -> None:
        """Count a contact made toward the caps; a call counts from its task, its result comes later."""
        attempt = ContactAttempt(at=now, channel=channel, template=template,
                                 result="pending" if channel is Channel.CALL else None)
        self.contacts = remember(self.contacts, attempt)
        purpose = self.compliance.purpose_of(template, channel) if self.compliance is not None else "collection"
        if channel is not Channel.CALL and purpose in ("collection", "courtesy"):
            self.reminders_sent += 1

    def call_answered(self, outcome: str, dials: list[datetime] | None = None) -> None:
        """The result of a call task's dialling. Each dial counts against the caps (the task's own
        attempt is the first); the last dial gets the outcome, the ones before it went unanswered."""
        result = CALL_RESULTS.get(outcome, "unanswered")
        for attempt in reversed(self.contacts):
            if attempt.channel is Channel.CALL and attempt.result == "pending":
                if dials:
                    attempt.at = dials[0]
                    attempt.result = result if len(dials) == 1 else "unanswered"
                    for n, at in enumerate(dials[1:], start=2):
                        self.contacts = remember(self.contacts, ContactAttempt(
                            at=at, channel=Channel.CALL, result=result if n == len(dials) else "unanswered"))
                    self.contacts.sort(key=lambda a: a.at)
                else:
                    attempt.result = result
                return

    def sync_clock(self, now: datetime) -> None:
        """Stop the stage clock while any hold applies, restart it when none does."""
        if self.paused and self.clock_since is not None:
            self.clock_used += now - self.clock_since
            self.clock_since = None
        elif not self.paused and self.clock_since is None:
            self.clock_since = now

    def hold_for(self, kind: HoldKind, reason: str, now: datetime, until: datetime | None = None) -> None:
        self.put_on_hold(Hold(kind=kind, reason=reason, since=now, until=until), now)

    def put_on_hold(self, hold: Hold, now: datetime) -> None:
        if hold.kind == "hardship" and self.uses(SECOND_PASS):
            hold = hold.model_copy(update={"moratorium": False})  # only a moratorium hold is one
        self.holds = [h for h in self.holds if h.kind != hold.kind] + [hold]
        self.sync_clock(now)
        if hold.kind in SUSPENDING_HOLDS:
            arrangement_rules.suspend(self, now)
            promise = self.promise
            if (self.uses(FOLLOWS_LOAN) and promise is not None and promise.state == "pending"
                    and promise.suspended_since is None):
                promise.suspended_since = now

    def release_hold(self, kind: HoldKind, now: datetime) -> None:
        self.holds = [h for h in self.holds if h.kind != kind]
        self.sync_clock(now)
        if not self.commitments_suspended:
            arrangement_rules.resume(self, now)
            self._resume_promise(now)

    def _resume_promise(self, now: datetime) -> None:
        """The last hold that kept a promise from being judged ended: its deadline moves on by the time held."""
        promise = self.promise
        if promise is None or promise.suspended_since is None:
            return
        held, promise.suspended_since = now - promise.suspended_since, None
        if promise.state != "pending" or held <= timedelta(0) or promise.deadline > now:
            return  # judged already, or not due yet: the hold kept nothing from being judged
        promise.deadline += held
        hold = self.hold("promise")
        if hold is not None:
            self.holds = [h for h in self.holds if h.kind != "promise"] + [hold.model_copy(update={"until": promise.deadline})]
        self.record(now, "promise_rescheduled", "info", deadline=promise.deadline.isoformat(),
                    held_seconds=int(held.total_seconds()),
                    reason="the promise fell due on hold; it is judged the time held later")

    @property
    def promise_suspended(self) -> bool:
        """A pending promise a hold keeps from being judged."""
        return self.promise is not None and self.promise.suspended_since is not None and self.commitments_suspended

    @property
    def arrangement_active(self) -> bool:
        return self.arrangement is not None and self.arrangement.state == "active"

    @property
    def commitments_suspended(self) -> bool:
        return any(h.kind in SUSPENDING_HOLDS for h in self.holds)

    def next_key(self, stage: Stage, action: str) -> str:
        """An idempotency key from the loan, the action and its sequence number.

        Not the run id: that changes at continue-as-new, the sequence does not.
        """
        self.seq += 1
        return f"{key_prefix(self.loan_id, self.episode)}/{self.seq:05d}/{stage.value}/{action}"

    def enter_stage(self, stage: Stage, now: datetime, why: str) -> None:
        while stage in self.skip and stage.following() is not None:
            self.record(now, "stage_skipped", "info", reason="segment skips it", stage=stage.value)
            stage = stage.following()  # type: ignore[assignment]
        previous = self.stage
        self.stage = stage
        self.stage_entered_at = now
        self.clock_used = timedelta(0)
        self.clock_since = None
        self.done = []
        self.notices = {}
        self.calls = []
        self.exit_requested = None
        # A contact of the old stage that never found a lawful moment is not sent late.
        self.drop_deferred(now, "the stage ended", stage_only=True)
        self.sync_clock(now)
        self.record(now, "stage_entered", "info", reason=why, stage=stage.value, previous=previous.value)

    def open_call_task(self, task_id: str, now: datetime, callable_from: datetime | None = None,
                       callable_until: datetime | None = None) -> None:
        self.expire_call_tasks(now)
        self.calls.append(CallTask(task_id=task_id, created_at=now, callable_from=callable_from,
                                   callable_until=callable_until))

    def expire_call_tasks(self, now: datetime) -> None:
        """A newer call task replaces any still open (an agent works the newest one)."""
        for task in self.calls:
            if task.outcome is None:
                task.outcome = "expired"
                self.record(now, "call_task_expired", "info", task_id=task.task_id,
                            reason="a newer call task replaced it before an outcome was reported")

    def provider_refused(self, channel: Channel, refusal: str, now: datetime) -> None:
        """A provider's word for good: the borrower opted out of this channel with it, or the phone
        number does not exist. Either stops that channel (and a dead number stops calls too)."""
        if refusal == "OptedOut" and channel not in self.ceased:
            self.ceased = sorted({*self.ceased, channel})
            self.record(now, "opt_out_at_provider", "info", channel=channel.value,
                        reason=f"the {channel.value} provider reports the borrower opted out")
        elif refusal == "InvalidPhoneNumber" and not self.phone_invalid:
            self.phone_invalid = True
            self.record(now, "phone_invalid", "info", reason="the SMS provider reports the number invalid")

    def withdraw_call_tasks(self, now: datetime) -> None:
        """No call task stays open while the case is on hold, calls were ceased or the number is wrong."""
        if not (self.paused or Channel.CALL in self.ceased or self.phone_invalid):
            return
        for task in self.calls:
            if task.outcome is None:
                task.outcome = "withdrawn"
                self.record(now, "call_task_withdrawn", "info", task_id=task.task_id,
                            reason=self.pause_reason or "calls stopped")

    def close(self, outcome: Outcome, note: str, now: datetime) -> None:
        arrangement_rules.cancel(self, now)
        self.drop_deferred(now, "the case closed")
        self.outcome = outcome
        self.close_note = note
        # The amounts as the case closes: a settlement or a waiver has just written them down.
        self.record(now, "case_closed", "info", reason=note, outcome=outcome.value,
                    amount_past_due=str(self.amount_past_due), outstanding=str(self.outstanding))

    def behaviour(self, loan: Loan) -> Features:
        """What the scorecard reads of the case now: the loan at entry (days and amount past due, as the
        card was fitted) and what the case saw since (payments, broken promises, the borrower reached)."""
        first = max(self.behaviour_read_to, self.events_dropped)
        for event in self.events[first - self.events_dropped:]:
            if is_right_party_contact(event.kind, event.status, event.detail):
                self.right_party_contact = True
        self.behaviour_read_to = self.total_events
        payments = (sum(1 for p in self.payments if not p.reversed) if self.uses(FOLLOWS_LOAN)
                    else len(self.payment_refs))
        return Features.at_intake(loan).model_copy(update={
            "payments": payments, "promises_broken": self.promises_broken,
            "contact_reached": self.right_party_contact})

    def regrade(self, card: Scorecard, loan: Loan, now: datetime) -> bool:
        """Score the case again on its behaviour; when its grade moves, record ``risk_grade_changed``.
        A closed case keeps its last grade (its outcome says more). True when the grade changed."""
        if self.outcome is not None:
            return False
        features = self.behaviour(loan)
        scoring = card.explain(features)
        before = self.risk_grade or loan.risk_grade
        self.score = scoring.score
        if scoring.grade == before:
            return False
        self.risk_grade = scoring.grade
        self.record(now, "risk_grade_changed", "info",
                    reason=(f"re-scored on the case's behaviour: {features.payments} payments, "
                            f"{features.promises_broken} promises broken, borrower "
                            f"{'reached' if features.contact_reached else 'not reached'}"),
                    **{"from": before, "to": scoring.grade, "score": scoring.score,
                       "points": {p.attribute: p.points for p in scoring.points}})
        return True


def adopt_second_pass(case: CaseState, loan: Loan, now: datetime) -> None:
    """Run ``case`` under the second compliance pass from ``now`` on. A case that began before it
    keeps what it did; what it carries is read the new way: a breathing space held as hardship becomes
    a moratorium hold of its own, a validation notice blocked for good holds the ladder visibly."""
    if case.uses(SECOND_PASS):
        return
    case.features = sorted({*case.features, SECOND_PASS})
    case.esign_consent = loan.esign_consent
    for hold in list(case.holds):
        if hold.kind == "hardship" and hold.moratorium:
            case.holds.remove(hold)
            case.holds.append(hold.model_copy(update={"kind": "moratorium", "scheme": "standard"}))
    if case.validation_notice == "sent" and case.validation_notice_at is None:
        sent = [e.at for e in case.events if e.kind == "letter_sent" and e.detail.get("template") == "validation_notice"]
        case.validation_notice_at = min(sent, default=case.intake_at)  # the earliest it can have been
    if case.validation_notice == "blocked" and case.hold("notice") is None:
        case.hold_for("notice", NOTICE_BLOCKED, now)
    if case.intake_at < now:  # a case that ran before: its trail says from when the rules apply
        case.record(now, "rules_updated", "info", reason="the case runs under the second compliance pass from now on")


NOTICE_BLOCKED = ("the validation notice could not be delivered: no demand until it is; record notice_delivered "
                  "once it reaches the borrower another way")


def open_case(loan: Loan, strategy: Strategy, now: datetime, profile: Profile | None = None,
              features: Collection[str] = (), episode: str = "", assignment: Arm | None = None) -> CaseState:
    stage, skip = strategy.entry(loan)
    case = CaseState(
        loan_id=loan.loan_id, currency=loan.currency, stage=stage, stage_entered_at=now,
        skip=sorted(skip), intake_at=now, dpd_at_intake=loan.days_past_due,
        amount_past_due=loan.amount_past_due, outstanding=loan.outstanding_amount,
    )
    case.features = sorted(features)
    case.episode = episode
    if loan.as_of is not None and FOLLOWS_LOAN in case.features:
        # The servicer's figures were as of that day: days past due count from it, not from intake.
        case.loan_as_of = loan.as_of
        case.overdue_since = loan.as_of - timedelta(days=loan.days_past_due)
    case.esign_consent = loan.esign_consent
    case.sync_clock(now)
    # What the case book (ledger/book.py) needs of the loan, besides the stage and DPD: never
    # personal data, only what a portfolio is broken down by.
    case.record(now, "case_opened", "info", stage=stage.value, strategy=strategy.name,
                days_past_due=loan.days_past_due, skip=[s.value for s in sorted(skip)],
                currency=loan.currency, amount_past_due=str(loan.amount_past_due),
                outstanding=str(loan.outstanding_amount), risk_grade=loan.risk_grade, product=loan.product,
                jurisdiction=loan.jurisdiction, episode=episode or None,
                # Which treatment and why, for the KPIs by segment and by champion/challenger arm.
                segment=getattr(strategy.entry_segment(loan), "name", None),
                experiment=assignment.experiment if assignment else None,
                arm=assignment.role if assignment else None,
                # Who graded the loan, the lender or the scorecard (with its score).
                grade_source=loan.grade_source, score=loan.score)
    if profile is not None:
        case.apply_compliance(profile, loan.timezone, loan.vulnerable, now)
    return case


def tick(case: CaseState, strategy: Strategy, now: datetime) -> None:
    """Apply everything that became due by ``now``: holds that expire, promises that break,
    arrangement instalments that fall due."""
    for hold in list(case.holds):
        if hold.kind != "promise" and hold.until is not None and hold.until <= now:
            case.release_hold(hold.kind, now)
            if hold.kind == "moratorium":
                case.record(now, "breathing_space_ended", "info", reason="the breathing space's term is over",
                            scheme=hold.scheme)
            else:
                case.record(now, f"{hold.kind}_ended", "info", reason="hold period over")
    promise = case.promise
    if (promise is not None and promise.state == "pending" and now >= promise.deadline
            and not case.promise_suspended):
        promise.state, promise.broken_at = "broken", now
        case.promises_broken += 1
        case.release_hold("promise", now)
        case.record(now, "promise_broken", "info", amount=str(promise.amount), paid=str(promise.paid),
                    due_date=promise.due_date.isoformat(), broken_total=case.promises_broken)
        if case.promises_broken % strategy.promise.broken_to_escalate == 0 and case.stage.following():
            case.exit_requested = f"{case.promises_broken} broken promises"
    arrangement_rules.judge(case, strategy, now)
    _forget_reminders_of_what_ended(case, now)
    if case.uses(FOLLOWS_LOAN) and case.outcome is None and case.amount_past_due > 0:
        cure_if_paid(case, strategy, now, "only a residual is past due")  # as intake or a plan left it


def _forget_reminders_of_what_ended(case: CaseState, now: datetime) -> None:
    """A deferred reminder of a promise or plan that has since ended (kept, broken, replaced) is
    never sent: it is dropped, visibly, instead of waiting for ever."""
    promise, plan = case.promise, case.arrangement
    if promise is None or promise.state != "pending":
        case.drop_deferred(now, "the promise ended", only=lambda d: d.key == "promise_reminder")

    def stale(deferral: Deferral) -> bool:
        if not deferral.key.startswith("arrangement_reminder:"):
            return False
        _, key, index = deferral.key.split(":")
        if plan is None or plan.state != "active" or plan.key != key or int(index) >= len(plan.schedule):
            return True
        instalment = plan.schedule[int(index)]
        return instalment.remaining == 0 or now.date() >= instalment.due_date

    case.drop_deferred(now, "the arrangement or its instalment ended", only=stale)


def cure_if_paid(case: CaseState, strategy: Strategy, now: datetime, why: str) -> bool:
    """Close the case cured when nothing past due is left, or only a residual below the strategy's
    tolerance for its currency (a cent left over never reaches litigation)."""
    if case.outcome is not None or case.arrangement_active:
        return False
    tolerance = strategy.payments.tolerance(case.currency)
    if case.amount_past_due == 0:
        case.close(Outcome.CURED, why, now)
    elif case.amount_past_due < tolerance:
        case.close(Outcome.CURED, f"{why}; the residual {case.amount_past_due} {case.currency} is below the "
                                  f"tolerance of {tolerance} {case.currency}", now)
    else:
        return False
    return True


def promise_deadline(due_date: date, grace: timedelta) -> datetime:
    """End of the due date (UTC) plus grace."""
    return datetime(due_date.year, due_date.month, due_date.day, tzinfo=timezone.utc) + timedelta(days=1) + grace


def reopen(case: CaseState, reopening: Reopening, now: datetime) -> None:
    """Record on a new episode's case why it runs: the payment that cured the last one came back."""
    case.record(now, "case_reopened", "info", reason="a payment that cured the case was reversed",
                from_episode=reopening.from_episode, from_run_id=reopening.from_run_id,
                reference=reopening.reference)
    case.record(now, "payment_reversed", "accepted", reference=reopening.reference, reason=reopening.reason,
                amount=str(reopening.amount), amount_past_due=str(case.amount_past_due),
                outstanding=str(case.outstanding))
    if reopening.by:
        for event in case.events[-2:]:
            event.actor = reopening.by
    # The reversed payment is this case's too, as reversed: the same reversal again is a duplicate, the
    # same reference sent again as a payment is not applied twice, and a later reopening sees it reversed.
    # The closed case's other payments are this case's as well: one of them may come back too.
    case.payments.append(Payment(reference=reopening.reference, amount=reopening.amount, paid_at=now, posted_at=now,
                                 to_arrears=Decimal(0), to_outstanding=Decimal(0), reversed=True))
    for earlier in reopening.payments:
        case.payments.append(Payment(reference=earlier.reference, amount=earlier.amount, paid_at=earlier.paid_at,
                                     posted_at=earlier.posted_at, to_arrears=earlier.to_arrears,
                                     to_outstanding=earlier.to_outstanding))
    for payment in case.payments:
        if payment.reference not in case.payment_refs:
            case.payment_refs.append(payment.reference)
