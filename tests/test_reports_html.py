"""The report's renderings from hand-made reports: the text table, CSV and JSON (reports/render.py), the
charts (reports/charts.py) and the self-contained HTML page (reports/html.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from reports import charts, render
from reports.compare import compare
from reports.html import to_html
from reports.kpis import METRICS, AgentRow, Ratio, Report, Row

D = Decimal
SCRIPT = "<script>alert(1)</script>"


def ratio(numerator: int | str, denominator: int | str) -> Ratio:
    return Ratio(D(numerator), D(denominator))


def values(entered: int, cured: int, *, collected: str, past_due: str) -> dict[str, Any]:
    """A value for every metric of METRICS, of the type its unit says (a unit this does not know fails
    the test: the renderers must learn it)."""
    made: dict[str, Any] = {}
    for metric in METRICS:
        made[metric.name] = {
            "count": entered,
            "rate": ratio(cured, entered),
            "ratio": ratio(cured * 3, cured),
            "days": D("12.50"),
            "money": {"USD": D(collected)},
            "money_rate": {"USD": ratio(collected, past_due)},
            "money_per": {"USD": ratio("30.00", entered)},
            "by_reason": {"outside the contact window": 3, "dispute": 1},
        }[metric.unit]
    made["cure_rate"] = ratio(cured, entered)
    made["amount_collected"] = {"USD": D(collected), "EUR": D("20.00")}
    return made


def report(*, simulated: bool = False, names: tuple[str, ...] = ("default", "early_contact")) -> Report:
    figures = [(17, 7, "1234.50", "4000.00"), (20, 12, "2000.00", "4100.00")]
    rows = [Row({"strategy": name}, values(entered, cured, collected=collected, past_due=past_due),
                {"recovery_rate": [D("0.1"), D("0.5"), D("0.3")]})
            for name, (entered, cured, collected, past_due) in zip(names, figures, strict=False)]
    matrices = [{"1-30": {"current": 7, "1-30": 5, "31-60": 3}, "31-60": {"61-90": 2}},
                {"1-30": {"cured": 10, "1-30": 8}}]
    matrix = {(name,): cells for name, cells in zip(names, matrices, strict=False)}
    return Report(date(2026, 9, 1), date(2026, 12, 1), ("strategy",), "month", rows, matrix, simulated)


AGENTS = [AgentRow("a1", "t1", 10, 30, 12, 5, 3, {"USD": D("300.00")}, {"USD": D("1200.50"), "EUR": D("5.00")}),
          AgentRow("a2", None, 4, 8, 2, 1, 0, {}, {})]


# -- text, CSV, JSON ------------------------------------------------------------------------------
def test_a_simulated_table_opens_and_closes_with_the_banner_and_a_real_one_has_none() -> None:
    simulated = render.to_table(report(simulated=True)).splitlines()
    assert "SIMULATED" in simulated[0] and "SIMULATED" in simulated[-1]
    assert "SIMULATED" not in render.to_table(report())


def test_the_table_shows_a_rate_with_what_it_is_made_of_and_money_with_its_currency() -> None:
    lines = render.to_table(report()).splitlines()
    cure = next(line for line in lines if line.startswith("Cure rate"))
    assert [cell.strip() for cell in cure.split("|")[1:]] == ["41.2% (7/17)", "60.0% (12/20)"]
    collected = next(line for line in lines if line.startswith("Amount collected"))
    assert [cell.strip() for cell in collected.split("|")[1:]] == ["20.00 EUR; 1,234.50 USD", "20.00 EUR; 2,000.00 USD"]
    recovery = next(line for line in lines if line.startswith("Recovery rate"))
    assert [cell.strip() for cell in recovery.split("|")[1:]] == ["USD 30.9%", "USD 48.8%"]
    grid = lines[:next(n for n, line in enumerate(lines) if line == "Contacts deferred, by reason")]
    assert len([line for line in grid if "|" in line]) == len(METRICS) + 1  # every metric, and the header
    deferred = next(line for line in grid if line.startswith("Contacts deferred"))
    assert "(by reason below)" in deferred
    reasons = lines[len(grid):]
    assert reasons[1].startswith("reason")
    window = next(line for line in reasons if line.startswith("outside the contact window"))
    assert [cell.strip() for cell in window.split("|")[1:]] == ["3", "3"]  # the most frequent reason first
    assert reasons.index(window) < next(n for n, line in enumerate(reasons) if line.startswith("dispute"))


def test_a_wide_report_is_cut_into_blocks_that_fit_each_with_the_metric_names() -> None:
    names = tuple(f"strategy-number-{n:02d}" for n in range(12))
    wide = report(names=names)
    wide.rows = [Row({"strategy": name}, values(10, n, collected="10.00", past_due="100.00"), {})
                 for n, name in enumerate(names)]
    lines = render.to_table(wide).splitlines()
    assert max(len(line) for line in lines) <= render.TABLE_WIDTH
    headers = [line for line in lines if line.startswith("metric")]
    assert len(headers) > 1
    assert [name for header in headers for name in (c.strip() for c in header.split("|")[1:])] == list(names)


def test_csv_is_one_line_per_group_metric_and_part() -> None:
    rows = list(csv.DictReader(io.StringIO(render.to_csv(report(simulated=True)))))
    found = {(r["strategy"], r["metric"], r["part"]): r for r in rows}
    cure = found[("default", "cure_rate", "")]
    assert (cure["value"], cure["numerator"], cure["denominator"], cure["unit"]) == ("0.411765", "7", "17", "rate")
    assert found[("early_contact", "amount_collected", "EUR")]["value"] == "20.00"
    assert found[("default", "compliance_deferred", "outside the contact window")]["value"] == "3"
    assert {r["simulated"] for r in rows} == {"true"}
    # Every metric of each row is there, with a currency or a reason where it has them.
    assert {r["metric"] for r in rows} == {m.name for m in METRICS}


def test_json_keeps_amounts_exact_and_rates_with_their_parts() -> None:
    body = json.loads(render.to_json(report()))
    assert [m["name"] for m in body["metrics"]] == [m.name for m in METRICS]
    assert all(m["formula"] for m in body["metrics"])
    first = body["rows"][0]
    assert first["key"] == {"strategy": "default"}
    assert first["values"]["amount_collected"] == {"USD": "1234.50", "EUR": "20.00"}
    assert first["values"]["cure_rate"] == {"value": "0.411765", "numerator": "7", "denominator": "17"}
    assert body["roll_matrix"][0] == {"key": {"strategy": "default"},
                                      "from": {"1-30": {"current": 7, "1-30": 5, "31-60": 3}, "31-60": {"61-90": 2}}}
    assert "comparison" not in body


def test_json_and_table_carry_the_champion_challenger_comparison() -> None:
    made = report()
    comparison = compare(made)
    assert comparison
    body = json.loads(render.to_json(made, comparison))
    cure = next(c for c in body["comparison"] if c["metric"] == "cure_rate")
    assert (cure["champion"], cure["challenger"], cure["n_champion"], cure["n_challenger"]) == (
        "early_contact", "default", 20, 17)  # the champion: the arm with the most cases, as compare decides
    assert "Champion / challenger" in render.to_table(made, comparison)


def test_agents_csv_has_a_column_per_currency_for_a_payroll_sheet() -> None:
    rows = list(csv.DictReader(io.StringIO(render.agents_csv(AGENTS))))
    assert list(rows[0]) == ["agent", "team", "worked_items", "contacts", "right_party_contacts", "promises",
                             "promises_kept", "amount_kept_EUR", "amount_kept_USD", "amount_collected_EUR",
                             "amount_collected_USD"]
    assert (rows[0]["amount_collected_USD"], rows[0]["amount_collected_EUR"], rows[0]["amount_kept_USD"]) == (
        "1200.50", "5.00", "300.00")
    assert (rows[1]["agent"], rows[1]["team"], rows[1]["amount_collected_USD"]) == ("a2", "", "0")
    body = json.loads(render.agents_json(AGENTS))
    assert body["agents"][0]["amount_collected"] == {"USD": "1200.50", "EUR": "5.00"}
    table = render.agents_table(AGENTS).splitlines()
    assert [c.strip() for c in table[2].split("|")] == ["a1", "t1", "10", "30", "12", "5", "3", "300.00 USD",
                                                       "5.00 EUR; 1,200.50 USD"]


# -- charts ---------------------------------------------------------------------------------------
def texts(svg: str) -> list[str]:
    return [re.sub(r"\s+", " ", t).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)]


def test_the_roll_rate_heat_map_shows_each_rows_shares_and_cases() -> None:
    svg = charts.chart("roll_rates", report())
    shown = " ".join(texts(svg))
    # default's 15 cases in 1-30: 7 back to current (47%), 5 stayed (33%), 3 rolled on (20%); 2 of 2 in 31-60 on.
    for cell in ("47%", "33%", "20%", "100%", "56%", "44%"):
        assert cell in shown
    assert shown.index("current") < shown.index("1-30") < shown.index("31-60")


def test_a_chart_without_data_says_so() -> None:
    empty = Report(date(2026, 9, 1), date(2026, 12, 1), (), "month", [], {})
    for name in charts.REPORT_CHARTS:
        assert texts(charts.chart(name, empty)), name
    assert "No agent worked a case in this window" in texts(charts.agents_chart([]))


def test_png_files_for_the_readme(tmp_path: Path) -> None:
    paths = charts.png_files(report(), tmp_path, AGENTS)
    assert sorted(p.name for p in paths) == sorted([f"{n}.png" for n in charts.REPORT_CHARTS] + ["agents.png"])
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in paths)


# -- the page -------------------------------------------------------------------------------------
class Page(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.links: list[str] = []
        self.ids: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data"):
                self.links.append(value or "")
            if name == "id":
                self.ids.append(value or "")


def test_the_page_stands_alone_with_its_charts_inline() -> None:
    text = to_html(report(), comparison=compare(report()), agents=AGENTS)
    page = Page(text)
    assert page.tags["svg"] == len(charts.REPORT_CHARTS) + 1
    assert not page.tags["script"] and not page.tags["link"] and not page.tags["img"] and not page.tags["iframe"]
    outside = [link for link in page.links if not link.startswith("#")]
    assert outside == [], outside
    assert not re.search(r"https?://", text)
    assert "@import" not in text and "url(http" not in text
    # Several charts on one page share no id.
    assert [i for i, n in Counter(page.ids).items() if n > 1] == []


def test_the_page_has_the_figures_the_comparison_the_agents_and_the_definitions() -> None:
    text = to_html(report(), comparison=compare(report()), agents=AGENTS)
    assert "41.2% (7/17)" in text and "Champion / challenger" in text and "not yet significant" in text
    assert "1,200.50 USD" in text
    for metric in METRICS:
        assert metric.formula.replace("'", "&#39;").replace('"', "&#34;").replace("<", "&lt;").replace(
            ">", "&gt;").split("&")[0] in text
    assert "Simulated" not in text and "SIMULATED" not in text


def test_a_simulated_page_is_marked_and_shows_its_assumptions_as_written() -> None:
    text = to_html(report(simulated=True), assumptions=f"chance to pay after an SMS: 0.03\n{SCRIPT}")
    assert text.count(render.SIMULATED) == 2
    assert "<title>Simulated collection KPIs</title>" in text
    assert "chance to pay after an SMS: 0.03" in text and "&lt;script&gt;" in text


@pytest.mark.parametrize("where", ["strategy", "agent", "reason"])
def test_text_from_the_data_is_shown_as_text_never_as_markup(where: str) -> None:
    made = report(names=("default", SCRIPT) if where == "strategy" else ("default", "early_contact"))
    agents = [AgentRow(SCRIPT if where == "agent" else "a1", "t1", 1, 1, 1, 1, 1, {}, {})]
    if where == "reason":
        made.rows[0].values["compliance_blocked"] = {SCRIPT: 2}
    text = to_html(made, agents=agents)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text


def test_text_from_the_ledger_never_starts_a_formula_in_a_spreadsheet() -> None:
    import csv
    import io

    from reports.kpis import AgentRow

    rows = [AgentRow(agent='=HYPERLINK("http://x","y")', team="+team", worked_items=1, contacts=2,
                     right_party_contacts=1, promises=1, promises_kept=0, amount_kept={}, amount_collected={})]
    line = list(csv.reader(io.StringIO(render.agents_csv(rows))))[1]
    assert line[:3] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+team", "1"]
    made = report()
    made.rows[0].key["strategy"] = "@SUM(A1)"
    cells = [row for row in csv.reader(io.StringIO(render.to_csv(made)))][1:]
    assert {row[2] for row in cells} >= {"'@SUM(A1)"} and not any(row[2].startswith("@") for row in cells)
