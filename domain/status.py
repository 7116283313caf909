"""The ``status`` query: what a supervisor sees of a case."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.case import NOTICE_BLOCKED, SECOND_PASS, CaseState
from domain.compliance import validation_period_ends
from domain.decide import Wait, decide, still_owed
from domain.strategy import Strategy


def status(case: CaseState, strategy: Strategy, now: datetime) -> dict[str, Any]:
    step = decide(case, strategy, now)
    if isinstance(step, Wait):
        next_at, next_what = step.until, step.reason
    else:
        next_at, next_what = now, type(step).__name__.lower()
    promise = case.promise.model_dump(mode="json") if case.promise is not None else None
    visit = case.visit.model_dump(mode="json", exclude={"unforwarded_reports"}) if case.visit else None
    return {
        # A query sees the case as of its last workflow task; every figure below is as of this time.
        "as_of": now.isoformat(),
        "loan_id": case.loan_id,
        # The delinquency episode this run collects ("" for a case from before episodes).
        "episode": case.episode,
        "delinquent_since": case.first_day_past_due.isoformat(),
        "strategy": strategy.name,
        "stage": case.stage.value,
        "stage_entered_at": case.stage_entered_at.isoformat(),
        "stage_clock_seconds": int(case.stage_clock(now).total_seconds()),
        "paused": case.paused,
        "pause_reason": case.pause_reason,
        "holds": [{**h.model_dump(mode="json", exclude_none=True), "reason": h.shown_reason} for h in case.holds],
        "days_past_due": case.days_past_due(now),
        "currency": case.currency,
        "amount_past_due": str(case.amount_past_due),
        "outstanding": str(case.outstanding),
        "paid_total": str(case.paid_total),
        "fees": str(case.fees) if case.fees is not None else None,
        "servicer_as_of": case.loan_as_of.isoformat() if case.loan_as_of else None,
        "payments": [{"reference": p.reference, "amount": str(p.amount), "paid_at": p.paid_at.isoformat(),
                      "posted_at": p.posted_at.isoformat(), "reversed": p.reversed, "to_arrears": str(p.to_arrears),
                      "to_outstanding": str(p.to_outstanding)} for p in case.payments],
        "promise": promise,
        "promises_kept": case.promises_kept,
        "promises_broken": case.promises_broken,
        "arrangement": case.arrangement.view(strategy.arrangements.grace) if case.arrangement else None,
        "arrangements_broken": case.arrangements_broken,
        "ceased_channels": [c.value for c in case.ceased],
        "assigned_agent": case.agent,
        # The grade a scorecard gave the case on its behaviour (None: the loan's grade at intake stands).
        "risk_grade": case.risk_grade,
        "score": case.score,
        "open_call_tasks": [t.task_id for t in case.calls if t.outcome is None],
        "field_visit": visit,
        "outcome": case.outcome.value if case.outcome else None,
        "close_note": case.close_note,
        "next_action_at": next_at.isoformat() if next_at else None,
        "next_action": next_what,
        "compliance": _compliance(case, strategy, now),
        # A person's own words (``private``) are the ledger's alone.
        "events": [e.model_dump(mode="json", exclude_none=True, exclude={"private"}) for e in case.events],
        "events_dropped": case.events_dropped,
    }


BLOCKED_SHOWN = 20


def _second_pass(case: CaseState, strategy: Strategy, now: datetime) -> dict[str, Any]:
    moratorium = case.moratorium
    ends = validation_period_ends(case)
    owed = still_owed(case, strategy, now) if case.outcome is None else None
    blocked = case.validation_notice == "blocked" and case.hold("notice") is not None
    return {
        "validation_notice_at": case.validation_notice_at.isoformat() if case.validation_notice_at else None,
        "validation_period_ends": ends.isoformat() if ends else None,
        # Why the ladder stands still and what would move it on, when the notice could not go.
        "validation_notice_blocked": {"why": next((e.reason for e in reversed(case.events)
                                                   if e.detail.get("treatment") == "validation_notice"
                                                   and e.status == "blocked"), None),
                                      "unblock": NOTICE_BLOCKED} if blocked else None,
        "breathing_space": None if moratorium is None else {
            "kind": moratorium.scheme or "standard", "since": moratorium.since.isoformat(),
            "until": moratorium.until.isoformat() if moratorium.until else None, "reference": moratorium.reference},
        # What the law still requires before the stage may be left (a letter, its response period).
        "stage_owes": None if owed is None else {"what": owed[1], "until": owed[0].isoformat() if owed[0] else None},
    }


def _compliance(case: CaseState, strategy: Strategy, now: datetime) -> dict[str, Any] | None:
    """Why a borrower was, or was not, contacted: the profile, what waits and what was stopped."""
    profile = case.compliance
    if profile is None:
        return None
    blocked = [e for e in case.events if e.status == "blocked"][-BLOCKED_SHOWN:]
    return {
        "profile": profile.name,
        "label": profile.label,
        "production": profile.production,
        "tightened_by": profile.tightened_by,
        "timezone": case.timezone,
        "vulnerable": case.vulnerable,
        "validation_notice": case.validation_notice,
        **(_second_pass(case, strategy, now) if case.uses(SECOND_PASS) else {}),
        "interest_frozen": case.moratorium is not None,
        "deferred": [{"channel": d.channel.value, "template": d.template, "treatment": d.key,
                      "since": d.since.isoformat(), "until": d.until.isoformat(), "reason": d.reason}
                     for d in case.deferred],
        "blocked": [{"at": e.at.isoformat(), "channel": e.kind.removesuffix("_blocked"), "reason": e.reason,
                     "treatment": e.detail.get("treatment")} for e in blocked],
        "contacts_last_31_days": len(case.contacts),
    }
