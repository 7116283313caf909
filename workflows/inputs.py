"""Workflow inputs and results (one typed model each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from activities.models import CaseEventsRequest, CaseFacts
from domain.assignment import Arm
from domain.case import CaseState
from domain.compliance import SECOND_PASS, Profile
from domain.episodes import FOLLOWS_LOAN, PriorPayment, Reopening, delinquent_since
from domain.errors import Rejected
from domain.loan import Loan
from domain.scorecard import RISK_REGRADE, Scorecard
from domain.strategy import Strategy, VisitPlan

WORKFLOW_TYPE = "LoanCollectionWorkflow"
DEFAULT_TASK_QUEUE = "collections"


def case_workflow_id(loan_id: str) -> str:
    return f"loan-{loan_id}"


# Messages and letters go to task queues of their own beside the case's (``collections-sms``,
# ``collections-email``, ``collections-letters``): a worker gives each the slots it can finish,
# letters one per rendering process, and a provider's rate limit applies to its queue alone.
CHANNEL_QUEUES = {"sms": "sms", "email": "email", "letter": "letters"}


def channel_queue(case_queue: str, channel: str) -> str:
    """The task queue of ``channel``'s activities for cases on ``case_queue``."""
    return f"{case_queue}-{CHANNEL_QUEUES[channel]}"


# Behaviour that changed while cases were running, by name. A case started on this version lists
# in its input what it runs with (``CaseInput.features``), so it needs no patch markers (each one
# costs a marker and a ``TemporalChangeVersion`` upsert, in every case). A case started before has
# none there and asks its history, with ``workflow.patched``, as it always did; its next run after
# continue-as-new gets them all.
FEATURES = (
    "compliance-checks",  # every contact checked against the jurisdiction's profile at send time
    "ledger-events",  # the case's events appended to the ledger's audit trail
    "trail-rides-along",  # events ride with the next activity: a replaced call task's expiry, a short
    #                       wait's stage entry, a visit's start (its child's plan carries them)
    "timer-kept",  # a wait interrupted by a command keeps its timer when the next wake is the same
    "work-follows-case",  # work the case ends (a call task withdrawn, a visit cancelled) reaches the
    #                       ledger, which closes its item, before the case waits
    SECOND_PASS,  # "compliance-second-pass": the moratorium a hold of its own, required treatments never skipped, the
    #                            validation notice's other routes, contacts checked when they reach the
    #                            borrower (not_after, cancelled in flight, dials counted), private reasons
    FOLLOWS_LOAN,  # "case-follows-loan": episodes in keys and rows, loan_update and payment_reversed, value-dated
    #               payments, a residual tolerance, promises judged after holds, bounded payloads, the ledger
    #               written before an event is let go
    RISK_REGRADE,  # "risk-regrade": a case whose input carries a scorecard re-scores on its behaviour and
    #               records risk_grade_changed; the RiskGrade search attribute follows
)
# The features the domain itself reads (``CaseState.features``), besides the workflow.
DOMAIN_FEATURES = (SECOND_PASS, FOLLOWS_LOAN)


class CaseInput(BaseModel):
    """Start a case: the loan and its whole strategy; ``state`` when continuing as new."""

    loan: Loan
    strategy: Strategy
    state: CaseState | None = None
    # The compliance profile the starter resolved (the loan's jurisdiction, tightened by the
    # strategy). Absent on cases started before profiles: the worker resolves one.
    compliance: Profile | None = None
    # Continue-as-new past this many history events even if the server has not suggested it yet.
    history_limit: int = 10_000
    # What this case runs with (see FEATURES); None on cases started before the list existed.
    features: list[str] | None = None
    # The delinquency episode this run collects (domain/episodes.py); None on cases started before.
    episode: str | None = None
    # A closed case run again because the payment that cured it was reversed.
    reopened: Reopening | None = None
    # The champion/challenger arm that chose ``strategy`` (domain/assignment.py), pinned for the
    # episode; None when intake was told the strategy, or on cases started before experiments.
    assignment: Arm | None = None
    # The scorecard that graded the loan at intake (the lender gave no grade): the case re-scores on
    # its behaviour with it (RISK_REGRADE). None for a loan the lender graded: its grade stands.
    scorecard: Scorecard | None = None


def new_case(loan: Loan, strategy: Strategy, compliance: Profile | None, episode: str | None = None,
             assignment: Arm | None = None, scorecard: Scorecard | None = None) -> CaseInput:
    """The input of a case starting now: with every current feature, so it carries no patch markers.
    ``scorecard`` rides along only with a loan it graded (``loan.grade_source``)."""
    return CaseInput(loan=loan, strategy=strategy, compliance=compliance, features=list(FEATURES), episode=episode,
                     assignment=assignment, scorecard=scorecard if loan.grade_source == "scorecard" else None)


def reopened_case(previous: CaseInput, closed_status: dict[str, Any], reference: str, reason: str, by: str | None,
                  episode: str, run_id: str | None, now: datetime | None = None) -> CaseInput:
    """The input of a new episode for a case a payment cured, now that the payment came back: the loan as
    the closed case left it with the payment's amount owed again, its days past due counted from the same
    delinquency, the same strategy and profile. Raises :class:`Rejected` (field ``reference``) when the
    closed case did not close cured by a payment of that reference."""
    if closed_status.get("outcome") != "cured":
        raise Rejected("reference", f"the case closed {closed_status.get('outcome')}; a reversal reopens only a "
                                    f"case a payment cured")
    payment = next((p for p in closed_status.get("payments") or () if p.get("reference") == reference), None)
    if payment is None:
        raise Rejected("reference", f"no payment {reference!r} was applied to the closed case")
    if payment.get("reversed"):
        raise Rejected("reference", f"payment {reference!r} was reversed already")
    now = now or datetime.now(UTC)
    loan = previous.loan
    amount = Decimal(payment["amount"])
    # What the payment had cleared comes back (a payment beyond the balance cleared no more than it).
    outstanding = Decimal(closed_status["outstanding"]) + Decimal(payment.get("to_outstanding", amount))
    past_due = min(outstanding, Decimal(closed_status["amount_past_due"]) + Decimal(payment.get("to_arrears", amount)))
    since = closed_status.get("delinquent_since")
    first_day = (datetime.fromisoformat(since).date() if since
                 else delinquent_since(loan.as_of or now.date(), loan.days_past_due))
    reopened_loan = loan.model_copy(update={
        "amount_past_due": past_due, "outstanding_amount": outstanding, "as_of": now.date(),
        "days_past_due": max(1, (now.date() - first_day).days)})
    return CaseInput(loan=reopened_loan, strategy=previous.strategy, compliance=previous.compliance,
                     history_limit=previous.history_limit, features=list(FEATURES), episode=episode,
                     assignment=previous.assignment,  # the same strategy, so the same arm
                     scorecard=previous.scorecard,  # graded, and re-graded, as before
                     reopened=Reopening(from_episode=closed_status.get("episode") or "", from_run_id=run_id,
                                        reference=reference, amount=amount, reason=reason, by=by,
                                        payments=[PriorPayment.model_validate(p) for p in closed_status["payments"]
                                                  if p["reference"] != reference and not p.get("reversed")
                                                  and "to_arrears" in p]))


class FieldVisitInput(BaseModel):
    loan: Loan
    plan: VisitPlan
    facts: CaseFacts
    key_prefix: str
    # Visits are scheduled inside the case's contact hours (absent: a visit from before profiles).
    compliance: Profile | None = None
    # The case's events up to the visit's start, for the first plan's activity to append to the ledger.
    trail: CaseEventsRequest | None = None
    episode: str = ""  # the case's episode, for the ledger rows the visit writes


class FieldVisitResult(BaseModel):
    outcome: str
    attempts: int
    agents: list[str] = []
    note: str | None = None
    # How far the case's events it carried reached the ledger (0: none it knows of).
    trail_recorded_to: int = 0


ACTIVITY_TIMEOUT = timedelta(seconds=30)

# Messages to the borrower are retried with backoff for about 17 minutes (2 s doubling to a
# 10-minute cap, 10 attempts), then recorded as failed: a reminder days late does more harm than
# good, and the failure shows in `status`.
CONTACT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                            maximum_interval=timedelta(minutes=10), maximum_attempts=10,
                            non_retryable_error_types=["InvalidRecipient"])
# Work the case cannot go on without (the legal letter, the legal hand-off, call tasks, visit
# plans) is retried until it succeeds; the pending activity and its last failure show in the UI.
ESSENTIAL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                              maximum_interval=timedelta(minutes=10))
