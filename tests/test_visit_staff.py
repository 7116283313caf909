"""Field visits need distinct people, and a visit report names the visit it is for: the team in the
settings, the staff a plan assigns, the agents and the visit a report names."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.models import CaseFacts, VisitRequest
from domain import visits
from domain.case import open_case
from domain.commands import parse
from domain.errors import Rejected
from domain.stages import Stage
from infra.settings import Settings
from tests.conftest import make_loan, settings_for, strategy
from worker import build_activities

T0 = datetime(2026, 11, 2, 15, 0, tzinfo=timezone.utc)
STRATEGY = strategy()


def _visiting_case():
    case = open_case(make_loan(days_past_due=70), STRATEGY, T0)
    assert case.stage is Stage.FIELD_VISIT
    visits.start_visit(case, "loan-X-visit-3", "field_visit:visit:0", T0)
    return case


def _refusal(case, payload) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse("field_visit_report", payload, case, STRATEGY, T0)
    return caught.value


def test_a_report_naming_a_visit_no_longer_in_progress_is_refused_naming_visit_id():
    case = _visiting_case()
    stale = _refusal(case, {"outcome": "met", "visit_id": "loan-X-visit-1"})
    assert stale.field == "visit_id" and "visit loan-X-visit-1 is no longer in progress" in stale.reason
    parse("field_visit_report", {"outcome": "met", "visit_id": "loan-X-visit-3"}, case, STRATEGY, T0)
    visits.stop(case, T0, replan=True)  # a hold cancelled it
    cancelled = _refusal(case, {"outcome": "met", "visit_id": "loan-X-visit-3"})
    assert cancelled.field == "visit_id" and "no longer in progress" in cancelled.reason


def test_a_report_naming_one_agent_twice_is_refused_naming_agents():
    case = _visiting_case()
    twice = _refusal(case, {"outcome": "met", "agents": ["field-01", " Field-01"]})
    assert twice.field == "agents" and "'Field-01' is named more than once" in twice.reason
    parse("field_visit_report", {"outcome": "met", "agents": ["field-01", "field-02"]}, case, STRATEGY, T0)


def test_the_settings_refuse_a_field_agent_named_twice():
    with pytest.raises(ValueError, match=r"ARREARS_FIELD_AGENTS: 'field-02' is named more than once"):
        Settings.from_env({"ARREARS_FIELD_AGENTS": "field-01, field-02,field-03, field-02"})
    with pytest.raises(ValueError, match=r"ARREARS_FIELD_AGENTS: 'ANA' is named more than once"):
        Settings.from_env({"ARREARS_FIELD_AGENTS": "ana,ANA"})
    assert Settings.from_env({"ARREARS_FIELD_AGENTS": "ana, bo"}).field_agents == ["ana", "bo"]


def _plan(attempt: int = 1, staff: int = 2) -> VisitRequest:
    loan = make_loan(days_past_due=70)
    return VisitRequest(idempotency_key=f"{loan.loan_id}/00001/field_visit/visit/plan-{attempt}", loan=loan,
                        facts=CaseFacts(stage="field_visit", days_past_due=70, amount_past_due="450.00",
                                        outstanding="5000.00"),
                        attempt=attempt, staff=staff, scheduled_for=T0 + timedelta(days=5),
                        report_due=T0 + timedelta(days=8))


async def test_a_visit_needing_more_people_than_the_team_has_is_refused_not_staffed_twice(tmp_path: Path):
    activities = build_activities(settings_for(tmp_path / "data"))
    try:
        activities.field_agents = ["field-01", "Field-01 "]  # one person, however it is spelled
        with pytest.raises(ApplicationError) as refused:
            await ActivityEnvironment().run(activities.plan_field_visit, _plan(staff=2))
        assert refused.value.type == "NotEnoughStaff" and refused.value.non_retryable
        assert "needs 2 distinct field agents and 1 are available" in refused.value.message
        assert not (tmp_path / "data" / "queues" / "visits").exists()

        activities.field_agents = ["field-01", "field-02", "field-03"]
        in_the_visit = ActivityEnvironment()
        # The case knows its visit by the id of the child workflow the plan runs in.
        in_the_visit.info = dataclasses.replace(in_the_visit.info, workflow_id="loan-X-visit-3")
        planned = await in_the_visit.run(activities.plan_field_visit, _plan(staff=3))
        assert sorted(planned.agents) == ["field-01", "field-02", "field-03"]
        item = await activities.ledger.work_item_by_id(planned.visit_id)
        assert item is not None and item.due_at == T0 + timedelta(days=5)
        assert item.case_ref == item.payload["visit_id"] == "loan-X-visit-3"
    finally:
        await activities.aclose()
