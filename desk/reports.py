"""The KPI report and the agents' performance at the desk: who may see which figures, for which
window, and the figures themselves, read from the ledger's events (``reports.source``).

Who sees what, as a collections department splits it:

- the portfolio's KPIs (charts, CSV, JSON, the HTML report): the roles that oversee every case
  (``cases = "all"`` in compliance/roles.toml: supervisors and compliance), as the portfolio page;
- the agents' and teams' performance, which the incentive scheme pays on: everyone's to the roles
  that oversee every case (supervisors lead the agents; compliance watches how hard each agent
  presses borrowers) and to the administrators (``manages_users``: they keep the users and their
  teams); an agent or field agent (a role that works a queue of its own cases) sees their own row
  only, never a colleague's pay figures; any other role (the payments system) is refused.

A window is ``from`` up to ``to``, the first day not counted (as ``python -m reports``), by default
the last 90 days with today. Figures are computed once for a window and kept a minute: a page asks
for its charts one image at a time, and those share one reading of the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from desk.cases import Refused
from desk.policy import Identity, Role
from reports.kpis import DIMENSIONS, PERIODS

WINDOW = timedelta(days=90)
LONGEST = timedelta(days=400)  # a longer window is a job for `python -m reports`, not a page
# Days a window may start or end on: a calendar's edge is no window (a period after 9999-12 has no name).
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)
CACHE_SECONDS = 60.0
CACHED = 32
log = logging.getLogger(__name__)


# -- who sees what ----------------------------------------------------------------------------
def refuse_kpis(identity: Identity, role: Role) -> None:
    """The portfolio's KPIs are for the roles that oversee every case."""
    if role.cases != "all":
        raise Refused(403, f"role {identity.role} does not oversee the portfolio")


def sees_everyones_performance(role: Role) -> bool:
    return role.cases == "all" or role.manages_users


def sees_own_performance(role: Role) -> bool:
    """An agent: a role that works a queue of the cases assigned to it."""
    return role.cases == "assigned" and bool(role.queues)


def performance_scope(identity: Identity, role: Role) -> str | None:
    """Whose performance ``identity`` sees: None for everyone's, else the one agent's name (their
    own); refused (403) for a role that neither leads agents nor is one."""
    if sees_everyones_performance(role):
        return None
    if sees_own_performance(role):
        return identity.name
    raise Refused(403, f"role {identity.role} sees no agent's performance")


# -- the window -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What a report covers: ``start`` up to ``end`` (not counted), grouped ``by``, in ``period``s."""

    start: date
    end: date
    by: tuple[str, ...] = ()
    period: str = "month"

    @property
    def query(self) -> str:
        """The window as the query string the desk's links carry."""
        parts = [f"from={self.start.isoformat()}", f"to={self.end.isoformat()}", f"period={self.period}"]
        return "&".join(parts + ([f"by={','.join(self.by)}"] if self.by else []))


def window(query: Mapping[str, Any], *, today: date | None = None) -> Window:
    """The window a request asks for (``from``, ``to``, ``by``, ``period``), each checked: a bad one is
    refused (422) naming the parameter."""
    today = today or datetime.now(UTC).date()
    end = _day(query, "to") or today + timedelta(days=1)
    start = _day(query, "from") or end - WINDOW
    if end <= start:
        raise Refused(422, f"{end} is not after from {start} (to is the first day not counted)", "to")
    if end - start > LONGEST:
        raise Refused(422, f"the window is longer than {LONGEST.days} days (use python -m reports)", "from")
    by = tuple(name.strip() for name in str(query.get("by") or "").split(",") if name.strip())
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown:
        raise Refused(422, f"{unknown[0]!r} is not a dimension ({', '.join(DIMENSIONS)})", "by")
    if len(set(by)) != len(by):
        raise Refused(422, "a dimension is named twice", "by")
    period = str(query.get("period") or "month")
    if period not in PERIODS:
        raise Refused(422, f"{period!r} is not a period ({', '.join(PERIODS)})", "period")
    return Window(start, end, by, period)


def _day(query: Mapping[str, Any], name: str) -> date | None:
    text = str(query.get(name) or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Refused(422, f"{text[:40]!r} is not a date (YYYY-MM-DD)", name) from None
    if not EARLIEST <= day <= LATEST:
        raise Refused(422, f"{day} is outside {EARLIEST} to {LATEST}", name)
    return day


# -- the figures ------------------------------------------------------------------------------
class Figures:
    """The KPI report, the agents' rows and the charts of a window, each computed once and kept
    ``CACHE_SECONDS`` (requests for it meanwhile wait for the same computation)."""

    def __init__(self, ledger_url: str, *, keep_for: float = CACHE_SECONDS) -> None:
        self.ledger_url = ledger_url
        self.keep_for = keep_for
        self._kept: dict[tuple[Any, ...], tuple[float, asyncio.Task[Any]]] = {}

    async def report(self, chosen: Window) -> Any:
        return await self._once(("kpis", chosen), lambda: self._report(chosen))

    async def agents(self, start: date, end: date) -> list[Any]:
        return await self._once(("agents", start, end), lambda: self._agents(start, end))

    async def chart(self, name: str, chosen: Window) -> str:
        """The SVG of the report's chart ``name`` (reports.charts.REPORT_CHARTS)."""
        from reports import charts

        async def draw() -> str:
            return await asyncio.to_thread(charts.chart, name, await self.report(chosen))

        return await self._once(("chart", name, chosen), draw)

    async def agents_chart(self, start: date, end: date, only: str | None, team: str = "") -> str:
        """The agents' chart: ``only`` one agent's row (None: everyone's), of ``team`` when given."""
        from reports import charts

        async def draw() -> str:
            return await asyncio.to_thread(charts.agents_chart, await self.performance(start, end, only, team))

        return await self._once(("agents_chart", start, end, only, team), draw)

    async def performance(self, start: date, end: date, only: str | None, team: str = "") -> list[Any]:
        """The agents' rows a viewer sees: ``only`` that agent's (None: everyone's), ``team``'s if given."""
        return [row for row in await self.agents(start, end)
                if (only is None or row.agent == only) and (not team or row.team == team)]

    async def _once(self, key: tuple[Any, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        kept = self._kept.get(key)
        failed = kept is not None and kept[1].done() and (kept[1].cancelled() or kept[1].exception() is not None)
        if kept is None or kept[0] < now or failed:
            for stale in [k for k, (until, _) in self._kept.items() if until < now]:
                del self._kept[stale]
            while len(self._kept) >= CACHED:
                del self._kept[next(iter(self._kept))]
            kept = (now + self.keep_for, asyncio.ensure_future(make()))
            self._kept[key] = kept
        # Shielded: a browser that gives up on one image does not cancel the figures others wait for.
        return await asyncio.shield(kept[1])

    async def comparison(self, chosen: Window) -> Any:
        """The champion/challenger comparison of the window's report (reports.compare.compare_arms)."""
        return await self._once(("arms", chosen), lambda: self._comparison(chosen))

    async def _comparison(self, chosen: Window) -> Any:
        from reports.compare import compare_arms

        report = await self.report(chosen)
        events, teams = await self._events(chosen.start, chosen.end)
        return await asyncio.to_thread(compare_arms, events, report, costs=_costs(), teams=teams)

    async def _events(self, start: date, end: date) -> tuple[list[Any], dict[str, str]]:
        from reports.source import read_events, read_teams

        return await read_events(self.ledger_url, start, end), await read_teams(self.ledger_url)

    async def _report(self, chosen: Window) -> Any:
        from reports.kpis import compute

        events, teams = await self._events(chosen.start, chosen.end)
        return await asyncio.to_thread(compute, events, chosen.start, chosen.end, by=chosen.by, period=chosen.period,
                                       costs=_costs(), teams=teams)

    async def _agents(self, start: date, end: date) -> list[Any]:
        from reports.kpis import agent_performance

        events, teams = await self._events(start, end)
        return await asyncio.to_thread(agent_performance, events, start, end, teams=teams)


def team_totals(rows: list[Any]) -> list[dict[str, Any]]:
    """The agents' rows added up by team (agents without a team left out), teams by name: what a team
    leader's part of the incentive scheme pays on."""
    teams: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.team:
            continue
        total = teams.setdefault(row.team, {"team": row.team, "agents": 0, "worked_items": 0, "contacts": 0,
                                            "right_party_contacts": 0, "promises": 0, "promises_kept": 0,
                                            "amount_kept": {}, "amount_collected": {}})
        total["agents"] += 1
        for name in ("worked_items", "contacts", "right_party_contacts", "promises", "promises_kept"):
            total[name] += getattr(row, name)
        for name in ("amount_kept", "amount_collected"):
            for currency, amount in getattr(row, name).items():
                total[name][currency] = total[name].get(currency, 0) + amount
    return [teams[name] for name in sorted(teams)]


def _costs() -> Any:
    """The unit costs (ARREARS_COSTS or reports/costs.toml); without a usable file the KPIs are still
    shown, without the cost figures, and the log says why."""
    from reports.costs import CostsError, load_costs

    try:
        return load_costs()
    except CostsError as err:
        log.warning("the KPIs are shown without costs: %s", err)
        return None
