"""One typed input and one typed result per activity, so fields can be added without breaking callers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from domain.case import CaseEvent
from domain.loan import Loan
from domain.strategy import Strategy


class CaseFacts(BaseModel):
    """What a message or document may quote about the case, as of the moment it is sent."""

    stage: str
    days_past_due: int
    amount_past_due: str
    outstanding: str
    promise_amount: str | None = None
    promise_due_date: str | None = None
    response_days: int | None = None
    instalment_amount: str | None = None
    instalment_due_date: str | None = None
    agent: str | None = None
    # How many reminders and contacts the borrower had before this one (None: a case from before it was
    # counted): a letter's wording follows the case's actual history ("Despite our earlier reminders").
    reminders_sent: int | None = None


class CaseEventsRequest(BaseModel):
    """Append a case's events to the ledger's audit trail, numbered from ``first_seq``."""

    loan_id: str
    jurisdiction: str
    workflow_id: str
    first_seq: int
    events: list[CaseEvent]
    # The case's episode (domain/episodes.py), "" for a case from before episodes: the ledger's rows carry it.
    episode: str = ""


class ContactRequest(BaseModel):
    """Send one message or document to the borrower (SMS, e-mail, letter)."""

    idempotency_key: str
    loan: Loan
    template: str
    facts: CaseFacts
    trail: CaseEventsRequest | None = None  # events for the ledger, riding along
    # The last instant the contact may reach the borrower (the end of its window, or earlier). Past it
    # the activity refuses for good (``ContactWindowPassed``) and the case defers the contact again.
    # None: no window applies (a letter, a case from before).
    not_after: datetime | None = None
    # The case's episode (domain/episodes.py), "" for a case from before episodes: the ledger's rows carry it.
    episode: str = ""


class ContactReceipt(BaseModel):
    idempotency_key: str
    channel: str
    message_id: str
    location: str
    sha256: str | None = None


class WorkItemRequest(BaseModel):
    """Put a piece of work on a queue for people: a call task, a legal hand-off, an overdue-visit alert."""

    idempotency_key: str
    loan: Loan
    facts: CaseFacts
    note: str | None = None
    trail: CaseEventsRequest | None = None  # events for the ledger, riding along
    # A call task: when the agent may dial, in UTC (the borrower's contact hours today, within caps).
    callable_from: datetime | None = None
    callable_until: datetime | None = None
    # The case's episode (domain/episodes.py), "" for a case from before episodes: the ledger's rows carry it.
    episode: str = ""


class WorkItem(BaseModel):
    item_id: str
    queue: str
    location: str


class VisitRequest(BaseModel):
    idempotency_key: str
    loan: Loan
    facts: CaseFacts
    attempt: int
    staff: int
    scheduled_for: datetime
    report_due: datetime
    trail: CaseEventsRequest | None = None  # the case's events, riding along with the first plan
    # The case's episode (domain/episodes.py), "" for a case from before episodes: the ledger's rows carry it.
    episode: str = ""


class VisitPlanned(BaseModel):
    visit_id: str
    agents: list[str]
    scheduled_for: datetime
    location: str
    trail_recorded_to: int = 0  # the case's events below this number are in the ledger now


class ProfileRequest(BaseModel):
    """Which compliance profile a case that started without one runs under."""

    loan: Loan
    strategy: Strategy

