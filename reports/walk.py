"""One pass over each case's events, in order, adding what they say to the report's tallies.

A case is folded once (:func:`fold`): its stage, grade, assigned agent, days past due and pending
promise or plan move with its events, and every event in the report's window adds its *flow* facts
(a payment, a call outcome, a message sent, a deferral) to the tally of the row it belongs to: the
case's attributes as they were when it happened. Its state at each period boundary is noted on the
way, so :func:`settle` can add, once the loan's episodes are all folded, the *case-period* facts (a
case open in a period: where it started and ended it, roll rates) and the *cohort* facts (a case that
entered in the period: whether it cured, what was collected on it by the report's end).

Everything is a dict lookup or an addition per event: 100k cases' events take seconds, not minutes.
The definitions these implement are ``reports.kpis.METRICS``; a change here changes them there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.dpd import BUCKET_ORDER, CURRENT, bucket_of
from reports.costs import Costs, UnitCosts

NONE = "(none)"        # a dimension the case has no value for (no agent, no experiment)
UNKNOWN = "unknown"    # a value the case's events never said (a case opened before they said it)
CURED = "cured"
CLOSED = "closed-case"  # marks a boundary snapshot taken after the case closed
ZERO = Decimal(0)
DAY = Decimal(86400)
CHANNELS = ("sms", "email", "letter", "call", "visit")
_MESSAGES = {"sms_sent": "sms", "email_sent": "email", "letter_sent": "letter"}
# A command is recorded with one of these statuses, an event of the case's own with another.
COMMAND_STATUSES = frozenset({"accepted", "rejected", "duplicate"})
# The commands agents send (compliance/roles.toml, agent and field_agent): their sender is the agent.
AGENT_COMMANDS = frozenset({"promise_to_pay", "call_outcome", "field_visit_report", "propose_arrangement",
                            "hardship", "dispute", "hold", "release", "escalate"})
RIGHT_PARTY = {"call_outcome": frozenset({"reached"}), "field_visit_report": frozenset({"met", "paid"})}
# The other events the fold reads (any other kind moves nothing it counts).
_READ = frozenset({"stage_entered", "risk_grade_changed", "assign", "payment_received", "payment_reversed",
                   "loan_update", "promise_to_pay", "promise_kept", "promise_broken", "propose_arrangement",
                   "arrangement_completed", "arrangement_broken", "arrangement_cancelled", "arrangement_reinstated",
                   "call_outcome", "field_visit_report", "case_closed"})
STATIC = ("strategy", "experiment", "arm", "segment", "jurisdiction", "product", "currency")
_STATIC_INDEX = {name: n for n, name in enumerate(STATIC)}
_RANK = {name: n for n, name in enumerate(BUCKET_ORDER)}
# Dates and times in a reason ("breathing space until 2026-12-01") would make every case a reason of its own.
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}| UTC)?)?")


@dataclass(slots=True)
class Tally:
    """The sums behind one row of the report (see ``reports.kpis.METRICS`` for what each means)."""

    entered: int = 0
    open: int = 0
    worked: int = 0
    worked_by_currency: dict[str, int] = field(default_factory=dict)
    roll_n: int = 0
    roll_forward: int = 0
    roll_back: int = 0
    roll_cured: int = 0
    matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    cured: int = 0
    cure_days: list[Decimal] = field(default_factory=list)
    promise_cases: int = 0
    promises_made: int = 0
    promises_judged: int = 0
    promises_kept: int = 0
    amount_kept: dict[str, Decimal] = field(default_factory=dict)
    outcomes: int = 0
    right_party: int = 0
    dials: int = 0
    contacts: dict[str, int] = field(default_factory=dict)
    agreed: int = 0
    plans_kept: int = 0
    plans_broken: int = 0
    collected: dict[str, Decimal] = field(default_factory=dict)
    cohort_collected: dict[str, Decimal] = field(default_factory=dict)
    cohort_past_due: dict[str, Decimal] = field(default_factory=dict)
    cohort_outstanding: dict[str, Decimal] = field(default_factory=dict)
    recovery: list[Decimal] = field(default_factory=list)
    liquidation: list[Decimal] = field(default_factory=list)
    cost: dict[str, Decimal] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)


class Frame:
    """The report's window, its periods and breakdown, and the tallies by row key."""

    def __init__(self, by: tuple[str, ...], boundaries: list[datetime], period_keys: list[str],
                 costs: Costs | None, teams: Mapping[str, str] | None) -> None:
        self.by = by
        self.boundaries = boundaries          # each period's start, then the window's end
        self.period_keys = period_keys
        self.start, self.end = boundaries[0], boundaries[-1]
        self.costs = costs
        self.teams = teams or {}
        self.tallies: dict[tuple[str, ...], Tally] = {}
        self._rows: dict[tuple[Any, ...], Tally] = {}
        self._periods: dict[tuple[Any, ...], int] = {}
        self._statics: dict[tuple[str, ...], int] = {}
        self.statics: list[tuple[str, ...]] = []
        self._prices: dict[str, UnitCosts | None] = {}

    def tally(self, static: int, pidx: int, stage: str, grade: str, agent: str | None) -> Tally:
        """The tally of the row a fact belongs to: the case's attributes (``static``, see :meth:`intern`),
        the period of index ``pidx`` and the case's stage, grade and agent as the fact has them."""
        raw = (static, pidx, stage, grade, agent)
        found = self._rows.get(raw)
        if found is None:
            key = self.key(static, pidx, stage, grade, agent)
            found = self.tallies.get(key)
            if found is None:
                found = self.tallies[key] = Tally()
            self._rows[raw] = found
        return found

    def intern(self, static: tuple[str, ...]) -> int:
        """A number for the case attributes ``static``: the keys of every fact hold it instead of the
        attributes themselves, so that looking a row up hashes a few small values."""
        found = self._statics.get(static)
        if found is None:
            found = self._statics[static] = len(self.statics)
            self.statics.append(static)
        return found

    def currency(self, static: int) -> str:
        return self.statics[static][_STATIC_INDEX["currency"]]

    def key(self, static: int, pidx: int, stage: str, grade: str, agent: str | None) -> tuple[str, ...]:
        """The row key: the values of ``by``, in order."""
        parts = []
        for dim in self.by:
            if dim == "period":
                parts.append(self.period_keys[pidx])
            elif dim == "stage":
                parts.append(stage)
            elif dim == "grade":
                parts.append(grade)
            elif dim == "agent":
                parts.append(agent or NONE)
            elif dim == "team":
                parts.append(self.teams.get(agent, NONE) if agent else NONE)
            else:
                parts.append(self.statics[static][_STATIC_INDEX[dim]])
        return tuple(parts)

    def count_period(self, fact: tuple[Any, ...]) -> None:
        """Count one case-period ``fact`` (see :func:`settle`); :meth:`add_periods` adds them up once
        per distinct fact, not once per case."""
        self._periods[fact] = self._periods.get(fact, 0) + 1

    def add_periods(self) -> None:
        """Add the case-period facts counted to the tallies (after every case is settled)."""
        for (static, i, start, end, promised), n in self._periods.items():
            stage, grade, agent, bucket = start
            row = self.tally(static, i, stage, grade, agent)
            currency = self.currency(static)
            row.worked += n
            row.worked_by_currency[currency] = row.worked_by_currency.get(currency, 0) + n
            if promised:
                row.promise_cases += n
            closed = end[0] == CLOSED
            if bucket is not None:
                to = (end[1] or UNKNOWN) if closed else (end[3] or UNKNOWN)
                row.roll_n += n
                targets = row.matrix.setdefault(bucket, {})
                targets[to] = targets.get(to, 0) + n
                if closed:
                    row.roll_cured += n if to == CURED else 0
                elif to in _RANK:
                    row.roll_forward += n if _RANK[to] > _RANK[bucket] else 0
                    row.roll_back += n if _RANK[to] < _RANK[bucket] else 0
            if not closed:
                self.tally(static, i, end[0], end[1], end[2]).open += n
        self._periods = {}

    def prices(self, currency: str) -> UnitCosts | None:
        if self.costs is None:
            return None
        if currency not in self._prices:
            self._prices[currency] = self.costs.for_currency(currency)
        return self._prices[currency]


@dataclass(slots=True)
class _Promise:
    agent: str | None
    amount: Decimal
    stage: str
    grade: str
    state: str = "pending"
    pidx: int | None = None  # the period of its last judgment (-1: before the window)


@dataclass(slots=True)
class _Plan:
    agent: str | None
    stage: str
    grade: str
    state: str = "active"
    pidx: int | None = None


@dataclass(slots=True)
class _Paid:
    """A payment the case applied, with the row it was counted in (a reversal is counted there too)."""

    case: "Case"
    amount: Decimal
    stage: str
    grade: str
    agent: str | None


@dataclass(slots=True)
class Case:
    """What :func:`settle` needs of a folded case."""

    static: int                     # its attributes (Frame.intern)
    opened_at: datetime
    entry_pidx: int | None          # the period it entered in; None: before the window
    entry: tuple[Any, ...]          # (stage, grade, agent, bucket) right after it opened
    past_due_at_entry: Decimal | None
    outstanding_at_entry: Decimal | None
    collected: Decimal = ZERO
    closed_at: datetime | None = None
    outcome: str | None = None
    agent: str | None = None        # the last one assigned
    contacts: dict[str, int] = field(default_factory=dict)
    promise_periods: set[int] = field(default_factory=set)
    promises: list[_Promise] = field(default_factory=list)
    plans: list[_Plan] = field(default_factory=list)
    snaps: dict[int, tuple[Any, ...]] = field(default_factory=dict)


def fold(frame: Frame, events: list[Any], payments: dict[str, _Paid]) -> Case | None:
    """Walk one case's events (in ``seq`` order), adding their flow facts to ``frame``; the case, or
    None when its events never opened it (a case from before ``case_opened`` said what it is).
    ``payments`` are the loan's, shared by its episodes: a reversal in one may undo a payment of another."""
    bounds, end, nb = frame.boundaries, frame.end, len(frame.boundaries)
    b, p = 0, -1           # the next boundary; the period the events are in (-1: before the window)
    following = bounds[0]  # the next boundary's moment: until an event reaches it, the period stays
    case: Case | None = None
    static = -1
    currency = UNKNOWN
    stage = grade = UNKNOWN
    agent: str | None = None
    since: date | None = None   # the first day past due
    dpd_known = False
    past_due: Decimal | None = None
    promise: _Promise | None = None
    plan: _Plan | None = None
    snapping = False
    last_paid: tuple[int, int, _Paid] | None = None  # (seq, period, payment) of the last payment

    def bucket(at: datetime) -> str | None:
        if not dpd_known:
            return None
        if since is None or (past_due is not None and past_due <= 0):
            return CURRENT
        return bucket_of((at.date() - since).days)

    for e in events:
        at = e.at
        if not isinstance(at, datetime):
            continue
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        elif at.tzinfo is not UTC:
            at = at.astimezone(UTC)  # days past due and periods are counted in UTC dates
        if at >= following:
            if at >= end:
                break
            while b < nb and bounds[b] <= at:
                if snapping:
                    assert case is not None
                    if case.closed_at is not None:
                        case.snaps[b] = (CLOSED, case.outcome)
                        snapping = False
                    else:
                        case.snaps[b] = (stage, grade, agent, bucket(bounds[b]))
                b += 1
            p = b - 1
            following = bounds[b] if b < nb else end
        d = e.detail
        if not isinstance(d, dict):
            continue
        kind, status = e.kind, e.status
        if case is None:
            if kind != "case_opened" or status != "info":
                continue
            static = frame.intern(tuple(_text(d.get(name)) or (UNKNOWN if name in ("jurisdiction", "product",
                                                                                "currency") else NONE)
                                        for name in STATIC))
            currency = frame.currency(static)
            stage, grade = _text(d.get("stage")) or UNKNOWN, _text(d.get("risk_grade")) or UNKNOWN
            since = _first_day_past_due(at.date(), d.get("days_past_due"))
            dpd_known = since is not None
            past_due = _amount(d.get("amount_past_due"))
            case = Case(static=static, opened_at=at, entry_pidx=p if p >= 0 else None,
                        entry=(stage, grade, agent, bucket(at)), past_due_at_entry=past_due,
                        outstanding_at_entry=_amount(d.get("outstanding")))
            snapping = True
            prices = frame.prices(currency)
            if p >= 0 and prices is not None:
                _add(frame.tally(static, p, stage, grade, agent).cost, currency,
                     prices.action * frame.costs.actions_per_case)  # type: ignore[union-attr]
            continue
        if status in COMMAND_STATUSES:
            if p >= 0:
                prices = frame.prices(currency)
                if prices is not None:
                    who = _sender(e, d, agent) if kind in AGENT_COMMANDS else agent
                    _add(frame.tally(static, p, stage, grade, who).cost, currency,
                         prices.action * frame.costs.actions_per_command)  # type: ignore[union-attr]
            if status != "accepted":
                continue
        # The most frequent events first: messages, deferrals and blocks; then what moves the case.
        channel = _MESSAGES.get(kind)
        if channel is not None:
            if status != "sent":
                continue
            case.contacts[channel] = case.contacts.get(channel, 0) + 1
            prices = frame.prices(currency)
            if p >= 0 and prices is not None:
                _add(frame.tally(static, p, stage, grade, agent).cost, currency, prices.of(channel))
        elif status == "deferred":
            if p >= 0 and kind.endswith("_deferred"):
                _count(frame.tally(static, p, stage, grade, agent).deferred, reason_class(e.reason))
        elif status == "blocked":
            if p >= 0:
                _count(frame.tally(static, p, stage, grade, agent).blocked, reason_class(e.reason))
        elif kind not in _READ:
            continue
        elif kind == "stage_entered":
            stage = _text(d.get("stage")) or stage
        elif kind == "risk_grade_changed":
            grade = _text(d.get("to")) or grade
        elif kind == "assign":
            agent = _text(d.get("agent")) or agent
            case.agent = agent
        elif kind == "payment_received":
            amount = _amount(d.get("amount"))
            past_due = _amount(d.get("amount_past_due"), past_due)
            if amount is None:
                continue
            if promise is not None and promise.state == "pending":
                credited = promise.agent
            elif plan is not None and plan.state == "active":
                credited = plan.agent
            else:
                credited = agent
            paid = _Paid(case, amount, stage, grade, credited)
            reference = d.get("reference")
            if isinstance(reference, str):
                payments[reference] = paid
            case.collected += amount
            last_paid = (e.seq, p, paid)
            if p >= 0:
                _add(frame.tally(static, p, stage, grade, credited).collected, currency, amount)
        elif kind == "payment_reversed":
            past_due = _amount(d.get("amount_past_due"), past_due)
            reference = d.get("reference")
            paid = payments.get(reference) if isinstance(reference, str) else None
            amount = _amount(d.get("amount")) or (paid.amount if paid is not None else None)
            if amount is None:
                continue
            if paid is not None:
                paid.case.collected -= amount
            if p >= 0:
                row = (frame.tally(paid.case.static, p, paid.stage, paid.grade, paid.agent) if paid is not None
                       else frame.tally(static, p, stage, grade, agent))
                _add(row.collected, currency, -amount)  # one loan, one currency
        elif kind == "loan_update":
            _apd = _amount(d.get("amount_past_due"))
            later = _amount(d.get("later_payments")) or ZERO
            as_of, dpd = _day(d.get("as_of")), d.get("days_past_due")
            if d.get("current") is True:
                since, dpd_known, past_due = None, True, ZERO
            else:
                first = _first_day_past_due(as_of, dpd) if as_of is not None else None
                if first is not None:
                    since, dpd_known = (first if first < as_of else None), True
                if _apd is not None:
                    past_due = max(ZERO, _apd - later)
        elif kind == "promise_to_pay":
            amount = _amount(d.get("amount")) or ZERO
            promise = _Promise(_sender(e, d, agent), amount, stage, grade)
            case.promises.append(promise)
            if p >= 0:
                case.promise_periods.add(p)
                frame.tally(static, p, stage, grade, promise.agent).promises_made += 1
        elif kind in ("promise_kept", "promise_broken"):
            if promise is None:
                continue
            promise.state, promise.pidx = kind.removeprefix("promise_"), p
            if (kind == "promise_kept" and last_paid is not None and last_paid[0] == e.seq - 1
                    and last_paid[2].agent != promise.agent):
                # Paid in time, posted after the promise was judged broken: it kept the promise after all.
                _, paid_in, paid = last_paid
                if paid_in >= 0:
                    _add(frame.tally(static, paid_in, paid.stage, paid.grade, paid.agent).collected, currency,
                         -paid.amount)
                    _add(frame.tally(static, paid_in, paid.stage, paid.grade, promise.agent).collected, currency,
                         paid.amount)
                paid.agent = promise.agent
        elif kind == "propose_arrangement":
            plan = _Plan(_sender(e, d, agent), stage, grade)
            case.plans.append(plan)
            if p >= 0:
                frame.tally(static, p, stage, grade, plan.agent).agreed += 1
        elif kind in ("arrangement_completed", "arrangement_broken", "arrangement_cancelled"):
            if plan is not None:
                plan.state, plan.pidx = kind.removeprefix("arrangement_"), p
        elif kind == "arrangement_reinstated":
            if plan is not None:
                plan.state, plan.pidx = "active", None
        elif kind in RIGHT_PARTY:
            channel = "call" if kind == "call_outcome" else "visit"
            case.contacts[channel] = case.contacts.get(channel, 0) + 1
            if p >= 0:
                who = _sender(e, d, agent)
                row = frame.tally(static, p, stage, grade, who)
                row.outcomes += 1
                if isinstance(d.get("outcome"), str) and d["outcome"] in RIGHT_PARTY[kind]:
                    row.right_party += 1
                dials = d.get("dials")
                row.dials += dials if channel == "call" and isinstance(dials, int) and dials > 0 else 1
                prices = frame.prices(currency)
                if prices is not None:
                    _add(row.cost, currency, prices.of(channel))
        elif kind == "case_closed":
            if case.closed_at is None:
                case.closed_at, case.outcome = at, _text(d.get("outcome")) or UNKNOWN
            past_due = _amount(d.get("amount_past_due"), past_due)
    if case is not None:
        while snapping and b < nb:
            if case.closed_at is not None:
                case.snaps[b] = (CLOSED, case.outcome)
                break
            case.snaps[b] = (stage, grade, agent, bucket(bounds[b]))
            b += 1
    return case


def settle(frame: Frame, case: Case) -> None:
    """Add the case's cohort facts (it entered in the window) and case-period facts (it was open in
    a period), and its promises and plans under the period they were last judged in."""
    static, currency = case.static, frame.currency(case.static)
    if case.entry_pidx is not None:
        stage, grade, _, _ = case.entry
        row = frame.tally(static, case.entry_pidx, stage, grade, case.agent)
        row.entered += 1
        if case.outcome == CURED and case.closed_at is not None:
            row.cured += 1
            row.cure_days.append(days_between(case.opened_at, case.closed_at))
        for channel, n in case.contacts.items():
            row.contacts[channel] = row.contacts.get(channel, 0) + n
        past_due, outstanding = case.past_due_at_entry, case.outstanding_at_entry
        if past_due is not None or outstanding is not None:
            _add(row.cohort_collected, currency, case.collected)
        if past_due is not None:
            _add(row.cohort_past_due, currency, past_due)
            if past_due > 0:
                row.recovery.append(case.collected / past_due)
        if outstanding is not None:
            _add(row.cohort_outstanding, currency, outstanding)
            if outstanding > 0:
                row.liquidation.append(case.collected / outstanding)
    bounds = frame.boundaries
    for i in range(case.entry_pidx or 0, len(bounds) - 1):
        if case.closed_at is not None and case.closed_at < bounds[i]:
            break
        start = case.entry if case.entry_pidx == i else case.snaps.get(i)
        end = case.snaps.get(i + 1)
        if start is None or start[0] == CLOSED or end is None:
            break
        frame.count_period((static, i, start, end, i in case.promise_periods))
    for promise in case.promises:
        if promise.pidx is not None and promise.pidx >= 0 and promise.state in ("kept", "broken"):
            row = frame.tally(static, promise.pidx, promise.stage, promise.grade, promise.agent)
            row.promises_judged += 1
            if promise.state == "kept":
                row.promises_kept += 1
                _add(row.amount_kept, currency, promise.amount)
    for plan in case.plans:
        if plan.pidx is not None and plan.pidx >= 0:
            row = frame.tally(static, plan.pidx, plan.stage, plan.grade, plan.agent)
            if plan.state == "completed":
                row.plans_kept += 1
            elif plan.state == "broken":
                row.plans_broken += 1


def days_between(opened: datetime, closed: datetime) -> Decimal:
    """Whole and part days from ``opened`` to ``closed``, to two decimals."""
    span = closed - opened
    exact = Decimal(span.days) + Decimal(span.seconds * 1_000_000 + span.microseconds) / (DAY * 1_000_000)
    return exact.quantize(Decimal("0.01"))


def reason_class(reason: Any) -> str:
    """A deferral's or block's reason as the report groups it: dates and times left out."""
    if not isinstance(reason, str) or not reason.strip():
        return "(no reason given)"
    return _MOMENT.sub("…", reason.strip())[:200]


def _sender(e: Any, detail: dict[str, Any], fallback: str | None) -> str | None:
    """Who sent an agent's command: the identity the desk stamped (``actor``), else the agent the
    payload names (a call's ``agent``, a visit's first ``agents``), else the case's assigned agent."""
    if isinstance(e.actor, str) and e.actor:
        return e.actor
    named = detail.get("agent")
    if isinstance(named, str) and named:
        return named
    staff = detail.get("agents")
    if isinstance(staff, list) and staff and isinstance(staff[0], str) and staff[0]:
        return staff[0]
    return fallback


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: Any, default: Decimal | None = None) -> Decimal | None:
    """A decimal string (or int) as an amount; ``default`` when it is none (a float never is one, nor a
    number too large for any ledger)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return default
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        return default
    # The ledger's book holds no amount of 10^15 or more (ledger/book.py): nor does a report.
    return amount if amount.is_finite() and amount.adjusted() < 15 else default


def _first_day_past_due(day: date, dpd: Any) -> date | None:
    """The first day past due of a loan ``dpd`` days past due on ``day``; None when ``dpd`` is no number
    of days (or one no calendar holds)."""
    if isinstance(dpd, bool) or not isinstance(dpd, int) or not 0 <= dpd <= 100_000:
        return None
    try:
        return day - timedelta(days=dpd)
    except OverflowError:
        return None


def _day(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _add(totals: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    totals[currency] = totals.get(currency, ZERO) + amount


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1
