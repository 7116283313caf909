"""The custom search attributes supervisors filter on in the Temporal UI. Never personal data."""

from __future__ import annotations

from datetime import datetime, time, timezone
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

from domain.case import CaseState
from domain.loan import Loan

COLLECTION_STAGE = SearchAttributeKey.for_keyword("CollectionStage")
DAYS_PAST_DUE = SearchAttributeKey.for_int("DaysPastDue")
OUTSTANDING_AMOUNT = SearchAttributeKey.for_float("OutstandingAmount")
RISK_GRADE = SearchAttributeKey.for_keyword("RiskGrade")
COLLECTION_PAUSED = SearchAttributeKey.for_bool("CollectionPaused")
PROMISE_DUE_DATE = SearchAttributeKey.for_datetime("PromiseDueDate")
ASSIGNED_AGENT = SearchAttributeKey.for_keyword("AssignedAgent")
ARRANGEMENT_STATE = SearchAttributeKey.for_keyword("ArrangementState")
# The strategy the case runs (a champion/challenger arm's, or the one intake was told). It never
# changes within a case, so it is set with the start only and never upserted: not in case_values.
STRATEGY = SearchAttributeKey.for_keyword("Strategy")

ALL_KEYS = (COLLECTION_STAGE, DAYS_PAST_DUE, OUTSTANDING_AMOUNT, RISK_GRADE, COLLECTION_PAUSED,
            PROMISE_DUE_DATE, ASSIGNED_AGENT, ARRANGEMENT_STATE, STRATEGY)


def case_values(case: CaseState, loan: Loan, now: datetime) -> dict[SearchAttributeKey[Any], Any]:
    """The value each attribute should hold now; ``None`` means unset."""
    promise = case.promise if case.promise is not None and case.promise.state == "pending" else None
    due = datetime.combine(promise.due_date, time.min, tzinfo=timezone.utc) if promise else None
    return {
        COLLECTION_STAGE: case.stage.value,
        DAYS_PAST_DUE: case.days_past_due(now),
        # A Double is for searching and sorting only; the case's money stays Decimal.
        OUTSTANDING_AMOUNT: float(case.outstanding),
        RISK_GRADE: case.risk_grade or loan.risk_grade,  # the case's own once it re-graded itself
        COLLECTION_PAUSED: case.paused,
        PROMISE_DUE_DATE: due,
        ASSIGNED_AGENT: case.agent,
        ARRANGEMENT_STATE: case.arrangement.state if case.arrangement is not None else None,
    }


def opening(case: CaseState, loan: Loan, now: datetime, strategy: str | None = None) -> TypedSearchAttributes:
    """The attributes a case starts with, set by intake with the start itself (free, where an upsert
    in the case's first task is a billable action), ``strategy`` (its name) among them."""
    values = {**case_values(case, loan, now), STRATEGY: strategy}
    return TypedSearchAttributes([SearchAttributePair(key, value) for key, value in values.items()
                                  if value is not None])


def started_with(attributes: TypedSearchAttributes) -> dict[SearchAttributeKey[Any], Any]:
    """The case's attributes as its start set them (none for a case started without them)."""
    return {key: attributes.get(key) for key in ALL_KEYS if attributes.get(key) is not None}


def changes(old: dict[SearchAttributeKey[Any], Any], new: dict[SearchAttributeKey[Any], Any],
            dpd_buckets: list[int]) -> list[SearchAttributeUpdate[Any]]:
    """What changed, as upserts. Days past due alone is refreshed only when it enters another
    bucket: a wake-up that changes nothing else costs no upsert."""
    changed = [key for key, value in new.items() if old.get(key) != value]
    if changed == [DAYS_PAST_DUE] and _bucket(old.get(DAYS_PAST_DUE), dpd_buckets) == _bucket(
            new[DAYS_PAST_DUE], dpd_buckets):
        return []
    return [key.value_unset() if new[key] is None else key.value_set(new[key]) for key in changed]


def _bucket(dpd: int | None, boundaries: list[int]) -> int:
    return sum(1 for boundary in boundaries if dpd is not None and dpd >= boundary)
