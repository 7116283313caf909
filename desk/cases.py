"""The desk's core: people and the bank's systems act on cases here, as who they are.

Every command goes to its case as the Temporal update of the same name, with ``by`` (and an
arrangement's approver) stamped from the authenticated identity. The role table decides who may
send what and open which case; the case still validates the command itself. An arrangement
beyond its proposer's limit waits for a second supervisor (four-eyes) instead of being refused.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from desk.call_window import call_window
from desk.config import DeskSettings
from desk.policy import Identity, Policy, identity_fields
from desk.store import Approval, DeskError, DeskStore
from domain.command_base import AmountText
from domain.commands import COMMANDS
from domain.loan import Loan
from domain.strategy import Strategy
from infra.episodes import ReversalRefused, reverse_payment
from infra.strategies import load_strategy
from ledger import Ledger
from ledger.schema import work_items
from workflows.inputs import CaseInput, case_workflow_id

RPC_TIMEOUT = timedelta(seconds=15)
M = TypeVar("M", bound=BaseModel)
# Outcomes of a work item a person reports, and the command each becomes.
REPORTS = {"calls": "call_outcome", "visits": "field_visit_report"}
PAYMENTS_AT_ONCE = 8
# Commands that reach a closed case: a reversed payment reopens the case it had cured (a new episode).
REOPENS = frozenset({"payment_reversed"})


class Refused(Exception):
    """A request the desk answers with an HTTP error: ``status``, the ``field`` and the ``reason``."""

    def __init__(self, status: int, reason: str, field: str = "") -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.status = status
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Done:
    """A request's answer: 200 with the case's new status, or 202 with the approval it waits on."""

    status: int
    body: dict[str, Any]


class PaymentEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    loan_id: str = Field(min_length=1, max_length=64)
    reference: str = Field(min_length=1, max_length=64)
    amount: AmountText
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    paid_at: datetime | None = None


class PaymentBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payments: list[PaymentEvent] = Field(min_length=1, max_length=1000)


class WorkOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    outcome: str = Field(min_length=1, max_length=32)
    note: str | None = Field(default=None, max_length=500)
    # A visit's other field staff (distinct people; the reporter is one of them in any case).
    agents: list[str] | None = Field(default=None, max_length=10)
    # A call: how many times the agent dialled on the task (default 1), and when (a time without a
    # zone is UTC); each dial counts against the caps. Times alone say how many.
    dials: int | None = Field(default=None, ge=1, le=20)
    dialled_at: list[datetime] | None = Field(default=None, min_length=1, max_length=20)

    @field_validator("dialled_at")
    @classmethod
    def _one_time_per_dial(cls, value: list[datetime] | None, info: ValidationInfo) -> list[datetime] | None:
        # Checked here as the case checks them: its answer to a malformed report would name no field.
        if value is None:
            return None
        dials = info.data.get("dials")
        if dials is not None and len(value) != dials:
            raise ValueError(f"names {len(value)} times for {dials} dials: one time per dial")
        times = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in value]
        if times != sorted(times):
            raise ValueError("must be in the order the dials were made")
        return times


def mask(kind: str, value: str) -> str:
    """A borrower's detail as a role without a need for it sees it: enough to tell two apart."""
    if not value:
        return value
    if kind == "phone":
        return "*" * max(0, len(value) - 4) + value[-4:]
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return " ".join(word[:1] + "***" for word in value.split()) if kind == "name" else "*** (masked)"


def _an_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def parsed(model: type[M], body: Any) -> M:
    """``body`` as ``model``: 400 when it is not a JSON object, 422 naming the first bad field."""
    try:
        return model.model_validate(_an_object(body))
    except ValidationError as err:
        first = err.errors()[0]
        raise Refused(422, first["msg"], ".".join(str(part) for part in first["loc"])) from None


class CaseDesk:
    def __init__(self, client: Client, policy: Policy, store: DeskStore, ledger: Ledger,
                 settings: DeskSettings) -> None:
        self.client = client
        self.policy = policy
        self.store = store
        self.ledger = ledger
        self.settings = settings
        self._strategies: dict[str, Strategy] = {}

    # -- reading a case ------------------------------------------------------------------------
    def _handle(self, loan_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(case_workflow_id(loan_id))

    async def _status(self, loan_id: str) -> dict[str, Any]:
        try:
            return await self._handle(loan_id).query("status", rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            raise _rpc_refusal(err, loan_id) from None

    async def _work_for(self, loan_id: str) -> set[str]:
        """Who has open work on the case (names, from the ledger's queues)."""
        async with self.ledger.engine.connect() as connection:
            rows = await connection.execute(select(work_items.c.assigned_to).where(
                work_items.c.loan_id == loan_id, work_items.c.state == "open"))
            return {name.strip() for row in rows if row.assigned_to for name in row.assigned_to.split(",")}

    async def _open(self, identity: Identity, loan_id: str) -> dict[str, Any]:
        """The case's status, if ``identity`` may open it (403 otherwise, 404 if there is none)."""
        if self.policy.role(identity).cases == "none":
            raise Refused(403, f"role {identity.role} does not work on cases")
        state = await self._status(loan_id)
        refusal = self.policy.refuses_case(identity, state.get("assigned_agent"),
                                           await self._work_for(loan_id) if self.policy.role(identity).cases != "all"
                                           else set())
        if refusal is not None:
            raise Refused(403, refusal)
        return state

    async def case(self, identity: Identity, loan_id: str, *, reveal: bool = True, via: str = "api",
                   what: str = "viewed") -> dict[str, Any]:
        """The case's status and its borrower's contact details: in clear those the role needs
        (when ``reveal``; masked otherwise), every such view written to the access log."""
        state = await self._open(identity, loan_id)
        loan = await self._loan(loan_id)
        clear = self.policy.role(identity).contact_details if reveal else frozenset()
        details = {"name": loan.borrower_name, "phone": loan.phone, "email": loan.email, "address": loan.address}
        borrower = {kind: value if kind in clear else mask(kind, value) for kind, value in details.items()}
        borrower["masked"] = sorted(set(details) - clear)
        borrower["revealable"] = sorted(set(details) & self.policy.role(identity).contact_details - clear)
        if clear:
            await self.store.log_access(identity, loan_id, what=what, details=sorted(clear), via=via)
        return {**state, "borrower": borrower, "jurisdiction": loan.jurisdiction, "product": loan.product,
                "risk_grade": loan.risk_grade}

    async def access_log(self, identity: Identity, *, loan_id: str | None, user: str | None,
                         limit: int) -> list[dict[str, Any]]:
        if not self.policy.role(identity).reads_access_log:
            raise Refused(403, f"role {identity.role} does not read the access log")
        return await self.store.access_log(loan_id=loan_id, user=user, limit=limit)

    async def private_reasons(self, identity: Identity, loan_id: str, *, via: str = "api") -> list[dict[str, Any]]:
        """What people wrote about the borrower's circumstances on the case (hardship, dispute and
        hold reasons: often health or family data), decrypted from the ledger, for the roles that
        read them (compliance); every reading is logged. Others see only that a reason was given
        (the trail's ``private_fields``). Read from the ledger, so a case whose history Temporal has
        let go is still reviewable for as long as the ledger keeps it."""
        role = self.policy.role(identity)
        if not role.reads_private_reasons:
            raise Refused(403, f"role {identity.role} does not read private reasons (it sees that one was given)")
        if role.cases != "all":
            await self._open(identity, loan_id)
        reasons = await self.ledger.private_reasons(loan_id)
        seen = sorted({name for reason in reasons for name in reason["fields"]})
        await self.store.log_access(identity, loan_id, what="private_reasons", details=_fitting(seen, 64), via=via)
        return reasons

    async def _loan(self, loan_id: str) -> Loan:
        """The loan as the case's current run started with it (from its first history event)."""
        handle = self._handle(loan_id)
        async for event in handle.fetch_history_events(page_size=1, rpc_timeout=RPC_TIMEOUT):
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                payloads = event.workflow_execution_started_event_attributes.input.payloads
                [started] = await self.client.data_converter.decode(payloads, [CaseInput])
                return started.loan
            break
        raise Refused(404, f"no case for loan {loan_id}", "loan_id")

    # -- commands ------------------------------------------------------------------------------
    async def command(self, identity: Identity, loan_id: str, command: str, body: Any) -> Done:
        if command not in COMMANDS:
            raise Refused(404, f"unknown command {command!r}", "command")
        _an_object(body)
        for field in identity_fields(command):
            if field in body:
                raise Refused(400, "is set by the desk from who you are; leave it out", field)
        payload = dict(body)
        justification = payload.pop("justification", None) if command == "propose_arrangement" else None
        if justification is not None and (not isinstance(justification, str) or len(justification) > 500):
            raise Refused(422, "must be text of at most 500 characters", "justification")
        refusal = self.policy.refuses_command(identity, command)
        if refusal is not None:
            raise Refused(403, refusal)
        # What goes to the case is the command as validated, in its JSON form: the role table judges
        # the values the case will read ("yes" is a true breathing_space), not the text sent.
        values = parsed(COMMANDS[command], self._stamp(identity, command, payload)).model_dump(
            mode="json", exclude_unset=True)
        refusal = self.policy.refuses_values(identity, command, values)
        if refusal is not None:
            raise Refused(403, refusal)
        if command in REOPENS:
            return await self._reverse(identity, loan_id, values)
        if self._blind(identity):
            if command == "payment_received":  # recorded by reference in the desk's book, then sent
                raise Refused(403, f"role {identity.role} posts payments to POST /api/v1/payments")
            return Done(200, _receipt(loan_id, command, await self._send(loan_id, command, values)))
        state = await self._open(identity, loan_id)
        if state.get("outcome"):
            raise Refused(409, f"the case is closed ({state['outcome']})")
        try:
            return Done(200, {"status": await self._send(loan_id, command, values)})
        except _BeyondLimit as beyond:
            proposal = {k: v for k, v in values.items() if k not in identity_fields(command)}
            return await self._needs_approval(identity, loan_id, command, proposal, beyond, justification,
                                              state["strategy"])

    def _blind(self, identity: Identity) -> bool:
        """A bank system (the payments system, the servicer) sends the commands its role allows to
        cases it does not read: its answer is a receipt, never the case's status (free text in its events)."""
        return self.policy.role(identity).cases == "none"

    async def _reverse(self, identity: Identity, loan_id: str, values: dict[str, Any]) -> Done:
        """``payment_reversed``: to the live case, or, when the payment had cured the case and it has
        closed, a new episode of it (infra/episodes.py). So unlike other commands it reaches closed cases."""
        if not self._blind(identity):
            await self._open(identity, loan_id)
        payload = {k: v for k, v in values.items() if k != "by"}
        try:
            status = await reverse_payment(self.client, loan_id, payload, identity.name)
        except ReversalRefused as err:
            raise Refused(404 if err.missing else 422, err.reason, err.field) from None
        except (WorkflowUpdateFailedError, RPCError) as err:
            raise _update_refusal(err, loan_id) from None
        return Done(200, _receipt(loan_id, "payment_reversed", status) if self._blind(identity)
                    else {"status": status})

    def _stamp(self, identity: Identity, command: str, payload: dict[str, Any]) -> dict[str, Any]:
        stamped = {**payload, "by": identity.name}
        if command in ("call_outcome", "promise_to_pay"):
            stamped["agent"] = identity.name
        if command == "field_visit_report":
            stamped["agents"] = [identity.name]
        if command == "propose_arrangement":
            limit = self.policy.role(identity).approval_limit
            if limit is None:
                raise Refused(403, f"role {identity.role} has no approval limit for arrangements")
            stamped["approver_role"] = limit
            if limit != "agent":
                stamped["approved_by"] = identity.name  # within their own limit they are the approver
        return stamped

    async def _send(self, loan_id: str, command: str, payload: dict[str, Any], update_id: str | None = None
                    ) -> dict[str, Any]:
        try:
            return await self._handle(loan_id).execute_update(
                command, payload, id=update_id or f"desk-{uuid.uuid4().hex}", result_type=dict,
                rpc_timeout=RPC_TIMEOUT)
        except (WorkflowUpdateFailedError, RPCError) as err:
            raise _update_refusal(err, loan_id) from None

    async def _needs_approval(self, identity: Identity, loan_id: str, command: str, payload: dict[str, Any],
                              beyond: "_BeyondLimit", justification: str | None, strategy: str) -> Done:
        """An arrangement beyond its proposer's limit waits for a second supervisor, if one may agree it."""
        limits = self._strategy(strategy).arrangements.approval_limits
        reach = {role.approves: limits[role.approves] for role in self.policy.roles.values()
                 if role.approves in limits}
        if beyond.share is None or not reach or beyond.share > max(reach.values()):
            highest = ", ".join(f"{name} {share:.0%}" for name, share in sorted(reach.items()))
            raise Refused(422, f"{beyond.reason}; no approver may give up that much ({highest or 'none'})",
                          beyond.field)
        approval = await self.store.propose(
            loan_id=loan_id, command=command, payload=payload, proposer=identity, needs=beyond.reason,
            gives_up={"field": beyond.field, "share": f"{beyond.share:.4f}", "proposer_limit": beyond.limit},
            justification=justification, expires_in=self.settings.approval_expiry)
        return Done(202, {"approval": approval.view()})

    def _strategy(self, name: str) -> Strategy:
        if name not in self._strategies:
            self._strategies[name] = load_strategy(name, self.settings.base.strategies_dir)
        return self._strategies[name]

    # -- four-eyes -----------------------------------------------------------------------------
    async def approvals(self, identity: Identity, state: str | None) -> list[dict[str, Any]]:
        listed = await self.store.approvals(state=state)
        if not self.policy.role(identity).approves:
            listed = [a for a in listed if a.proposed_by == identity.name]
        return [a.view() for a in listed]

    async def _pending(self, identity: Identity, approval_id: str) -> Approval:
        if not self.policy.role(identity).approves:
            raise Refused(403, f"role {identity.role} does not approve")
        approval = await self.store.approval(approval_id)
        if approval is None:
            raise Refused(404, f"no approval {approval_id!r}", "approval_id")
        if approval.proposed_by == identity.name:
            raise Refused(403, "you proposed this; a different supervisor must decide it (four eyes)")
        return approval

    async def approve(self, identity: Identity, approval_id: str) -> Done:
        approval = await self._pending(identity, approval_id)
        resuming = approval.state == "approving" and approval.decided_by == identity.name
        if not resuming:
            if approval.state != "pending" or not await self.store.decide(approval_id, identity.name, to="approving"):
                current = await self.store.approval(approval_id)
                state = current.state if current else approval.state
                raise Refused(409, f"the approval is {state}" + (f" ({current.outcome})" if current and current.outcome
                                                                  else ""))
        payload = {**approval.payload, "by": approval.proposed_by, "approved_by": identity.name,
                   "approver_role": self.policy.role(identity).approves}
        try:
            # One update id per approval: approving again after a lost answer cannot apply it twice.
            status = await self._send(approval.loan_id, approval.command, payload, f"approval-{approval_id}")
        except (Refused, _BeyondLimit) as err:
            reason = err.reason
            if isinstance(err, Refused) and err.status >= 500:
                raise  # the case did not answer: still approving; approving again resumes it
            await self.store.decide(approval_id, identity.name, to="failed", outcome=reason)
            raise Refused(422 if not isinstance(err, Refused) else err.status, reason,
                          getattr(err, "field", "")) from None
        await self.store.decide(approval_id, identity.name, to="applied", outcome="applied")
        return Done(200, {"approval": (await self.store.approval(approval_id)).view(),  # type: ignore[union-attr]
                          "status": status})

    async def reject(self, identity: Identity, approval_id: str, reason: str | None) -> Done:
        approval = await self._pending(identity, approval_id)
        if approval.state != "pending" or not await self.store.decide(
                approval_id, identity.name, to="rejected", outcome=reason or "rejected"):
            raise Refused(409, f"the approval is {approval.state}")
        return Done(200, {"approval": (await self.store.approval(approval_id)).view()})  # type: ignore[union-attr]

    # -- work queues ---------------------------------------------------------------------------
    async def work(self, identity: Identity, queue: str, limit: int, after: str | None) -> dict[str, Any]:
        """The caller's open work on ``queue``, due first. A call task outside its dialling window keeps
        its place, flagged ``callable_now: false`` (desk/call_window.py says why)."""
        refusal = self.policy.refuses_queue(identity, queue)
        if refusal is not None:
            raise Refused(403, refusal, "queue")
        mine = None if self.policy.sees_all_work(identity) else [identity.name] + (
            [identity.team] if identity.team else [])
        try:
            items, cursor = await self.ledger.work_queue(queue, assigned_to=mine, limit=limit, after=after)
        except ValueError as err:
            raise Refused(422, str(err), "after") from None
        return {"queue": queue, "items": [_item_view(item) for item in items], "next": cursor}

    async def report(self, identity: Identity, item_id: str, body: Any) -> Done:
        report = parsed(WorkOutcome, body)
        item = await self.ledger.work_item_by_id(item_id)
        if item is None:
            raise Refused(404, f"no work item {item_id!r}", "item_id")
        refusal = self.policy.refuses_queue(identity, item.queue)
        if refusal is not None:
            raise Refused(403, refusal)
        assignees = {name.strip() for name in (item.assigned_to or "").split(",") if name.strip()}
        mine = {identity.name} | ({identity.team} if identity.team else set())
        if not self.policy.sees_all_work(identity) and not assignees & mine:
            raise Refused(403, f"work item {item_id} is not assigned to {identity.name}")
        command = REPORTS.get(item.queue)
        if command is None:
            raise Refused(409, f"the {item.queue} queue takes no outcomes; the case moves on by itself")
        refusal = self.policy.refuses_command(identity, command)
        if refusal is not None:
            raise Refused(403, refusal)
        if item.state != "open":
            if item.state == "done" and item.outcome == report.outcome:
                return Done(200, {"item": _item_view(item), "already_reported": True})
            raise Refused(409, f"the case no longer wants this: {item.state}"
                               + (f" ({item.reason})" if item.reason else f" with outcome {item.outcome}"))
        payload: dict[str, Any] = {"outcome": report.outcome, "by": identity.name}
        if report.note:
            payload["note"] = report.note
        if command == "call_outcome":
            payload |= {"task_id": item.case_ref or item.item_id, "agent": identity.name}
            if report.dialled_at:
                payload |= {"dials": len(report.dialled_at), "dialled_at": [t.isoformat() for t in report.dialled_at]}
            elif report.dials is not None:
                payload["dials"] = report.dials
        elif report.dials is not None or report.dialled_at:
            raise Refused(422, "only a call is dialled; leave it out of a visit report",
                          "dials" if report.dials is not None else "dialled_at")
        else:
            others = [a for a in (report.agents or []) if a != identity.name]
            strangers = sorted(set(others) - assignees)
            if strangers:
                raise Refused(422, f"{', '.join(strangers)} not assigned to this visit "
                                   f"({item.assigned_to or 'nobody'})", "agents")
            payload |= {"visit_id": item.case_ref, "agents": [identity.name, *others]}
        try:
            status = await self._send(item.loan_id, command, payload)
        except Refused as err:
            if err.status == 422 and err.field in ("", "task_id", "visit_id"):
                err.status = 409  # the case no longer wants it (withdrawn, expired, reported): say why
                earlier = await self._reported_earlier(item, command)
                if earlier is not None:  # a report that reached the case before the ledger heard of it
                    accepted, who = earlier
                    done = await self.ledger.complete_work(item.item_key, outcome=accepted,
                                                           reported_by=who or identity.name)
                    if accepted == report.outcome:
                        return Done(200, {"item": _item_view(done), "already_reported": True})
                    err.reason = f"the case already has outcome {accepted!r} for this item"
            raise
        except _BeyondLimit as err:  # not raised for reports; kept total for the type checker
            raise Refused(422, err.reason, err.field) from None
        done = await self.ledger.complete_work(item.item_key, outcome=report.outcome, reported_by=identity.name)
        return Done(200, {"item": _item_view(done), "status": status})

    async def _reported_earlier(self, item: Any, command: str) -> tuple[str, str | None] | None:
        """The outcome the case already accepted for this item (and who sent it), if any."""
        key, ref = ("task_id", item.case_ref or item.item_id) if command == "call_outcome" else ("visit_id", item.case_ref)
        state = await self._status(item.loan_id)
        for event in reversed(state["events"]):
            if (event["kind"], event["status"]) == (command, "accepted") and event["detail"].get(key) == ref:
                return event["detail"]["outcome"], event.get("actor")
        return None

    # -- payments from the core banking system -------------------------------------------------
    async def payments(self, identity: Identity, body: Any) -> Done:
        refusal = self.policy.refuses_command(identity, "payment_received")
        if refusal is not None:
            raise Refused(403, refusal)
        batch = parsed(PaymentBatch, body)
        results: list[dict[str, Any] | None] = [None] * len(batch.payments)
        by_loan: dict[str, list[int]] = {}
        for index, event in enumerate(batch.payments):
            by_loan.setdefault(event.loan_id, []).append(index)
        gate = asyncio.Semaphore(PAYMENTS_AT_ONCE)

        async def loan_payments(indexes: list[int]) -> None:
            async with gate:
                for index in indexes:  # one loan's payments in the order the bank sent them
                    results[index] = await self._payment(identity, batch.payments[index])

        await asyncio.gather(*(loan_payments(indexes) for indexes in by_loan.values()))
        counts: dict[str, int] = {}
        for result in results:
            assert result is not None
            counts[result["result"]] = counts.get(result["result"], 0) + 1
        return Done(200, {"results": results, "counts": counts})

    async def _payment(self, identity: Identity, event: PaymentEvent) -> dict[str, Any]:
        def answer(result: str, reason: str | None = None) -> dict[str, Any]:
            return {"reference": event.reference, "loan_id": event.loan_id, "result": result,
                    **({"reason": reason} if reason else {})}

        try:
            state, earlier = await self.store.claim_payment(
                event.reference, loan_id=event.loan_id, amount=event.amount, currency=event.currency,
                paid_at=event.paid_at, received_from=identity.name)
        except DeskError as err:
            return answer("refused", str(err))
        if state in ("applied", "duplicate"):
            return answer("duplicate", earlier)
        try:
            status = await self._status(event.loan_id)
            if status["currency"] != event.currency:
                raise Refused(422, f"is {event.currency}; the loan is in {status['currency']}", "currency")
            if status.get("outcome"):
                raise Refused(409, f"the case is closed ({status['outcome']})")
            payload: dict[str, Any] = {"amount": event.amount, "reference": event.reference, "by": identity.name}
            if event.paid_at is not None:
                payload["paid_at"] = event.paid_at.isoformat()
            status = await self._send(event.loan_id, "payment_received", payload, f"payment-{event.reference}")
        except Refused as err:
            if err.status == 404:
                await self.store.finish_payment(event.reference, "unknown_loan", err.reason)
                return answer("unknown_loan", err.reason)
            if err.status >= 500:
                raise
            reason = f"{err.field}: {err.reason}" if err.field else err.reason
            await self.store.finish_payment(event.reference, "refused", reason)
            return answer("refused", reason)
        seen = [e for e in status["events"] if e["kind"] == "payment_received"
                and e.get("detail", {}).get("reference") == event.reference]
        result = "applied"
        if seen and seen[-1]["status"] == "duplicate" and state == "new":
            # The case had this reference from elsewhere (a payment entered by hand). After an attempt
            # of ours whose answer was lost ("sending"), it is our own earlier application.
            result = "duplicate"
        await self.store.finish_payment(event.reference, result, None)
        return answer(result)


class _BeyondLimit(Exception):
    """The case's answer to an arrangement beyond its approver's limit: the share it gives up."""

    def __init__(self, field: str, reason: str, share: object = None, limit: object = None) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.share = Decimal(str(share)) if share is not None else None
        self.limit = str(limit) if limit is not None else None


def _update_refusal(err: WorkflowUpdateFailedError | RPCError, loan_id: str) -> "Refused | _BeyondLimit":
    """What the caller is told when the case refused an update (the field and the reason it gave) or
    Temporal did not deliver it."""
    if isinstance(err, RPCError):
        return _rpc_refusal(err, loan_id)
    cause = err.cause
    if isinstance(cause, ApplicationError):
        field, reason = (cause.details + ("", ""))[:2] if len(cause.details) >= 2 else ("", cause.message)
        if cause.type == "BeyondLimit":
            share, _, limit = (list(cause.details[2:5]) + [None, None, None])[:3]
            return _BeyondLimit(str(field), str(reason), share, limit)
        status = 409 if str(reason).startswith("the case is closed") else 422
        return Refused(status, str(reason), str(field))
    return Refused(422, str(cause or err))


def _receipt(loan_id: str, command: str, status: dict[str, Any]) -> dict[str, Any]:
    """What a system that reads no case hears back: how the case took its command (accepted, or a
    duplicate of one it had), and the episode (run) that took it."""
    taken = next((e for e in reversed(status.get("events") or []) if e.get("kind") == command), None)
    return {"loan_id": loan_id, "command": command, "result": taken["status"] if taken else "accepted",
            "episode": status.get("episode"), "outcome": status.get("outcome")}


def _rpc_refusal(err: RPCError, loan_id: str) -> Refused:
    if err.status == RPCStatusCode.NOT_FOUND:
        # Closed, or closing as the command arrived ("workflow update was aborted by closing workflow").
        if "completed" in err.message or "closed" in err.message or "closing" in err.message:
            return Refused(409, f"the case for loan {loan_id} is closed")
        return Refused(404, f"no case for loan {loan_id}", "loan_id")
    if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE):
        return Refused(503, f"the case for loan {loan_id} did not answer (is a worker running?): {err.message}")
    return Refused(502, f"Temporal refused the request: {err.message}")


def _fitting(names: list[str], width: int) -> list[str]:
    """The first of ``names`` that fit in ``width`` characters, comma-joined (the access log's column)."""
    kept: list[str] = []
    for name in names:
        if len(",".join([*kept, name])) > width:
            break
        kept.append(name)
    return kept


def _item_view(item: Any) -> dict[str, Any]:
    payload = item.payload or {}
    return {"item_id": item.item_id, "queue": item.queue, "loan_id": item.loan_id, "state": item.state,
            "assigned_to": item.assigned_to, "due_at": item.due_at.isoformat() if item.due_at else None,
            "created_at": item.created_at.isoformat() if item.created_at else None,
            "outcome": item.outcome, "reason": item.reason, "reported_by": item.reported_by,
            # Where and when, never the borrower's details: the agent opens the case for those.
            "scheduled_for": payload.get("scheduled_for"), "report_due": payload.get("report_due"),
            "timezone": payload.get("timezone"), "stage": (payload.get("facts") or {}).get("stage"),
            "amount_past_due": (payload.get("facts") or {}).get("amount_past_due"),
            "attempt": payload.get("attempt"), "visit_id": item.case_ref if item.queue == "visits" else None,
            **call_window(payload, datetime.now(UTC))}


__all__ = ["CaseDesk", "Done", "Refused", "mask"]
