"""The KPI report's charts, drawn with matplotlib (Agg, no display) into SVG text.

An SVG string can be put inline in a page (the HTML report), or in an ``<img>`` as a data URL (the
desk, whose Content-Security-Policy forbids inline styles but allows ``data:`` images); PNG files are
for the README. Nothing is fetched from anywhere and no JavaScript is needed to see a chart.

Figures are built with ``matplotlib.figure.Figure``, never through pyplot: pyplot keeps global
state, which a desk serving several requests at once must not share.
"""

from __future__ import annotations

import base64
import io
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from domain.dpd import BUCKET_ORDER  # noqa: E402

CHANNELS = ("sms", "email", "letter", "call", "visit")
COLOURS = ("#2450d8", "#13795b", "#a15c00", "#b42318", "#6b3fa0", "#0f7c8c", "#5d6779", "#c2410c")
MOST_GROUPS = 4    # heat maps side by side; more groups are summed into one
MOST_REASONS = 12  # compliance reasons shown, the most frequent first
MOST_AGENTS = 25   # agents shown, the most worked items first
# Text stays text (small files, selectable labels) and data never becomes markup: a "$" in a
# strategy or agent name is not the start of a formula, and the output does not change between runs.
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "arrears", "text.parse_math": False,
         "font.family": ["DejaVu Sans", "sans-serif"], "font.size": 9, "axes.spines.top": False,
         "axes.spines.right": False, "axes.edgecolor": "#cfd6e0", "axes.labelcolor": "#172033",
         "xtick.color": "#5d6779", "ytick.color": "#5d6779", "axes.titlesize": 10, "axes.titleweight": "bold"}
# A figure reads matplotlib's settings as it is built, and matplotlib is not thread-safe: the style is
# set once for the process, and one chart is drawn at a time (the desk draws them in worker threads).
matplotlib.rcParams.update(STYLE)
_DRAWING = threading.Lock()


# -- reading the report ---------------------------------------------------------------------------
def number(value: Any) -> float | None:
    """A metric's value as a plot coordinate: a Ratio's value, an int or a Decimal; None when there is
    none (a Ratio over nothing, a missing value)."""
    if value is None or isinstance(value, bool):
        return None
    if hasattr(value, "numerator") and hasattr(value, "denominator") and hasattr(value, "value"):
        value = value.value
        return None if value is None else float(value)
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def group_label(key: Mapping[str, str], dimensions: Iterable[str] | None = None) -> str:
    """A row's key as a label: its values joined with " · " (the whole portfolio: "all")."""
    names = list(dimensions) if dimensions is not None else list(key)
    return " · ".join(str(key.get(name, "")) for name in names) or "all"


def _split(report: Any) -> tuple[list[str], list[str], dict[tuple[str, str], Any]]:
    """The rows as categories (values of the first ``by`` dimension, in the report's order), series
    (the rest of the key) and the row at each (category, series)."""
    first, rest = (report.by[:1], report.by[1:]) if report.by else ((), ())
    categories: list[str] = []
    series: list[str] = []
    rows: dict[tuple[str, str], Any] = {}
    for row in report.rows:
        category, name = group_label(row.key, first), group_label(row.key, rest)
        if category not in categories:
            categories.append(category)
        if name not in series:
            series.append(name)
        rows[(category, name)] = row
    return categories, series, rows


def bucket_order(name: str) -> tuple[int, int, str]:
    """DPD buckets in ladder order ("current", "1-30", ..., "181+"), then any other state ("cured",
    "closed", ...) by name."""
    if name in BUCKET_ORDER:
        return (0, BUCKET_ORDER.index(name), name)
    return (1, 0, name)


def roll_groups(report: Any) -> list[tuple[str, dict[str, dict[str, int]]]]:
    """The roll-rate matrices to draw: one per value of the first ``by`` dimension (summed over the
    rest of the key), or one for everything when that makes more than ``MOST_GROUPS``."""
    grouped: dict[str, dict[str, dict[str, int]]] = {}
    first = report.by[:1]
    for key, matrix in report.roll_matrix.items():
        label = group_label(dict(zip(report.by, key, strict=True)), first)
        into = grouped.setdefault(label, defaultdict(lambda: defaultdict(int)))
        for source, targets in matrix.items():
            for target, cases in targets.items():
                into[source][target] += int(cases)
    if len(grouped) > MOST_GROUPS:
        total: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for matrix in grouped.values():
            for source, targets in matrix.items():
                for target, cases in targets.items():
                    total[source][target] += cases
        return [("all", total)]
    return [(label, matrix) for label, matrix in grouped.items() if any(any(t.values()) for t in matrix.values())]


# -- drawing --------------------------------------------------------------------------------------
def _figure(width: float = 6.4, height: float = 3.4) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    figure.set_facecolor("white")
    return figure


def _empty(message: str) -> Figure:
    figure = _figure(6.4, 1.2)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", color="#5d6779", fontsize=10)
    return figure


def _bars(axes: Any, categories: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
          horizontal: bool = False, percent: bool = False, whole: bool = False) -> None:
    """Grouped bars: one group per category, one bar per series."""
    count = max(len(series), 1)
    width = 0.8 / count
    for index, (name, values) in enumerate(series.items()):
        where = [position - 0.4 + width * (index + 0.5) for position in range(len(categories))]
        # A missing value draws a bar of no length (hiding it would hide the series' legend key with it).
        heights = [(value or 0.0) * (100 if percent else 1) for value in values]
        colour = COLOURS[index % len(COLOURS)]
        if horizontal:
            axes.barh(where, heights, height=width, label=name, color=colour)
        else:
            axes.bar(where, heights, width=width, label=name, color=colour)
    ticks = list(range(len(categories)))
    if horizontal:
        axes.set_yticks(ticks, list(categories))
        if not axes.yaxis_inverted():  # the first category on top (once: a shared axis is inverted for both)
            axes.invert_yaxis()
    else:
        axes.set_xticks(ticks, list(categories), rotation=30 if len(categories) > 6 else 0,
                        ha="right" if len(categories) > 6 else "center")
    values_axis = axes.xaxis if horizontal else axes.yaxis
    if percent:
        values_axis.set_major_formatter("{x:.0f}%")
    if whole:  # counts: no tick between two whole numbers
        values_axis.set_major_locator(MaxNLocator(integer=True))
    if len(series) > 1 or (len(series) == 1 and next(iter(series)) != "all"):
        # Beside the bars (below horizontal ones), never over them.
        if horizontal:
            axes.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                        ncol=min(len(series), 3))
        else:
            axes.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="x" if horizontal else "y", color="#e2e7ee", linewidth=0.6)
    axes.set_axisbelow(True)


def roll_rate_figure(report: Any, empty: str = "No cases in this window") -> Figure:
    """The roll-rate matrix as a heat map: each row is the cases in a DPD bucket at the start, each
    column where they were at the end; a cell is the row's share (coloured) and its cases."""
    groups = roll_groups(report)
    if not groups:
        return _empty(empty)
    figure = _figure(min(4.2 * len(groups), 13), 3.8)
    # The same rows and columns in every group's map, so that the maps compare at a glance.
    sources = sorted({source for _, matrix in groups for source in matrix}, key=bucket_order)
    targets = sorted({target for _, matrix in groups for row in matrix.values() for target in row}, key=bucket_order)
    for index, (label, matrix) in enumerate(groups, start=1):
        axes = figure.add_subplot(1, len(groups), index)
        shares = []
        for source in sources:
            total = sum(matrix.get(source, {}).values())
            shares.append([matrix.get(source, {}).get(target, 0) / total if total else 0.0 for target in targets])
        # Cells as vector rectangles (an image would be embedded as a bitmap).
        axes.pcolormesh(shares, cmap="Blues", vmin=0, vmax=1, edgecolors="white", linewidth=1)
        for y, source in enumerate(sources):
            for x, target in enumerate(targets):
                cases = matrix.get(source, {}).get(target, 0)
                if cases:
                    axes.text(x + 0.5, y + 0.5, f"{shares[y][x]:.0%}\n{cases}", ha="center", va="center",
                              fontsize=7, color="white" if shares[y][x] > 0.55 else "#172033")
        axes.set_xticks([x + 0.5 for x in range(len(targets))], targets, rotation=45, ha="right")
        axes.set_yticks([y + 0.5 for y in range(len(sources))], sources)
        axes.invert_yaxis()
        axes.tick_params(length=0)
        axes.set_xlabel("to")
        axes.set_ylabel("from")
        axes.set_title(label if label != "all" or len(groups) > 1 else "")
        for side in axes.spines.values():
            side.set_visible(False)
    return figure


def cure_and_recovery_figure(report: Any, empty: str = "No cases in this window") -> Figure:
    """Cure rate and recovery rate by the first ``by`` dimension (bars for the rest of the key, and
    for each currency of the recovery)."""
    categories, series, rows = _split(report)
    if not rows:
        return _empty(empty)
    figure = _figure(8.8, 3.4)
    cure: dict[str, list[float | None]] = {name: [number(rows[(c, name)].values.get("cure_rate"))
                                                  if (c, name) in rows else None for c in categories]
                                           for name in series}
    recovery: dict[str, list[float | None]] = {}
    for name in series:
        for category in categories:
            row = rows.get((category, name))
            value = row.values.get("recovery_rate") if row is not None else None
            parts = value.items() if isinstance(value, Mapping) else [("", value)]
            for currency, part in parts:
                label = " ".join(bit for bit in (name if name != "all" else "", currency) if bit) or "all"
                recovery.setdefault(label, [None] * len(categories))[categories.index(category)] = number(part)
    for index, (title, values) in enumerate((("Cure rate", cure), ("Recovery rate", recovery)), start=1):
        axes = figure.add_subplot(1, 2, index)
        _bars(axes, categories, values or {"all": [None] * len(categories)}, percent=True)
        axes.set_title(title)
    return figure


def dpd_bucket_figure(report: Any, empty: str = "No cases in this window") -> Figure:
    """Cases by DPD bucket at the start of each period (or at entry) and at its end, or the outcome
    they closed with (the roll-rate matrix's rows and columns, summed over every group)."""
    start: dict[str, int] = defaultdict(int)
    end: dict[str, int] = defaultdict(int)
    for _, matrix in roll_groups(report):
        for source, targets in matrix.items():
            for target, cases in targets.items():
                start[source] += cases
                end[target] += cases
    buckets = sorted(set(start) | set(end), key=bucket_order)
    if not buckets:
        return _empty(empty)
    figure = _figure(6.4, 3.2)
    axes = figure.add_subplot()
    _bars(axes, buckets, {"at the start (or entry)": [start.get(b) or None for b in buckets],
                          "at the end (or outcome)": [end.get(b) or None for b in buckets]}, whole=True)
    axes.set_ylabel("cases")
    return figure


def contacts_per_cure_figure(report: Any, empty: str = "No cures in this window") -> Figure:
    """Contacts per cure by channel, one bar per group of the report."""
    series = {group_label(row.key, report.by): [number(row.values.get(f"contacts_per_cure_{channel}"))
                                                 for channel in CHANNELS] for row in report.rows}
    if not any(value is not None for values in series.values() for value in values):
        return _empty(empty)
    figure = _figure(6.4, 3.2)
    axes = figure.add_subplot()
    _bars(axes, CHANNELS, series)
    axes.set_ylabel("contacts per cure")
    return figure


def compliance_figure(report: Any, empty: str = "No contact was deferred or blocked") -> Figure:
    """Contacts deferred and blocked by the compliance check, by reason (the most frequent first)."""
    counts: dict[str, dict[str, int]] = {"deferred": defaultdict(int), "blocked": defaultdict(int)}
    for row in report.rows:
        for verdict in counts:
            for reason, cases in (row.values.get(f"compliance_{verdict}") or {}).items():
                counts[verdict][str(reason)] += int(cases)
    reasons = sorted(set(counts["deferred"]) | set(counts["blocked"]),
                     key=lambda r: (-(counts["deferred"].get(r, 0) + counts["blocked"].get(r, 0)), r))[:MOST_REASONS]
    if not reasons:
        return _empty(empty)
    figure = _figure(7.2, 1.4 + 0.32 * len(reasons))
    axes = figure.add_subplot()
    _bars(axes, [_short(r, 48) for r in reasons],
          {verdict: [counts[verdict].get(r) or None for r in reasons] for verdict in counts}, horizontal=True,
          whole=True)
    axes.set_xlabel("contacts")
    return figure


def agents_figure(rows: Sequence[Any], empty: str = "No agent worked a case in this window") -> Figure:
    """Each agent's worked items, contacts, right-party contacts, promises and promises kept, and the
    amount collected on their cases (per currency)."""
    shown = sorted(rows, key=lambda r: (-r.worked_items, r.agent))[:MOST_AGENTS]
    if not shown:
        return _empty(empty)
    names = [row.agent + (f" ({row.team})" if row.team else "") for row in shown]
    figure = _figure(9.6, 2.0 + 0.42 * len(shown))
    counts = figure.add_subplot(1, 2, 1)
    _bars(counts, names, {label: [getattr(row, field) or None for row in shown] for field, label in (
        ("worked_items", "worked items"), ("contacts", "contacts"), ("right_party_contacts", "right-party contacts"),
        ("promises", "promises"), ("promises_kept", "promises kept"))}, horizontal=True, whole=True)
    counts.set_title("Work and contacts")
    money = figure.add_subplot(1, 2, 2, sharey=counts)
    currencies = sorted({currency for row in shown for currency in row.amount_collected})
    _bars(money, names, {currency: [number(row.amount_collected.get(currency)) for row in shown]
                         for currency in currencies} or {"all": [None] * len(shown)}, horizontal=True)
    money.set_title("Amount collected")
    money.tick_params(labelleft=False)
    return figure


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


# -- output ---------------------------------------------------------------------------------------
def svg(figure: Figure, name: str, title: str = "") -> str:
    """``figure`` as an ``<svg>`` element for a page: no XML prolog, its ids prefixed with ``name``
    (several charts on one page must not share an id), an accessible name from ``title``."""
    out = io.StringIO()
    with _DRAWING:
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    text = text[text.index("<svg"):]
    # The RDF metadata block names vocabularies by http URL: a chart refers to nothing outside itself.
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    label = f' role="img" aria-label="{_attribute(title)}"' if title else ""
    return text.replace("<svg ", f'<svg class="chart"{label} ', 1)


def _attribute(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def data_url(svg_text: str) -> str:
    """An SVG as a ``data:`` URL for an ``<img>`` (a page whose CSP forbids inline styles shows it so)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg_text.encode("utf-8")).decode("ascii")


def png(figure: Figure, path: Path, dpi: int = 144) -> Path:
    """``figure`` as a PNG file (for the README)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _DRAWING:
        figure.savefig(path, format="png", dpi=dpi, metadata={"Software": None})
    return path


# name: (title, the figure from a report)
REPORT_CHARTS: dict[str, tuple[str, Callable[[Any], Figure]]] = {
    "roll_rates": ("Roll rates between DPD buckets", roll_rate_figure),
    "cure_recovery": ("Cure rate and recovery", cure_and_recovery_figure),
    "dpd_buckets": ("Cases by DPD bucket", dpd_bucket_figure),
    "contacts_per_cure": ("Contacts per cure by channel", contacts_per_cure_figure),
    "compliance": ("Contacts deferred and blocked, by reason", compliance_figure),
}
AGENTS_CHART = ("agents", "Agent performance")


def chart(name: str, report: Any) -> str:
    """The chart ``name`` of REPORT_CHARTS for ``report``, as SVG."""
    title, draw = REPORT_CHARTS[name]
    with _DRAWING:
        figure = draw(report)
    return svg(figure, name, title)


def agents_chart(rows: Sequence[Any]) -> str:
    """The agents' performance chart, as SVG."""
    with _DRAWING:
        figure = agents_figure(rows)
    return svg(figure, *AGENTS_CHART)


def report_charts(report: Any, agents: Sequence[Any] | None = None) -> dict[str, tuple[str, str]]:
    """Every chart of ``report`` (and of ``agents`` when given): name -> (title, SVG)."""
    charts = {name: (title, chart(name, report)) for name, (title, _) in REPORT_CHARTS.items()}
    if agents is not None:
        charts[AGENTS_CHART[0]] = (AGENTS_CHART[1], agents_chart(agents))
    return charts


def png_files(report: Any, folder: Path, agents: Sequence[Any] | None = None) -> list[Path]:
    """Every chart of ``report`` (and ``agents``) as ``folder/<name>.png``: the README's pictures."""
    figures = {name: draw for name, (_, draw) in REPORT_CHARTS.items()}
    paths = []
    for name, draw in figures.items():
        with _DRAWING:
            figure = draw(report)
        paths.append(png(figure, folder / f"{name}.png"))
    if agents is not None:
        with _DRAWING:
            figure = agents_figure(agents)
        paths.append(png(figure, folder / f"{AGENTS_CHART[0]}.png"))
    return paths
