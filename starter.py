"""Intake: read a portfolio file, validate each row, start one case workflow per loan.

    python starter.py --file examples/portfolio.csv [--strategy NAME]

Idempotent: a loan whose case already exists (running or closed) is not started
again. Each rejected row is reported with its line number and reason; the valid
rows still start. Exit 0 when every row was valid, 1 when some were rejected,
2 when the file or strategy itself is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.templates import TemplateBook
from domain.case import open_case
from domain.errors import Rejected
from domain.loan import REQUIRED_COLUMNS, Loan
from domain.strategy import Strategy
from infra.client import connect
from infra.compliance import ComplianceError, check_tightening, profile_for, template_problems
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from infra.strategies import StrategyError, load_strategy
from workflows import search_attributes as sa
from workflows.inputs import case_workflow_id, new_case
from workflows.loan_collection import LoanCollectionWorkflow


@dataclass
class IntakeReport:
    started: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"intake: {len(self.started)} started, {len(self.existing)} already existed, "
                f"{len(self.rejected)} rejected")


class PortfolioError(ValueError):
    """The file as a whole is unusable (missing, not UTF-8, or missing required columns)."""


class IntakeError(RuntimeError):
    """Intake cannot run at all (the Temporal server is unreachable)."""


def read_portfolio(path: Path) -> tuple[list[tuple[int, Loan]], list[tuple[int, str]]]:
    """Valid loans with their line numbers, and rejected rows as (line, reason)."""
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
                loan = Loan.from_row(row)
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


async def start_case(client: Client, loan: Loan, strategy: Strategy, task_queue: str, *,
                     with_attributes: bool = True) -> WorkflowHandle:
    """Start one loan's case: its whole strategy and compliance profile in the input, its opening
    search attributes with the start (``with_attributes``: the namespace has them registered)."""
    now = datetime.now(UTC)
    return await client.start_workflow(
        LoanCollectionWorkflow.run, new_case(loan, strategy, profile_for(loan, strategy)),
        id=case_workflow_id(loan.loan_id), task_queue=task_queue,
        # One case per loan, ever: re-running an intake file never duplicates a case.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=(sa.opening(open_case(loan, strategy, now), loan, now) if with_attributes
                           else TypedSearchAttributes.empty),
        static_summary=f"{loan.product} · grade {loan.risk_grade} · {loan.jurisdiction} · strategy {strategy.name}",
    )


async def start_cases(client: Client, loans: list[tuple[int, Loan]], strategy: Strategy, task_queue: str,
                      report: IntakeReport, concurrency: int = 32) -> None:
    gate = asyncio.Semaphore(concurrency)
    with_attributes = await _attributes_registered(client)

    async def start(line: int, loan: Loan) -> None:
        async with gate:
            try:
                await start_case(client, loan, strategy, task_queue, with_attributes=with_attributes)
                report.started.append(loan.loan_id)
            except WorkflowAlreadyStartedError:
                report.existing.append(loan.loan_id)
            except RPCError as err:
                # One row the server refused does not stop the others.
                report.rejected.append((line, f"not started: {err.message}"))

    await asyncio.gather(*(start(line, loan) for line, loan in loans))
    report.rejected.sort()


async def intake(path: Path, strategy_name: str, settings: Settings, client: Client | None = None,
                 task_queue: str | None = None) -> IntakeReport:
    book = TemplateBook(settings.templates_dir)
    strategy = load_strategy(strategy_name, settings.strategies_dir, book)
    check_tightening(strategy)  # a tightening that cannot apply fails the whole file
    problems = template_problems(strategy, book)
    if problems:  # so do templates that may not be sent
        raise ComplianceError(f"strategy {strategy.name}: templates refused: " + "; ".join(problems))
    loans, rejected = read_portfolio(path)
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
    parser.add_argument("--strategy", default="default", help="strategy name under strategies/, or a .toml path")
    parser.add_argument("--task-queue", default=None, help="task queue (default: ARREARS_TASK_QUEUE or collections)")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(intake(args.file, args.strategy, Settings.from_env(), task_queue=args.task_queue))
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
