"""The case follows the loan (issue 15) on the time-skipping server: episodes of one loan under one
workflow id, the servicer's figures, value-dated and reversed payments, promises judged after holds,
bounded commands and a burst of commands the ledger gets all of."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.episodes import episode_of, next_episode
from tests.histories.record import until_closed
from tests.conftest import PROFILES, eventually, events, make_loan, start_case, status, strategy, zone_where_it_is
from workflows.inputs import CaseInput, case_workflow_id, reopened_case
from workflows.loan_collection import LoanCollectionWorkflow

US = PROFILES["US"]


async def _start(env, worker, loan, episode: str, **fields):
    return await start_case(env.client, worker, loan, episode=episode, **fields)


async def _today(env):
    return (await env.get_current_time()).date()


async def _collected(env, handle):
    """The contact stage's work: the validation notice, a call task, and the SMS after a missed call."""
    await eventually(handle, lambda s: bool(s["open_call_tasks"]))
    await handle.execute_update("call_outcome", {"outcome": "no_answer"})
    await env.sleep(timedelta(days=2))
    state = await status(handle)
    notices = [e for e in events(state, "letter_sent") if e["detail"]["template"] == "validation_notice"]
    assert notices and events(state, "call_queued") and events(state, "sms_sent")
    return state


async def test_a_second_episode_after_a_cure_sends_queues_and_records_afresh(env, worker):
    """Before: the second delinquency's keys (seq restarting at 1) met the first one's in the ledger, which
    returned the old receipts: no SMS, no validation notice, no call task, no trail for it."""
    # The contact stage (call tasks, a text after a missed call), where it is 11:00 now.
    loan = make_loan(days_past_due=40, timezone=zone_where_it_is(11, await env.get_current_time()))
    today = await _today(env)
    first_episode = episode_of(today, 40)
    first = await _start(env, worker, loan, first_episode, compliance=US)
    state = await _collected(env, first)
    cured = await first.execute_update("payment_received", {"amount": "450.00", "reference": "CURE-1"})
    assert cured["outcome"] == "cured"
    await first.result()
    ledger = worker.ledger
    keys_before = {a["idempotency_key"] for a in await ledger.attempts(loan.loan_id)}
    events_before = [e for e in await ledger.events(loan.loan_id) if e.get("episode", "") == first_episode]

    await env.sleep(timedelta(days=60))
    today = await _today(env)
    second_episode = next_episode(episode_of(today, 35), first_episode)
    assert second_episode != first_episode
    again = make_loan(loan_id=loan.loan_id, days_past_due=35, timezone=zone_where_it_is(11, await env.get_current_time()))
    second = await _start(env, worker, again, second_episode, compliance=US)
    state = await _collected(env, second)
    assert state["episode"] == second_episode
    notices = [e for e in events(state, "letter_sent") if e["detail"]["template"] == "validation_notice"]
    assert notices and events(state, "sms_sent") and events(state, "call_queued")
    attempts = await ledger.attempts(loan.loan_id)
    fresh = [a for a in attempts if a["idempotency_key"] not in keys_before]
    assert {a["channel"] for a in fresh} >= {"sms", "letter"}
    assert all(a["idempotency_key"].startswith(f"{loan.loan_id}/{second_episode}/") for a in fresh)
    assert all(a["state"] == "sent" for a in fresh)
    work = [e for e in events(state, "call_queued")]
    assert all(f"/{second_episode}/" in e["detail"]["idempotency_key"] for e in work)
    trail = await ledger.events(loan.loan_id)
    mine = [e for e in trail if e.get("episode") == second_episode]
    assert mine and mine[0]["kind"] == "case_opened" and mine[0]["seq"] == 0
    # The first episode's trail is as it was.
    assert [e for e in trail if e.get("episode", "") == first_episode] == events_before


async def test_a_reversal_reopens_a_cured_case_as_a_new_episode(env, worker):
    loan = make_loan(days_past_due=10)
    episode = episode_of(await _today(env), 10)
    handle = await _start(env, worker, loan, episode)
    closed = await handle.execute_update("payment_received", {"amount": "450.00", "reference": "DD-9"})
    assert closed["outcome"] == "cured"
    await until_closed(env.client, handle.id)
    # The client reads the closed run's input from its history (infra/episodes.py); here the test has it.
    previous = CaseInput(loan=loan, strategy=strategy(), compliance=PROFILES["demo"], episode=episode)
    new_episode = next_episode(episode, episode)
    reopened = reopened_case(previous, closed, "DD-9", "returned unpaid", "payments-1", new_episode,
                             handle.result_run_id, now=await env.get_current_time())
    run = await env.client.start_workflow(
        LoanCollectionWorkflow.run, reopened, id=case_workflow_id(loan.loan_id), task_queue=worker.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
    state = await eventually(run, lambda s: s["outcome"] is None and s["episode"] == new_episode)
    # Owed again from the same delinquency: its days past due count from the first day past due.
    assert state["amount_past_due"] == "450.00" and state["delinquent_since"] == closed["delinquent_since"]
    assert state["days_past_due"] == 10 and state["stage"] == "reminder"
    reopened_event = events(state, "case_reopened")[0]
    assert reopened_event["detail"]["from_episode"] == episode and reopened_event["detail"]["reference"] == "DD-9"
    assert events(state, "payment_reversed", "accepted")[0]["actor"] == "payments-1"
    # The closed run is untouched: its result still says cured.
    assert (await env.client.get_workflow_handle(case_workflow_id(loan.loan_id),
                                                 run_id=handle.result_run_id).result())["outcome"] == "cured"
    await env.sleep(timedelta(days=2))
    assert events(await status(run), "sms_sent")  # collected again
    with pytest.raises(WorkflowAlreadyStartedError):
        await env.client.start_workflow(  # never two live runs of one loan
            LoanCollectionWorkflow.run, reopened, id=case_workflow_id(loan.loan_id), task_queue=worker.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL)


async def test_a_payment_valued_before_the_due_date_and_posted_after_it_keeps_the_promise(env, worker):
    handle = await start_case(env.client, worker, make_loan(amount_past_due="450.00"))
    today = await _today(env)
    await handle.execute_update("promise_to_pay", {"amount": "450.00", "due_date": (today + timedelta(days=4)).isoformat()})
    await env.sleep(timedelta(days=7, hours=1))  # past the deadline (due date + 2 days grace)
    state = await status(handle)
    assert state["promise"]["state"] == "broken"
    paid_at = (await env.get_current_time()) - timedelta(days=4)  # valued the day before it was due
    state = await handle.execute_update("payment_received", {"amount": "450.00", "reference": "LATE-POST",
                                                             "paid_at": paid_at.isoformat()})
    assert state["promise"]["state"] == "kept" and state["promises_broken"] == 0 and state["promises_kept"] == 1
    assert state["outcome"] == "cured"


async def test_a_promise_due_during_a_hardship_is_judged_after_it(env, worker):
    handle = await start_case(env.client, worker, make_loan(amount_past_due="450.00"))
    today = await _today(env)
    await handle.execute_update("promise_to_pay", {"amount": "200.00", "due_date": (today + timedelta(days=3)).isoformat()})
    await handle.execute_update("hardship", {"reason": "lost job"})
    await env.sleep(timedelta(days=20))
    state = await status(handle)
    assert state["promise"]["state"] == "pending" and state["promises_broken"] == 0
    state = await handle.execute_update("hardship_resolved")
    assert events(state, "promise_rescheduled")
    await env.sleep(timedelta(days=4))
    state = await status(handle)
    assert state["promise"]["state"] == "pending"  # its 6 days to the deadline run again from the release
    await env.sleep(timedelta(days=3))
    state = await status(handle)
    assert state["promise"]["state"] == "broken" and state["promises_broken"] == 1


async def test_a_loan_update_lowering_dpd_moves_the_dpd_based_exit(env, worker):
    handle = await start_case(env.client, worker, make_loan(days_past_due=25))
    await env.sleep(timedelta(days=1))
    today = await _today(env)
    state = await handle.execute_update("loan_update", {"as_of": today.isoformat(), "amount_past_due": "150.00",
                                                        "outstanding": "4700.00", "days_past_due": 2})
    assert state["days_past_due"] == 2 and state["amount_past_due"] == "150.00"
    await env.sleep(timedelta(days=10))  # DPD 37 by the intake's count: the contact stage before the update
    state = await status(handle)
    assert state["stage"] == "reminder"
    await env.sleep(timedelta(days=19))  # DPD 31 by the servicer's count
    state = await eventually(handle, lambda s: s["stage"] == "contact")
    assert events(state, "stage_entered")[0]["reason"] == "days past due reached 31"


async def test_a_servicer_update_reporting_the_loan_current_closes_it_cured_with_the_reason(env, worker):
    handle = await start_case(env.client, worker, make_loan())
    today = await _today(env)
    state = await handle.execute_update("loan_update", {
        "as_of": today.isoformat(), "current": True, "reason": f"absent from the servicer's complete file of {today}",
        "by": "system:daily-sync"})
    assert state["outcome"] == "cured" and "absent from" in state["close_note"]
    assert (await handle.result())["outcome"] == "cured"


async def test_bounded_commands_are_refused_by_field_and_the_case_goes_on(env, worker):
    handle = await start_case(env.client, worker)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update("hold", {"reason": "x" * 20_000})
    assert "16384 bytes" in str(failure.value.cause)
    await handle.signal("hold", {"reason": "y" * 20_000})
    state = await eventually(handle, lambda s: bool(events(s, "hold", "rejected")))
    assert not state["paused"]
    state = await handle.execute_update("hold", {"reason": "complaint review"})
    assert state["paused"]


async def test_a_burst_of_commands_reaches_the_ledger_whole(env, worker):
    loan = make_loan()
    handle = await start_case(env.client, worker, loan)
    await status(handle)
    await asyncio.gather(*(handle.signal("assign", {"agent": f"agent-{n % 7}"}) for n in range(620)))
    await eventually(handle, lambda s: s["events_dropped"] + len(s["events"]) >= 622, attempts=400)
    await handle.signal("close", {"outcome": "closed", "note": "burst test"})
    await handle.result()
    trail = await worker.ledger.events(loan.loan_id)
    assert sum(1 for e in trail if e["kind"] == "assign") == 620
    assert [e["seq"] for e in trail] == list(range(len(trail)))  # nothing let go on the way
