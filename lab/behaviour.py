"""The simulated borrower: a behaviour model as data, and what one borrower does when contacted.

The model (``lab/behaviour.toml`` by default) holds every assumption of a simulation: chances to pay
after each channel and stage, to promise on a right-party contact and to keep the promise, hardship
and dispute chances, call reach, visit outcomes, delays. :class:`Borrower` turns the contacts the
simulated activities report into commands the case receives later (``payment_received`` in three
days, the promised payment on its due date), which the borrower workflow (``lab/borrower.py``) sends
on durable timers.

Every draw is a hash of (seed, the ORIGINAL loan id, what happened: "sms 3 pay"), never the clock or
Python's ``hash()``: a run repeats exactly, and each strategy of a run faces the same borrowers
(common random numbers: the borrower who would pay after a third SMS does so under any strategy that
sends one). Pure: no temporalio, no I/O, time passed in.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from domain.errors import validation_problems
from infra.toml_files import read_toml

DEFAULT_BEHAVIOUR = Path(__file__).with_name("behaviour.toml")
BORROWER = "lab:borrower"  # who sends the borrower's own commands (payments, hardship, disputes)
AGENT = "lab:agent"  # who sends what the lender's people record (call outcomes, visits, promises, resolutions)


class BehaviourError(ValueError):
    """A behaviour file is unusable; the message names the file, the key and the reason."""


def _ordered(days: tuple[int, int]) -> tuple[int, int]:
    if days[0] > days[1]:
        raise ValueError(f"the range [{days[0]}, {days[1]}] must be [low, high]")
    return days


Chance = Annotated[float, Field(ge=0, le=1)]
Share = Annotated[Decimal, Field(gt=0, le=1)]
Days = Annotated[tuple[Annotated[int, Field(ge=0, le=365)], Annotated[int, Field(ge=0, le=365)]],
                 AfterValidator(_ordered)]
Factor = Annotated[float, Field(ge=0, le=10)]
Weight = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelfCure(_Model):
    chance: Chance = 0.0
    days: Days = (3, 40)


class MessageResponse(_Model):
    pay_full: Chance = 0.0
    pay_part: Chance = 0.0
    days: Days = (0, 3)


class Messages(_Model):
    sms: MessageResponse = MessageResponse()
    email: MessageResponse = MessageResponse()
    letter: MessageResponse = MessageResponse()


class Calls(_Model):
    reach: Chance = 0.4
    not_reached: dict[Literal["no_answer", "left_message", "wrong_number", "refused"], Weight] = {"no_answer": 1.0}
    dial_after_minutes: int = Field(default=60, ge=1, le=600)


class Visits(_Model):
    outcomes: dict[Literal["met", "not_home", "moved", "refused", "paid"], Weight] = {"met": 1.0}
    report_after_hours: int = Field(default=4, ge=1, le=48)


class RightParty(_Model):
    promise: Chance = 0.0
    pay_full: Chance = 0.0
    pay_part: Chance = 0.0
    days: Days = (0, 3)


class Promises(_Model):
    share: Share = Decimal(1)
    due_days: Days = (2, 10)
    keep: Chance = 0.6
    keep_part: Chance = 0.0


class Payments(_Model):
    part_share: Share = Decimal("0.3")


class Legal(_Model):
    pay_full: Chance = 0.0
    settle: Chance = 0.0
    settle_share: Share = Decimal("0.6")
    days: Days = (14, 60)


def _at_least_one(days: tuple[int, int]) -> tuple[int, int]:
    if days[0] < 1:
        raise ValueError("a hardship lasts at least one day")
    return days


class Hardship(_Model):
    chance: Chance = 0.0
    days: Annotated[Days, AfterValidator(_at_least_one)] = (30, 60)


class Dispute(_Model):
    chance: Chance = 0.0
    resolved_days: Days = (10, 30)
    upheld: Chance = 0.0


class Templates(_Model):
    quiet: list[str] = []


class Behaviour(_Model):
    """Every assumption of a simulation (see ``lab/behaviour.toml`` for what each number means)."""

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    self_cure: SelfCure = SelfCure()
    messages: Messages = Messages()
    calls: Calls = Calls()
    visits: Visits = Visits()
    right_party: RightParty = RightParty()
    promises: Promises = Promises()
    payments: Payments = Payments()
    legal: Legal = Legal()
    hardship: Hardship = Hardship()
    dispute: Dispute = Dispute()
    stages: dict[Literal["reminder", "contact", "field_visit", "legal_letter", "litigation"], Factor] = {}
    grades: dict[str, Factor] = {}
    templates: Templates = Templates()

    def factor(self, stage: str, grade: str) -> float:
        """How much likelier than the base chances a borrower of ``grade`` pays or promises in ``stage``."""
        return self.stages.get(stage, 1.0) * self.grades.get(grade, 1.0)  # type: ignore[call-overload]


def load_behaviour(path: Path | str | None = None) -> Behaviour:
    """The behaviour model in ``path`` (default: ``lab/behaviour.toml``), validated; a bad file raises
    :class:`BehaviourError` naming the file, the key and the reason."""
    path = Path(path) if path is not None else DEFAULT_BEHAVIOUR
    data = read_toml(path, BehaviourError)
    try:
        return Behaviour.model_validate(data)
    except ValidationError as err:
        raise BehaviourError(f"{path}: {validation_problems(err)}") from None


def _pct(chance: float) -> str:
    return f"{chance * 100:.3g}%"


def _range(days: tuple[int, int], unit: str = "days") -> str:
    return f"{days[0]} {unit}" if days[0] == days[1] else f"{days[0]}-{days[1]} {unit}"


def _weights(weights: dict[str, float]) -> str:
    total = sum(weights.values()) or 1.0
    return ", ".join(f"{name} {_pct(w / total)}" for name, w in weights.items())


def describe(model: Behaviour) -> list[str]:
    """The model's assumptions as lines a reader checks before believing a simulated report."""
    m = model
    lines = [f"Borrower behaviour model '{m.name}'" + (f": {m.description}" if m.description else "")]
    lines.append(f"- unprompted payment in full: {_pct(m.self_cure.chance)} of borrowers, "
                 f"{_range(m.self_cure.days)} after the case opens")
    for channel in ("sms", "email", "letter"):
        r: MessageResponse = getattr(m.messages, channel)
        lines.append(f"- after each {channel}: pays in full {_pct(r.pay_full)}, in part {_pct(r.pay_part)}, "
                     f"{_range(r.days)} later")
    lines.append(f"- calls: the agent reaches the borrower {_pct(m.calls.reach)}; otherwise "
                 f"{_weights(m.calls.not_reached)}")
    lines.append(f"- field visits: {_weights(m.visits.outcomes)}")
    rp = m.right_party
    lines.append(f"- reached or met: promises {_pct(rp.promise)}, pays in full {_pct(rp.pay_full)}, in part "
                 f"{_pct(rp.pay_part)} ({_range(rp.days)} later)")
    p = m.promises
    lines.append(f"- promises: {p.share * 100:.3g}% of what is past due, due in {_range(p.due_days)}; kept "
                 f"{_pct(p.keep)}, part paid {_pct(p.keep_part)}, otherwise broken")
    lines.append(f"- a part payment pays {m.payments.part_share * 100:.3g}% of what is past due")
    lines.append(f"- after the legal hand-off: pays in full {_pct(m.legal.pay_full)}, settles for "
                 f"{m.legal.settle_share * 100:.3g}% of what is past due {_pct(m.legal.settle)}, "
                 f"{_range(m.legal.days)} later")
    lines.append(f"- hardship: {_pct(m.hardship.chance)} per right-party contact, lasting {_range(m.hardship.days)}")
    lines.append(f"- dispute: {_pct(m.dispute.chance)} per contact, resolved after {_range(m.dispute.resolved_days)}, "
                 f"upheld {_pct(m.dispute.upheld)}")
    if m.stages:
        lines.append("- factor on paying and promising by stage: "
                     + ", ".join(f"{s} x{f:g}" for s, f in m.stages.items()))
    if m.grades:
        lines.append("- factor by risk grade: " + ", ".join(f"{g} x{f:g}" for g, f in m.grades.items()))
    if m.templates.quiet:
        lines.append(f"- no payment follows: {', '.join(m.templates.quiet)}")
    return lines


def draw(seed: int, loan_id: str, *what: object) -> float:
    """A number in [0, 1) fixed by the seed, the loan and what happened; the same on every run and machine."""
    text = "|".join([str(seed), loan_id, *map(str, what)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def days_in(days: tuple[int, int], u: float) -> int:
    """A whole number of days in [low, high], from a uniform draw ``u``."""
    return days[0] + min(days[1] - days[0], int(u * (days[1] - days[0] + 1)))


def pick(weights: dict[str, float], u: float) -> str:
    """One of the weighted names, from a uniform draw ``u``."""
    total = sum(weights.values())
    running = 0.0
    for name, weight in weights.items():
        running += weight
        if u * total < running:
            return name
    return next(reversed(weights))


class Contact(BaseModel):
    """What a simulated activity tells the borrower: a message, a call task, a visit, a legal hand-off."""

    channel: str  # sms, email, letter, call, visit, legal_handoff
    n: int  # the n-th contact of this channel with this borrower: what the draws are keyed by
    stage: str
    at: datetime
    template: str | None = None
    ref: str | None = None  # the call task's id, the visit's id
    window_until: datetime | None = None  # a call task: the agent dials before this
    scheduled_for: datetime | None = None  # a visit: when the agents go
    report_due: datetime | None = None
    agents: list[str] = []


class Action(BaseModel):
    """A command the borrower (or an agent) sends the case at ``at``; its amount is worked out then."""

    at: datetime
    order: int
    command: str
    args: dict[str, Any] = {}


class BorrowerInput(BaseModel):
    case_id: str  # the case workflow the commands go to
    loan_id: str  # the ORIGINAL loan id: what every draw is keyed by
    seed: int
    behaviour: Behaviour
    risk_grade: str
    amount_past_due: Decimal
    outstanding: Decimal
    opened_at: datetime  # when the case opened
    horizon: datetime  # nothing is sent after the simulation ends


MINUTE = timedelta(minutes=1)
# The borrower and the agents never act on the very instant a case's timer fires (a whole number of days
# or hours after something the case did): their commands come this much later, so which of the two goes
# first never depends on how fast the machine works through that instant.
ASIDE = timedelta(minutes=7, seconds=13)


def reacts(input: BorrowerInput, contact: Contact) -> bool:
    """Whether the borrower does anything at all after ``contact`` before the horizon (after most
    messages nothing happens): only then need the borrower workflow hear of it."""
    return bool(Borrower.of(input).contacted(contact).agenda)


def pays_unprompted(input: BorrowerInput) -> bool:
    """Whether the borrower has something planned from the start (an unprompted payment)."""
    return bool(Borrower.of(input).opened().agenda)


class Borrower(BaseModel):
    """One simulated borrower: what they owe (only they pay, so they know), what they have planned."""

    input: BorrowerInput
    owed: Decimal
    outstanding: Decimal
    agenda: list[Action] = []
    planned: int = 0
    payments: int = 0
    promised: Decimal = Decimal(0)  # the pending promise's amount and what was paid toward it
    promise_paid: Decimal = Decimal(0)
    promise_until: datetime | None = None  # no new promise before this (one is pending)

    @classmethod
    def of(cls, input: BorrowerInput) -> "Borrower":
        return cls(input=input, owed=input.amount_past_due, outstanding=input.outstanding)

    # -- what happens -------------------------------------------------------------------------
    def opened(self) -> "Borrower":
        """The case opened: a borrower who pays unprompted plans it now."""
        cure = self.input.behaviour.self_cure
        if self._draw("self_cure", 0, "pays") < cure.chance:
            later = timedelta(days=days_in(cure.days, self._draw("self_cure", 0, "days")))
            self._plan(self.input.opened_at + later, "payment_received", kind="full")
        return self

    def contacted(self, contact: Contact) -> "Borrower":
        """React to a contact (whatever the borrower does comes later, as commands on the agenda)."""
        n = contact.n
        if contact.channel in ("sms", "email", "letter"):
            self._message(contact, n)
        elif contact.channel == "call":
            self._call(contact, n)
        elif contact.channel == "visit":
            self._visit(contact, n)
        elif contact.channel == "legal_handoff":
            self._legal(contact, n)
        return self

    def next_at(self) -> datetime | None:
        return min((a.at for a in self.agenda), default=None)

    def due(self, now: datetime) -> list[Action]:
        """The actions due by ``now``, in order; they leave the agenda."""
        ready = sorted((a for a in self.agenda if a.at <= now), key=lambda a: (a.at, a.order))
        self.agenda = [a for a in self.agenda if a.at > now]
        return ready

    def command(self, action: Action, now: datetime) -> dict[str, Any] | None:
        """The payload of ``action`` as it goes out now (None: nothing left to send, e.g. nothing owed)."""
        args = action.args
        if action.command == "payment_received":
            amount = self._amount(args["kind"])
            if amount <= 0:
                return None
            self.payments += 1
            self.owed = max(Decimal(0), self.owed - amount)
            self.outstanding = max(Decimal(0), self.outstanding - amount)
            if self.promise_until is not None and now <= self.promise_until:
                self.promise_paid += amount
            return {"amount": str(amount), "reference": f"lab-payment-{self.payments}", "by": BORROWER}
        if action.command == "promise_to_pay":
            amount = self._money(self.owed * self.input.behaviour.promises.share)
            if amount <= 0:
                return None
            self.promised, self.promise_paid = amount, Decimal(0)
            # The agent who reached the borrower records the promise (and is credited with it).
            return {"amount": str(amount), "due_date": args["due_date"], "channel": args["channel"], "agent": AGENT,
                    "by": AGENT}
        if action.command == "close" and self.owed <= 0:
            return None
        return {**args, "by": args.get("by", BORROWER)}

    # -- reactions ---------------------------------------------------------------------------------
    def _message(self, contact: Contact, n: int) -> None:
        behaviour = self.input.behaviour
        if contact.template in behaviour.templates.quiet:
            return
        if self._disputes(contact.channel, n, contact.at):
            return
        response: MessageResponse = getattr(behaviour.messages, contact.channel)
        self._pays(contact, n, contact.at, response.pay_full, response.pay_part, response.days)

    def _call(self, contact: Contact, n: int) -> None:
        calls = self.input.behaviour.calls
        at = contact.at + timedelta(minutes=calls.dial_after_minutes) + ASIDE
        if contact.window_until is not None and at >= contact.window_until:
            at = contact.at + (contact.window_until - contact.at) / 2  # inside the dialling window
        reached = self._draw("call", n, "reach") < calls.reach
        outcome = "reached" if reached else pick(dict(calls.not_reached), self._draw("call", n, "outcome"))
        self._plan(at, "call_outcome", exact=True, outcome=outcome, agent=AGENT, by=AGENT,
                   **({"task_id": contact.ref} if contact.ref else {}))
        if reached:
            self._right_party(contact, n, at)

    def _visit(self, contact: Contact, n: int) -> None:
        visits = self.input.behaviour.visits
        went = contact.scheduled_for or contact.at
        at = went + timedelta(hours=visits.report_after_hours) + ASIDE
        if contact.report_due is not None and at >= contact.report_due:
            at = went + (contact.report_due - went) / 2
        outcome = pick(dict(visits.outcomes), self._draw("visit", n, "outcome"))
        self._plan(at, "field_visit_report", exact=True, outcome=outcome, by=AGENT,
                   **({"visit_id": contact.ref} if contact.ref else {}),
                   **({"agents": contact.agents} if contact.agents else {}))
        if outcome == "paid":
            self._plan(at + MINUTE, "payment_received", kind="full")
        elif outcome == "met":
            self._right_party(contact, n, at)

    def _legal(self, contact: Contact, n: int) -> None:
        legal = self.input.behaviour.legal
        f = self._factor(contact.stage)
        u = self._draw("legal", n, "pays")
        at = contact.at + timedelta(days=days_in(legal.days, self._draw("legal", n, "days")))
        if u < legal.pay_full * f:
            self._plan(at, "payment_received", kind="full")
        elif u < (legal.pay_full + legal.settle) * f:
            self._plan(at, "payment_received", kind="settle")
            self._plan(at + MINUTE, "close", outcome="settled", note="settled with the legal partner", by=AGENT)

    def _right_party(self, contact: Contact, n: int, at: datetime) -> None:
        """A borrower reached in person (a call answered, a visit met)."""
        behaviour = self.input.behaviour
        channel = contact.channel
        if self._draw(channel, n, "hardship") < behaviour.hardship.chance:
            days = days_in(behaviour.hardship.days, self._draw(channel, n, "hardship_days"))
            self._plan(at + MINUTE, "hardship", reason="simulated hardship",
                       until=(at + timedelta(days=days)).isoformat())
            return
        if self._disputes(channel, n, at):
            return
        rp = behaviour.right_party
        f = self._factor(contact.stage)
        u = self._draw(channel, n, "responds")
        promising = self.promise_until is None or at > self.promise_until
        if promising and u < rp.promise * f:
            self._promise(channel, n, at)
            return
        base = rp.promise * f if promising else 0.0
        self._pays(contact, n, at, rp.pay_full, rp.pay_part, rp.days, u=(u - base) / max(1e-12, 1 - base))

    def _promise(self, channel: str, n: int, at: datetime) -> None:
        promises = self.input.behaviour.promises
        due = (at + timedelta(days=days_in(promises.due_days, self._draw(channel, n, "promise_days")))).date()
        self._plan(at + MINUTE, "promise_to_pay", due_date=due.isoformat(), channel=channel)
        # The promise is judged at the end of its due date (plus the strategy's grace): paid by midday UTC.
        pay_at = max(datetime.combine(due, time(12), tzinfo=timezone.utc), at + 2 * MINUTE)
        self.promise_until = pay_at + timedelta(days=1)
        u = self._draw(channel, n, "keeps")
        if u < promises.keep:
            self._plan(pay_at, "payment_received", kind="promise")
        elif u < promises.keep + promises.keep_part:
            self._plan(pay_at, "payment_received", kind="promise_part")

    def _pays(self, contact: Contact, n: int, at: datetime, full: float, part: float, days: tuple[int, int],
              u: float | None = None) -> None:
        f = self._factor(contact.stage)
        u = self._draw(contact.channel, n, "pays") if u is None else u
        when = at + timedelta(days=days_in(days, self._draw(contact.channel, n, "days")))
        if u < full * f:
            self._plan(max(when, at + MINUTE), "payment_received", kind="full")
        elif u < (full + part) * f:
            self._plan(max(when, at + MINUTE), "payment_received", kind="part")

    def _disputes(self, channel: str, n: int, at: datetime) -> bool:
        dispute = self.input.behaviour.dispute
        if self._draw(channel, n, "dispute") >= dispute.chance:
            return False
        self._plan(at + MINUTE, "dispute", reason="simulated dispute")
        later = days_in(dispute.resolved_days, self._draw(channel, n, "dispute_days"))
        self._plan(at + timedelta(days=later) + MINUTE, "dispute_resolved",
                   upheld=self._draw(channel, n, "upheld") < dispute.upheld, by=AGENT)
        return True

    # -- helpers -----------------------------------------------------------------------------------
    def _draw(self, *what: object) -> float:
        return draw(self.input.seed, self.input.loan_id, *what)

    def _factor(self, stage: str) -> float:
        return self.input.behaviour.factor(stage, self.input.risk_grade)

    def _plan(self, at: datetime, command: str, *, exact: bool = False, **args: Any) -> None:
        """Put ``command`` on the agenda at ``at`` (``exact``) or :data:`ASIDE` after it."""
        at = at if exact else at + ASIDE
        if at > self.input.horizon:
            return  # after the simulation ends: never happens
        self.planned += 1
        self.agenda.append(Action(at=at, order=self.planned, command=command, args=args))

    def _money(self, amount: Decimal) -> Decimal:
        """``amount`` in the currency's units of the loan's own figures (rounded down)."""
        unit = Decimal(1).scaleb(self.input.amount_past_due.as_tuple().exponent)  # type: ignore[arg-type]
        return amount.quantize(unit, rounding=ROUND_DOWN)

    def _amount(self, kind: str) -> Decimal:
        behaviour = self.input.behaviour
        if kind == "full":
            return self.owed
        if kind == "part":
            return self._money(self.owed * behaviour.payments.part_share)
        if kind == "settle":
            return self._money(self.owed * behaviour.legal.settle_share)
        left = max(Decimal(0), self.promised - self.promise_paid)
        if kind == "promise_part":
            left = self._money(left * behaviour.payments.part_share)
        return min(left, self.owed)
