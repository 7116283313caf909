"""Collection KPIs from the ledger's events: what a collections manager asks of a portfolio.

:func:`compute` turns the events of the cases (one delinquency episode of a loan each) into a
:class:`Report`: one :class:`Row` per combination of the dimensions asked for (``by``), each with
every metric of :data:`METRICS`. Pure: no clock, no I/O (``reports.source`` reads the ledger,
``reports.costs`` the unit costs). The definitions live here, as text beside the code that computes
them (``reports.walk``); ``docs/kpis.md`` is :func:`metrics_markdown`, word for word.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from domain.episodes import base_date
from domain.stages import Stage
from reports import walk
from reports.costs import Costs
from reports.walk import CHANNELS, NONE, Tally

DIMENSIONS = ("period", "strategy", "experiment", "arm", "segment", "jurisdiction", "product", "grade",
              "stage", "agent", "team", "currency")
PERIODS = ("day", "week", "month")
# What each unit's value is in a row, and how it reads.
UNITS = {
    "count": "a whole number (int)",
    "rate": "a Ratio, read as a percentage",
    "ratio": "a Ratio, read as a plain number (so many per one)",
    "days": "a number of days (Decimal, two decimals), None when there is nothing to measure",
    "money": "per currency, an amount (dict[currency, Decimal])",
    "money_rate": "per currency, a Ratio of two amounts, read as a percentage (dict[currency, Ratio])",
    "money_per": ("per currency, a Ratio of an amount to a count or an amount, read as an amount "
                  "(dict[currency, Ratio])"),
    "by_reason": "per reason, a count (dict[reason, int])",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the ledger's ``case_events`` (never its ``private`` column). Slotted: a report may
    hold millions of them."""

    loan_id: str
    episode: str
    seq: int
    at: datetime
    kind: str
    status: str
    reason: str | None
    actor: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Ratio:
    """A rate with what it is made of: a comparison of two arms needs both."""

    numerator: Decimal
    denominator: Decimal

    @property
    def value(self) -> Decimal | None:
        """numerator / denominator; None when the denominator is 0."""
        return None if not self.denominator else self.numerator / self.denominator


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    formula: str
    unit: str  # a key of UNITS


@dataclass
class Row:
    key: dict[str, str]                 # dimension -> value, in the order of ``by``; {}: the whole portfolio
    values: dict[str, Any]              # metric name -> value as its unit says (UNITS)
    samples: dict[str, list[Decimal]]   # per-case values behind a mean (recovery_rate, liquidation_rate,
                                        # time_to_cure_days), for the champion/challenger comparison


@dataclass
class Report:
    start: date
    end: date
    by: tuple[str, ...]
    period: str
    rows: list[Row]
    # row key (the values of ``by``, in order) -> bucket at the period's start -> where the case was at its end -> cases
    roll_matrix: dict[tuple[str, ...], dict[str, dict[str, int]]] = field(default_factory=dict)
    simulated: bool = False


@dataclass
class AgentRow:
    agent: str
    team: str | None
    worked_items: int
    contacts: int
    right_party_contacts: int
    promises: int
    promises_kept: int
    amount_kept: dict[str, Decimal]
    amount_collected: dict[str, Decimal]


CONVENTIONS = """\
- **A case** is one delinquency episode of a loan (its `loan_id` and `episode`): it enters with its
  `case_opened` event and leaves with its `case_closed`. A loan cured and delinquent again is a new case.
- **Time.** The report covers `[from, to)`: from the start of `from` to the start of `to` (UTC). Periods
  are UTC days (`2026-11-30`), ISO weeks, Monday to Sunday (`2026-W48`), or months (`2026-11`), cut at
  the report's ends. Without `period` in the breakdown, the whole report is one period.
- **Three kinds of figure.**
  *Cohort* figures follow the cases that **entered** in the period to the report's end, under the
  period they entered in and the stage and grade they entered with (their agent: the last one assigned
  before the report's end).
  *Case-period* figures count each case **open** at some moment of the period once, under the stage,
  grade and assigned agent it had at the period's start (or at its entry, if it entered during the
  period); "cases worked" are those.
  *Flow* figures count **events** in the period, under the stage and grade the case had when each
  happened.
- **Only what the case took counts**: accepted commands and the case's own events. Refused and duplicate
  commands count only in cost (they were billed).
- **Agent.** Of an agent's command (promise_to_pay, call_outcome, field_visit_report,
  propose_arrangement, hardship, dispute, hold, release, escalate): who sent it, as the desk stamped it
  (the event's `actor`, a desk user's name), else the agent its payload names, else the case's assigned
  agent. Of a payment: the agent who took the promise pending when it was paid (or kept after all by
  it), else the one who agreed the repayment plan running then, else the case's assigned agent then; a
  reversal counts against whoever the payment counted for. Of anything else: the case's assigned agent
  (the last `assign`) at the time. `(none)` when there is none. **Team**: the agent's team in the desk's
  users table.
- **Days past due** at a moment are the case's own count: the DPD at entry plus the days since (UTC
  dates), or from the servicer's last figures (`loan_update`: `as_of` less `days_past_due`; `current`:
  0); 0 while nothing is past due (the amounts the payments, reversals and updates record). Buckets:
  `current` (0), `1-30`, `31-60`, `61-90`, `91-120`, `121-180`, `181+` (domain/dpd.py).
- **Money** is counted per currency, never converted; a currency the cost file does not price has no
  cost figures.
- An event whose detail cannot be read (not a JSON object, an amount that is no amount) adds nothing
  it cannot say; it never stops the report.
"""

_COHORT = "Cohort: the cases that entered in the period"
_WORKED = "the cases worked in the period (open at its start, or entering during it)"
_ROLLED = ("cases open at the period's start (from their DPD bucket then), or entering during it (from "
           "their bucket at entry), whose DPD is known")

METRICS: tuple[Metric, ...] = (
    Metric("cases_entered", "Cases entered", "Cases whose case_opened falls in the period (cohort).", "count"),
    Metric("cases_open", "Cases open at period end",
           "Cases open at the period's end (entered before it, not closed by then), under the stage, grade and "
           "agent they have then.", "count"),
    Metric("roll_forward", "Roll forward",
           f"Of the {_ROLLED}: those still open at the period's end in a later DPD bucket ÷ all of them.", "rate"),
    Metric("roll_back", "Roll back",
           f"Of the {_ROLLED}: those still open at the period's end in an earlier bucket (current included) ÷ all "
           "of them.", "rate"),
    Metric("roll_cured", "Roll to cured",
           f"Of the {_ROLLED}: those closed cured during the period ÷ all of them. The roll-rate matrix counts "
           "the same cases from their bucket to their bucket at the period's end, or to the outcome they closed "
           "with (cured, settled, written_off, closed).", "rate"),
    Metric("cure_rate", "Cure rate",
           f"{_COHORT}: those closed cured (case_closed outcome cured) by the report's end ÷ cases_entered.",
           "rate"),
    Metric("time_to_cure_days", "Mean time to cure (days)",
           f"{_COHORT}, cured by the report's end: the mean of case_closed at − case_opened at, in days (two "
           "decimals).", "days"),
    Metric("time_to_cure_median_days", "Median time to cure (days)",
           "The median of the same days as time_to_cure_days.", "days"),
    Metric("promise_rate", "Promise rate",
           f"Of {_WORKED}: those with at least one accepted promise_to_pay in the period ÷ all of them "
           "(case-period).", "rate"),
    Metric("promise_kept_rate", "Promise-kept rate",
           "Promises kept ÷ promises judged (kept or broken). Each promise counts once, in the period of its last "
           "judgment (promise_kept or promise_broken) before the report's end: a promise broken and then kept "
           "after all (paid in time, posted late) is kept; one kept and then broken by a reversed payment is "
           "broken. Under the stage and grade the case had when the promise was made, and the agent who took it.",
           "rate"),
    Metric("amount_kept", "Amount of promises kept",
           "The promised amounts of the promises promise_kept_rate counts as kept, per currency.", "money"),
    Metric("right_party_contact_rate", "Right-party contact rate",
           "Accepted call_outcome 'reached' and field_visit_report 'met' or 'paid' ÷ all accepted call_outcome "
           "and field_visit_report in the period (flow), under the agent who reported them.", "rate"),
    *(Metric(f"contacts_per_cure_{channel}", f"Contacts per cure: {channel}",
             f"{_COHORT}: their {what} by the report's end ÷ those of them cured by then.", "ratio")
      for channel, what in (("sms", "texts sent (sms_sent)"), ("email", "e-mails sent (email_sent)"),
                            ("letter", "letters sent (letter_sent)"),
                            ("call", "calls reported (accepted call_outcome, one per call task)"),
                            ("visit", "visits reported (accepted field_visit_report)"))),
    Metric("arrangements_agreed", "Arrangements agreed",
           "Accepted propose_arrangement in the period (flow), under the agent who proposed it.", "count"),
    Metric("arrangements_kept", "Arrangements kept",
           "Arrangements whose last ending before the report's end is arrangement_completed, in the period of "
           "that ending, under the stage and grade when agreed and the agent who agreed it (a plan reinstated "
           "by a reversed payment ends again later).", "count"),
    Metric("arrangements_broken", "Arrangements broken",
           "The same, for arrangements whose last ending is arrangement_broken (cancelled ones, ended by the "
           "case closing, are neither).", "count"),
    Metric("amount_collected", "Amount collected",
           "Accepted payment_received amounts in the period less accepted payment_reversed amounts in the "
           "period, per currency (flow; a reversal counts under the row of the payment it reverses, when the "
           "report holds that payment).", "money"),
    Metric("recovery_rate", "Recovery rate",
           f"{_COHORT}: what was collected on them (payments less reversals) by the report's end ÷ their "
           "amount past due at entry (case_opened amount_past_due), per currency. Samples: each case's own "
           "ratio.", "money_rate"),
    Metric("liquidation_rate", "Liquidation rate",
           f"{_COHORT}: the same collections ÷ their outstanding at entry (case_opened outstanding), per "
           "currency. Samples: each case's own ratio.", "money_rate"),
    Metric("cost", "Cost",
           "Per currency, at the cost file's prices (reports/costs.toml): actions_per_case × action for each case "
           "entering in the period, actions_per_command × action for each command a case received in the period "
           "(accepted, refused or duplicate), and a unit price for each text, e-mail and letter sent, call "
           "reported (call_outcome) and visit reported (field_visit_report) in the period (flow). A case's "
           "actions are charged when it enters.", "money"),
    Metric("cost_per_case", "Cost per case",
           f"cost ÷ {_WORKED}, per currency.", "money_per"),
    Metric("cost_per_unit_recovered", "Cost per unit recovered",
           "cost ÷ amount_collected in the period, per currency (what one unit of money collected cost).",
           "money_per"),
    Metric("compliance_deferred", "Contacts deferred, by reason",
           "Contacts the compliance checks deferred (a channel's _deferred events: sms_deferred, call_deferred, "
           "...) in the period, by reason, its dates and times left out (flow).", "by_reason"),
    Metric("compliance_blocked", "Contacts blocked, by reason",
           "Contacts blocked (a channel's _blocked events, and its _cancelled ones stopped on their way) in the "
           "period, by reason, its dates and times left out (flow).", "by_reason"),
)
METRIC_NAMES = tuple(metric.name for metric in METRICS)
# The per-case values kept beside a mean metric (Row.samples).
SAMPLED = ("recovery_rate", "liquidation_rate", "time_to_cure_days")
_STAGE_ORDER = {stage.value: n for n, stage in enumerate(Stage)}


def compute(events: Iterable[Event], start: date, end: date, *, by: Sequence[str] = (), period: str = "month",
            costs: Costs | None = None, teams: Mapping[str, str] | None = None, simulated: bool = False) -> Report:
    """The KPIs of ``events`` over ``[start, end)``, one row per combination of ``by``'s values.

    ``events``: every event before ``end`` of each case that was open in the window (its
    ``case_opened`` included), in any order (``reports.source.read_events`` reads exactly those).
    ``period`` cuts the window when ``"period"`` is in ``by``. ``costs``: the unit costs
    (``reports.costs.load_costs()``); without them the cost metrics are empty. ``teams``: agent name
    -> team. Raises ValueError naming a dimension or period it does not know, or an empty window."""
    frame = _frame(tuple(by), start, end, period, costs, teams)
    _fold_all(frame, events)
    keys = sorted(frame.tallies, key=lambda key: _order(frame.by, key))
    rows = [Row(dict(zip(frame.by, key, strict=True)), _values(frame.tallies[key], costs),
                _samples(frame.tallies[key])) for key in keys]
    matrix = {key: {source: dict(targets) for source, targets in frame.tallies[key].matrix.items()}
              for key in keys if frame.tallies[key].matrix}
    return Report(start, end, frame.by, period, rows, matrix, simulated)


def agent_performance(events: Iterable[Event], start: date, end: date, *,
                      teams: Mapping[str, str] | None = None) -> list[AgentRow]:
    """What each agent did in ``[start, end)``, as an incentive scheme pays on it: call and visit
    reports (worked items), dials and visits made (contacts), right-party contacts, promises taken and
    kept (with their amounts), and the amount collected credited to them (attributed as in
    :data:`CONVENTIONS`). Agents with nothing in the window are left out."""
    frame = _frame(("agent",), start, end, "month", None, teams)
    _fold_all(frame, events)
    rows = []
    for (agent,), tally in sorted(frame.tallies.items()):
        collected = {currency: amount for currency, amount in sorted(tally.collected.items())}
        if agent == NONE or not (tally.outcomes or tally.promises_made or tally.promises_judged or collected):
            continue
        rows.append(AgentRow(agent, (teams or {}).get(agent), tally.outcomes, tally.dials, tally.right_party,
                             tally.promises_made, tally.promises_kept, dict(sorted(tally.amount_kept.items())),
                             collected))
    return rows


def period_key(day: date, period: str) -> str:
    """The name of the period ``day`` falls in: ``2026-11-30``, ``2026-W48`` or ``2026-11``."""
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    raise ValueError(f"period: {period!r} is not one of {', '.join(PERIODS)}")


def periods(start: date, end: date, period: str) -> list[tuple[str, date, date]]:
    """The periods of ``[start, end)``: (name, first day, day after the last), cut at both ends."""
    found, day = [], start
    while day < end:
        if period == "day":
            following = day + timedelta(days=1)
        elif period == "week":
            following = day + timedelta(days=7 - day.weekday())
        else:
            following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        following = min(following, end)
        found.append((period_key(day, period), day, following))
        day = following
    return found


def metrics_markdown() -> str:
    """docs/kpis.md: the conventions and every metric's definition, as METRICS says them."""
    lines = ["# Collection KPIs: definitions", "",
             "Generated from `reports/kpis.py` (`METRICS`, `CONVENTIONS`); a test checks this file says the same.",
             "`python -m reports kpis --from YYYY-MM-DD --to YYYY-MM-DD --by strategy` computes them from the ledger.",
             "", "## Conventions", "", CONVENTIONS.rstrip(), "", "## Dimensions", "",
             "`--by` takes any of: " + ", ".join(f"`{d}`" for d in DIMENSIONS) + ". `strategy`, `experiment`, "
             "`arm`, `segment`, `jurisdiction`, `product` and `currency` are the case's, from its case_opened "
             f"(`{NONE}` when it has none); `grade`, `stage`, `agent` and `team` are as the figure's kind says "
             "(cohort, case-period or flow).", "", "## Metrics", "",
             "| metric | what | unit | formula |", "| --- | --- | --- | --- |"]
    lines += [f"| `{m.name}` | {m.label} | {m.unit} | {m.formula} |" for m in METRICS]
    lines += ["", "## Units", "", *(f"- **{unit}**: {meaning}" for unit, meaning in UNITS.items()), ""]
    return "\n".join(lines)


# -- assembling the report ---------------------------------------------------------------------------

def _frame(by: tuple[str, ...], start: date, end: date, period: str, costs: Costs | None,
           teams: Mapping[str, str] | None) -> walk.Frame:
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"by: {unknown[0]!r} is not one of {', '.join(DIMENSIONS)}")
    if len(set(by)) != len(by):
        raise ValueError("by: names a dimension twice")
    if period not in PERIODS:
        raise ValueError(f"period: {period!r} is not one of {', '.join(PERIODS)}")
    if end <= start:
        raise ValueError(f"to: {end} is not after from ({start})")
    cuts = periods(start, end, period) if "period" in by else [(f"{start}/{end}", start, end)]
    bounds = [_midnight(first) for _, first, _ in cuts] + [_midnight(end)]
    return walk.Frame(by, bounds, [name for name, _, _ in cuts], costs, teams)


def _fold_all(frame: walk.Frame, events: Iterable[Event]) -> None:
    """Fold every case, a loan's episodes in turn (a reversal in one may undo a payment of an earlier
    one), then settle them: a case's cohort figures need what its loan's later episodes took back."""
    for episodes in _by_loan(events):
        payments: dict[str, Any] = {}
        folded = [walk.fold(frame, case_events, payments) for case_events in episodes]
        for case in folded:
            if case is not None:
                walk.settle(frame, case)
    frame.add_periods()


def _by_loan(events: Iterable[Event]) -> list[list[list[Event]]]:
    """The events grouped by loan, each loan's episodes in the order they followed each other, each
    episode's events in ``seq`` order."""
    cases: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        found = cases.get((event.loan_id, event.episode))
        if found is None:
            cases[(event.loan_id, event.episode)] = [event]
        else:
            found.append(event)
    loans: dict[str, list[tuple[str, list[Event]]]] = {}
    for (loan_id, episode), case_events in cases.items():
        case_events.sort(key=lambda e: e.seq)
        loans.setdefault(loan_id, []).append((episode, case_events))
    return [[case_events for _, case_events in sorted(episodes, key=lambda item: _episode_order(item[0]))]
            for episodes in loans.values()]


def _episode_order(episode: str) -> tuple[int, date, int, str]:
    """As ledger.book.episode_order: a case from before episodes first, then by date and number."""
    if not episode:
        return (0, date.min, 0, episode)
    try:
        day = base_date(episode) or date.min
    except ValueError:
        return (1, date.min, 0, episode)
    _, _, tail = episode.partition(".")
    return (2, day, int(tail) if tail.isdigit() else 1, episode)


def _values(t: Tally, costs: Costs | None) -> dict[str, Any]:
    def ratio(numerator: int | Decimal, denominator: int | Decimal) -> Ratio:
        return Ratio(Decimal(numerator), Decimal(denominator))

    cured_days = t.cure_days
    priced = sorted(c for c in set(t.cost) | set(t.worked_by_currency)
                    if costs is not None and costs.for_currency(c) is not None)
    cost = {c: t.cost.get(c, Decimal(0)) for c in priced}
    values: dict[str, Any] = {
        "cases_entered": t.entered,
        "cases_open": t.open,
        "roll_forward": ratio(t.roll_forward, t.roll_n),
        "roll_back": ratio(t.roll_back, t.roll_n),
        "roll_cured": ratio(t.roll_cured, t.roll_n),
        "cure_rate": ratio(t.cured, t.entered),
        "time_to_cure_days": _two(sum(cured_days, Decimal(0)) / len(cured_days)) if cured_days else None,
        "time_to_cure_median_days": _two(statistics.median(cured_days)) if cured_days else None,
        "promise_rate": ratio(t.promise_cases, t.worked),
        "promise_kept_rate": ratio(t.promises_kept, t.promises_judged),
        "amount_kept": dict(sorted(t.amount_kept.items())),
        "right_party_contact_rate": ratio(t.right_party, t.outcomes),
        **{f"contacts_per_cure_{c}": ratio(t.contacts.get(c, 0), t.cured) for c in CHANNELS},
        "arrangements_agreed": t.agreed,
        "arrangements_kept": t.plans_kept,
        "arrangements_broken": t.plans_broken,
        "amount_collected": dict(sorted(t.collected.items())),
        "recovery_rate": {c: ratio(t.cohort_collected.get(c, 0), due) for c, due in sorted(t.cohort_past_due.items())},
        "liquidation_rate": {c: ratio(t.cohort_collected.get(c, 0), owed)
                             for c, owed in sorted(t.cohort_outstanding.items())},
        "cost": cost,
        "cost_per_case": {c: ratio(cost[c], t.worked_by_currency.get(c, 0)) for c in priced},
        "cost_per_unit_recovered": {c: ratio(cost[c], t.collected.get(c, 0)) for c in priced},
        "compliance_deferred": dict(sorted(t.deferred.items())),
        "compliance_blocked": dict(sorted(t.blocked.items())),
    }
    assert tuple(values) == METRIC_NAMES, "every metric of METRICS, in its order"
    return values


def _samples(t: Tally) -> dict[str, list[Decimal]]:
    samples = {"recovery_rate": list(t.recovery), "liquidation_rate": list(t.liquidation),
               "time_to_cure_days": list(t.cure_days)}
    assert tuple(samples) == SAMPLED
    return samples


def _order(by: tuple[str, ...], key: tuple[str, ...]) -> tuple[Any, ...]:
    """Rows in reading order: periods in time, stages along the ladder, the rest alphabetically, and
    "(none)" after the values."""
    return tuple((_STAGE_ORDER.get(value, len(_STAGE_ORDER)) if dim == "stage" else 0, value == NONE, value)
                 for dim, value in zip(by, key, strict=True))


def _two(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
