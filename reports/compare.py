"""Champion against challengers: is an arm's difference real yet, and if not, how many cases it needs.

Reads a KPI report computed ``by=("strategy",)`` (other dimensions split it into groups compared on
their own; rows keyed by ``arm`` name their champion). For each challenger and each metric:

- a rate whose ``Ratio`` counts successes among trials (cure rate: cured of the cases that entered;
  promise-kept rate: kept of the promises made, ...): the difference of the two proportions
  (challenger − champion) with Newcombe's hybrid score interval (method 10 of Newcombe 1998, from
  each arm's Wilson interval), and the two-sided p-value of the pooled two-proportion z test (the
  chi-square test of the 2×2 table, no continuity correction);
- a mean over cases (``recovery_rate``, from ``Row.samples``): Welch's t test and interval
  (unequal variances, Welch–Satterthwaite degrees of freedom).

A difference is ``significant`` at α = 0.05 only when the test and the interval agree (p < 0.05 and
the interval leaves out 0). When it is not, ``n_needed_per_arm`` is the size of each arm that would
detect the difference observed with power 0.8 at α = 0.05 (two-sided): for proportions the pooled
normal formula without continuity correction (Fleiss, Levin & Paik, *Statistical Methods for Rates and
Proportions*, 3rd ed., 2003, §4.2), for means (z_α/2 + z_β)² (s₁² + s₂²) / d². Statistics are floats:
they are estimates, not money.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from statistics import NormalDist, fmean, variance
from typing import Any

ALPHA = 0.05
POWER = 0.8
DEFAULT_METRICS = ("cure_rate", "promise_kept_rate", "right_party_contact_rate", "recovery_rate")
ARM_DIMENSIONS = ("strategy", "arm", "experiment")
# What each metric's n counts (reports/kpis.py's definitions), for the sentences of ``describe``.
UNITS = {"cure_rate": "cases", "promise_rate": "cases", "promise_kept_rate": "promises judged",
         "right_party_contact_rate": "contact outcomes", "recovery_rate": "cases", "liquidation_rate": "cases",
         "time_to_cure_days": "cures"}
_Z = NormalDist()


@dataclass(frozen=True)
class Comparison:
    """One challenger against the champion on one metric (values as shares, 0.25 = 25 %)."""

    metric: str
    champion: str
    challenger: str
    champion_value: float
    challenger_value: float
    difference: float  # challenger − champion
    ci_low: float  # the difference's 95 % interval
    ci_high: float
    p_value: float
    significant: bool
    n_champion: int
    n_challenger: int
    n_needed_per_arm: int | None  # when not significant and a difference was seen
    method: str = "proportions"  # or "means" (Welch)
    within: dict[str, str] = field(default_factory=dict)  # the report's other dimensions, when split

    @property
    def unit(self) -> str:
        return UNITS.get(self.metric, "observations")


def compare(report: Any, *, champion: str | None = None,
            metrics: Sequence[str] = DEFAULT_METRICS) -> list[Comparison]:
    """Each challenger against the champion, metric by metric, within each group of the report's
    other dimensions. The champion: ``champion`` (a strategy name) when given, else the row whose
    ``arm`` is "champion", else the strategy with the most cases (the champion takes what the
    challengers leave). Metrics an arm has no data for are left out."""
    if "strategy" not in report.by:
        raise ValueError("compare: the report must be computed by strategy (by=('strategy',))")
    groups: dict[tuple[tuple[str, str], ...], list[Any]] = {}
    for row in report.rows:
        if "arm" in row.key and row.key["arm"] not in ("champion", "challenger"):
            continue  # cases outside the experiment
        within = tuple((k, v) for k, v in row.key.items() if k not in ARM_DIMENSIONS[:2])
        groups.setdefault(within, []).append(row)
    found: list[Comparison] = []
    for within, rows in groups.items():
        base = _champion_row(rows, champion)
        if base is None:
            continue
        for row in rows:
            if row is base:
                continue
            for metric in metrics:
                comparison = _compare(metric, base, row)
                if comparison is not None:
                    found.append(_with(comparison, dict(within)))
    return found


def compare_arms(events: Iterable[Any], report: Any, *, costs: Any = None,
                 teams: Any = None) -> list[Comparison] | None:
    """The champion/challenger comparison that goes with ``report`` (None unless it is by strategy).

    Only the cases an experiment drew are compared: those whose ``case_opened`` names the experiment
    and the arm, each experiment's arms within the report's other dimensions. A report by strategy also
    holds cases started with ``--strategy NAME`` or before the experiment; counting them would make the
    champion's row no random sample. A window without any drawn case (a lab run, an experiment not yet
    started) compares its strategies as they are, when it has more than one."""
    if "strategy" not in report.by:
        return None
    from reports.kpis import compute  # the comparison's own breakdown of the same events

    others = tuple(d for d in report.by if d not in ARM_DIMENSIONS)
    drawn = compute(events, report.start, report.end, by=("experiment", "arm", "strategy", *others),
                    period=report.period, costs=costs, teams=teams)
    drawn.rows = [row for row in drawn.rows if row.key.get("arm") in ("champion", "challenger")]
    if drawn.rows:
        return compare(drawn)
    if len({row.key.get("strategy") for row in report.rows}) < 2:
        return None
    return compare(report)


def _champion_row(rows: list[Any], champion: str | None) -> Any | None:
    if champion is not None:
        return next((r for r in rows if r.key.get("strategy") == champion), None)
    marked = [r for r in rows if r.key.get("arm") == "champion"]
    if marked:
        return marked[0]
    return max(rows, key=lambda r: (_size(r), r.key.get("strategy", "")), default=None) if len(rows) > 1 else None


def _size(row: Any) -> float:
    entered = row.values.get("cases_entered")
    return float(entered) if isinstance(entered, (int, Decimal)) else 0.0


def _with(comparison: Comparison, within: dict[str, str]) -> Comparison:
    return Comparison(**{**comparison.__dict__, "within": within})


def _counts(value: Any) -> tuple[int, int] | None:
    """(successes, trials) of a Ratio of whole counts; None for anything else."""
    if value is None or isinstance(value, (int, float, Decimal, Fraction, dict)):
        return None
    num, den = getattr(value, "numerator", None), getattr(value, "denominator", None)
    if num is None or den is None or den <= 0 or num < 0 or num > den or num != int(num) or den != int(den):
        return None
    return int(num), int(den)


def _compare(metric: str, base: Any, other: Any) -> Comparison | None:
    names = (base.key["strategy"], other.key["strategy"])
    a, b = _counts(base.values.get(metric)), _counts(other.values.get(metric))
    if a is not None and b is not None:
        return proportions(metric, *names, a, b)
    xs, ys = base.samples.get(metric) or [], other.samples.get(metric) or []
    if len(xs) >= 2 and len(ys) >= 2:
        return means(metric, *names, [float(x) for x in xs], [float(y) for y in ys])
    return None


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for one proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def proportions(metric: str, champion: str, challenger: str, base: tuple[int, int], other: tuple[int, int],
                alpha: float = ALPHA, power: float = POWER) -> Comparison:
    """Two proportions: Newcombe's hybrid score interval and the pooled z test."""
    (x1, n1), (x2, n2) = base, other
    p1, p2 = x1 / n1, x2 / n2
    z = _Z.inv_cdf(1 - alpha / 2)
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = 1.0 if d == 0 else (0.0 if se == 0 else math.erfc(abs(d / se) / math.sqrt(2)))
    significant = p_value < alpha and not low <= 0 <= high
    needed = None if significant or d == 0 else sample_size_proportions(p1, p2, alpha, power)
    return Comparison(metric, champion, challenger, p1, p2, d, low, high, p_value, significant, n1, n2, needed)


def sample_size_proportions(p1: float, p2: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Cases per arm for a two-sided test of p1 against p2 (Fleiss, pooled, no continuity correction)."""
    za, zb = _Z.inv_cdf(1 - alpha / 2), _Z.inv_cdf(power)
    mean = (p1 + p2) / 2
    root = za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (p1 - p2) ** 2)


def means(metric: str, champion: str, challenger: str, xs: list[float], ys: list[float],
          alpha: float = ALPHA, power: float = POWER) -> Comparison:
    """Two means: Welch's t test and interval."""
    n1, n2 = len(xs), len(ys)
    m1, m2 = fmean(xs), fmean(ys)
    v1, v2 = variance(xs) / n1, variance(ys) / n2
    d, se = m2 - m1, math.sqrt(v1 + v2)
    if se == 0:
        p_value, low, high = (1.0 if d == 0 else 0.0), d, d
    else:
        df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
        p_value = t_two_sided(d / se, df)
        half = t_quantile(1 - alpha / 2, df) * se
        low, high = d - half, d + half
    significant = p_value < alpha and not low <= 0 <= high
    needed = None
    if not significant and d != 0:
        za, zb = _Z.inv_cdf(1 - alpha / 2), _Z.inv_cdf(power)
        needed = math.ceil((za + zb) ** 2 * (variance(xs) + variance(ys)) / d ** 2)
    return Comparison(metric, champion, challenger, m1, m2, d, low, high, p_value, significant, n1, n2, needed,
                      method="means")


def t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    return _incomplete_beta(df / (df + t * t), df / 2, 0.5)


def t_quantile(q: float, df: float) -> float:
    """The t with P(T ≤ t) = q (q > 0.5), by bisection on the two-sided tail."""
    tail, low, high = 2 * (1 - q), 0.0, 1.0
    while t_two_sided(high, df) > tail:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_two_sided(mid, df) > tail else (low, mid)
    return (low + high) / 2


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta I_x(a, b), by its continued fraction (Lentz's method)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _incomplete_beta(1 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2 == 0:
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


def describe(comparisons: Iterable[Comparison]) -> str:
    """The comparisons in plain sentences, one per metric under each challenger."""
    lines: list[str] = []
    heading = None
    for c in comparisons:
        head = (f"{c.challenger} (challenger) against {c.champion} (champion)"
                + (" · " + ", ".join(f"{k} {v}" for k, v in c.within.items()) if c.within else ""))
        if head != heading:
            lines.append(head)
            heading = head
        shown, moved = (_pct, _points) if c.metric.endswith("_rate") else (_number, _signed)
        lines.append(f"  {c.metric.replace('_', ' ')}: {shown(c.challenger_value)} against {shown(c.champion_value)}"
                     f" ({c.n_challenger:,} and {c.n_champion:,} {c.unit}), {moved(c.difference)} "
                     f"(95 % CI {moved(c.ci_low)} to {moved(c.ci_high)}), {_p(c.p_value)}: {_verdict(c)}")
    return "\n".join(lines) if lines else "no arms to compare: the report has one strategy, or no data for the metrics"


def _verdict(c: Comparison) -> str:
    if c.significant:
        return f"significant, {c.challenger} {'higher' if c.difference > 0 else 'lower'}"
    if c.difference == 0 or c.n_needed_per_arm is None:
        return "no difference observed"
    need = c.n_needed_per_arm
    more = {c.challenger: max(0, need - c.n_challenger), c.champion: max(0, need - c.n_champion)}
    if not any(more.values()):
        return (f"not significant, though each arm has the {need:,} {c.unit} that detect a difference this size "
                f"4 times in 5: there may be no real difference")
    if more[c.challenger] == more[c.champion]:
        return f"not yet significant: {more[c.challenger]:,} more {c.unit} per arm needed"
    wanted = " and ".join(f"{n:,} more for {name}" for name, n in more.items() if n)
    return f"not yet significant: {wanted} ({need:,} {c.unit} per arm detect a difference this size)"


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _points(difference: float) -> str:
    return f"{difference * 100:+.1f} points"


def _number(value: float) -> str:
    return f"{value:,.2f}"


def _signed(value: float) -> str:
    return f"{value:+,.2f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
