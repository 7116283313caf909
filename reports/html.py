"""The KPI report as one self-contained HTML page: its styles inline, its charts inline SVG, nothing
loaded from anywhere and no script, so it can be mailed, archived or opened offline as it is.

Every text from the data (strategy, agent and reason names) is escaped by the template; the charts
are matplotlib's SVG, whose text matplotlib escapes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from reports import charts, render

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #172033;
  background: #f4f6f9; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 12px; } h3 { font-size: 14px; margin: 0 0 8px; }
.muted { color: #5d6779; }
section, .chart { background: #fff; border: 1px solid #e2e7ee; border-radius: 8px; padding: 16px; margin: 16px 0; }
.simulated { background: #fdf1dc; color: #a15c00; border: 2px solid #a15c00; border-radius: 8px; padding: 12px 16px;
  font-weight: 700; letter-spacing: .02em; margin: 16px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e2e7ee; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
thead th { background: #f4f6f9; position: sticky; top: 0; }
td.formula { text-align: left; white-space: normal; color: #5d6779; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px; }
.charts .chart { margin: 0; }
svg.chart { width: 100%; height: auto; display: block; }
pre { white-space: pre-wrap; background: #f4f6f9; padding: 12px; border-radius: 6px; margin: 0; }
.yes { color: #13795b; font-weight: 600; } .no { color: #a15c00; }
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<p class="muted">{{ heading }}</p>
{% if simulated %}<div class="simulated" role="note">{{ simulated }}</div>{% endif %}
{% if assumptions %}
<section><h2>Assumptions</h2><pre>{{ assumptions }}</pre></section>
{% endif %}
{% if comparison %}
<section><h2>Champion / challenger</h2>
<div class="scroll"><table>
<thead><tr>{% for c in comparison_columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in comparison %}<tr>{% for cell in row[:-1] %}<td>{{ cell }}</td>{% endfor %}
<td class="{{ 'yes' if row[-1].startswith('significant') else 'no' }}">{{ row[-1] }}</td></tr>{% endfor %}</tbody>
</table></div></section>
{% endif %}
<section><h2>Key figures</h2>
{% if rows %}
<div class="scroll"><table>
<thead><tr><th>metric</th>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for label, cells in rows %}<tr><td>{{ label }}</td>{% for cell in cells %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table></div>
{% else %}<p class="muted">No cases in this window.</p>{% endif %}
</section>
<div class="charts">
{% for name, (chart_title, svg) in charts.items() %}
<div class="chart" id="chart-{{ name }}"><h3>{{ chart_title }}</h3>{{ svg }}</div>
{% endfor %}
</div>
{% if agents is not none %}
<section><h2>Agents and teams</h2>
{% if agents %}
<div class="scroll"><table>
<thead><tr>{% for c in agent_columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in agents %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table></div>
{% else %}<p class="muted">No agent worked a case in this window.</p>{% endif %}
</section>
{% endif %}
<section><h2>Definitions</h2>
<div class="scroll"><table>
<thead><tr><th>metric</th><th>name</th><th>unit</th><th>formula</th></tr></thead>
<tbody>{% for m in metrics %}<tr><td>{{ m.label }}</td><td>{{ m.name }}</td><td>{{ m.unit }}</td><td class="formula">{{ m.formula }}</td></tr>{% endfor %}</tbody>
</table></div>
</section>
{% if simulated %}<div class="simulated" role="note">{{ simulated }}</div>{% endif %}
</main>
</body>
</html>
"""
_TEMPLATE = Environment(autoescape=True).from_string(PAGE)
AGENT_COLUMNS = ("agent", "team", "worked items", "contacts", "right-party contacts", "promises", "promises kept",
                 "amount kept", "amount collected")


def to_html(report: Any, *, comparison: Sequence[Any] | None = None, agents: Sequence[Any] | None = None,
            assumptions: str | None = None, title: str | None = None) -> str:
    """The report as a page: the simulated marking when it is, the assumptions (``assumptions``: the
    behaviour file's text, shown as written), the champion/challenger comparison, the key figures, the
    charts, the agents (when given) and every metric's definition."""
    metrics = render.metrics_of(report)
    rows = [(m.label, [render.shown(row.values.get(m.name), m.unit) for row in report.rows]) for m in metrics]
    drawn = {name: (chart_title, Markup(_inline(svg)))
             for name, (chart_title, svg) in charts.report_charts(report, agents).items()}
    agent_rows = None if agents is None else [
        [row.agent, row.team or "", f"{row.worked_items:,}", f"{row.contacts:,}", f"{row.right_party_contacts:,}",
         f"{row.promises:,}", f"{row.promises_kept:,}", render.shown(row.amount_kept, "money"),
         render.shown(row.amount_collected, "money")] for row in agents]
    compared = render.comparison_rows(comparison) if comparison else None
    compared_columns = list(render.COMPARISON_COLUMNS)
    if compared and not any(row[1] for row in compared):  # "within": only when the arms are split by more
        compared = [row[:1] + row[2:] for row in compared]
        del compared_columns[1]
    return _TEMPLATE.render(
        title=title or ("Simulated collection KPIs" if report.simulated else "Collection KPIs"),
        heading=render.heading(report), simulated=render.SIMULATED if report.simulated else None,
        assumptions=assumptions, comparison=compared, comparison_columns=compared_columns, columns=render.columns(report), rows=rows if report.rows else [],
        charts=drawn, agents=agent_rows, agent_columns=AGENT_COLUMNS, metrics=metrics)


def _inline(svg: str) -> str:
    """A chart for inline use in HTML, where the ``svg`` and ``xlink`` namespaces are implied: without
    their declarations the page names no URL at all."""
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
