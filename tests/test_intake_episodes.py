"""Intake admits each loan once per delinquency (issue 15), against a real worker on the Temporal dev
server: a loan's first case is ``started``; a live case is ``already running``; a case closed for the
same delinquency ``already existed`` and is not restarted; a case closed for an earlier one is followed
by a ``new episode``; two admissions of a loan at once start it once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment

from domain.episodes import episode_of
from infra.episodes import last_run, start_episode
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from starter import IntakeReport, admit, case_input, start_cases
from tests.conftest import make_loan, start_case, strategy
from worker import build_activities, build_worker
from workflows.inputs import case_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="module")
TODAY = datetime.now(UTC).date()
EARLIER = TODAY - timedelta(days=20)  # a file of three weeks ago: its loans fell past due before


def earlier_loan(**fields: Any):
    """A loan 5 days past due in a file of three weeks ago (its episode: 25 days ago)."""
    return make_loan(days_past_due=5, as_of=EARLIER.isoformat(), **fields)


@dataclass
class Intake:
    client: Client
    task_queue: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def intake(dev_server: WorkflowEnvironment, tmp_path_factory: Any) -> AsyncIterator[Intake]:
    data: Path = tmp_path_factory.mktemp("intake")
    settings = Settings(data_dir=data, letter_processes=0)
    await ensure_search_attributes(dev_server.client)
    activities = build_activities(settings)
    task_queue = f"intake-{uuid.uuid4().hex[:8]}"
    try:
        async with build_worker(dev_server.client, settings, task_queue=task_queue, activities=activities):
            yield Intake(dev_server.client, task_queue)
    finally:
        await activities.aclose()


async def cure(intake: Intake, loan_id: str, amount: str = "450.00") -> dict[str, Any]:
    """Pay the arrears: the case closes cured."""
    handle = intake.client.get_workflow_handle(case_workflow_id(loan_id), result_type=dict)
    await handle.execute_update("payment_received", {"amount": amount, "reference": f"P-{uuid.uuid4().hex[:8]}"},
                                result_type=dict)
    result: dict[str, Any] = await handle.result()
    assert result["outcome"] == "cured", result["outcome"]
    return result


async def runs(client: Client, loan_id: str) -> list[str]:
    """The run ids of the loan's case (visibility is eventually consistent: wait for ``at_least``)."""
    return [w.run_id async for w in client.list_workflows(f'WorkflowId = "{case_workflow_id(loan_id)}"')]


async def eventually_runs(client: Client, loan_id: str, count: int) -> list[str]:
    seen: list[str] = []
    for _ in range(100):
        seen = await runs(client, loan_id)
        if len(seen) >= count:
            return seen
        await asyncio.sleep(0.1)
    return seen


async def test_the_summary_line_counts_each_status_and_already_existed_keeps_its_old_meaning() -> None:
    report = IntakeReport(rejected=[(4, "x")])
    for loan_id, status in (("a", "started"), ("b", "new episode"), ("c", "already running"),
                            ("d", "already running"), ("e", "already existed")):
        report.add(loan_id, status)  # type: ignore[arg-type]
    assert report.summary() == "intake: 1 started, 1 new episode, 2 already running, 3 already existed, 1 rejected"


async def test_a_loans_first_case_is_started_with_its_episode_in_memo_summary_and_input(intake: Intake) -> None:
    loan = make_loan(days_past_due=5)
    admitted = await admit(intake.client, loan, strategy(), intake.task_queue, as_of=TODAY)
    assert admitted.status == "started"
    assert admitted.episode == episode_of(TODAY, 5) == (TODAY - timedelta(days=5)).isoformat()
    described = await admitted.handle.describe()
    assert (await described.memo()) == {"episode": admitted.episode}
    assert f"episode {admitted.episode}" in (await described.static_summary() or "")
    assert (await admitted.handle.query("status"))["episode"] == admitted.episode


async def test_a_live_case_is_already_running_and_not_started_again(intake: Intake) -> None:
    loan = make_loan(days_past_due=5)
    first = await admit(intake.client, loan, strategy(), intake.task_queue, as_of=TODAY)
    # The next day's file: the same delinquency, or even one the servicer dates differently.
    for as_of, dpd in ((TODAY, 5), (TODAY + timedelta(days=1), 6), (TODAY + timedelta(days=1), 2)):
        again = await admit(intake.client, loan.model_copy(update={"days_past_due": dpd}), strategy(),
                            intake.task_queue, as_of=as_of)
        assert (again.status, again.episode) == ("already running", first.episode)
    assert (await last_run(intake.client, loan.loan_id)).run_id == first.handle.result_run_id  # type: ignore[union-attr]


async def test_a_case_closed_for_the_same_delinquency_already_existed_and_is_not_restarted(intake: Intake) -> None:
    loan = make_loan(days_past_due=5)
    first = await admit(intake.client, loan, strategy(), intake.task_queue, as_of=TODAY)
    await cure(intake, loan.loan_id)
    # The same file again, and a later file whose row still names the same first day past due.
    for as_of, dpd in ((TODAY, 5), (TODAY + timedelta(days=3), 8)):
        again = await admit(intake.client, loan.model_copy(update={"days_past_due": dpd}), strategy(),
                            intake.task_queue, as_of=as_of)
        assert (again.status, again.episode) == ("already existed", first.episode)
        assert again.handle.run_id == first.handle.result_run_id
    run = await last_run(intake.client, loan.loan_id)
    assert run is not None and not run.running and run.run_id == first.handle.result_run_id


async def test_a_later_delinquency_after_the_case_closed_cured_is_a_new_episode(intake: Intake) -> None:
    loan = earlier_loan()
    first = await admit(intake.client, loan, strategy(), intake.task_queue, as_of=TODAY)
    assert first.episode == (EARLIER - timedelta(days=5)).isoformat()
    await cure(intake, loan.loan_id)
    later = loan.model_copy(update={"days_past_due": 3, "as_of": TODAY})  # today's file: past due again
    second = await admit(intake.client, later, strategy(), intake.task_queue, as_of=TODAY)
    assert second.status == "new episode"
    assert second.episode == (TODAY - timedelta(days=3)).isoformat()
    assert second.handle.result_run_id != first.handle.result_run_id
    described = await second.handle.describe()
    assert described.run_id == second.handle.result_run_id and (await described.memo()) == {"episode": second.episode}
    state = await second.handle.query("status")
    assert state["episode"] == second.episode and state["outcome"] is None
    # The first episode's run is as it closed.
    closed = intake.client.get_workflow_handle(case_workflow_id(loan.loan_id), run_id=first.handle.result_run_id,
                                               result_type=dict)
    assert (await closed.result(follow_runs=False))["outcome"] == "cured"
    # The new episode is live now: the same row again finds it running.
    again = await admit(intake.client, later, strategy(), intake.task_queue, as_of=TODAY)
    assert (again.status, again.episode) == ("already running", second.episode)


async def test_a_case_closed_before_episodes_is_read_for_its_delinquency(intake: Intake) -> None:
    """A run from before episodes has no memo: its start says which delinquency it was about. The same
    row again (a file re-run after the upgrade) is that case's; a later delinquency starts a new episode."""
    loan = make_loan(days_past_due=5)
    handle = await start_case(intake.client, intake, loan)  # as before: no memo, no episode
    await handle.execute_update("close", {"outcome": "closed", "note": "sold"}, result_type=dict)
    await handle.result()
    run = await last_run(intake.client, loan.loan_id)
    assert run is not None and run.episode is None and not run.running
    again = await admit(intake.client, loan, strategy(), intake.task_queue, as_of=TODAY)
    assert again.status == "already existed"
    later = loan.model_copy(update={"days_past_due": 2})  # current since, past due again two days ago
    admitted = await admit(intake.client, later, strategy(), intake.task_queue, as_of=TODAY)
    assert (admitted.status, admitted.episode) == ("new episode", episode_of(TODAY, 2))


def all_look_first(monkeypatch: pytest.MonkeyPatch, racers: int) -> None:
    """Every admission looks at the loan's last run before any of them starts one: the race at its
    closest, decided by the start's conflict policy alone."""
    import starter

    barrier, look = asyncio.Barrier(racers), last_run  # the real one, even when patched before

    async def last_run_then_wait(client: Client, loan_id: str):
        run = await look(client, loan_id)
        await barrier.wait()
        return run

    monkeypatch.setattr(starter, "last_run", last_run_then_wait)


async def test_admissions_of_one_loan_at_once_start_it_once(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    loan = earlier_loan()
    all_look_first(monkeypatch, 4)  # a new loan: the first start wins, the four others look and find it
    admitted = await asyncio.gather(*(admit(intake.client, loan, strategy(), intake.task_queue, as_of=TODAY)
                                      for _ in range(5)))
    assert sorted(a.status for a in admitted) == ["already running"] * 4 + ["started"]
    assert {a.episode for a in admitted} == {(EARLIER - timedelta(days=5)).isoformat()}
    # The conflict policy itself: a start beside the live run is refused, whoever asks.
    with pytest.raises(WorkflowAlreadyStartedError):
        await start_episode(intake.client, case_input(loan, strategy(), "other"), intake.task_queue, episode="other")
    assert len(await eventually_runs(intake.client, loan.loan_id, 1)) == 1
    # And after the case closed, a race for its next episode starts one run too.
    await cure(intake, loan.loan_id)
    later = loan.model_copy(update={"as_of": TODAY})
    all_look_first(monkeypatch, 5)  # a loan whose case closed: every first start is refused, all five look
    admitted = await asyncio.gather(*(admit(intake.client, later, strategy(), intake.task_queue, as_of=TODAY)
                                      for _ in range(5)))
    assert sorted(a.status for a in admitted) == ["already running"] * 4 + ["new episode"]
    assert len(await eventually_runs(intake.client, loan.loan_id, 2)) == 2


async def test_intake_counts_each_loan_under_its_status(intake: Intake) -> None:
    loans = [(line, earlier_loan()) for line in (2, 3, 4)]
    report = IntakeReport()
    await start_cases(intake.client, loans, strategy(), intake.task_queue, report, as_of=TODAY)
    assert report.summary() == "intake: 3 started, 0 new episode, 0 already running, 0 already existed, 0 rejected"
    for _, loan in loans[:2]:
        await cure(intake, loan.loan_id)
    again = [(2, loans[0][1]), (3, loans[1][1].model_copy(update={"as_of": TODAY})), (4, loans[2][1])]
    report = IntakeReport()
    await start_cases(intake.client, again, strategy(), intake.task_queue, report, as_of=TODAY)
    assert report.summary() == "intake: 0 started, 1 new episode, 1 already running, 2 already existed, 0 rejected"
    assert (report.new_episode, report.already_running, report.same_delinquency) == (
        [loans[1][1].loan_id], [loans[2][1].loan_id], [loans[0][1].loan_id])
