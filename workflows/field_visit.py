"""A field visit as a child workflow: plan it, assign staff, wait for the report, chase it when late."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.channels import CollectionActivities
    from activities.models import VisitRequest, WorkItemRequest
    from domain.compliance import next_open
    from workflows.inputs import ACTIVITY_TIMEOUT, ESSENTIAL_RETRY, FieldVisitInput, FieldVisitResult


@workflow.defn
class FieldVisitWorkflow:
    @workflow.init
    def __init__(self, input: FieldVisitInput) -> None:
        self._reports: list[dict[str, Any]] = []

    @workflow.signal
    def report(self, report: dict[str, Any]) -> None:
        """The case passes on each ``field_visit_report`` it accepted."""
        self._reports.append(report)

    @workflow.run
    async def run(self, input: FieldVisitInput) -> FieldVisitResult:
        plan, agents, recorded_to = input.plan, [], 0
        for attempt in range(1, plan.max_visits + 1):
            # Only a report sent for this attempt answers it: a late duplicate of the previous
            # attempt's report must not stand for the next visit.
            self._reports.clear()
            scheduled_for = next_open(input.compliance, input.loan.timezone, workflow.now() + plan.lead_time)
            planned = await workflow.execute_activity_method(
                CollectionActivities.plan_field_visit,
                VisitRequest(idempotency_key=f"{input.key_prefix}/plan-{attempt}", loan=input.loan,
                             facts=input.facts, attempt=attempt, staff=plan.staff, scheduled_for=scheduled_for,
                             report_due=scheduled_for + plan.report_within,
                             trail=input.trail if attempt == 1 else None, episode=input.episode),
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ESSENTIAL_RETRY,
            )
            agents = planned.agents
            recorded_to = max(recorded_to, planned.trail_recorded_to)
            report_due = scheduled_for + plan.report_within
            try:
                await workflow.wait_condition(lambda: bool(self._reports),
                                              timeout=max(report_due - workflow.now(), timedelta(seconds=1)),
                                              timeout_summary=f"visit {attempt} report due")
            except TimeoutError:
                await workflow.execute_activity_method(
                    CollectionActivities.flag_overdue_visit,
                    WorkItemRequest(idempotency_key=f"{input.key_prefix}/overdue-{attempt}", loan=input.loan,
                                    facts=input.facts, note=f"visit {attempt} report not received by {report_due}",
                                    episode=input.episode),
                    start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ESSENTIAL_RETRY,
                )
                return FieldVisitResult(outcome="overdue", attempts=attempt, agents=agents,
                                        trail_recorded_to=recorded_to)
            report = self._reports[0]
            if report["outcome"] != "not_home" or attempt == plan.max_visits:
                return FieldVisitResult(outcome=report["outcome"], attempts=attempt, agents=agents,
                                        note=report.get("note"), trail_recorded_to=recorded_to)
        raise AssertionError("unreachable: the loop returns on its last attempt")
