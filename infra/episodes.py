"""A loan's case from the client's side: which run of it is there, starting the next episode, and a
reversed payment that reopens a case it had cured.

The case's workflow id stays ``loan-<loan_id>``; each run is one delinquency episode
(domain/episodes.py), named in the run's memo (``{"episode": ...}``) and its summary in the UI. A run
starts only once the previous one closed (``ALLOW_DUPLICATE``) and never beside a live one (conflict
policy ``FAIL``): two starters racing on a loan start it once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.case import open_case
from domain.commands import PaymentReversed
from domain.episodes import NO_EPISODE, base_date, episode_of, next_episode
from domain.errors import Rejected
from workflows import search_attributes as sa
from workflows.inputs import CaseInput, case_workflow_id, reopened_case
from workflows.loan_collection import LoanCollectionWorkflow

RPC_TIMEOUT = timedelta(seconds=15)
# How long a reopened case may take to answer its first query (its first workflow task).
FIRST_ANSWER = timedelta(seconds=10)


@dataclass(frozen=True)
class LastRun:
    """The loan's latest case run, as Temporal describes it."""

    run_id: str
    running: bool
    # The episode its memo names; None for a run started before episodes (no memo): unknown.
    episode: str | None
    task_queue: str
    started_at: datetime


class ReversalRefused(Rejected):
    """A reversal that cannot reopen the closed case (``field``, ``reason``); ``missing`` when the
    loan has no case at all."""

    def __init__(self, field: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(field, reason)
        self.missing = missing


async def last_run(client: Client, loan_id: str) -> LastRun | None:
    """The loan's latest case run, or None when the loan never had a case."""
    try:
        described = await client.get_workflow_handle(case_workflow_id(loan_id)).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    episode = (await described.memo()).get("episode")
    return LastRun(run_id=described.run_id, running=described.status == WorkflowExecutionStatus.RUNNING,
                   episode=episode if isinstance(episode, str) else None, task_queue=described.task_queue,
                   started_at=described.start_time)


async def closed_delinquencies(client: Client, loan_id: str, run: LastRun) -> set[date]:
    """The delinquency dates a closed run was about: its memo's episode, the first day past due it closed
    with (a ``loan_update`` may have moved it), and for a run from before episodes the one its start
    names (the loan's days past due on the day it started). A row naming one of them is that case's."""
    dates = {d for d in (base_date(run.episode or ""),) if d is not None}
    handle = client.get_workflow_handle(case_workflow_id(loan_id), run_id=run.run_id)
    try:
        result = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        since = result.get("delinquent_since") if isinstance(result, dict) else None
        if isinstance(since, str):
            dates.add(date.fromisoformat(since))
    except WorkflowFailureError:
        pass  # failed, terminated or timed out: no result to read
    if run.episode is None:
        try:
            started = await _started_with(client, handle)
            dates.add(base_date(episode_of(started.loan.as_of or run.started_at.date(), started.loan.days_past_due)))
        except ReversalRefused:
            pass
    return dates


def summary(case: CaseInput, episode: str) -> str:
    """The run's one line in the Temporal UI (static summary): no personal data."""
    loan = case.loan
    reopened = " (reopened)" if case.reopened is not None else ""
    arm = f" ({case.assignment.role} in {case.assignment.experiment})" if case.assignment is not None else ""
    return (f"{loan.product} · grade {loan.risk_grade} · {loan.jurisdiction} · strategy {case.strategy.name}{arm} · "
            f"episode {episode}{reopened}")


async def start_episode(client: Client, case: CaseInput, task_queue: str, *, episode: str,
                        with_attributes: bool = True, first: bool = False) -> WorkflowHandle:
    """Start the loan's case as a run of ``episode``: raises ``WorkflowAlreadyStartedError`` while
    another run of the loan's case is live (whoever started it), and with ``first`` also when the loan
    had a case before (intake tries that first: a new loan then costs one call, not two)."""
    now = datetime.now(UTC)
    return await client.start_workflow(
        LoanCollectionWorkflow.run, case, id=case_workflow_id(case.loan.loan_id), task_queue=task_queue,
        # A new run once the previous one closed (the next episode); never two live ones.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE if first else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        memo={"episode": episode},
        search_attributes=(sa.opening(open_case(case.loan, case.strategy, now), case.loan, now,
                                      strategy=case.strategy.name) if with_attributes
                           else TypedSearchAttributes.empty),
        static_summary=summary(case, episode),
    )


async def reverse_payment(client: Client, loan_id: str, payload: dict[str, Any], by: str | None) -> dict[str, Any]:
    """``payment_reversed {reference, reason}`` for the loan's case, wherever it stands.

    A live case gets it as the update of that name (its refusals raise ``WorkflowUpdateFailedError``,
    as any update's do); a reversal the case already has is recorded there as a duplicate. A case
    that payment cured and that has closed is reopened: a new run, the next episode, whose input
    carries the closed run's loan with the amounts the payment had cleared and the reversal
    (``reopened_case``); the closed run's history stays as it was. Returns the live run's status.
    """
    command = {**payload, **({"by": by} if by is not None else {})}
    run = await last_run(client, loan_id)
    if run is None:
        raise ReversalRefused("loan_id", f"no case for loan {loan_id}", missing=True)
    if run.running:
        try:
            return await _update(client, loan_id, command, run.run_id)
        except (WorkflowUpdateFailedError, RPCError) as err:
            if not _closed(err):
                raise
        # The payment cured the case a moment ago: its run is finishing its last task. Reopen once it has.
        try:
            await client.get_workflow_handle(case_workflow_id(loan_id), run_id=run.run_id).result(
                follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        except WorkflowContinuedAsNewError:  # not closed: it went on as a new run, which takes the update
            return await _update(client, loan_id, command)
        except WorkflowFailureError:
            pass  # _reopen says the case ended without an outcome
        run = replace(run, running=False)
    try:
        return await _reopen(client, loan_id, run, command, by)
    except WorkflowAlreadyStartedError:  # another reversal reopened it first: this one goes to that run,
        return await _update(client, loan_id, command)  # which records it as a duplicate


async def _update(client: Client, loan_id: str, command: dict[str, Any], run_id: str | None = None
                  ) -> dict[str, Any]:
    return await client.get_workflow_handle(case_workflow_id(loan_id), run_id=run_id).execute_update(
        "payment_reversed", command, result_type=dict, rpc_timeout=RPC_TIMEOUT)


def _closed(err: WorkflowUpdateFailedError | RPCError) -> bool:
    """Whether the case refused the update because it has closed (it may still be finishing)."""
    if isinstance(err, RPCError):  # the run described a moment ago has completed, or was closing as it came
        return err.status == RPCStatusCode.NOT_FOUND
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return False
    reason = str(cause.details[1]) if len(cause.details) >= 2 else cause.message
    return reason.startswith("the case is closed")


async def _reopen(client: Client, loan_id: str, run: LastRun, command: dict[str, Any], by: str | None
                  ) -> dict[str, Any]:
    try:
        reversal = PaymentReversed.model_validate(command)
    except ValidationError as err:
        first = err.errors()[0]
        raise ReversalRefused(".".join(str(part) for part in first["loc"]), first["msg"]) from None
    closed = client.get_workflow_handle(case_workflow_id(loan_id), run_id=run.run_id, result_type=dict)
    previous = await _started_with(client, closed)
    try:
        status: dict[str, Any] = await closed.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    except WorkflowFailureError:
        raise ReversalRefused("", f"the case for loan {loan_id} ended without an outcome; nothing to reopen") from None
    if "payments" not in status:
        raise ReversalRefused("", f"the case for loan {loan_id} began before payments could be reversed; "
                                  "start a new case for the loan instead")
    closed_episode = run.episode if run.episode is not None else status.get("episode") or NO_EPISODE
    since = status.get("delinquent_since")
    delinquency = closed_episode or (datetime.fromisoformat(since).date().isoformat() if since else episode_of(
        previous.loan.as_of or run.started_at.date(), previous.loan.days_past_due))
    episode = next_episode(delinquency, closed_episode)
    try:
        case = reopened_case(previous, status, reversal.reference, reversal.reason, by, episode, run.run_id)
    except Rejected as err:  # not a payment of the case, reversed already, or the case did not close cured
        raise ReversalRefused(err.field, err.reason) from None
    handle = await start_episode(client, case, run.task_queue, episode=episode)
    return await _first_status(handle, loan_id, episode)


async def _started_with(client: Client, handle: WorkflowHandle) -> CaseInput:
    """The input a run started with (its first history event)."""
    async for event in handle.fetch_history_events(page_size=1, rpc_timeout=RPC_TIMEOUT):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [started] = await client.data_converter.decode(payloads, [CaseInput])
            return started
        break
    raise ReversalRefused("loan_id", f"the closed case of {handle.id} has no start in its history")


async def _first_status(handle: WorkflowHandle, loan_id: str, episode: str) -> dict[str, Any]:
    """The reopened run's status once it has one; without a worker to answer, what is known."""
    deadline = datetime.now(UTC) + FIRST_ANSWER
    while True:
        left = deadline - datetime.now(UTC)
        try:
            return await handle.query("status", rpc_timeout=max(left, timedelta(seconds=1)))
        except RPCError as err:
            if datetime.now(UTC) >= deadline or err.status == RPCStatusCode.NOT_FOUND:
                return {"loan_id": loan_id, "episode": episode, "run_id": handle.result_run_id, "reopened": True}
            await asyncio.sleep(0.2)
