"""The KPIs and the agents' performance at the desk: the portfolio page's charts, the performance page
and its CSV, the report API, and who may see which, each role check from both sides.

The desk here reads a ledger holding the hand-built cases of tests/test_reports_cli.py (no workflow
runs: the figures come from the ledger's events alone, and no page here sends a command)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from desk.api import create_app
from desk.cases import CaseDesk
from desk.config import DeskSettings
from desk.policy import load_policy
from desk.store import DeskStore
from infra.settings import Settings
from ledger import Ledger
from reports.charts import REPORT_CHARTS
from reports.kpis import METRICS
from tests.desk_fixtures import PASSWORD, USERS
from tests.test_reports_cli import END, START, write_ledger

pytestmark = pytest.mark.asyncio(loop_scope="module")
WINDOW = {"from": START, "to": END}
EVERYONE = ("s1", "c1", "ad")   # supervisor, compliance, admin: every agent's figures
OWN_ROW = ("a1", "a2", "f1")    # agents and field agents: their own row only


@dataclass
class Reports:
    app: Any
    tokens: dict[str, str]
    figures: Any

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://desk")

    async def api(self, user: str | None, path: str, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        async with self.client() as http:
            return await http.get(path, params=params, headers=headers)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Reports]:
    data: Path = tmp_path_factory.mktemp("desk-reports")
    settings = Settings(data_dir=data, letter_processes=0)
    ledger = Ledger.connect(settings.ledger_url)
    await write_ledger(ledger)
    store = DeskStore(ledger)
    await ledger.migrate()
    # No Temporal client: these pages and endpoints read the ledger only.
    case_desk = CaseDesk(None, load_policy(), store, ledger, DeskSettings(base=settings))  # type: ignore[arg-type]
    app = create_app(case_desk)
    tokens = {}
    for name, (role, team) in USERS.items():
        await store.add_user(name, role, team=team, password=PASSWORD)
        tokens[name] = await store.create_token(name)
    try:
        yield Reports(app, tokens, app.state.figures)
    finally:
        await ledger.close()


@asynccontextmanager
async def logged_in(desk: Reports, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser's client with ``name``'s session (the workbench's pages open to sessions only)."""
    async with desk.client() as http:
        await http.get("/login")
        answer = await http.post("/login", data={"username": name, "password": PASSWORD,
                                                 "csrf_token": http.cookies["arrears_login_csrf"]})
        assert answer.status_code == 303, answer.text
        yield http


class Html(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.agents: list[str] = []
        self.teams: list[str] = []
        self.inputs: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found.get("src") or "")
        if tag == "a":
            self.links.append(found.get("href") or "")
        if tag == "tr" and "data-agent" in found:
            self.agents.append(found["data-agent"] or "")
        if tag == "tr" and "data-team" in found:
            self.teams.append(found["data-team"] or "")
        if tag == "input" and found.get("name"):
            self.inputs[found["name"] or ""] = found.get("value") or ""


# -- the KPI API ----------------------------------------------------------------------------------
@pytest.mark.parametrize("user", ["s1", "c1"])
async def test_the_roles_that_oversee_the_portfolio_get_its_kpis(desk: Reports, user: str) -> None:
    answer = await desk.api(user, "/api/v1/reports/kpis", **WINDOW, by="strategy")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [m["name"] for m in body["metrics"]] == [m.name for m in METRICS]
    cure = {row["key"]["strategy"]: row["values"]["cure_rate"] for row in body["rows"]}
    assert cure == {"default": {"value": "0.333333", "numerator": "1", "denominator": "3"},
                    "early_contact": {"value": "1", "numerator": "2", "denominator": "2"}}
    assert {c["metric"] for c in body["comparison"]} >= {"cure_rate"}


@pytest.mark.parametrize("user", ["a1", "f1", "ad", "p1"])
async def test_the_other_roles_are_refused_the_kpis(desk: Reports, user: str) -> None:
    answer = await desk.api(user, "/api/v1/reports/kpis", **WINDOW)
    assert answer.status_code == 403, answer.text
    assert "does not oversee the portfolio" in answer.json()["reason"]


async def test_without_credentials_the_reports_are_401(desk: Reports) -> None:
    for path in ("/api/v1/reports/kpis", "/api/v1/reports/agents"):
        assert (await desk.api(None, path, **WINDOW)).status_code == 401


async def test_the_kpis_as_csv(desk: Reports) -> None:
    answer = await desk.api("s1", "/api/v1/reports/kpis", **WINDOW, format="csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = {(r["metric"], r["part"]): r for r in csv.DictReader(io.StringIO(answer.text))}
    assert rows[("cases_entered", "")]["value"] == "5"
    assert rows[("amount_collected", "USD")]["value"] == "450.00"


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "yesterday", "to": END}, "from"),
    ({"from": START, "to": "2026-09-01"}, "to"),
    ({"from": "2024-01-01", "to": END}, "from"),  # longer than the desk computes on a request
    ({**WINDOW, "by": "strategy,colour"}, "by"),
    ({**WINDOW, "by": "grade,grade"}, "by"),
    ({"from": START, "to": "9999-12-31"}, "to"),  # no period after the calendar's last
])
async def test_a_bad_window_is_422_naming_the_parameter(desk: Reports, params: dict[str, str], field: str) -> None:
    answer = await desk.api("s1", "/api/v1/reports/kpis", **params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


# -- the performance API --------------------------------------------------------------------------
@pytest.mark.parametrize("user", EVERYONE)
async def test_supervisors_compliance_and_admins_see_every_agent(desk: Reports, user: str) -> None:
    answer = await desk.api(user, "/api/v1/reports/agents", **WINDOW)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scope"] == "everyone"
    rows = {row["agent"]: row for row in body["agents"]}
    assert set(rows) == {"a1", "a2"}
    assert (rows["a1"]["team"], rows["a1"]["promises_kept"], rows["a1"]["amount_kept"]) == ("t1", 1, {"USD": "100.00"})
    assert (rows["a2"]["team"], rows["a2"]["worked_items"], rows["a2"]["right_party_contacts"]) == ("t2", 1, 0)
    teams = {team["team"]: team for team in body["teams"]}
    assert (teams["t1"]["agents"], teams["t1"]["promises_kept"], teams["t1"]["amount_kept"]) == (1, 1, {"USD": "100.00"})
    assert (teams["t2"]["agents"], teams["t2"]["worked_items"]) == (1, 1)


@pytest.mark.parametrize("user", OWN_ROW)
async def test_an_agent_sees_their_own_row_and_never_a_colleagues(desk: Reports, user: str) -> None:
    answer = await desk.api(user, "/api/v1/reports/agents", **WINDOW)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scope"] == "own" and "teams" not in body
    assert [row["agent"] for row in body["agents"]] == ([user] if user in ("a1", "a2") else [])
    # Asking for another team changes nothing: the filter is the supervisors'.
    again = await desk.api(user, "/api/v1/reports/agents", **WINDOW, team="t2")
    assert again.json()["agents"] == body["agents"]


async def test_the_payments_system_sees_no_agents_performance(desk: Reports) -> None:
    answer = await desk.api("p1", "/api/v1/reports/agents", **WINDOW)
    assert answer.status_code == 403 and "sees no agent's performance" in answer.json()["reason"]


async def test_a_supervisor_narrows_the_agents_to_a_team_and_exports_csv(desk: Reports) -> None:
    answer = await desk.api("s1", "/api/v1/reports/agents", **WINDOW, team="t2", format="csv")
    assert answer.status_code == 200
    assert [row["agent"] for row in csv.DictReader(io.StringIO(answer.text))] == ["a2"]


# -- the portfolio page and its charts --------------------------------------------------------------
async def test_the_portfolio_page_shows_the_standing_and_the_kpi_charts_of_the_last_90_days(desk: Reports) -> None:
    async with logged_in(desk, "s1") as http:
        page = await http.get("/portfolio")
        assert page.status_code == 200, page.text
        assert "By stage" in page.text and "Collection KPIs" in page.text
        parsed = Html(page.text)
        today = datetime.now(UTC).date()
        assert (parsed.inputs["from"], parsed.inputs["to"]) == ((today - timedelta(days=89)).isoformat(),
                                                                (today + timedelta(days=1)).isoformat())
        charts = [src for src in parsed.images if src.startswith("/portfolio/charts/")]
        assert [src.split("?")[0] for src in charts] == [f"/portfolio/charts/{n}.svg" for n in REPORT_CHARTS]
        for src in charts:
            chart = await http.get(src)
            assert chart.status_code == 200 and chart.headers["content-type"].startswith("image/svg+xml")
            assert chart.text.startswith("<svg")
        exports = [link for link in parsed.links if "report" in link]
        assert any(link.startswith("/portfolio/report.html?") for link in exports)


async def test_the_charts_follow_the_window_chosen_on_the_page(desk: Reports) -> None:
    async with logged_in(desk, "s1") as http:
        page = await http.get("/portfolio", params={**WINDOW, "by": "strategy"})
        parsed = Html(page.text)
        assert (parsed.inputs["from"], parsed.inputs["to"]) == (START, END)
        src = next(src for src in parsed.images if src.startswith("/portfolio/charts/cure_recovery.svg"))
        assert "by=strategy" in src and f"from={START}" in src
        chart = (await http.get(src)).text
        assert "default" in chart and "early_contact" in chart


async def test_the_charts_of_a_page_read_the_ledger_once(desk: Reports, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    original = desk.figures._events

    async def counted(start: Any, end: Any) -> Any:
        reads.append((start, end))
        return await original(start, end)

    monkeypatch.setattr(desk.figures, "_events", counted)
    async with logged_in(desk, "s1") as http:
        query = {"from": "2026-10-02", "to": END, "by": "grade"}  # a window no other test asked for
        for name in REPORT_CHARTS:
            assert (await http.get(f"/portfolio/charts/{name}.svg", params=query)).status_code == 200
    assert len(reads) == 1


@pytest.mark.parametrize("user", ["a1", "f1", "ad"])
async def test_the_portfolio_and_its_charts_are_refused_to_roles_that_do_not_oversee_it(desk: Reports,
                                                                                      user: str) -> None:
    async with logged_in(desk, user) as http:
        for path in ("/portfolio", "/portfolio/charts/roll_rates.svg", "/portfolio/report.html"):
            answer = await http.get(path, params=WINDOW)
            assert answer.status_code == 403, (path, answer.status_code)
        assert "/portfolio" not in Html((await http.get("/performance")).text).links


async def test_an_unknown_chart_is_404(desk: Reports) -> None:
    async with logged_in(desk, "s1") as http:
        assert (await http.get("/portfolio/charts/pie.svg")).status_code == 404


async def test_the_html_report_downloads_self_contained_with_the_agents(desk: Reports) -> None:
    async with logged_in(desk, "c1") as http:
        answer = await http.get("/portfolio/report.html", params={**WINDOW, "by": "strategy"})
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="kpis-{START}-{END}.html"'
    assert "<svg" in answer.text and "Champion / challenger" in answer.text and "Agents and teams" in answer.text
    parsed = Html(answer.text)
    assert not [link for link in parsed.links + parsed.images if link.startswith(("http:", "https:", "//"))]


# -- the performance page -------------------------------------------------------------------------
@pytest.mark.parametrize("user", EVERYONE)
async def test_the_performance_page_lists_every_agent_for_those_who_see_everyone(desk: Reports, user: str) -> None:
    async with logged_in(desk, user) as http:
        page = await http.get("/performance", params=WINDOW)
        assert page.status_code == 200, page.text
        parsed = Html(page.text)
        assert parsed.agents == ["a1", "a2"] and parsed.teams == ["t1", "t2"]
        assert "/performance" in parsed.links
        export = next(link for link in parsed.links if link.startswith("/performance.csv"))
        exported = await http.get(export)
        assert exported.headers["content-disposition"].startswith('attachment; filename="performance-')
        assert [r["agent"] for r in csv.DictReader(io.StringIO(exported.text))] == ["a1", "a2"]
        chart = next(src for src in parsed.images if src.startswith("/performance/chart.svg"))
        drawn = await http.get(chart)
        assert drawn.status_code == 200 and "a1 (t1)" in drawn.text and "a2 (t2)" in drawn.text


async def test_an_agents_performance_page_and_csv_hold_their_own_row_only(desk: Reports) -> None:
    async with logged_in(desk, "a1") as http:
        page = await http.get("/performance", params={**WINDOW, "team": "t2"})
        assert page.status_code == 200
        parsed = Html(page.text)
        assert parsed.agents == ["a1"] and parsed.teams == []
        assert "My performance" in page.text and "You see your own figures only." in page.text
        exported = await http.get("/performance.csv", params={**WINDOW, "team": "t2"})
        assert [r["agent"] for r in csv.DictReader(io.StringIO(exported.text))] == ["a1"]
        drawn = (await http.get("/performance/chart.svg", params=WINDOW)).text
        assert "a1 (t1)" in drawn and "a2" not in drawn
        # The agent's first page is still their queue; the performance page is one link away.
        assert (await http.get("/")).headers["location"] == "/queue"


async def test_the_performance_pages_are_refused_to_the_payments_system(desk: Reports) -> None:
    async with logged_in(desk, "p1") as http:
        for path in ("/performance", "/performance.csv", "/performance/chart.svg"):
            assert (await http.get(path, params=WINDOW)).status_code == 403, path
        assert "/performance" not in Html((await http.get("/")).text).links


async def test_a_supervisor_narrows_the_page_to_a_team(desk: Reports) -> None:
    async with logged_in(desk, "s1") as http:
        parsed = Html((await http.get("/performance", params={**WINDOW, "team": "t1"})).text)
        assert parsed.agents == ["a1"]
        export = next(link for link in parsed.links if link.startswith("/performance.csv"))
        assert "team=t1" in export


async def test_the_pages_speak_chinese_too(desk: Reports) -> None:
    async with logged_in(desk, "s1") as http:
        http.cookies.set("lang", "zh")
        assert "催收员与团队业绩" in (await http.get("/performance", params=WINDOW)).text
        assert "催收指标" in (await http.get("/portfolio", params=WINDOW)).text
