"""Simulated activities, registered under the real activity names, for the strategy lab.

Sends succeed and are counted; call tasks, visits and legal hand-offs are "worked" by the simulated
borrower and agents (the borrower workflow hears of each contact); the case's events are kept in
memory per case, as the ledger would keep them; the compliance profile is resolved as the real
activity resolves it. Nothing leaves the process: no outbox, no ledger, no provider.

"Now" in here is the server's clock (the activity's scheduled time), never the machine's: on the
time-skipping server the two are years apart.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.models import (
    CaseEventsRequest, ContactReceipt, ContactRequest, ProfileRequest, VisitPlanned, VisitRequest, WorkItem,
    WorkItemRequest,
)
from activities.outbox import safe_name
from domain.case import CaseEvent
from domain.compliance import Profile
from infra.compliance import profile_for
from lab.behaviour import AGENT, BorrowerInput, Contact, reacts
from lab.borrower import BorrowerWorkflow, borrower_id

VISIT_MARK = "-visit-"  # a visit child's id is ``<case id>-visit-<n>`` (workflows/visits.py)


@dataclass
class CaseRecord:
    """What the ledger would hold of one simulated case: its events by sequence number."""

    loan_id: str
    episode: str
    events: dict[int, CaseEvent] = field(default_factory=dict)
    closed: bool = False


@dataclass
class EventStore:
    """The simulated ledger: every case's events, in memory, keyed by the case's workflow id."""

    cases: dict[str, CaseRecord] = field(default_factory=dict)
    effects: Counter = field(default_factory=Counter)  # what the activities did, by channel

    def add(self, request: CaseEventsRequest | None) -> bool:
        """Keep the events of ``request`` (a retry adds nothing twice); True when the case closed in them."""
        if request is None:
            return False
        record = self.cases.get(request.workflow_id)
        if record is None:
            record = self.cases[request.workflow_id] = CaseRecord(request.loan_id, request.episode)
        closing = False
        for n, event in enumerate(request.events, start=request.first_seq):
            record.events.setdefault(n, event)
            closing = closing or event.kind == "case_closed"
        record.closed = record.closed or closing
        return closing

    def merge(self, workflow_id: str, loan_id: str, episode: str, events: list[CaseEvent], first_seq: int) -> None:
        """Events a running case still holds (its ``status``) that the ledger does not have yet."""
        self.add(CaseEventsRequest(loan_id=loan_id, jurisdiction="", workflow_id=workflow_id, first_seq=first_seq,
                                   events=events, episode=episode))


def _case_of(workflow_id: str) -> str:
    """The case a workflow belongs to: itself, or the case whose visit child it is."""
    return workflow_id.rsplit(VISIT_MARK, 1)[0] if VISIT_MARK in workflow_id else workflow_id


def _now() -> datetime:
    return activity.info().current_attempt_scheduled_time


class SimActivities:
    """The collection activities, simulated. ``client`` reaches the borrower workflows, which run on
    ``task_queue``; :meth:`expect` names each case's borrower before the case starts."""

    def __init__(self, client: Client, store: EventStore, task_queue: str = "") -> None:
        self.client = client
        self.store = store
        self.task_queue = task_queue
        self.field_agents = [f"{AGENT}-field-{n}" for n in range(1, 5)]
        self._borrowers: dict[str, BorrowerInput] = {}
        self._seen: dict[str, Counter] = {}  # contacts so far per case and channel: "the 3rd SMS"
        self._told: set[tuple[str, str]] = set()  # (case, idempotency key) of each contact a borrower heard of
        self.started: set[str] = set()  # cases whose borrower workflow was started (it may have ended since)

    def expect(self, borrower: BorrowerInput) -> None:
        self._borrowers[borrower.case_id] = borrower
        self._seen[borrower.case_id] = Counter()

    async def start_borrower(self, borrower: BorrowerInput, contact: Contact | None = None) -> None:
        """Start the borrower's workflow (with its first contact), or pass the contact to the running one.
        A case's activities run one at a time, so its contacts reach the borrower in the order sent."""
        self.started.add(borrower.case_id)
        signal = {"start_signal": "contacted", "start_signal_args": [contact]} if contact is not None else {}
        try:
            await self.client.start_workflow(
                BorrowerWorkflow.run, borrower, id=borrower_id(borrower.case_id), task_queue=self.task_queue,
                # Never a second borrower for one case: one that ended did so because the case closed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, **signal)
        except WorkflowAlreadyStartedError:
            pass

    async def _tell(self, case_id: str, channel: str, key: str, **facts: Any) -> None:
        """The borrower beside the case hears of the contact, if anything follows it (their reaction comes
        later, from them). Once per contact (its idempotency ``key``): an attempt retried after a timeout
        on a slow machine is the same contact, so the draws, and a seeded run, do not depend on the machine."""
        if (case_id, key) in self._told:
            return
        self._told.add((case_id, key))
        self.store.effects[channel] += 1
        borrower = self._borrowers.get(case_id)
        if borrower is None:
            return  # a case the simulation did not start (nothing follows its contacts)
        seen = self._seen[case_id]
        seen[channel] += 1
        contact = Contact(channel=channel, n=seen[channel], at=_now(), **facts)
        if reacts(borrower, contact):
            await self.start_borrower(borrower, contact)

    async def _message(self, channel: str, request: ContactRequest) -> ContactReceipt:
        case_id = activity.info().workflow_id
        self._keep(request.trail)
        await self._tell(case_id, channel, request.idempotency_key, stage=request.facts.stage,
                         template=request.template)
        message_id = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:24]
        return ContactReceipt(idempotency_key=request.idempotency_key, channel=channel, message_id=message_id,
                              location="lab")

    @activity.defn(name="send_sms")
    async def send_sms(self, request: ContactRequest) -> ContactReceipt:
        return await self._message("sms", request)

    @activity.defn(name="send_email")
    async def send_email(self, request: ContactRequest) -> ContactReceipt:
        return await self._message("email", request)

    @activity.defn(name="issue_letter")
    async def issue_letter(self, request: ContactRequest) -> ContactReceipt:
        return await self._message("letter", request)

    @activity.defn(name="create_call_task")
    async def create_call_task(self, request: WorkItemRequest) -> WorkItem:
        case_id, item_id = activity.info().workflow_id, safe_name(request.idempotency_key)
        self._keep(request.trail)
        await self._tell(case_id, "call", request.idempotency_key, stage=request.facts.stage, ref=item_id,
                         window_until=request.callable_until)
        return WorkItem(item_id=item_id, queue="calls", location="lab")

    @activity.defn(name="hand_off_to_legal")
    async def hand_off_to_legal(self, request: WorkItemRequest) -> WorkItem:
        case_id, item_id = activity.info().workflow_id, safe_name(request.idempotency_key)
        self._keep(request.trail)
        await self._tell(case_id, "legal_handoff", request.idempotency_key, stage=request.facts.stage, ref=item_id)
        return WorkItem(item_id=item_id, queue="legal", location="lab")

    @activity.defn(name="flag_overdue_visit")
    async def flag_overdue_visit(self, request: WorkItemRequest) -> WorkItem:
        self.store.effects["overdue_visit"] += 1
        return WorkItem(item_id=safe_name(request.idempotency_key), queue="supervisor", location="lab")

    @activity.defn(name="plan_field_visit")
    async def plan_field_visit(self, request: VisitRequest) -> VisitPlanned:
        visit_id = activity.info().workflow_id  # the case knows the visit by its child workflow's id
        agents = self.field_agents[:request.staff] or [self.field_agents[0]]
        self._keep(request.trail)
        await self._tell(_case_of(visit_id), "visit", request.idempotency_key, stage=request.facts.stage, ref=visit_id,
                         scheduled_for=request.scheduled_for, report_due=request.report_due, agents=agents)
        recorded_to = request.trail.first_seq + len(request.trail.events) if request.trail else 0
        return VisitPlanned(visit_id=safe_name(request.idempotency_key), agents=agents,
                            scheduled_for=request.scheduled_for, location="lab", trail_recorded_to=recorded_to)

    @activity.defn(name="record_case_events")
    async def record_case_events(self, request: CaseEventsRequest) -> int:
        """Keep the case's events; when they close the case, its borrower stops too."""
        if self.store.add(request):
            await self._closed(request.workflow_id)
        return len(request.events)

    @activity.defn(name="resolve_compliance_profile")
    async def resolve_compliance_profile(self, request: ProfileRequest) -> Profile:
        return profile_for(request.loan, request.strategy)

    def _keep(self, trail: CaseEventsRequest | None) -> None:
        # The case's events riding along (a case never closes on a ride-along: its last events go on
        # their own, through record_case_events).
        self.store.add(trail)

    async def _closed(self, case_id: str) -> None:
        if case_id not in self.started:
            return
        try:
            await self.client.get_workflow_handle(borrower_id(case_id)).signal(BorrowerWorkflow.case_closed)
        except Exception:  # noqa: BLE001 - the borrower ended already (its command found the case closed)
            pass

    def all(self) -> list:
        return [self.send_sms, self.send_email, self.issue_letter, self.create_call_task, self.hand_off_to_legal,
                self.flag_overdue_visit, self.plan_field_visit, self.record_case_events,
                self.resolve_compliance_profile]

