"""Agents pull call tasks and field visits from their queues at the desk and report outcomes, which
reach the case as updates sent as the agent; refused reports leave the item open, and work the case
no longer wants is refused with the reason."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from infra.settings import Settings
from tests.conftest import ROOT, events, eventually, make_loan, start_case, status
from tests.desk_fixtures import USERS, Desk, desk_on
from tests.ledger_fixtures import BACKENDS, scratch_database
from worker import build_activities, build_worker

BOTH_DATABASES = pytest.mark.parametrize("worker", BACKENDS, indirect=True)
FIELD_STAFF = {f"field-{n:02d}": ("field_agent", None) for n in range(1, 7)}


async def _first_open(desk: Desk, user: str, queue: str, loan_id: str) -> dict:
    for _ in range(50):
        items = (await desk.get(user, "/api/v1/work", params={"queue": queue, "limit": 500})).json()["items"]
        mine = [i for i in items if i["loan_id"] == loan_id]
        if mine:
            return mine[0]
        await desk.env.sleep(timedelta(hours=6))
    raise AssertionError(f"no {queue} item appeared for {loan_id}")


async def _assigned(desk: Desk, handle, agent: str = "a1") -> None:
    await handle.execute_update("assign", {"agent": agent, "by": "s1"})


@BOTH_DATABASES
async def test_an_agent_pulls_a_call_task_and_its_outcome_reaches_the_case(env, worker):
    async with desk_on(env, worker) as desk:
        loan = make_loan(days_past_due=5)
        handle = await start_case(env.client, worker, loan)
        await _assigned(desk, handle)
        await handle.execute_update("escalate", {"reason": "to the agents", "by": "s1"})
        item = await _first_open(desk, "a1", "calls", loan.loan_id)
        assert item["assigned_to"] == "a1" and item["timezone"] == loan.timezone

        path = f"/api/v1/work/{item['item_id']}/outcome"
        response = await desk.post("a1", path, {"outcome": "no_answer", "note": "rang twice"})
        assert response.status_code == 200, response.text
        assert (response.json()["item"]["state"], response.json()["item"]["outcome"]) == ("done", "no_answer")
        [accepted] = events(await status(handle), "call_outcome", "accepted")
        assert accepted["detail"]["task_id"] == item["item_id"] and accepted["actor"] == "a1"
        # The note is the agent's own words: kept in the ledger (encrypted), not in the case's status.
        assert "note" not in accepted["detail"] and accepted["detail"]["agent"] == "a1"
        assert "rang twice" not in str(await status(handle))

        again = await desk.post("a1", path, {"outcome": "no_answer"})
        assert again.status_code == 200 and again.json()["already_reported"]
        assert len(events(await status(handle), "call_outcome", "accepted")) == 1
        other = await desk.post("a1", path, {"outcome": "reached"})
        assert other.status_code == 409 and "no_answer" in other.json()["reason"]


@BOTH_DATABASES
async def test_a_report_the_case_refuses_says_why_and_leaves_the_item_open(env, worker):
    async with desk_on(env, worker) as desk:
        loan = make_loan(days_past_due=35)
        await start_case(env.client, worker, loan)
        item = await _first_open(desk, "s1", "calls", loan.loan_id)
        response = await desk.post("s1", f"/api/v1/work/{item['item_id']}/outcome", {"outcome": "busy"})
        assert response.status_code == 422 and response.json()["field"] == "outcome"
        assert "busy" in response.json()["reason"]
        still = (await desk.get("s1", "/api/v1/work", params={"queue": "calls"})).json()["items"]
        assert item["item_id"] in [i["item_id"] for i in still]


@BOTH_DATABASES
async def test_a_task_the_case_withdrew_is_gone_and_a_report_on_it_says_why(env, worker):
    async with desk_on(env, worker) as desk:
        loan = make_loan(days_past_due=35)
        handle = await start_case(env.client, worker, loan)
        item = await _first_open(desk, "s1", "calls", loan.loan_id)
        await handle.execute_update("dispute", {"reason": "not my debt", "by": "c1"})
        for _ in range(50):
            listed = (await desk.get("s1", "/api/v1/work", params={"queue": "calls"})).json()["items"]
            if item["item_id"] not in [i["item_id"] for i in listed]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the withdrawn call task stayed on the queue")
        response = await desk.post("s1", f"/api/v1/work/{item['item_id']}/outcome", {"outcome": "reached"})
        assert response.status_code == 409, response.text
        assert "withdrawn" in response.json()["reason"] and "dispute" in response.json()["reason"]
        assert events(await status(handle), "call_outcome", "accepted") == []


async def test_a_field_agent_reports_the_visit_the_item_is_for(env, worker):
    async with desk_on(env, worker, users={**USERS, **FIELD_STAFF}) as desk:
        loan = make_loan(days_past_due=70)
        handle = await start_case(env.client, worker, loan)
        item = await _first_open(desk, "s1", "visits", loan.loan_id)
        staff = item["assigned_to"].split(",")
        assert len(staff) == len(set(staff)) == 2 and item["scheduled_for"] and item["visit_id"]
        outsider = next(name for name in FIELD_STAFF if name not in staff)
        path = f"/api/v1/work/{item['item_id']}/outcome"
        assert (await desk.post(outsider, path, {"outcome": "met"})).status_code == 403
        stranger = await desk.post(staff[0], path, {"outcome": "met", "agents": [outsider]})
        assert stranger.status_code == 422 and stranger.json()["field"] == "agents"
        response = await desk.post(staff[0], path, {"outcome": "met", "note": "agreed to pay on Friday",
                                                    "agents": [staff[1]]})
        assert response.status_code == 200, response.text
        state = await eventually(handle, lambda s: bool(events(s, "field_visit_report", "accepted")))
        [report] = events(state, "field_visit_report", "accepted")
        assert report["actor"] == staff[0] and report["detail"]["visit_id"] == item["visit_id"]
        assert report["detail"]["agents"] == staff


@BOTH_DATABASES
async def test_a_report_the_case_took_but_the_ledger_missed_is_closed_as_done(env, worker):
    async with desk_on(env, worker) as desk:
        loan = make_loan(days_past_due=35)
        handle = await start_case(env.client, worker, loan)
        item = await _first_open(desk, "s1", "calls", loan.loan_id)
        # The desk's update reached the case, then the desk died before the ledger closed the item.
        await handle.execute_update("call_outcome", {"outcome": "no_answer", "task_id": item["item_id"], "by": "s1"})
        again = await desk.post("s1", f"/api/v1/work/{item['item_id']}/outcome", {"outcome": "no_answer"})
        assert again.status_code == 200 and again.json()["already_reported"]
        assert (again.json()["item"]["state"], again.json()["item"]["outcome"]) == ("done", "no_answer")
        assert len(events(await status(handle), "call_outcome", "accepted")) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Not subprocess.run: the worker in this process must go on running meanwhile.
    process = await asyncio.create_subprocess_exec(*args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_desk_commands_and_the_agent_command_line_over_http(env, data_dir, tmp_path, backend):
    """`python -m desk users add / tokens create / serve`, then `agent.py` and `arrears` as an agent
    would use them: a token, no database rights, no payload keys."""
    async with scratch_database(backend, tmp_path) as url:
        settings = Settings(data_dir=data_dir, database_url=url, letter_processes=0)
        activities = build_activities(settings)
        port = _free_port()
        run_env = {**os.environ, "ARREARS_DATA_DIR": str(data_dir), "ARREARS_DATABASE_URL": url,
                   "TEMPORAL_ADDRESS": env.client.service_client.config.target_host, "ARREARS_DESK_PORT": str(port),
                   "ARREARS_DESK_URL": f"http://127.0.0.1:{port}"}
        run_env.pop("ARREARS_PAYLOAD_KEYS", None)
        added = await _run(sys.executable, "-m", "desk", "users", "add", "agent-9", "--role", "agent", env=run_env)
        assert added.returncode == 0, added.stderr
        password = added.stdout.strip().splitlines()[-1]
        assert len(password) >= 20 and password not in (await _run(sys.executable, "-m", "desk", "users", "list",
                                                                   env=run_env)).stdout
        bad_role = await _run(sys.executable, "-m", "desk", "users", "add", "x", "--role", "boss", env=run_env)
        assert bad_role.returncode == 2 and "role" in bad_role.stderr and "boss" in bad_role.stderr
        twice = await _run(sys.executable, "-m", "desk", "users", "add", "agent-9", "--role", "agent", env=run_env)
        assert twice.returncode == 2 and "already exists" in twice.stderr
        created = await _run(sys.executable, "-m", "desk", "tokens", "create", "agent-9", env=run_env)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        assert token.startswith("arr_")
        run_env["ARREARS_DESK_TOKEN"] = token
        server = await asyncio.create_subprocess_exec(sys.executable, "-m", "desk", "serve", cwd=ROOT, env=run_env)
        try:
            async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                    activities=activities) as worker:
                await _command_line(env, worker, run_env, port)
        finally:
            server.terminate()
            assert await asyncio.wait_for(server.wait(), 30) == 0
            await activities.aclose()
        revoked = await _run(sys.executable, "-m", "desk", "tokens", "revoke", "agent-9", env=run_env)
        assert revoked.returncode == 0 and "revoked 1 token" in revoked.stdout


async def _command_line(env, worker, run_env: dict[str, str], port: int) -> None:
    loan = make_loan(days_past_due=5)
    handle = await start_case(env.client, worker, loan)
    await handle.execute_update("assign", {"agent": "agent-9", "by": "s1"})
    await handle.execute_update("escalate", {"reason": "to the agents", "by": "s1"})
    for _ in range(100):
        listed = await _run(sys.executable, "agent.py", "list", "calls", env=run_env)
        if loan.loan_id in listed.stdout:
            break
        await asyncio.sleep(0.2)
    assert listed.returncode == 0 and loan.loan_id in listed.stdout, listed.stderr
    assert loan.phone not in listed.stdout and loan.borrower_name not in listed.stdout
    item_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if loan.loan_id in line)
    refused = await _run(sys.executable, "agent.py", "report", item_id, "busy", env=run_env)
    assert refused.returncode == 1 and "refused" in refused.stderr and "busy" in refused.stderr
    done = await _run(sys.executable, "agent.py", "report", item_id, "reached", env=run_env)
    assert done.returncode == 0 and done.stdout.strip() == f"{item_id}: reached", done.stderr
    assert events(await status(handle), "call_outcome", "accepted")[0]["actor"] == "agent-9"
    missing = await _run(sys.executable, "agent.py", "report", "no-such-item", "reached", env=run_env)
    assert missing.returncode == 1 and "no work item" in missing.stderr
    # The fuller client: who am I, the case as an agent may see it, a command, and a refusal.
    me = await _run(sys.executable, "-m", "desk.client", "me", env=run_env)
    assert me.returncode == 0 and "agent-9 (agent)" in me.stdout
    shown = await _run(sys.executable, "-m", "desk.client", "case", loan.loan_id, env=run_env)
    assert shown.returncode == 0 and loan.phone in shown.stdout and "*** (masked)" in shown.stdout
    sent = await _run(sys.executable, "-m", "desk.client", "send", loan.loan_id, "hold", "reason=checking", env=run_env)
    assert sent.returncode == 0 and "holds operator" in sent.stdout, sent.stderr
    closing = await _run(sys.executable, "-m", "desk.client", "send", loan.loan_id, "close", "outcome=closed",
                         "note=x", env=run_env)
    assert closing.returncode == 1 and "403" in closing.stderr
    unreachable = await _run(sys.executable, "-m", "desk.client", "me", "--url", "http://127.0.0.1:9", env=run_env)
    assert unreachable.returncode == 2
