"""A KPI report and the agents' performance as text: a table for people, CSV for spreadsheets, JSON
for programs.

The table and the HTML page show a rate as a percentage with what it is made of ("41.2% (7/17)"):
a manager judges a rate over 17 cases differently from one over 1,700. CSV is long ("tidy"): one line
per group, metric and currency or reason, so any number of currencies, reasons and groups fits one
header and pivots in a spreadsheet. JSON keeps the numbers exact: amounts and rates are decimal
strings, a rate carries its numerator and denominator.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from reports.kpis import METRICS, Metric

SIMULATED = "SIMULATED: figures from a what-if simulation, not from real cases"
TABLE_WIDTH = 132  # wider tables are cut into blocks of columns, each with the metric names
AGENT_FIELDS = ("agent", "team", "worked_items", "contacts", "right_party_contacts", "promises", "promises_kept",
                "amount_kept", "amount_collected")
RATE_UNITS = ("rate", "money_rate")


# -- values ---------------------------------------------------------------------------------------
def is_ratio(value: Any) -> bool:
    return hasattr(value, "numerator") and hasattr(value, "denominator") and hasattr(value, "value")


def _count(value: Decimal) -> str:
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"


def percent(value: Decimal | float | None, places: int = 1) -> str:
    return "–" if value is None else f"{Decimal(str(value)) * 100:.{places}f}%"


def shown(value: Any, unit: str = "count") -> str:
    """One metric's value as a person reads it (a rate as a percentage, money with its currency)."""
    if value is None:
        return "–"
    if is_ratio(value):
        if unit in RATE_UNITS:
            if value.value is None:
                return "–"
            return f"{percent(value.value)} ({_count(Decimal(value.numerator))}/{_count(Decimal(value.denominator))})"
        if value.value is None:
            return "–"
        amount = Decimal(value.value)
        # A cost per unit recovered is a few hundredths: two decimals would say 0.02 for 0.0150 and 0.0249.
        return f"{amount:,.4f}" if unit == "money_per" and abs(amount) < 1 else f"{amount:,.2f}"
    if isinstance(value, Mapping):
        if not value:
            return "–"
        if unit == "by_reason":
            return ", ".join(f"{reason} {count}" for reason, count in sorted(value.items(), key=lambda i: (-i[1], i[0])))
        parts = []
        for currency, amount in sorted(value.items()):
            if is_ratio(amount) and unit == "money_rate":
                parts.append(f"{currency} {percent(amount.value)}")
            else:
                parts.append(f"{shown(amount, 'money_per' if unit == 'money_per' else 'money')} {currency}")
        return "; ".join(parts)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (Decimal, float)):
        if unit in RATE_UNITS:
            return percent(value)
        return f"{Decimal(str(value)):,.2f}" if unit in ("money", "money_rate") else f"{Decimal(str(value)):,.1f}"
    return str(value)


def plain(value: Any) -> Any:
    """``value`` as JSON: Decimals as strings (exact), a Ratio as {value, numerator, denominator},
    dates in ISO 8601, dataclasses as objects."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")  # as exact as it was computed: "1200.50" stays in its currency's decimals
    if isinstance(value, float):
        return format(Decimal(str(value)), "f")
    if is_ratio(value):
        rate = value.value
        return {"value": None if rate is None else _trimmed(Decimal(rate).quantize(Decimal("0.000001"))),
                "numerator": plain(value.numerator), "denominator": plain(value.denominator)}
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    return str(value)


def _trimmed(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text and "E" not in text else text


# -- the report -----------------------------------------------------------------------------------
def metrics_of(report: Any) -> list[Metric]:
    """The report's metrics in display order: every metric of METRICS that some row has."""
    present = {name for row in report.rows for name in row.values}
    return [metric for metric in METRICS if metric.name in present]


def columns(report: Any) -> list[str]:
    """A column heading per row: its key's values (the whole portfolio: "all")."""
    return [" · ".join(str(row.key.get(d, "")) for d in report.by) or "all" for row in report.rows]


def heading(report: Any) -> str:
    by = ", ".join(report.by) if report.by else "the whole portfolio"
    return f"KPIs {report.start.isoformat()} to {report.end.isoformat()} · by {by} · period {report.period}"


def to_table(report: Any, comparison: Sequence[Any] | None = None) -> str:
    """The report as a text table: a line per metric, a column per group (cut into blocks of columns
    when too wide); a simulated report opens and closes with a SIMULATED banner."""
    lines: list[str] = []
    banner = f"*** {SIMULATED} ***"
    if report.simulated:
        lines += [banner, ""]
    lines.append(heading(report))
    metrics = metrics_of(report)
    # Counts by reason would make one cell as wide as every reason together: the grid shows each group's
    # total, and a grid of its own below lists the reasons.
    cells = [[_total(row.values.get(m.name)) if m.unit == "by_reason" else shown(row.values.get(m.name), m.unit)
              for row in report.rows] for m in metrics]
    names = [m.label for m in metrics]
    lines += _grid(["metric", *columns(report)], [[name, *row] for name, row in zip(names, cells, strict=True)])
    if not report.rows:
        lines.append("(no cases in this window)")
    for metric in (m for m in metrics if m.unit == "by_reason"):
        counts = [row.values.get(metric.name) or {} for row in report.rows]
        reasons = sorted({reason for by_reason in counts for reason in by_reason},
                         key=lambda reason: (-sum(c.get(reason, 0) for c in counts), reason))
        if reasons:
            lines += ["", metric.label]
            lines += _grid(["reason", *columns(report)],
                           [[_cut(reason), *(f"{c.get(reason, 0):,}" for c in counts)] for reason in reasons])
    if comparison is not None:
        lines += ["", "Champion / challenger", comparison_text(comparison)]
    if report.simulated:
        lines += ["", banner]
    return "\n".join(lines) + "\n"


REASON_WIDTH = 80  # a reason longer than this is cut in the table (CSV and JSON keep it whole)


def _cut(reason: str) -> str:
    return reason if len(reason) <= REASON_WIDTH else reason[:REASON_WIDTH - 1] + "…"


def _total(by_reason: Any) -> str:
    return "–" if not by_reason else f"{sum(by_reason.values()):,} (by reason below)"


def _grid(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """``rows`` under ``header``, the first column repeated in each block of columns that fits; the
    first ``text_columns`` are text (left-aligned), the rest figures (right-aligned)."""
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
    blocks: list[list[int]] = []
    block: list[int] = []
    used = widths[0]
    for index in range(1, len(header)):
        if block and used + 3 + widths[index] > TABLE_WIDTH:
            blocks.append(block)
            block, used = [], widths[0]
        block.append(index)
        used += 3 + widths[index]
    blocks.append(block)
    lines: list[str] = []
    for number, block in enumerate(blocks):
        chosen = [0, *block]
        if number:
            lines.append("")
        for cells in (header, None, *rows):
            if cells is None:
                lines.append("-+-".join("-" * widths[i] for i in chosen))
            else:
                lines.append(" | ".join(cells[i].ljust(widths[i]) if i < text_columns else cells[i].rjust(widths[i])
                                        for i in chosen).rstrip())
    return lines


def to_csv(report: Any) -> str:
    """The report as long CSV: ``start, end, <by...>, metric, unit, part, value, numerator,
    denominator, simulated`` with one line per group, metric and part (a currency, a reason; empty for
    a plain number). A rate's value is a fraction (0.25), not a percentage."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # ``simulated`` on every line, not in a banner: a CSV is read by programs, and forwarded.
    simulated = "true" if report.simulated else "false"
    writer.writerow(["start", "end", *report.by, "metric", "unit", "part", "value", "numerator", "denominator",
                     "simulated"])
    for row in report.rows:
        key = [cell_text(row.key.get(d, "")) for d in report.by]
        for metric in metrics_of(report):
            value = row.values.get(metric.name)
            parts = value.items() if isinstance(value, Mapping) else [("", value)]
            for part, item in sorted(parts, key=lambda p: str(p[0])):
                writer.writerow([report.start.isoformat(), report.end.isoformat(), *key, metric.name, metric.unit,
                                 cell_text(part), *_csv_numbers(item), simulated])
    return out.getvalue()


def cell_text(text: Any) -> str:
    """Text from the ledger (an agent's or team's name, a reason) as a CSV cell a spreadsheet shows and
    never runs: one that would start a formula (= + - @, a tab or a carriage return) gets a leading
    apostrophe (OWASP's advice on CSV injection). Figures are written as they are."""
    text = str(text)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_numbers(value: Any) -> list[str]:
    if value is None:
        return ["", "", ""]
    if is_ratio(value):
        rate = plain(value)
        return [rate["value"] or "", rate["numerator"], rate["denominator"]]
    return [str(plain(value)), "", ""]


def to_json(report: Any, comparison: Sequence[Any] | None = None) -> str:
    """The report as JSON: the window, the metrics (name, label, unit, formula), each row's key and
    values by metric name, the roll-rate matrices, ``simulated`` and, when given, the comparison."""
    body: dict[str, Any] = {
        "start": report.start.isoformat(), "end": report.end.isoformat(), "by": list(report.by),
        "period": report.period, "simulated": bool(report.simulated),
        "metrics": [{"name": m.name, "label": m.label, "unit": m.unit, "formula": m.formula} for m in metrics_of(report)],
        "rows": [{"key": dict(row.key), "values": {name: plain(value) for name, value in row.values.items()}}
                 for row in report.rows],
        "roll_matrix": [{"key": dict(zip(report.by, key, strict=True)), "from": plain(matrix)}
                        for key, matrix in report.roll_matrix.items()],
    }
    if comparison is not None:
        body["comparison"] = [plain(item) for item in comparison]
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


# -- champion and challenger ------------------------------------------------------------------------
COMPARISON_COLUMNS = ["metric", "within", "champion", "challenger", "difference", "95% interval", "p", "verdict"]


def comparison_text(comparison: Sequence[Any]) -> str:
    """The comparison in sentences, as ``reports.compare`` words them."""
    from reports.compare import describe

    return describe(comparison)


def _metric_unit(name: str) -> str:
    return next((m.unit for m in METRICS if m.name == name), "count")


def _points(value: Any, unit: str) -> str:
    """A difference: percentage points for rates, else the number."""
    if value is None:
        return "–"
    amount = Decimal(str(value))
    if unit in RATE_UNITS:
        return f"{amount * 100:+.1f} pts"
    return f"{amount:+,.2f}"


def verdict(item: Any) -> str:
    """Whether the difference is significant; if not yet, the cases each arm would need."""
    if item.significant:
        return f"significant: {item.challenger} {'higher' if item.difference > 0 else 'lower'}"
    needed = getattr(item, "n_needed_per_arm", None)
    if not needed:
        return "no difference observed"
    if needed <= min(item.n_champion, item.n_challenger):
        return f"not significant, though each arm has the {needed:,} needed to see a difference this size"
    return f"not yet significant: needs {needed:,} per arm"


def comparison_rows(comparison: Sequence[Any]) -> list[list[str]]:
    """Each comparison as cells: both arms' values with their sample sizes, the difference with its
    95% interval, the p-value and the verdict (if not significant, the sample size it would need)."""
    rows = []
    for item in comparison:
        unit = _metric_unit(item.metric)

        def value(v: Any, n: Any, strategy: str, unit: str = unit) -> str:
            text = "–" if v is None else (percent(v) if unit in RATE_UNITS else f"{Decimal(str(v)):,.2f}")
            return f"{strategy} {text} (n={n:,})"

        within = ", ".join(f"{k} {v}" for k, v in (getattr(item, "within", None) or {}).items())
        p_value = "–" if item.p_value is None else ("< 0.001" if item.p_value < 0.001 else f"{item.p_value:.3f}")
        rows.append([item.metric, within, value(item.champion_value, item.n_champion, item.champion),
                     value(item.challenger_value, item.n_challenger, item.challenger),
                     _points(item.difference, unit),
                     f"[{_points(item.ci_low, unit)}, {_points(item.ci_high, unit)}]", p_value, verdict(item)])
    return rows


# -- agents ---------------------------------------------------------------------------------------
def agents_table(rows: Iterable[Any]) -> str:
    """The agents' performance as a text table, a line per agent."""
    rows = list(rows)
    header = ["agent", "team", "worked items", "contacts", "right-party", "promises", "kept", "amount kept",
              "amount collected"]
    cells = [[row.agent, row.team or "", f"{row.worked_items:,}", f"{row.contacts:,}",
              f"{row.right_party_contacts:,}", f"{row.promises:,}", f"{row.promises_kept:,}",
              shown(row.amount_kept, "money"), shown(row.amount_collected, "money")] for row in rows]
    lines = _grid(header, cells, text_columns=2)
    if not rows:
        lines.append("(no agent worked a case in this window)")
    return "\n".join(lines) + "\n"


def agents_csv(rows: Iterable[Any]) -> str:
    """The agents' performance as CSV, a line per agent and a column per currency of each amount
    (``amount_collected_USD``): the shape a payroll spreadsheet takes."""
    rows = list(rows)
    currencies = sorted({c for row in rows for c in (*row.amount_kept, *row.amount_collected)})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*AGENT_FIELDS[:7], *(f"amount_kept_{c}" for c in currencies),
                     *(f"amount_collected_{c}" for c in currencies)])
    for row in rows:
        writer.writerow([cell_text(row.agent), cell_text(row.team or ""), row.worked_items, row.contacts, row.right_party_contacts,
                         row.promises, row.promises_kept,
                         *(plain(row.amount_kept.get(c, Decimal(0))) for c in currencies),
                         *(plain(row.amount_collected.get(c, Decimal(0))) for c in currencies)])
    return out.getvalue()


def agents_json(rows: Iterable[Any]) -> str:
    """The agents' performance as JSON: ``{"agents": [{agent, team, ..., amount_collected: {USD: "…"}}]}``."""
    return json.dumps({"agents": [plain(row) for row in rows]}, ensure_ascii=False, indent=2) + "\n"
