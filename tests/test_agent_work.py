"""Agents pull call tasks and field visits from the ledger's queues and report outcomes, which reach
the case as updates; refused reports leave the item open, stale ones are closed as withdrawn."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from agent import report
from infra.settings import Settings
from ledger import LedgerError
from tests.conftest import ROOT, events, eventually, make_loan, start_case, status
from tests.ledger_fixtures import BACKENDS, scratch_database
from worker import build_activities, build_worker

BOTH_DATABASES = pytest.mark.parametrize("worker", BACKENDS, indirect=True)


async def _first_open(worker, queue: str, loan_id: str, env):
    await worker.ledger.migrate()  # the worker migrates at its first effect; the test may look earlier
    for _ in range(50):
        items = [i for i in await worker.ledger.open_work(queue) if i.loan_id == loan_id]
        if items:
            return items[0]
        await env.sleep(timedelta(hours=6))
    raise AssertionError(f"no {queue} item appeared for {loan_id}")


@BOTH_DATABASES
async def test_an_agent_pulls_a_call_task_and_its_outcome_reaches_the_case(env, worker):
    loan = make_loan(days_past_due=35)
    handle = await start_case(env.client, worker, loan)
    item = await _first_open(worker, "calls", loan.loan_id, env)
    assert item.workflow_id == handle.id and item.payload["timezone"] == loan.timezone

    done = await report(worker.ledger, env.client, item.item_key, "no_answer", by="agent-4", note="rang twice")
    assert done.accepted and (done.item.state, done.item.outcome) == ("done", "no_answer")
    state = await status(handle)
    [accepted] = events(state, "call_outcome", "accepted")
    assert accepted["detail"]["task_id"] == item.payload["item_id"] and accepted["actor"] == "agent-4"
    assert accepted["detail"]["note"] == "rang twice"
    assert item.item_key not in {i.item_key for i in await worker.ledger.open_work("calls")}

    again = await report(worker.ledger, env.client, item.item_key, "no_answer", by="agent-4")
    assert again.accepted and again.reason == "already reported"
    assert len(events(await status(handle), "call_outcome", "accepted")) == 1
    with pytest.raises(LedgerError, match="already done with outcome 'no_answer'"):
        await report(worker.ledger, env.client, item.item_key, "reached", by="agent-4")


@BOTH_DATABASES
async def test_a_report_the_case_refuses_says_why_and_leaves_the_item_open(env, worker):
    loan = make_loan(days_past_due=35)
    await start_case(env.client, worker, loan)
    item = await _first_open(worker, "calls", loan.loan_id, env)
    refused = await report(worker.ledger, env.client, item.item_key, "busy", by="agent-4")
    assert not refused.accepted and "'busy' is not one of" in refused.reason
    assert item.item_key in {i.item_key for i in await worker.ledger.open_work("calls")}


@BOTH_DATABASES
async def test_a_task_the_case_withdrew_is_closed_as_withdrawn_when_reported(env, worker):
    loan = make_loan(days_past_due=35)
    handle = await start_case(env.client, worker, loan)
    item = await _first_open(worker, "calls", loan.loan_id, env)
    await handle.execute_update("hold", {"reason": "complaint under review", "by": "sup-1"})
    await eventually(handle, lambda s: bool(events(s, "call_task_withdrawn")))
    refused = await report(worker.ledger, env.client, item.item_key, "reached", by="agent-4")
    assert not refused.accepted and refused.item.state == "withdrawn"
    assert events(await status(handle), "call_outcome", "accepted") == []


@BOTH_DATABASES
async def test_a_field_agent_reports_a_visit_from_the_queue(env, worker):
    loan = make_loan(days_past_due=70)
    handle = await start_case(env.client, worker, loan)
    item = await _first_open(worker, "visits", loan.loan_id, env)
    assert item.assigned_to and item.payload["scheduled_for"]
    done = await report(worker.ledger, env.client, item.item_key, "met", by=item.assigned_to.split(",")[0],
                        note="agreed to pay on Friday")
    assert done.accepted
    state = await eventually(handle, lambda s: bool(events(s, "field_visit_report", "accepted")))
    assert events(state, "field_visit_report", "accepted")[0]["actor"] == item.assigned_to.split(",")[0]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_command_line_lists_an_agents_calls_and_reports_one(env, data_dir, tmp_path, backend):
    """The command and the worker share the ledger through ARREARS_DATABASE_URL, as in production."""
    async with scratch_database(backend, tmp_path) as url:
        settings = Settings(data_dir=data_dir, database_url=url)
        activities = build_activities(settings)
        try:
            async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                    activities=activities) as worker:
                worker.ledger = activities.ledger  # type: ignore[attr-defined]
                await _command_line(env, worker, {**os.environ, "ARREARS_DATA_DIR": str(data_dir),
                                                  "ARREARS_DATABASE_URL": url,
                                                  "TEMPORAL_ADDRESS": env.client.service_client.config.target_host})
        finally:
            await activities.aclose()


async def _command_line(env, worker, run_env: dict[str, str]) -> None:
    loan = make_loan(days_past_due=35)
    handle = await start_case(env.client, worker, loan)
    item = await _first_open(worker, "calls", loan.loan_id, env)

    async def agent(*args: str) -> subprocess.CompletedProcess:
        # Not subprocess.run: the worker in this process must go on running while the agent reports.
        process = await asyncio.create_subprocess_exec(sys.executable, "agent.py", *args, cwd=ROOT, env=run_env,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())

    assert item.item_key not in (await agent("list", "calls", "--agent", "agent-elsewhere")).stdout
    listed = await agent("list", "calls")
    assert listed.returncode == 0, listed.stderr
    assert item.item_key in listed.stdout and loan.loan_id in listed.stdout
    assert loan.phone not in listed.stdout and loan.borrower_name not in listed.stdout
    refused = await agent("report", item.item_key, "busy", "--by", "agent-9")
    assert refused.returncode == 1 and "refused" in refused.stderr and "busy" in refused.stderr
    done = await agent("report", item.item_key, "reached", "--by", "agent-9")
    assert done.returncode == 0 and done.stdout.strip() == f"{item.item_key}: reached", done.stderr
    assert events(await status(handle), "call_outcome", "accepted")[0]["actor"] == "agent-9"
    missing = await agent("report", "no-such-item", "reached", "--by", "agent-9")
    assert missing.returncode == 2 and "no such item" in missing.stderr


@BOTH_DATABASES
async def test_a_report_the_case_took_but_the_ledger_missed_is_closed_as_done_not_withdrawn(env, worker):
    loan = make_loan(days_past_due=35)
    handle = await start_case(env.client, worker, loan)
    item = await _first_open(worker, "calls", loan.loan_id, env)
    # The agent's update reached the case, then the agent died before the ledger closed the item.
    await handle.execute_update("call_outcome", {"outcome": "no_answer", "task_id": item.payload["item_id"],
                                                 "by": "agent-4"})
    again = await report(worker.ledger, env.client, item.item_key, "no_answer", by="agent-4")
    assert again.accepted and again.reason == "already reported"
    assert (again.item.state, again.item.outcome) == ("done", "no_answer")
    assert len(events(await status(handle), "call_outcome", "accepted")) == 1
