"""Shared fixtures: Temporal servers from the venv (never downloaded), loans, strategies, workers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

# Imported up front: otherwise hypothesis's pytest plugin first imports it in the closing summary,
# deep in the stack, where CPython 3.11.7's ast.parse fails ("AST constructor recursion depth mismatch").
import hypothesis  # noqa: F401
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment


from activities.templates import TemplateBook
from domain.loan import Loan
from domain.strategy import Strategy
from infra.client import data_converter
from infra.compliance import load_profiles
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from infra.strategies import load_strategy
from worker import Workers, build_activities, build_worker
from workflows.inputs import FEATURES, CaseInput, case_workflow_id
from workflows.loan_collection import LoanCollectionWorkflow

BIN = Path(sys.executable).parent
TEST_SERVER = BIN / "temporal-test-server"
DEV_SERVER = BIN / "temporal"
ROOT = Path(__file__).resolve().parents[1]

# Fixtures that live with their helpers: `ledger` (SQLite and PostgreSQL), `mailbox` and `smtp_url`.
pytest_plugins = ["tests.ledger_fixtures", "tests.mail_server", "tests.desk_fixtures"]


def settings_for(data_dir: Path) -> Settings:
    # Letters render in a thread: a test's worker needs no processes of its own to print a few.
    return Settings(data_dir=data_dir, letter_processes=0)


PROFILES = load_profiles()
# The workflow tests of the ladder, commands, promises and plans run without quiet hours or caps
# (the demo profile), so the hour CI happens to run at cannot move their timings. The compliance
# tests name real profiles and choose the borrower's time zone.
NO_RULES = PROFILES["demo"]


def zone_where_it_is(hour: int, now: datetime) -> str:
    """A fixed-offset IANA zone in which ``now`` is ``hour`` o'clock (and some minutes)."""
    offset = (hour - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT+5 is UTC-5


def strategy(name: str = "default", **overrides: Any) -> Strategy:
    base = load_strategy(name, ROOT / "strategies", TemplateBook(ROOT / "templates"))
    return base.model_copy(update=overrides) if overrides else base


def make_loan(**overrides: Any) -> Loan:
    row = {
        "loan_id": f"T-{uuid.uuid4().hex[:10]}", "borrower_name": "Ada Example", "phone": "+15555550123",
        "email": "ada@example.com", "address": "1 Test Street, Springfield", "timezone": "America/New_York",
        "jurisdiction": "US", "currency": "USD", "outstanding_amount": "5000.00", "amount_past_due": "450.00",
        "days_past_due": "5", "product": "personal_loan", "risk_grade": "B",
    }
    row.update({k: str(v) for k, v in overrides.items()})
    return Loan.from_row(row)


# One time-skipping server per test: its clock is global, and a case or activity left over from
# one test can hold it back for the next (DESIGN.md, "Temporal habits"). Start-up takes well under a second.
@pytest_asyncio.fixture(loop_scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=data_converter())
    await ensure_search_attributes(environment.client)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server (end-to-end tests), one per test module."""
    # No search attributes are registered here: worker.py must register them itself.
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(DEV_SERVER), ui=False, data_converter=data_converter(),
        dev_server_extra_args=["--log-level", "error"])
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="module")
def address(dev_server: WorkflowEnvironment) -> str:
    return dev_server.client.service_client.config.target_host


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest_asyncio.fixture(loop_scope="module")
async def worker(env: WorkflowEnvironment, data_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Workers]:
    """A worker on the case ledger in SQLite under ``data_dir``; tests that read the ledger run on
    both databases with ``@pytest.mark.parametrize("worker", BACKENDS, indirect=True)``."""
    from tests.ledger_fixtures import drop_ledger, open_ledger  # a plugin module: imported once pytest has it

    settings = settings_for(data_dir)
    backend = getattr(request, "param", "sqlite")
    ledger = (await open_ledger(backend, data_dir))[0] if backend != "sqlite" else None
    activities = build_activities(settings, ledger)
    try:
        async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                activities=activities) as running:
            running.ledger = activities.ledger  # type: ignore[attr-defined] - for tests that read it
            yield running
    finally:
        await activities.aclose()
        if ledger is not None:
            await drop_ledger(ledger)


async def start_case(client: Client, worker: Workers, loan: Loan | None = None,
                     strat: Strategy | None = None, **input_fields: Any) -> WorkflowHandle:
    loan = loan or make_loan()
    input_fields.setdefault("compliance", NO_RULES)
    # As intake starts a case: with every current feature (``features=None``: a case from before they were named).
    input_fields.setdefault("features", list(FEATURES))
    handle = await client.start_workflow(
        LoanCollectionWorkflow.run, CaseInput(loan=loan, strategy=strat or strategy(), **input_fields),
        id=case_workflow_id(loan.loan_id), task_queue=worker.task_queue)
    return handle


async def status(handle: WorkflowHandle) -> dict[str, Any]:
    return await handle.query("status")


def events(state: dict[str, Any], kind: str | None = None, status_: str | None = None) -> list[dict[str, Any]]:
    return [e for e in state["events"]
            if (kind is None or e["kind"] == kind) and (status_ is None or e["status"] == status_)]


def money(text: str) -> Decimal:
    return Decimal(text)


async def eventually(handle: WorkflowHandle, predicate, attempts: int = 100) -> dict[str, Any]:
    """Query ``status`` until ``predicate`` holds: a signal is applied by a later workflow task."""
    import asyncio

    state: dict[str, Any] = {}
    for _ in range(attempts):
        state = await status(handle)
        if predicate(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition never held; last status: stage={state.get('stage')} "
                         f"events={[(e['kind'], e['status']) for e in state.get('events', [])][-8:]}")


def stage_entries(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(stage, at) for every stage the case entered, the opening stage first."""
    opened = events(state, "case_opened")[0]
    return [(opened["detail"]["stage"], opened["at"])] + [
        (e["detail"]["stage"], e["at"]) for e in events(state, "stage_entered")]
