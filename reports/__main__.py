"""``python -m reports``: the collection KPIs and the agents' performance from the ledger.

    python -m reports kpis --from 2026-09-01 --to 2026-12-01 --by strategy [--period month]
                           [--format table|csv|json|html] [--out FILE] [--ledger URL] [--costs FILE]
    python -m reports agents --from 2026-09-01 --to 2026-12-01 [--format table|csv|json] [--out FILE]
                             [--ledger URL]

The window is ``--from`` up to ``--to`` (the first day not counted, as a period's end). The ledger
is ``--ledger`` or the workers' own (ARREARS_DATABASE_URL, else SQLite under ARREARS_DATA_DIR); the
unit costs ``--costs`` or ARREARS_COSTS, else ``reports/costs.toml``. With ``--by strategy`` and more
than one strategy in the window, the champion/challenger comparison follows the KPIs (table, JSON,
HTML; CSV stays one table).

Exit status: 0 done; 2 a bad argument (the message names the flag and why); 1 the ledger could not
be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import Any

from infra.cli import FlagParser
from reports.kpis import DIMENSIONS, PERIODS

KPI_FORMATS = ("table", "csv", "json", "html")
# A window starts and ends inside the calendar: a period after 9999-12 has no name.
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)
AGENT_FORMATS = ("table", "csv", "json")


_Parser = FlagParser  # argument --flag: reason, exit 2


def _day(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if not EARLIEST <= day <= LATEST:
        raise argparse.ArgumentTypeError(f"{day} is outside {EARLIEST} to {LATEST}")
    return day


def _dimensions(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one dimension")
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, unknown))} is not a dimension "
                                         f"(one of {', '.join(DIMENSIONS)})")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("a dimension is named twice")
    return names


def parser() -> _Parser:
    top = _Parser(prog="python -m reports", description="Collection KPIs and agents' performance from the ledger.")
    commands = top.add_subparsers(dest="command", required=True, metavar="{kpis,agents}", parser_class=_Parser)

    def window(sub: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
        sub.add_argument("--from", dest="start", type=_day, required=True, metavar="YYYY-MM-DD",
                         help="the window's first day")
        sub.add_argument("--to", dest="end", type=_day, required=True, metavar="YYYY-MM-DD",
                         help="the first day after the window (not counted)")
        sub.add_argument("--format", choices=formats, default="table")
        sub.add_argument("--out", type=Path, metavar="FILE", help="write here instead of to standard output")
        sub.add_argument("--ledger", metavar="URL",
                         help="the ledger's database URL (default: ARREARS_DATABASE_URL, or the data folder's SQLite)")

    kpis = commands.add_parser("kpis", help="the KPIs for a window, by dimensions")
    window(kpis, KPI_FORMATS)
    kpis.set_defaults(parser=kpis)
    kpis.add_argument("--by", type=_dimensions, default=(), metavar="DIM[,DIM...]",
                      help=f"group by these dimensions, in order ({', '.join(DIMENSIONS)})")
    kpis.add_argument("--period", choices=PERIODS, default="month",
                      help="the length of a period when grouping by period (default: month)")
    kpis.add_argument("--costs", type=Path, metavar="FILE", help="unit costs (default: ARREARS_COSTS or reports/costs.toml)")
    agents = commands.add_parser("agents", help="each agent's worked items, contacts, promises and collections")
    window(agents, AGENT_FORMATS)
    agents.set_defaults(parser=agents)
    return top


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    sub: _Parser = args.parser
    if args.end <= args.start:
        sub.flag_error("--to", f"{args.end} is not after --from {args.start} (--to is the first day not counted)")
    if args.out is not None and not args.out.parent.is_dir():
        sub.flag_error("--out", f"{args.out.parent} is not a folder")
    url = _ledger_url(sub, args.ledger)
    costs = _costs(sub, args.costs) if args.command == "kpis" else None
    try:
        text = asyncio.run(_kpis(args, url, costs) if args.command == "kpis" else _agents(args, url))
    except _Unreadable as err:
        print(f"python -m reports: {err}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _ledger_url(sub: _Parser, given: str | None) -> str:
    """``--ledger`` or the settings' ledger, once it is a database URL this can read: a SQLite file
    that is not there is refused (opening it would create an empty ledger and report nothing)."""
    from sqlalchemy.engine import make_url

    from infra.settings import Settings
    from ledger.store import LedgerError, async_url

    flag = "--ledger"
    try:
        url = given if given is not None else Settings.from_env().ledger_url
    except ValueError as err:
        sub.flag_error(flag, f"no URL given and the settings are unusable: {err}")
    try:
        async_url(url)
    except LedgerError as err:
        sub.flag_error(flag, str(err).removeprefix("ARREARS_DATABASE_URL: "))
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not Path(
            parsed.database).is_file():
        sub.flag_error(flag, f"there is no SQLite ledger at {parsed.database}")
    return url


def _costs(sub: _Parser, path: Path | None) -> Any:
    from reports.costs import CostsError, load_costs

    try:
        return load_costs(path)
    except (CostsError, OSError) as err:
        sub.flag_error("--costs" if path is not None else "ARREARS_COSTS", str(err))


class _Unreadable(Exception):
    pass


async def _read(url: str, start: date, end: date) -> tuple[list[Any], dict[str, str]]:
    from ledger.store import safe_url
    from reports.source import read_events, read_teams

    try:
        return await read_events(url, start, end), await read_teams(url)
    except Exception as err:  # noqa: BLE001 - whatever the driver raises, the answer is "cannot read it"
        raise _Unreadable(f"cannot read the ledger at {safe_url(url)}: {type(err).__name__}: {err}") from err


async def _kpis(args: argparse.Namespace, url: str, costs: Any) -> str:
    from reports import render
    from reports.compare import compare_arms
    from reports.kpis import compute

    events, teams = await _read(url, args.start, args.end)
    report = compute(events, args.start, args.end, by=args.by, period=args.period, costs=costs, teams=teams)
    comparison = compare_arms(events, report, costs=costs, teams=teams)
    if args.format == "csv":
        return render.to_csv(report)
    if args.format == "json":
        return render.to_json(report, comparison)
    if args.format == "html":
        from reports.html import to_html

        return to_html(report, comparison=comparison)
    return render.to_table(report, comparison)


async def _agents(args: argparse.Namespace, url: str) -> str:
    from reports import render
    from reports.kpis import agent_performance

    events, teams = await _read(url, args.start, args.end)
    rows = agent_performance(events, args.start, args.end, teams=teams)
    return {"csv": render.agents_csv, "json": render.agents_json}.get(args.format, render.agents_table)(rows)


if __name__ == "__main__":
    sys.exit(main())
