"""End to end on the Temporal dev server: worker.py and starter.py as processes, the temporal CLI as operator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.conftest import DEV_SERVER, ROOT

pytestmark = pytest.mark.e2e

HEADER = ("loan_id,borrower_name,phone,email,address,timezone,jurisdiction,currency,outstanding_amount,"
          "amount_past_due,days_past_due,product,risk_grade,branch")


@pytest.fixture(scope="module")
def run_env(address: str, tmp_path_factory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("e2e-data")
    return {**os.environ, "TEMPORAL_ADDRESS": address, "ARREARS_DATA_DIR": str(data),
            "ARREARS_TASK_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}"}


@pytest.fixture(scope="module")
def worker_process(run_env: dict[str, str], tmp_path_factory) -> Iterator[subprocess.Popen]:
    log = tmp_path_factory.mktemp("e2e-logs") / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=run_env, stdout=out,
                                   stderr=subprocess.STDOUT)
    process.log_path = log  # type: ignore[attr-defined]
    yield process
    if process.poll() is None:
        process.kill()


def _portfolio(path: Path, suffix: str) -> tuple[Path, list[str]]:
    ids = [f"E2E-{suffix}-{n}" for n in range(3)]
    rows = [
        HEADER,
        f"{ids[0]},Wang Fang,+8613800000123,wang@example.cn,\"88 Example Road, Shanghai\",Asia/Shanghai,CN,CNY,"
        "52000.00,3800.00,12,credit_card,C,SH-01",
        f"{ids[1]},Ada Example,+15555550123,ada@example.com,\"1 Test St, Springfield\",America/New_York,US,USD,"
        "5000.00,450.00,40,personal_loan,B,NY-2",
        "E2E-BAD-AMOUNT,Bad Row,+15555550199,bad@example.com,Nowhere,America/Chicago,US,USD,lots,10.00,5,"
        "bnpl,A,X",
        f"{ids[2]},Tom Sample,+447700900123,tom@example.org,\"2 Demo Lane, Leeds\",Europe/London,UK,GBP,"
        "900.00,120.00,3,bnpl,A,LDS",
        "E2E-BAD-ZONE,Bad Zone,+15555550198,z@example.com,Nowhere,Mars/Olympus,US,USD,10.00,5.00,5,bnpl,A,X",
        f"{ids[1]},Duplicate,+15555550123,dup@example.com,Somewhere,America/New_York,US,USD,10.00,5.00,5,bnpl,A,X",
    ]
    path.write_text("\n".join(rows) + "\n")
    return path, ids


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _cli(address: str, *args: str) -> str:
    result = subprocess.run([str(DEV_SERVER), *args, "--address", address, "--output", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _eventually(probe, seconds: float = 60, every: float = 0.5):
    """Await ``probe()`` until it returns something true, for at most ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(every)


async def test_intake_workers_and_operators_work_together_on_the_dev_server(
        dev_server, address, run_env, worker_process, tmp_path: Path):
    client: Client = dev_server.client
    csv_path, ids = _portfolio(tmp_path / "portfolio.csv", uuid.uuid4().hex[:6])

    # Intake: valid rows start, each bad row is reported with its line and reason, exit 1.
    first = _run([sys.executable, "starter.py", "--file", str(csv_path), "--strategy", "demo"], run_env)
    assert first.returncode == 1, first.stderr
    assert "intake: 3 started, 0 new episode, 0 already running, 0 already existed, 3 rejected" in first.stdout
    assert f"{csv_path}:4: rejected: outstanding_amount: 'lots' is not a decimal number" in first.stderr
    assert f"{csv_path}:6: rejected: timezone: 'Mars/Olympus' is not an IANA time zone" in first.stderr
    assert f"{csv_path}:7: rejected: loan_id: {ids[1]} repeats line 3" in first.stderr
    # Idempotent: a second run starts nothing new.
    again = _run([sys.executable, "starter.py", "--file", str(csv_path), "--strategy", "demo"], run_env)
    assert "intake: 0 started, 0 new episode, 3 already running, 3 already existed, 3 rejected" in again.stdout

    # The worker registered the search attributes; supervisors can filter on them.
    async def contact_cases():
        found = [w.id async for w in client.list_workflows(f'CollectionStage = "contact" AND WorkflowId = "loan-{ids[1]}"')]
        return found
    assert await _eventually(contact_cases) == [f"loan-{ids[1]}"]

    # Operators drive cases with the temporal CLI: an update answers with the new status...
    wid = f"loan-{ids[0]}"
    due = (date.today() + timedelta(days=3)).isoformat()
    out = _cli(address, "workflow", "update", "execute", "--workflow-id", wid, "--name", "promise_to_pay",
               "--input", json.dumps({"amount": "800.00", "due_date": due, "agent": "agent-7"}))
    updated = json.loads(out)
    state = updated.get("result", updated)
    assert state["promise"]["state"] == "pending" and state["paused"] is True
    # ... a refused update names the field and the reason ...
    refused = subprocess.run([str(DEV_SERVER), "workflow", "update", "execute", "--address", address,
                              "--workflow-id", wid, "--name", "payment_received",
                              "--input", json.dumps({"amount": "-3", "reference": "X"})],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "amount: must be positive" in (refused.stdout + refused.stderr)
    # ... signals apply, and an invalid one is recorded, not fatal.
    _cli(address, "workflow", "signal", "--workflow-id", wid, "--name", "payment_received",
         "--input", json.dumps({"amount": "800.00", "reference": "BANK-1"}))
    _cli(address, "workflow", "signal", "--workflow-id", wid, "--name", "hardship", "--input", json.dumps({}))

    async def promise_kept():
        state = await client.get_workflow_handle(wid).query("status")
        return state if state["promise"]["state"] == "kept" and any(
            e["status"] == "rejected" and e["kind"] == "hardship" for e in state["events"]) else None
    state = await _eventually(promise_kept)
    assert state["amount_past_due"] == "3000.00" and state["paused"] is False
    queried = json.loads(_cli(address, "workflow", "query", "--workflow-id", wid, "--type", "status"))
    assert queried["queryResult"][0]["loan_id"] == ids[0]

    # Paying the arrears cures the case; the workflow completes.
    _cli(address, "workflow", "signal", "--workflow-id", wid, "--name", "payment_received",
         "--input", json.dumps({"amount": "3000.00", "reference": "BANK-2"}))
    result = await client.get_workflow_handle(wid).result()
    assert result["outcome"] == "cured"

    # The handlers are discoverable (the UI lists them) through the workflow's metadata.
    metadata = await client.get_workflow_handle(f"loan-{ids[2]}").query("__temporal_workflow_metadata")
    assert {"promise_to_pay", "hardship", "payment_received"} <= {s.name for s in metadata.definition.signal_definitions}
    assert {"promise_to_pay", "close"} <= {u.name for u in metadata.definition.update_definitions}

    # Messages landed in the outbox; the worker logged JSON with loan ids and no borrower data.
    data = Path(run_env["ARREARS_DATA_DIR"])
    assert list((data / "outbox" / "sms").glob(f"{ids[0]}*.json"))
    sms = json.loads(next((data / "outbox" / "sms").glob(f"{ids[0]}*.json")).read_text())
    assert "温馨提示" in sms["body"] and "TD" in sms["body"]

    worker_process.send_signal(signal.SIGTERM)
    assert worker_process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in worker_process.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "worker stopped" for line in lines)
    assert any(line.get("loan_id") == ids[0] and line.get("event") == "sms_sent" for line in lines)
    assert any(line.get("workflow_id") == wid for line in lines)
    log_text = worker_process.log_path.read_text()
    for personal in ("Wang Fang", "+8613800000123", "wang@example.cn", "88 Example Road"):
        assert personal not in log_text


def test_starter_refuses_a_file_without_the_required_columns(run_env, tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("loan_id,amount\nX,1\n")
    result = _run([sys.executable, "starter.py", "--file", str(bad)], run_env)
    assert result.returncode == 2
    assert "header lacks required columns: borrower_name" in result.stderr


def test_starter_refuses_an_unknown_strategy(run_env, tmp_path: Path):
    path, _ = _portfolio(tmp_path / "p.csv", "S")
    result = _run([sys.executable, "starter.py", "--file", str(path), "--strategy", "aggressive"], run_env)
    assert result.returncode == 2 and "no such strategy (available: default, demo, early_contact)" in result.stderr


def test_starter_reports_an_unreachable_server_in_one_line(tmp_path: Path):
    path, _ = _portfolio(tmp_path / "p.csv", "U")
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    result = _run([sys.executable, "starter.py", "--file", str(path), "--strategy", "demo"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach Temporal at 127.0.0.1:1")
    assert "Traceback" not in result.stderr


def test_starter_refuses_a_file_that_is_not_utf8(run_env, tmp_path: Path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes((HEADER + "\nX,Jos\xe9,+15555550123,a@example.com,x,UTC,US,USD,1.00,1.00,5,bnpl,A,x\n").encode("latin-1"))
    result = _run([sys.executable, "starter.py", "--file", str(bad)], run_env)
    assert result.returncode == 2 and "not UTF-8 text" in result.stderr


async def test_an_operator_agrees_an_arrangement_with_the_cli_and_supervisors_can_filter_on_it(
        dev_server, address, run_env, tmp_path: Path):
    client: Client = dev_server.client
    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=run_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        csv_path, ids = _portfolio(tmp_path / "plan.csv", uuid.uuid4().hex[:6])
        _run([sys.executable, "starter.py", "--file", str(csv_path), "--strategy", "default"], run_env)
        wid = f"loan-{ids[1]}"  # USD 450.00 past due
        today = date.today()
        plan = {"kind": "instalments", "approved_by": "agent-7", "instalments": [
            {"due_date": (today + timedelta(days=14)).isoformat(), "amount": "225.00"},
            {"due_date": (today + timedelta(days=44)).isoformat(), "amount": "225.00"}]}
        out = json.loads(_cli(address, "workflow", "update", "execute", "--workflow-id", wid,
                              "--name", "propose_arrangement", "--input", json.dumps(plan)))
        state = out.get("result", out)
        assert state["arrangement"]["state"] == "active" and state["arrangement"]["next_amount"] == "225.00"

        async def listed():
            return [w.id async for w in client.list_workflows(f'ArrangementState = "active" AND WorkflowId = "{wid}"')]
        assert await _eventually(listed) == [wid]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
