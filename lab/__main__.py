"""``python -m lab``: the strategy lab.

    python -m lab simulate --portfolio FILE --strategy A --strategy B [--days 180] [--behaviour FILE]
                           [--seed N] [--format table|json|html] [--out FILE] [--cases-at-once N]
    python -m lab portfolio --cases N --seed N --out FILE
    python -m lab fit-scorecard ...            (lab/scorecard.py)

``simulate`` runs each strategy over the portfolio with the real case workflow on the time-skipping
server and simulated borrowers (lab/simulate.py), and prints the KPIs by strategy side by side, the
first strategy as the champion, marked SIMULATED, with the behaviour model's assumptions above them.
The same seed gives the same report. ``portfolio`` writes a synthetic portfolio (no real personal
data) in the intake format.

Exit status: 0 done; 2 a bad argument or an unusable file (the message names the flag and why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from infra.cli import FlagParser

FORMATS = ("table", "json", "html")


_Parser = FlagParser  # argument --flag: reason, exit 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def parser() -> _Parser:
    top = _Parser(prog="python -m lab", description="The strategy lab: what-if simulation, synthetic portfolios.")
    commands = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = commands.add_parser("simulate", help="run strategies over a portfolio with simulated borrowers")
    sim.set_defaults(sub=sim)
    sim.add_argument("--portfolio", required=True, type=Path, help="portfolio CSV in the intake format")
    sim.add_argument("--strategy", required=True, action="append", dest="strategies", metavar="NAME",
                     help="a strategy name under strategies/ or a .toml path; repeat to compare (the first is "
                          "the champion)")
    sim.add_argument("--days", type=_positive, default=180, help="simulated days (default 180)")
    sim.add_argument("--behaviour", type=Path, default=None,
                     help="borrower behaviour model (default lab/behaviour.toml)")
    sim.add_argument("--seed", type=_seed, default=1, help="the seed of every borrower draw (default 1)")
    sim.add_argument("--format", choices=FORMATS, default="table")
    sim.add_argument("--out", type=Path, default=None, help="write the report here instead of stdout")
    sim.add_argument("--cases-at-once", type=_positive, default=1000,
                     help="cases sharing the server at once (loans x strategies; more go in later batches)")
    gen = commands.add_parser("portfolio", help="write a synthetic portfolio (no real personal data)")
    gen.set_defaults(sub=gen)
    gen.add_argument("--cases", required=True, type=_positive, help="how many loans")
    gen.add_argument("--seed", type=_seed, default=1)
    gen.add_argument("--out", required=True, type=Path)
    commands.add_parser("fit-scorecard", help="fit the risk scorecard from a ledger (lab/scorecard.py)",
                        add_help=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fit-scorecard"]:
        from lab import scorecard

        return scorecard.main(argv[1:])
    args = parser().parse_args(argv)
    sub: _Parser = args.sub
    if args.command == "portfolio":
        from lab.portfolio import write_portfolio

        try:
            written = write_portfolio(args.out, args.cases, args.seed)
        except OSError as err:
            sub.flag_error("--out", f"cannot write {args.out}: {err.strerror or err}")
        print(f"wrote {written} synthetic loans to {args.out} (seed {args.seed})", file=sys.stderr)
        return 0
    return _simulate(args, sub)


def _simulate(args: argparse.Namespace, sub: _Parser) -> int:
    from activities.templates import TemplateBook
    from infra.compliance import ComplianceError, check_tightening
    from infra.settings import Settings
    from infra.strategies import StrategyError, load_lab_strategy
    from lab.behaviour import BehaviourError, load_behaviour
    from starter import PortfolioError, read_portfolio

    settings = Settings.from_env()
    try:
        behaviour = load_behaviour(args.behaviour)
    except BehaviourError as err:
        sub.flag_error("--behaviour", str(err))
    try:
        book = TemplateBook(settings.templates_dir)
        strategies = [load_lab_strategy(name, settings.strategies_dir, book) for name in args.strategies]
        for strategy in strategies:
            check_tightening(strategy)
    except (StrategyError, ComplianceError) as err:
        sub.flag_error("--strategy", str(err))
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        sub.flag_error("--strategy", f"each strategy once (given {', '.join(names)})")
    try:
        rows, rejected = read_portfolio(args.portfolio)
    except PortfolioError as err:
        sub.flag_error("--portfolio", str(err))
    for line, reason in rejected:
        print(f"{args.portfolio}:{line}: rejected: {reason}", file=sys.stderr)
    if not rows:
        sub.flag_error("--portfolio", f"{args.portfolio}: no valid loan to simulate")
    _quiet()
    from lab.simulate import simulate

    began = time.perf_counter()
    sim = asyncio.run(simulate([loan for _, loan in rows], strategies, behaviour, days=args.days, seed=args.seed,
                               cases_at_once=args.cases_at_once))
    cases = len(rows) * len(strategies)
    print(f"simulated {cases} cases x {args.days} days in {time.perf_counter() - began:.1f} s "
          f"({cases / max(sim.seconds, 1e-9):.1f} cases/s on the server)", file=sys.stderr)
    text = render(sim, behaviour, args.format, portfolio=str(args.portfolio),
                  behaviour_file=str(args.behaviour or "lab/behaviour.toml"), rejected=len(rejected))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as err:
        sub.flag_error("--out", f"cannot write {args.out}: {err.strerror or err}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def facts(sim: Any, *, portfolio: str, behaviour_file: str, rejected: int = 0) -> list[str]:
    """What was simulated, as the first lines of every simulated report (never the machine's timing:
    the same seed gives the same report)."""
    end = sim.start + timedelta(days=sim.days)
    lines = [
        "SIMULATED: a what-if run of the real LoanCollectionWorkflow on the time-skipping server, with simulated "
        "borrowers and agents. Not real outcomes.",
        f"Strategies: {' vs '.join(sim.strategies)} (champion: {sim.strategies[0]}), each over the same "
        f"{sim.loans} loans of {portfolio}" + (f" ({rejected} rows rejected)" if rejected else ""),
        f"{sim.days} days: day 0 is {sim.start:%A %Y-%m-%d %H:%M} UTC on the simulated calendar, the horizon "
        f"{end:%Y-%m-%d %H:%M} UTC; seed {sim.seed}; behaviour {behaviour_file}",
        f"At the horizon {sim.open_cases} cases were still open (reported open)"
        + (f"; {sim.unread} could not be read" if sim.unread else "")
        + (f"; {sim.batches} batches of loans" if sim.batches > 1 else ""),
    ]
    return lines


def render(sim: Any, behaviour: Any, fmt: str, *, portfolio: str, behaviour_file: str, rejected: int = 0) -> str:
    """The simulated report: what was simulated and the behaviour model's assumptions, then the KPIs
    by strategy (``reports.render``, ``reports.html``) with the champion/challenger comparison."""
    from lab.behaviour import describe
    from lab.simulate import kpi_report
    from reports import render as text
    from reports.compare import compare

    report = kpi_report(sim)
    comparison = compare(report, champion=sim.strategies[0]) if len(sim.strategies) > 1 else None
    head = facts(sim, portfolio=portfolio, behaviour_file=behaviour_file, rejected=rejected)
    assumptions = describe(behaviour)
    if fmt == "json":
        body = {"simulated": True, "simulation": head, "assumptions": assumptions,
                "behaviour": behaviour.model_dump(mode="json"), "effects": dict(sorted(sim.effects.items())),
                "report": json.loads(text.to_json(report, comparison))}
        return json.dumps(body, ensure_ascii=False, indent=2) + "\n"
    if fmt == "html":
        from reports.html import to_html

        return to_html(report, comparison=comparison, assumptions="\n".join([*head, "", *assumptions]),
                       title="Simulated collection KPIs: " + " vs ".join(sim.strategies))
    return "\n".join([*head, "", "Assumptions:", *assumptions, "", text.to_table(report, comparison)])


def _quiet() -> None:
    """Expected noise off the terminal: the SDK's warnings about the test server, the case's log of
    commands it refused (a simulated borrower promising twice is recorded, not an error)."""
    logging.getLogger("temporalio").setLevel(logging.ERROR)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's runtime threads can crash it (sdk-python #300).
    os._exit(code)
