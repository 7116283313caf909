"""Intake draws each loan's strategy when it is not told one (champion/challenger, issue 16), against
a real worker on the Temporal dev server: each case's input carries its arm, its case_opened record
names the experiment, the arm and the segment that chose its stage, and its ``Strategy`` search
attribute is set with the start, so supervisors list an arm's cases. With ``--strategy`` intake does
what it always did. The daily sync admits new loans the same way."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.loan import REQUIRED_COLUMNS, Loan
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from starter import choose_strategies, intake
from sync.activity import TemporalDoor
from tests.conftest import make_loan
from tests.test_assignment import active_root
from worker import build_activities, build_worker
from workflows.inputs import CaseInput, case_workflow_id
from workflows.search_attributes import COLLECTION_STAGE, STRATEGY

pytestmark = pytest.mark.asyncio(loop_scope="module")
TODAY = datetime.now(UTC).date()
EXPERIMENT = "early-contact-2026"  # strategies/assignment.toml's: a fifth of the loans on early_contact


@dataclass
class Intake:
    client: Client
    task_queue: str
    settings: Settings
    folder: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(dev_server: WorkflowEnvironment, tmp_path_factory: Any) -> AsyncIterator[Intake]:
    folder: Path = tmp_path_factory.mktemp("assignment")
    # The project's strategies and its experiment, switched on.
    settings = Settings(root=active_root(folder / "project"), data_dir=folder / "data", letter_processes=0)
    await ensure_search_attributes(dev_server.client)
    activities = build_activities(settings)
    task_queue = f"assign-{uuid.uuid4().hex[:8]}"
    try:
        async with build_worker(dev_server.client, settings, task_queue=task_queue, activities=activities):
            yield Intake(dev_server.client, task_queue, settings, folder)
    finally:
        await activities.aclose()


def challenger_by_hash(loan_id: str, share: float = 0.2) -> bool:
    """The documented rule, worked out here on its own: sha256("<experiment>:<loan_id>"), its first
    64 bits as a share of 2**64, below the challenger's share."""
    return int(hashlib.sha256(f"{EXPERIMENT}:{loan_id}".encode()).hexdigest()[:16], 16) / 2 ** 64 < share


def portfolio(per_arm: int = 3) -> list[Loan]:
    """Loans 20 days past due (the default reminds them, early_contact calls them), ``per_arm`` of them
    on each arm."""
    tag = uuid.uuid4().hex[:6]
    ids = [f"A-{tag}-{n}" for n in range(400)]
    chosen = [i for i in ids if challenger_by_hash(i)][:per_arm] + [i for i in ids if not challenger_by_hash(i)][:per_arm]
    return [make_loan(loan_id=loan_id, days_past_due=20) for loan_id in chosen]


def write_csv(path: Path, loans: list[Loan]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(REQUIRED_COLUMNS))
        writer.writeheader()
        for loan in loans:
            row = loan.model_dump(mode="json")
            writer.writerow({column: row[column] for column in REQUIRED_COLUMNS})
    return path


async def started_with(client: Client, handle: WorkflowHandle) -> CaseInput:
    async for event in handle.fetch_history_events():
        assert event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        [case] = await client.data_converter.decode(event.workflow_execution_started_event_attributes.input.payloads,
                                                    [CaseInput])
        return case
    raise AssertionError("no history")


async def opened(handle: WorkflowHandle) -> dict[str, Any]:
    """The case_opened record, once the case's first task has run."""
    for _ in range(100):
        try:
            state = await handle.query("status")
            return next(e for e in state["events"] if e["kind"] == "case_opened")["detail"]
        except Exception:  # noqa: BLE001 - the first workflow task has not run yet
            await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} never answered")


async def listed(client: Client, query: str, count: int) -> set[str]:
    """The ids the visibility query lists (eventually consistent: wait until ``count`` show)."""
    found: set[str] = set()
    for _ in range(100):
        found = {w.id async for w in client.list_workflows(query)}
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


async def test_intake_without_a_strategy_draws_each_loans_arm_and_pins_it(setup: Intake) -> None:
    loans = portfolio()
    report = await intake(write_csv(setup.folder / "drawn.csv", loans), None, setup.settings, client=setup.client,
                          task_queue=setup.task_queue)
    assert report.summary() == "intake: 6 started, 0 new episode, 0 already running, 0 already existed, 0 rejected"
    for loan in loans:
        challenger = challenger_by_hash(loan.loan_id)
        expected = "early_contact" if challenger else "default"
        handle = setup.client.get_workflow_handle(case_workflow_id(loan.loan_id))
        case = await started_with(setup.client, handle)
        assert case.strategy.name == expected
        assert case.assignment is not None and (case.assignment.experiment, case.assignment.strategy,
                                                case.assignment.role) == (
            EXPERIMENT, expected, "challenger" if challenger else "champion")
        detail = await opened(handle)
        assert (detail["strategy"], detail["experiment"], detail["arm"]) == (expected, EXPERIMENT, case.assignment.role)
        # The arms differ where they should: early_contact calls a loan 20 days past due, the default reminds it.
        assert (detail["stage"], detail["segment"]) == (
            ("contact", "from DPD 16: agent contact") if challenger else ("reminder", None))
        described = await handle.describe()
        assert described.typed_search_attributes.get(STRATEGY) == expected
        assert f"strategy {expected} ({case.assignment.role} in {EXPERIMENT})" in (await described.static_summary() or "")
    # Supervisors list an arm's cases; the other attributes' lists work beside it.
    challengers = {case_workflow_id(loan.loan_id) for loan in loans if challenger_by_hash(loan.loan_id)}
    mine = f'TaskQueue = "{setup.task_queue}"'
    assert await listed(setup.client, f'Strategy = "early_contact" AND {mine}', 3) == challengers
    assert await listed(setup.client, f'Strategy = "default" AND CollectionStage = "reminder" AND {mine}', 3) == {
        case_workflow_id(loan.loan_id) for loan in loans} - challengers
    # Running the same file again starts nothing, and a rerun would have drawn the same arms.
    again = await intake(setup.folder / "drawn.csv", None, setup.settings, client=setup.client,
                         task_queue=setup.task_queue)
    assert again.summary() == "intake: 0 started, 0 new episode, 6 already running, 6 already existed, 0 rejected"


async def test_intake_told_a_strategy_starts_every_loan_on_it_outside_any_experiment(setup: Intake) -> None:
    loans = portfolio(per_arm=2)  # two the experiment would have drawn into early_contact
    report = await intake(write_csv(setup.folder / "named.csv", loans), "default", setup.settings,
                          client=setup.client, task_queue=setup.task_queue)
    assert report.summary() == "intake: 4 started, 0 new episode, 0 already running, 0 already existed, 0 rejected"
    for loan in loans:
        handle = setup.client.get_workflow_handle(case_workflow_id(loan.loan_id))
        case = await started_with(setup.client, handle)
        assert (case.strategy.name, case.assignment) == ("default", None)
        detail = await opened(handle)
        assert (detail["strategy"], detail["experiment"], detail["arm"], detail["stage"]) == (
            "default", None, None, "reminder")
        described = await handle.describe()
        assert described.typed_search_attributes.get(STRATEGY) == "default"
        assert described.typed_search_attributes.get(COLLECTION_STAGE) == "reminder"


async def test_the_daily_sync_admits_a_new_loan_on_its_drawn_arm(setup: Intake) -> None:
    door = TemporalDoor(setup.client, choose_strategies(None, setup.settings), setup.task_queue, with_attributes=True)
    loans = portfolio(per_arm=1)
    for loan in loans:
        assert await door.admit(loan, as_of=TODAY) == "started"
        handle = setup.client.get_workflow_handle(case_workflow_id(loan.loan_id))
        case = await started_with(setup.client, handle)
        role = "challenger" if challenger_by_hash(loan.loan_id) else "champion"
        assert case.assignment is not None and case.assignment.role == role
        assert (await opened(handle))["arm"] == role
        assert (await handle.describe()).typed_search_attributes.get(STRATEGY) == case.strategy.name
