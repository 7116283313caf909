"""A case's field visit as a child workflow, run beside the case's main loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from domain import visits
    from domain.case import CaseState
    from domain.strategy import Strategy
    from activities.models import CaseEventsRequest
    from workflows.field_visit import FieldVisitWorkflow
    from workflows.inputs import FieldVisitInput, FieldVisitResult


class VisitRunner:
    """Starts the visit child, passes on the case's reports, and stops it when the case says so."""

    def __init__(self, case: CaseState, strategy: Strategy, changed: Callable[[], None]) -> None:
        self._case = case
        self._strategy = strategy
        self._changed = changed
        self._task: asyncio.Task[None] | None = None
        self._child: workflow.ChildWorkflowHandle | None = None
        # The case's events below this sequence number ride with the running visit's first plan.
        self.carried_to = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, treatment_key: str, child_input: FieldVisitInput,
              trail: Callable[[], CaseEventsRequest | None] | None = None) -> None:
        """Start the visit; with ``trail``, the child's first plan carries the case's events up to
        the visit's start into the ledger (they count as written once the child says so)."""
        visit_id = f"{workflow.info().workflow_id}-visit-{self._case.seq}"
        visits.start_visit(self._case, visit_id, treatment_key, workflow.now())
        carried = trail() if trail is not None else None
        if carried is not None:
            child_input = child_input.model_copy(update={"trail": carried})
            self.carried_to = carried.first_seq + len(carried.events)
        self._task = asyncio.create_task(self._run(visit_id, child_input))

    def reconcile(self) -> None:
        """Stop a visit still to happen while the case is on hold or visits were ceased."""
        if visits.must_stop(self._case):
            self._cancel()
            visits.stop(self._case, workflow.now(), replan=True)

    def leave_stage(self) -> None:
        self._cancel()
        visits.stop(self._case, workflow.now(), replan=False)

    def _cancel(self) -> None:
        # Cancel the child itself, not only the task waiting on it: a cancelled wait does not
        # reach the child (and a cancelled signal to it is simply never sent).
        if self._child is not None and not self._child.done():
            self._child.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self, visit_id: str, child_input: FieldVisitInput) -> None:
        visit = self._case.visit
        assert visit is not None
        child = await workflow.start_child_workflow(FieldVisitWorkflow.run, child_input, id=visit_id,
                                                    static_summary=f"field visit for {self._case.loan_id}")
        self._child = child
        # When the case cancels both the child and this task, nothing awaits the child's end:
        # read it here, so its cancellation is not reported as an error nobody retrieved.
        child.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            while True:
                await workflow.wait_condition(lambda: bool(visit.unforwarded_reports) or child.done())
                if child.done():
                    break
                try:
                    await child.signal(FieldVisitWorkflow.report, visit.unforwarded_reports[0])
                except Exception:  # noqa: BLE001 - CancelledError is a BaseException and still propagates
                    break  # the child finished meanwhile; its result below says how
                visit.unforwarded_reports.pop(0)
                self._changed()  # a hold that waited for this report to go out may now stop the visit
            result: FieldVisitResult = await child
        except ChildWorkflowError as err:
            visits.failed(self._case, str(err.cause or err), workflow.now())
        else:
            # As far as the visit's first plan says it wrote the events it carried (a child run by
            # an older worker says nothing, and they are written with the case's next activity).
            self._case.ledger_seq = max(self._case.ledger_seq, min(result.trail_recorded_to, self.carried_to))
            visits.finished(self._case, self._strategy, result.outcome, result.attempts, result.agents,
                            workflow.now())
        finally:
            self.carried_to = 0
        self._changed()
