"""Field-visit rules: when a visit must stop, and what its ending means for the case."""

from __future__ import annotations

from datetime import datetime

from domain.case import CaseState, FieldVisit
from domain.stages import Channel
from domain.strategy import Strategy


def start_visit(case: CaseState, visit_id: str, treatment_key: str, now: datetime) -> FieldVisit:
    case.visit = FieldVisit(visit_id=visit_id, started_at=now, treatment_key=treatment_key)
    case.record(now, "field_visit_started", "info", visit_id=visit_id)
    return case.visit


def must_stop(case: CaseState) -> bool:
    """A visit still to happen stops while the case is on hold or visits were ceased.

    One already reported on took place: its report still reaches the visit, so it goes on
    (a revisit after "not home" is still to happen, so that one stops).
    """
    visit = case.visit
    vulnerable = case.vulnerable and case.compliance is not None and not case.compliance.visits_when_vulnerable
    return (visit is not None and visit.state == "in_progress"
            and (case.paused or Channel.VISIT in case.ceased or vulnerable)
            and not visit.reported_final and not visit.unforwarded_reports)


def stop(case: CaseState, now: datetime, *, replan: bool) -> None:
    """Record how a visit ends when the case stops it (hold, cease, or leaving the stage)."""
    visit = case.visit
    if visit is None or visit.state != "in_progress":
        return
    if visit.reported_final:
        # The child never finished with the report, but the report says how the visit went.
        visit.state, visit.outcome, visit.unforwarded_reports = "completed", visit.last_report_outcome, []
        case.record(now, "field_visit_completed", "info", visit_id=visit.visit_id, outcome=visit.outcome,
                    reason="reported as the case left the stage")
        return
    visit.state = "cancelled"
    case.record(now, "field_visit_cancelled", "info", visit_id=visit.visit_id,
                reason=case.pause_reason or _why_stopped(case))
    if replan:
        # Planned again once the hold ends; after a cease request the treatment is blocked instead.
        case.done = [key for key in case.done if key != visit.treatment_key]


def _why_stopped(case: CaseState) -> str:
    if Channel.VISIT in case.ceased:
        return "visits ceased"
    if case.vulnerable:
        return "the borrower is flagged vulnerable"
    return "case left the stage"


def finished(case: CaseState, strategy: Strategy, outcome: str, attempts: int, agents: list[str],
             now: datetime) -> None:
    visit = case.visit
    if visit is None or visit.state != "in_progress":
        return  # the case stopped it first; already recorded
    visit.state, visit.outcome = "completed", outcome
    case.record(now, "field_visit_completed", "info", visit_id=visit.visit_id, outcome=outcome,
                attempts=attempts, agents=agents)
    if outcome in strategy.stages[case.stage].exit_on:
        case.exit_requested = f"field visit outcome {outcome}"


def failed(case: CaseState, reason: str, now: datetime) -> None:
    visit = case.visit
    if visit is None or visit.state != "in_progress":
        return
    visit.state, visit.outcome = "completed", "failed"
    case.record(now, "field_visit_failed", "failed", reason=reason, visit_id=visit.visit_id)
