"""Every command is a signal and an update of the same name; bad input never breaks a case."""

from __future__ import annotations

import json

from datetime import date, timedelta

import pytest
from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from tests.conftest import eventually, events, make_loan, start_case, status
from workflows.loan_collection import LoanCollectionWorkflow

ALL_COMMANDS = ["payment_received", "promise_to_pay", "hardship", "hardship_resolved", "dispute",
                "dispute_resolved", "cease_contact", "call_outcome", "field_visit_report", "propose_arrangement",
                "escalate",
                "hold", "release", "close", "assign", "vulnerability", "breathing_space", "breathing_space_ended",
                "notice_delivered", "loan_update", "payment_reversed"]


def test_the_workflow_declares_a_signal_and_an_update_for_every_command():
    # The live metadata query is exercised end to end on the dev server (test_end_to_end); the
    # time-skipping server stops skipping time after answering it, so here the definition is read.
    definition = workflow._Definition.from_class(LoanCollectionWorkflow)
    assert definition is not None and definition.name == "LoanCollectionWorkflow"
    assert set(ALL_COMMANDS) == {name for name in definition.signals if name is not None}
    assert None in definition.signals  # the dynamic handler that records unknown signals as rejected
    assert set(ALL_COMMANDS) == set(definition.updates)
    assert all(update.validator is not None for update in definition.updates.values())
    assert "status" in definition.queries


@pytest.mark.parametrize("name, payload, reason", [
    ("payment_received", {"amount": "-5", "reference": "r"}, "amount: must be positive"),
    ("payment_received", {"amount": 12.5, "reference": "r"}, "not floating-point"),
    ("payment_received", {"amount": "10"}, "reference: Field required"),
    ("promise_to_pay", {"amount": "100", "due_date": "2001-01-01"}, "due_date: 2001-01-01 is in the past"),
    ("promise_to_pay", {"amount": "10", "due_date": "not a date"}, "due_date"),
    ("hardship", {}, "reason: Field required"),
    ("hardship_resolved", {}, "not paused for hardship"),
    ("dispute_resolved", {"upheld": False}, "no open dispute"),
    ("cease_contact", {"channels": ["pigeon"]}, "channels.0"),
    ("call_outcome", {"outcome": "reached"}, "no call task is open"),
    ("field_visit_report", {"outcome": "met"}, "no field visit is in progress"),
    ("release", {}, "not on an operator hold"),
    ("close", {"outcome": "vanished", "note": "x"}, "outcome"),
    ("assign", {"agent": ""}, "agent"),
    ("hold", "not an object", "must be a JSON object"),
    ("hold", {"reason": "x", "colour": "red"}, "colour: Extra inputs are not permitted"),
])
async def test_an_invalid_update_is_refused_naming_the_field_and_reason(env, worker, name, payload, reason):
    handle = await start_case(env.client, worker)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(name, payload)
    assert reason in str(failure.value.cause)
    # A refused update never reaches history: the case shows no trace of it.
    assert not events(await status(handle), name)


async def test_an_invalid_signal_is_recorded_as_rejected_and_the_case_carries_on(env, worker):
    handle = await start_case(env.client, worker)
    await handle.signal("payment_received", {"amount": "abc", "reference": "r1"})
    await handle.signal("promise_to_pay", [1, 2, 3])
    await handle.signal("escalate", {"reason": 7})
    await handle.signal("no_such_command", {})
    state = await eventually(handle, lambda s: len(events(s, status_="rejected")) == 4)
    rejected = {e["kind"]: e["reason"] for e in events(state, status_="rejected")}
    assert rejected["no_such_command"] == "unknown command 'no_such_command'"
    assert rejected["payment_received"] == "amount: 'abc' is not a decimal number"
    assert "JSON object" in rejected["promise_to_pay"]
    assert rejected["escalate"].startswith("reason:")
    # Still alive and still answering: a valid command right after is applied.
    state = await handle.execute_update("assign", {"agent": "agent-1"})
    assert state["assigned_agent"] == "agent-1"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_payments_are_applied_once_per_reference_and_partial_payments_reduce_arrears(env, worker):
    handle = await start_case(env.client, worker, make_loan(amount_past_due="450.00"))
    state = await handle.execute_update("payment_received", {"amount": "100.50", "reference": "PAY-1"})
    assert state["amount_past_due"] == "349.50" and state["outstanding"] == "4899.50"
    state = await handle.execute_update("payment_received", {"amount": "100.50", "reference": "PAY-1"})
    assert state["amount_past_due"] == "349.50"
    await handle.signal("payment_received", {"amount": "100.50", "reference": "PAY-1"})
    state = await eventually(handle, lambda s: len(events(s, "payment_received", "duplicate")) == 2)
    assert state["amount_past_due"] == "349.50" and state["paid_total"] == "100.50"


async def test_clearing_the_arrears_cures_the_case_and_completes_the_workflow(env, worker):
    handle = await start_case(env.client, worker, make_loan(amount_past_due="450.00"))
    await handle.signal("payment_received", {"amount": "200", "reference": "A"})
    await handle.signal("payment_received", {"amount": "250.00", "reference": "B", "paid_at": "2026-11-20T10:00:00Z"})
    result = await handle.result()
    assert result["outcome"] == "cured" and result["amount_past_due"] == "0.00"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_close_records_the_outcome_and_note(env, worker):
    handle = await start_case(env.client, worker)
    state = await handle.execute_update("close", {"outcome": "written_off", "note": "deceased, estate insolvent"})
    assert state["outcome"] == "written_off"
    result = await handle.result()
    assert result["close_note"] == "deceased, estate insolvent"
    # A closed case takes no more commands: the workflow has completed (the dev server says so;
    # the time-skipping server answers "update not found").
    with pytest.raises(RPCError):
        await handle.execute_update("assign", {"agent": "late"})


async def test_hardship_pauses_the_case_until_resolved(env, worker):
    handle = await start_case(env.client, worker)
    await eventually(handle, lambda s: len(events(s, "sms_sent")) == 1)
    state = await handle.execute_update("hardship", {"reason": "hospitalised"})
    assert state["paused"] is True and state["pause_reason"] == "hardship: hardship reported"
    await env.sleep(timedelta(days=60))
    state = await status(handle)
    assert state["stage"] == "reminder"
    assert len(events(state, status_="sent")) == 1
    state = await handle.execute_update("hardship_resolved", {})
    assert state["paused"] is False and state["pause_reason"] is None


async def test_hardship_with_an_end_date_resumes_by_itself(env, worker):
    handle = await start_case(env.client, worker)
    until = (date.today() + timedelta(days=20)).isoformat()
    await handle.execute_update("hardship", {"reason": "flood", "until": until})
    await env.sleep(timedelta(days=22))
    state = await status(handle)
    assert state["paused"] is False
    assert events(state, "hardship_ended")


async def test_hardship_beyond_the_strategy_limit_is_refused(env, worker):
    handle = await start_case(env.client, worker)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update("hardship", {"reason": "x", "until": (date.today() + timedelta(days=200)).isoformat()})
    assert "until: is more than 90 days away" in str(failure.value.cause)


async def test_a_dispute_holds_collection_until_resolved_and_an_upheld_dispute_closes_the_case(env, worker):
    handle = await start_case(env.client, worker)
    state = await handle.execute_update("dispute", {"reason": "never took this loan"})
    assert state["pause_reason"] == "dispute: the debt is disputed"
    await env.sleep(timedelta(days=45))
    assert (await status(handle))["stage"] == "reminder"
    state = await handle.execute_update("dispute_resolved", {"upheld": True, "note": "identity fraud confirmed"})
    assert state["outcome"] == "closed"
    result = await handle.result()
    # The words of the dispute and its resolution are the ledger's only (encrypted there).
    assert result["close_note"] == "dispute upheld: see the ledger"
    assert "identity fraud" not in json.dumps(result) and "never took this loan" not in json.dumps(result)


async def test_a_rejected_dispute_resumes_collection(env, worker):
    handle = await start_case(env.client, worker)
    await handle.execute_update("dispute", {"reason": "amount wrong"})
    state = await handle.execute_update("dispute_resolved", {"upheld": False, "note": "statement verified"})
    assert state["paused"] is False and state["outcome"] is None


async def test_an_operator_hold_pauses_and_release_resumes(env, worker):
    handle = await start_case(env.client, worker)
    state = await handle.execute_update("hold", {"reason": "complaint under review"})
    assert state["paused"] and state["pause_reason"] == "operator: held by an operator"
    state = await handle.execute_update("release", {})
    assert not state["paused"]


async def test_escalate_moves_the_case_one_stage_on_and_is_refused_at_litigation(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=70))
    await handle.execute_update("escalate", {"reason": "borrower absconded"})
    state = await eventually(handle, lambda s: s["stage"] == "legal_letter" and events(s, "letter_sent"))
    assert events(state, "stage_entered")[-1]["reason"] == "operator: borrower absconded"
    # The legal letter's response period is the law's: escalate is refused until it is over, naming it.
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update("escalate", {})
    assert "legal_letter's response period until" in str(failure.value.cause)
    await env.sleep(timedelta(days=16))
    state = await eventually(handle, lambda s: s["stage"] == "litigation")
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update("escalate", {})
    assert "already at the last stage" in str(failure.value.cause)


async def test_assign_sets_the_agent_and_its_search_attribute(env, worker):
    from workflows.search_attributes import ASSIGNED_AGENT

    handle = await start_case(env.client, worker)
    await handle.execute_update("assign", {"agent": "agent-42"})
    await env.sleep(timedelta(hours=1))
    assert (await handle.describe()).typed_search_attributes.get(ASSIGNED_AGENT) == "agent-42"


async def test_cease_contact_stops_that_channel_and_records_each_blocked_contact(env, worker, data_dir):
    handle = await start_case(env.client, worker)
    await eventually(handle, lambda s: len(events(s, "sms_sent")) == 1)
    await handle.execute_update("cease_contact", {"channels": ["sms"]})
    await env.sleep(timedelta(days=10))
    state = await status(handle)
    assert len(events(state, "sms_sent")) == 1
    assert len(events(state, "sms_blocked")) == 2
    assert events(state, "sms_blocked")[0]["reason"] == "borrower asked to cease contact on this channel"
    assert len(events(state, "email_sent")) == 2
    assert state["ceased_channels"] == ["sms"]
    assert len(list((data_dir / "outbox" / "sms").glob("*.json"))) == 1


async def test_every_command_is_accepted_as_a_signal(env, worker):
    """The valid path of each command through its signal (the update path is covered above)."""
    contact = await start_case(env.client, worker, make_loan(days_past_due=70))
    await env.sleep(timedelta(days=1, hours=1))  # the field visit is under way
    today = (await env.get_current_time()).date()
    signals = [
        ("field_visit_report", {"outcome": "met", "agents": ["field-01", "field-02"]}),
        ("assign", {"agent": "agent-2"}),
        ("promise_to_pay", {"amount": "100", "due_date": (today + timedelta(days=2)).isoformat()}),
        ("payment_received", {"amount": "100", "reference": "S-1"}),
        ("hardship", {"reason": "illness"}),
        ("hardship_resolved", {}),
        ("dispute", {"reason": "wrong amount"}),
        ("dispute_resolved", {"upheld": False}),
        ("hold", {"reason": "complaint"}),
        ("release", {}),
        ("cease_contact", {"channels": ["email"]}),
        ("escalate", {"reason": "no contact"}),
        ("vulnerability", {"vulnerable": True, "note": "recent bereavement"}),
    ]
    for name, payload in signals:
        await contact.signal(name, payload)
    state = await eventually(contact, lambda s: len(events(s, status_="accepted")) == len(signals))
    assert [e["kind"] for e in events(state, status_="accepted")] == [name for name, _ in signals]
    assert events(state, status_="rejected") == []
    # The report arrived with the hardship in one batch; it still completed the visit.
    state = await eventually(contact, lambda s: events(s, "field_visit_completed"))
    assert events(state, "field_visit_completed")[0]["detail"]["outcome"] == "met"

    calls = await start_case(env.client, worker, make_loan(days_past_due=40))
    await eventually(calls, lambda s: s["open_call_tasks"])
    await calls.signal("call_outcome", {"outcome": "refused", "agent": "agent-4"})
    await calls.signal("close", {"outcome": "settled", "note": "paid in full at branch"})
    result = await calls.result()
    assert [e["kind"] for e in events(result, status_="accepted")] == ["call_outcome", "close"]
    assert result["outcome"] == "settled"
