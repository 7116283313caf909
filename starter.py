"""Intake: read a portfolio file, validate each row, start one case workflow per loan.

    python starter.py --file examples/portfolio.csv [--strategy NAME | --assignment FILE]

Every loan starts on ``--strategy`` when it is given. Without it, an experiment runs when
strategies/assignment.toml (or ``--assignment FILE``) exists: each loan's strategy is drawn as that
file says (champion/challenger, domain/assignment.py); when there is no such file, every loan
starts on ``default``.

Idempotent: a loan whose case is running, or closed for the same delinquency (the
date it fell past due, from the row's ``as_of`` and days past due), is not started
again; a loan whose last case closed for an earlier delinquency starts a new
episode (domain/episodes.py). Each rejected row is reported with its line number
and reason; the valid rows still start. Exit 0 when every row was valid, 1 when
some were rejected, 2 when the file or strategy itself is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.templates import TemplateBook
from domain.assignment import Arm, Plan, draw
from domain.episodes import NO_EPISODE, base_date, episode_of
from domain.errors import Rejected
from domain.loan import REQUIRED_COLUMNS, Loan
from domain.scorecard import Scorecard
from domain.strategy import Strategy
from infra.client import connect
from infra.compliance import ComplianceError, check_tightening, profile_for, template_problems
from infra.episodes import closed_delinquencies, last_run, start_episode
from infra.scorecards import configured_scorecard
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from infra.strategies import StrategyError, load_plan, load_strategy
from workflows.inputs import CaseInput, case_workflow_id, new_case

# What intake did with a loan: ``started`` its first case; ``new episode``, a new run after its last
# case closed for another delinquency; nothing, its case ``already running`` or closed for this very
# delinquency (``already existed``: re-running a file starts nothing twice).
Admission = Literal["started", "already running", "new episode", "already existed"]


@dataclass(frozen=True)
class Admitted:
    status: Admission
    episode: str  # the episode of the run the loan now has ("" for a running case from before episodes)
    handle: WorkflowHandle  # that run (the closed one, for "already existed")


@dataclass
class IntakeReport:
    started: list[str] = field(default_factory=list)
    new_episode: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    same_delinquency: list[str] = field(default_factory=list)  # closed for this delinquency: not restarted
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def already_existed(self) -> list[str]:
        """Loans whose case exists: running, or closed for the delinquency the row names."""
        return self.already_running + self.same_delinquency

    def add(self, loan_id: str, status: Admission) -> None:
        {"started": self.started, "new episode": self.new_episode, "already running": self.already_running,
         "already existed": self.same_delinquency}[status].append(loan_id)

    def summary(self) -> str:
        return (f"intake: {len(self.started)} started, {len(self.new_episode)} new episode, "
                f"{len(self.already_running)} already running, {len(self.already_existed)} already existed, "
                f"{len(self.rejected)} rejected")


class PortfolioError(ValueError):
    """The file as a whole is unusable (missing, not UTF-8, or missing required columns)."""


class IntakeError(RuntimeError):
    """Intake cannot run at all (the Temporal server is unreachable)."""


ASSIGNMENT_FILE = "assignment.toml"  # under the strategies folder


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy each loan's case starts with: one for every loan (``fixed``), or the arm an
    experiment draws for it, each arm's strategy loaded and checked once."""

    fixed: Strategy | None = None
    plan: Plan | None = None
    arms: Mapping[str, Strategy] = field(default_factory=dict)
    # The risk scorecard that graded the loans whose rows gave no grade; it rides with their cases,
    # which re-grade themselves on their behaviour (domain/scorecard.py).
    scorecard: Scorecard | None = None

    def for_loan(self, loan: Loan) -> tuple[Strategy, Arm | None]:
        if self.plan is None:
            assert self.fixed is not None
            return self.fixed, None
        arm = draw(self.plan, loan)
        return self.arms[arm.strategy], arm

    @classmethod
    def of(cls, strategy: "Strategy | StrategyChoice") -> "StrategyChoice":
        return strategy if isinstance(strategy, StrategyChoice) else cls(fixed=strategy)


def usable_strategy(name: str, settings: Settings, book: TemplateBook) -> Strategy:
    """The strategy ``name`` (a name under strategies/ or a .toml path), refused when its compliance
    tightening cannot apply or its templates may not be sent."""
    strategy = load_strategy(name, settings.strategies_dir, book)
    check_tightening(strategy)  # a tightening that cannot apply fails the whole file
    problems = template_problems(strategy, book)
    if problems:  # so do templates that may not be sent
        raise ComplianceError(f"strategy {strategy.name}: templates refused: " + "; ".join(problems))
    return strategy


def choose_strategies(strategy_name: str | None, settings: Settings,
                      assignment: Path | None = None) -> StrategyChoice:
    """``strategy_name`` for every loan when given; else the experiment in ``assignment`` (default:
    strategies/assignment.toml) when that file exists; else ``default`` for every loan. Raises
    ``StrategyError``, ``ComplianceError`` or ``PlanError`` (a ``ValueError``) naming what is wrong."""
    book = TemplateBook(settings.templates_dir)
    if strategy_name and assignment is not None:
        raise ValueError("--strategy and --assignment: choose one (a strategy for every loan, or an experiment)")
    if strategy_name:
        return StrategyChoice(fixed=usable_strategy(strategy_name, settings, book))
    path = assignment if assignment is not None else settings.strategies_dir / ASSIGNMENT_FILE
    if assignment is not None and not path.exists():
        raise ValueError(f"--assignment: {path}: no such file")
    plan = load_plan(path)
    if plan is None:
        return StrategyChoice(fixed=usable_strategy("default", settings, book))
    if not plan.active:  # written down, not started: every loan on the champion, as before the file
        return StrategyChoice(fixed=usable_strategy(plan.champion, settings, book))
    arms: dict[str, Strategy] = {}
    for name in plan.strategies():
        try:
            arms[name] = usable_strategy(name, settings, book)
        except (StrategyError, ComplianceError) as err:
            raise type(err)(f"{path}: experiment {plan.experiment}: strategy {name!r}: {err}") from None
    return StrategyChoice(plan=plan, arms=arms)


def read_portfolio(path: Path, scorecard: Scorecard | None = None
                   ) -> tuple[list[tuple[int, Loan]], list[tuple[int, str]]]:
    """Valid loans with their line numbers, and rejected rows as (line, reason). A row without a risk
    grade is graded by ``scorecard`` when there is one (and rejected, naming the field, when not)."""
    if not path.exists():
        raise PortfolioError(f"{path}: no such file")
    loans: list[tuple[int, Loan]] = []
    rejected: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise PortfolioError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise PortfolioError(f"{path}: header lacks required columns: {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            if None in row:
                rejected.append((line, "row has more fields than the header"))
                continue
            try:
                loan = Loan.from_row(row, scorecard=scorecard)
            except Rejected as err:
                rejected.append((line, str(err)))
                continue
            if loan.loan_id in seen:
                rejected.append((line, f"loan_id: {loan.loan_id} repeats line {seen[loan.loan_id]}"))
                continue
            seen[loan.loan_id] = line
            loans.append((line, loan))
    return loans, rejected


async def _attributes_registered(client: Client) -> bool:
    """Whether cases can start with their search attributes set: registered before this intake.
    Missing ones are registered now, but the server may take seconds to accept them (it caches the
    mappings), and a client without operator rights cannot register them: then cases start without
    and each sets its attributes in its first task."""
    try:
        return not await ensure_search_attributes(client)
    except RPCError:
        return False


def today_utc() -> date:
    return datetime.now(UTC).date()


def case_input(loan: Loan, strategy: Strategy, episode: str, assignment: Arm | None = None,
               scorecard: Scorecard | None = None) -> CaseInput:
    """A new case's input for ``loan`` as a run of ``episode`` (``assignment``: the arm that chose
    ``strategy``, when an experiment did; ``scorecard``: the card that graded the loan, if one did)."""
    return new_case(loan, strategy, profile_for(loan, strategy), episode=episode, assignment=assignment,
                    scorecard=scorecard)


async def start_case(client: Client, loan: Loan, strategy: Strategy, task_queue: str, *,
                     with_attributes: bool = True, as_of: date | None = None,
                     assignment: Arm | None = None) -> WorkflowHandle:
    """Start one loan's case, whatever ran before: its whole strategy and compliance profile in the
    input, its opening search attributes with the start (``with_attributes``: the namespace has
    them registered). Raises ``WorkflowAlreadyStartedError`` while the loan has a live case."""
    episode = episode_of(loan.as_of or as_of or today_utc(), loan.days_past_due)
    return await start_episode(client, case_input(loan, strategy, episode, assignment), task_queue, episode=episode,
                               with_attributes=with_attributes)


async def admit(client: Client, loan: Loan, strategy: Strategy, task_queue: str, *, as_of: date,
                with_attributes: bool = True, assignment: Arm | None = None,
                scorecard: Scorecard | None = None) -> Admitted:
    """Give ``loan`` a case for the delinquency its row names (``loan.as_of``, else ``as_of``, less its
    days past due), unless it has one: a live case is left running; a closed one is left closed when
    it was about this delinquency, and followed by a new run (a new episode) when not. A closed run
    from before episodes names none: its delinquency is unknown, so a new episode starts (its ledger
    rows carry no episode, so nothing of the new one collides with them). Two admissions of a loan at
    once start it once: the loser finds it already running."""
    episode = episode_of(loan.as_of or as_of, loan.days_past_due)
    live = client.get_workflow_handle(case_workflow_id(loan.loan_id))
    case = case_input(loan, strategy, episode, assignment, scorecard)
    try:  # most rows of an intake are loans that never had a case: one call
        handle = await start_episode(client, case, task_queue, episode=episode, with_attributes=with_attributes,
                                     first=True)
        return Admitted("started", episode, handle)
    except WorkflowAlreadyStartedError:
        pass  # the loan had a case, or has one: which, and about which delinquency?
    run = await last_run(client, loan.loan_id)
    if run is not None and run.running:
        return Admitted("already running", run.episode or NO_EPISODE, live)
    if run is not None and base_date(episode) in await closed_delinquencies(client, loan.loan_id, run):
        return Admitted("already existed", run.episode or NO_EPISODE,
                        client.get_workflow_handle(case_workflow_id(loan.loan_id), run_id=run.run_id))
    try:
        handle = await start_episode(client, case, task_queue, episode=episode, with_attributes=with_attributes)
    except WorkflowAlreadyStartedError:  # another starter (the sync, a second intake) was first
        return Admitted("already running", episode, live)
    return Admitted("started" if run is None else "new episode", episode, handle)


async def start_cases(client: Client, loans: list[tuple[int, Loan]], strategy: Strategy | StrategyChoice,
                      task_queue: str, report: IntakeReport, concurrency: int = 32, as_of: date | None = None) -> None:
    """Admit each loan on its strategy (``strategy`` for all, or as the choice draws it)."""
    choice = StrategyChoice.of(strategy)
    gate = asyncio.Semaphore(concurrency)
    with_attributes = await _attributes_registered(client)
    as_of = as_of or today_utc()

    async def start(line: int, loan: Loan) -> None:
        async with gate:
            try:
                chosen, arm = choice.for_loan(loan)
                admitted = await admit(client, loan, chosen, task_queue, as_of=as_of,
                                       with_attributes=with_attributes, assignment=arm,
                                       scorecard=choice.scorecard)
                report.add(loan.loan_id, admitted.status)
            except RPCError as err:
                # One row the server refused does not stop the others.
                report.rejected.append((line, f"not started: {err.message}"))

    await asyncio.gather(*(start(line, loan) for line, loan in loans))
    report.rejected.sort()


async def intake(path: Path, strategy_name: str | None, settings: Settings, client: Client | None = None,
                 task_queue: str | None = None, assignment: Path | None = None,
                 scorecard: str | None = None) -> IntakeReport:
    """Start the file's valid loans on ``strategy_name``, or as ``choose_strategies`` draws them; rows
    without a grade graded by ``scorecard`` (a name under strategies/ or a path; else ARREARS_SCORECARD)."""
    card = configured_scorecard(settings.strategies_dir, scorecard)
    strategy = replace(choose_strategies(strategy_name, settings, assignment), scorecard=card)
    loans, rejected = read_portfolio(path, card)
    report = IntakeReport(rejected=rejected)
    if client is None:
        try:
            client = await connect(settings)
        except RuntimeError as err:  # the SDK reports an unreachable server as a RuntimeError
            raise IntakeError(f"cannot reach Temporal at {settings.temporal_address}: {err}") from None
    await start_cases(client, loans, strategy, task_queue or settings.task_queue, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True, type=Path, help="portfolio CSV file")
    parser.add_argument("--strategy", default=None,
                        help="strategy name under strategies/, or a .toml path, for every loan (default: the "
                             "experiment in strategies/assignment.toml when that file exists, else 'default')")
    parser.add_argument("--assignment", default=None, type=Path,
                        help="a champion/challenger file to draw each loan's strategy from "
                             "(default: strategies/assignment.toml)")
    parser.add_argument("--scorecard", default=None,
                        help="a risk scorecard (name under strategies/ or a .toml path) grading rows without a "
                             "risk_grade (default: ARREARS_SCORECARD; none: such rows are rejected)")
    parser.add_argument("--task-queue", default=None, help="task queue (default: ARREARS_TASK_QUEUE or collections)")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(intake(args.file, args.strategy, Settings.from_env(), task_queue=args.task_queue,
                                    assignment=args.assignment, scorecard=args.scorecard))
    except (PortfolioError, StrategyError, ComplianceError, IntakeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)  # ValueError: a bad setting, named
        return 2
    for line, reason in report.rejected:
        print(f"{args.file}:{line}: rejected: {reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.rejected else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's runtime threads can crash it (sdk-python #300)
    # and turn a successful run into a non-zero exit.
    os._exit(code)
