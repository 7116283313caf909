"""The simulated borrower as a lab-only workflow: one per simulated case, beside it on the same server.

Timed borrower actions (pay in three days, keep a promise on its due date) need durable timers on the
time-skipping server, so that the server skips to them as it skips to the case's own. The simulated
activities signal ``contacted`` as the case reaches the borrower; this workflow asks
:class:`lab.behaviour.Borrower` what follows and sends it to the case as the commands of the public
contract (``payment_received``, ``promise_to_pay``, ``call_outcome``, ``field_visit_report``,
``hardship``, ``dispute``, ...), signed ``lab:borrower`` or ``lab:agent``. It ends when the case
closes (the activity that records the case's closing says so) or when a command finds the case
closed; the simulation terminates what is left at its horizon. It starts with the case only when the
borrower pays unprompted; otherwise the first contact the borrower reacts to starts it (most
messages change nothing, and a borrower who never reacts costs nothing).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from lab.behaviour import Borrower, BorrowerInput, Contact


def borrower_id(case_id: str) -> str:
    """The borrower workflow beside the case workflow ``case_id``."""
    return f"{case_id}/borrower"


@workflow.defn(name="LabBorrower")
class BorrowerWorkflow:
    @workflow.init
    def __init__(self, input: BorrowerInput) -> None:
        self._contacts: list[Contact] = []
        self._closed = False

    @workflow.signal
    def contacted(self, contact: Contact) -> None:
        self._contacts.append(contact)

    @workflow.signal
    def case_closed(self) -> None:
        self._closed = True

    @workflow.run
    async def run(self, input: BorrowerInput) -> int:
        borrower = Borrower.of(input).opened()
        case = workflow.get_external_workflow_handle(input.case_id)
        sent = 0
        while not self._closed:
            for contact in self._contacts:
                borrower.contacted(contact)
            self._contacts.clear()
            for action in borrower.due(workflow.now()):
                payload = borrower.command(action, workflow.now())
                if payload is None:
                    continue
                try:
                    await case.signal(action.command, payload)
                except Exception:  # noqa: BLE001 - the case has closed (a signal to it fails): so has the borrower
                    return sent
                sent += 1
            wake = borrower.next_at()
            timeout = max(wake - workflow.now(), timedelta(seconds=1)) if wake is not None else None
            try:
                await workflow.wait_condition(lambda: bool(self._contacts) or self._closed, timeout=timeout)
            except TimeoutError:
                pass
        return sent
