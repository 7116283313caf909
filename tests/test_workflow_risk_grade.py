"""A case the scorecard graded re-grades itself on its behaviour (time-skipping server)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

from domain.loan import Loan
from domain.scorecard import RISK_REGRADE, Scorecard, parse_scorecard
from tests.conftest import eventually, events, start_case, status
from workflows.inputs import FEATURES

# Worked out by hand for the loan below (DPD 5, 450 of 5000 past due, a personal loan):
# at intake 500 + 40 + 20 + 10 + 0 (no payment) + 30 (no promise broken) + 0 (not reached) = 600: C;
# one promise broken, 580: D; two, 575: still D; then a payment, 605: C again.
CARD = {
    "base": 500,
    "days_past_due": [{"from": 0, "points": 40}, {"from": 31, "points": 20}],
    "amount": {"relative": [{"from": 0, "points": 20}, {"from": "0.5", "points": 0}]},
    "product": {"levels": {"personal_loan": 10}, "other": 0},
    "payments": [{"from": 0, "points": 0}, {"from": 1, "points": 30}],
    "promises_broken": [{"from": 0, "points": 30}, {"from": 1, "points": 10}, {"from": 2, "points": 5}],
    "contact_reached": {"yes": 20, "no": 0},
    "grades": {"A": 640, "B": 620, "C": 590, "D": 570},
}


def _card() -> Scorecard:
    return parse_scorecard(CARD)


def _ungraded_loan(card: Scorecard) -> Loan:
    """A row the lender sent without a grade, graded by the card at intake."""
    return Loan.from_row({
        "loan_id": "GRADE-1", "borrower_name": "Ada Example", "phone": "+15555550123", "email": "ada@example.com",
        "address": "1 Test Street", "timezone": "America/New_York", "jurisdiction": "US", "currency": "USD",
        "outstanding_amount": "5000.00", "amount_past_due": "450.00", "days_past_due": "5",
        "product": "personal_loan", "risk_grade": ""}, scorecard=card)


async def _risk_grade_attribute(env, workflow_id: str) -> bytes | None:
    # Raw: the Java test server keeps unset attributes in a form the typed describe() cannot read.
    raw = await env.client.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
        namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)))
    field = raw.workflow_execution_info.search_attributes.indexed_fields.get("RiskGrade")
    return field.data if field is not None else None


async def _break_a_promise(env, handle, broken_before: int) -> dict:
    due = ((await env.get_current_time()) + timedelta(days=2)).date().isoformat()
    await handle.execute_update("promise_to_pay", {"amount": "100.00", "due_date": due})
    await env.sleep(timedelta(days=6))  # past the due date and its grace
    return await eventually(handle, lambda s: s["promises_broken"] == broken_before + 1)


async def _behave_badly_then_pay(env, handle) -> dict:
    """Two promises broken, then a payment that does not clear the arrears."""
    await _break_a_promise(env, handle, 0)
    await _break_a_promise(env, handle, 1)
    await handle.execute_update("payment_received", {"amount": "100.00", "reference": "P-1"})
    await env.sleep(timedelta(hours=1))
    return await status(handle)


async def test_a_scorecard_graded_case_that_breaks_promises_is_graded_worse_and_the_attribute_follows(env, worker):
    card = _card()
    loan = _ungraded_loan(card)
    assert (loan.risk_grade, loan.grade_source, loan.score) == ("C", "scorecard", 600)
    handle = await start_case(env.client, worker, loan, scorecard=card)
    opened = events(await eventually(handle, lambda s: events(s, "case_opened")), "case_opened")[0]
    assert (opened["detail"]["grade_source"], opened["detail"]["score"]) == ("scorecard", 600)
    await env.sleep(timedelta(hours=1))
    assert await _risk_grade_attribute(env, handle.id) == b'"C"'

    state = await _break_a_promise(env, handle, 0)
    changed = events(state, "risk_grade_changed")
    assert [(e["detail"]["from"], e["detail"]["to"], e["detail"]["score"]) for e in changed] == [("C", "D", 580)]
    assert changed[0]["detail"]["points"]["promises_broken"] == 10
    await env.sleep(timedelta(hours=1))
    assert await _risk_grade_attribute(env, handle.id) == b'"D"'

    # The second broken promise moves the score (575) but not the grade: no new event.
    state = await _break_a_promise(env, handle, 1)
    assert len(events(state, "risk_grade_changed")) == 1
    await handle.execute_update("payment_received", {"amount": "100.00", "reference": "P-1"})
    state = await eventually(handle, lambda s: len(events(s, "risk_grade_changed")) == 2)
    assert [(e["detail"]["from"], e["detail"]["to"], e["detail"]["score"])
            for e in events(state, "risk_grade_changed")] == [("C", "D", 580), ("D", "C", 605)]
    await env.sleep(timedelta(hours=1))
    assert await _risk_grade_attribute(env, handle.id) == b'"C"'


async def test_a_case_without_the_feature_keeps_its_intake_grade_whatever_it_does(env, worker):
    card = _card()
    handle = await start_case(env.client, worker, _ungraded_loan(card), scorecard=card,
                              features=[f for f in FEATURES if f != RISK_REGRADE])
    state = await _behave_badly_then_pay(env, handle)
    assert state["promises_broken"] == 2 and not events(state, "risk_grade_changed")
    assert await _risk_grade_attribute(env, handle.id) == b'"C"'


async def test_a_lender_graded_case_without_a_card_keeps_the_lenders_grade(env, worker):
    card = _card()
    loan = _ungraded_loan(card).model_copy(update={"risk_grade": "A", "grade_source": "lender", "score": None})
    handle = await start_case(env.client, worker, loan)
    state = await _behave_badly_then_pay(env, handle)
    assert state["promises_broken"] == 2 and not events(state, "risk_grade_changed")
    assert await _risk_grade_attribute(env, handle.id) == b'"A"'
    opened = events(state, "case_opened")[0]
    assert (opened["detail"]["grade_source"], opened["detail"]["score"]) == ("lender", None)
