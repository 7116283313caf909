"""An untouched case walks the whole ladder on durable timers (time-skipping server)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

from pypdf import PdfReader
from temporalio.client import WorkflowExecutionStatus

from tests.conftest import events, make_loan, stage_entries, start_case, status, strategy
from workflows import search_attributes as sa


def _days_between(a: str, b: str) -> int:
    # Calendar days: the test may start at any hour, and DPD moves on at midnight.
    return (datetime.fromisoformat(b).date() - datetime.fromisoformat(a).date()).days


async def test_an_untouched_case_walks_every_stage_of_the_default_ladder(env, worker, data_dir: Path):
    handle = await start_case(env.client, worker, make_loan(days_past_due=5))
    await env.sleep(timedelta(days=130))
    state = await status(handle)

    entries = stage_entries(state)
    assert [stage for stage, _ in entries] == ["reminder", "contact", "field_visit", "legal_letter", "litigation"]
    durations = [_days_between(a, b) for (_, a), (_, b) in zip(entries, entries[1:], strict=False)]
    # Reminders until DPD 31 (26 days, from DPD 5), agent contact until DPD 61; the field visit
    # report never comes, so the visit is flagged overdue (planned day 1 + 5 days lead + 3 days
    # to report) and the stage ends early on "overdue"; the letter's 15-day response period.
    assert durations == [26, 30, 9, 15]
    assert events(state, "stage_entered")[0]["reason"] == "days past due reached 31"
    assert state["stage"] == "litigation" and state["next_action"] == "DPD reaches 151"

    sent = [(e["kind"], e["detail"].get("template")) for e in events(state, status_="sent")]
    assert sent.count(("sms_sent", "reminder_soft")) == 3
    assert sent.count(("email_sent", "reminder_how_to_pay")) == 2
    assert sent.count(("call_queued", None)) == 5
    assert ("email_sent", "repayment_options") in sent
    assert ("letter_sent", "legal_letter") in sent
    assert sent[-1] == ("legal_handoff_queued", None)
    visit = events(state, "field_visit_completed")[0]["detail"]
    assert visit["outcome"] == "overdue" and len(visit["agents"]) == 2

    # Each effect landed once, under its idempotency key, in the outbox folders.
    assert len(list((data_dir / "outbox" / "sms").glob("*.json"))) == 3
    assert len(list((data_dir / "outbox" / "email").glob("*.eml"))) == 3
    assert len(list((data_dir / "queues" / "calls").glob("*.json"))) == 5
    assert len(list((data_dir / "queues" / "supervisor").glob("*.json"))) == 1
    handoff = json.loads(next((data_dir / "queues" / "legal").glob("*.json")).read_text())
    assert handoff["loan_id"] == state["loan_id"] and handoff["facts"]["amount_past_due"] == "450.00"
    [path] = (data_dir / "letters").glob("*.pdf")
    letter = "\n".join(page.extract_text() for page in PdfReader(path).pages)
    assert "USD 450.00" in letter and "dispute" in letter and "Ada Example" in letter
    [sent_letter] = events(state, "letter_sent")
    assert sent_letter["detail"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    attributes = description.typed_search_attributes
    assert attributes.get(sa.COLLECTION_STAGE) == "litigation"
    assert attributes.get(sa.RISK_GRADE) == "B"
    assert attributes.get(sa.COLLECTION_PAUSED) is False
    assert attributes.get(sa.OUTSTANDING_AMOUNT) == 5000.0
    # Refreshed when the case wakes, and at each DPD bucket boundary; 134 days past due now.
    assert attributes.get(sa.DAYS_PAST_DUE) == 121


async def test_days_past_due_advance_with_calendar_time(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=12))
    await env.sleep(timedelta(days=20, hours=1))
    # An update runs a workflow task now, so the status it returns is current.
    state = await handle.execute_update("assign", {"agent": "agent-7"})
    opened = datetime.fromisoformat(state["events"][0]["at"]).date()
    assert state["days_past_due"] == 12 + (datetime.fromisoformat(state["as_of"]).date() - opened).days
    assert state["days_past_due"] in (32, 33)


async def test_a_loan_arriving_at_dpd_95_enters_at_the_legal_letter(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=95))
    await env.sleep(timedelta(hours=1))
    state = await status(handle)
    assert stage_entries(state)[0][0] == "legal_letter"
    assert [e["detail"]["template"] for e in events(state, "letter_sent")] == ["legal_letter"]


async def test_a_small_balance_skips_the_field_visit(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=40, outstanding_amount="250.00",
                                                            amount_past_due="80.00"))
    await env.sleep(timedelta(days=31))
    state = await status(handle)
    assert [stage for stage, _ in stage_entries(state)] == ["contact", "legal_letter"]
    assert events(state, "stage_skipped")[0]["detail"]["stage"] == "field_visit"


async def test_the_demo_strategy_reaches_litigation_within_three_minutes(env, worker):
    handle = await start_case(env.client, worker, strat=strategy("demo"))
    await env.sleep(timedelta(minutes=3))
    state = await status(handle)
    entries = stage_entries(state)
    assert [stage for stage, _ in entries][-1] == "litigation"
    elapsed = datetime.fromisoformat(entries[-1][1]) - datetime.fromisoformat(entries[0][1])
    assert elapsed <= timedelta(minutes=3)
