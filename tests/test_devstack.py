"""`make run`'s dev stack as a process: starts, loads the sample portfolio, stops on Ctrl-C, resumes."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_until(env: dict[str, str], wanted: str, seconds: float = 90,
               while_running: Callable[[], None] | None = None) -> tuple[int, str]:
    """Start the stack, wait for ``wanted`` in its output, then (after ``while_running``) press Ctrl-C;
    return exit code and output."""
    process = subprocess.Popen([sys.executable, "-m", "infra.devstack"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    deadline = time.monotonic() + seconds
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if wanted in line or time.monotonic() > deadline:
                break
        if while_running is not None:
            while_running()
        process.send_signal(signal.SIGINT)
        output.append(process.stdout.read())
        return process.wait(timeout=60), "".join(output)
    finally:
        if process.poll() is None:
            process.kill()


def test_the_dev_stack_loads_the_portfolio_stops_cleanly_and_resumes(tmp_path: Path):
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}", "ARREARS_UI_PORT": str(_free_port()),
           "ARREARS_CODEC_PORT": str(_free_port()), "ARREARS_DATA_DIR": str(tmp_path / "data"),
           "ARREARS_DESK_PORT": str(_free_port())}
    env.pop("ARREARS_PAYLOAD_KEYS", None)
    desk = f"http://127.0.0.1:{env['ARREARS_DESK_PORT']}"
    admin_file = tmp_path / "data" / "desk-admin"

    def the_admin_logs_in_to_the_desk() -> None:
        with httpx.Client(base_url=desk) as http:
            page = http.get("/login")
            csrf = page.cookies["arrears_login_csrf"]
            answer = http.post("/login", data={"username": "admin", "password": admin_file.read_text().strip(),
                                               "csrf_token": csrf}, follow_redirects=True)
            assert answer.status_code == 200 and answer.json()["role"] == "admin", answer.text
            assert http.get("/api/v1/openapi.json").json()["info"]["title"] == "Arrears desk"

    code, first = _run_until(env, "cases: reminder", while_running=the_admin_logs_in_to_the_desk)
    assert code == 0, first
    assert "intake: 56 started, 0 new episode, 0 already running, 0 already existed, 0 rejected" in first
    assert f"http://localhost:{env['ARREARS_UI_PORT']}/namespaces/default/workflows" in first
    assert "stopped" in first
    # The desk runs beside the UI; its first user, admin, has a password only its owner may read.
    assert f"{desk}/login as admin" in first and "python -m desk tokens create" in first
    assert admin_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "temporal.sqlite").exists()
    # The demo encrypts payloads with a key of its own, kept private beside the cases it opens.
    keys = tmp_path / "data" / "payload-keys"
    assert keys.stat().st_mode & 0o777 == 0o600 and f"http://localhost:{env['ARREARS_CODEC_PORT']}" in first
    # No borrower's name, phone or e-mail in the server's store: they travel encrypted.
    stored = (tmp_path / "data" / "temporal.sqlite").read_bytes()
    rows = list(csv.DictReader((ROOT / "examples" / "portfolio.csv").open(encoding="utf-8")))
    assert b"binary/encrypted" in stored
    assert [r["loan_id"] for r in rows if any(r[f].encode() in stored for f in ("borrower_name", "phone", "email"))] == []

    password = admin_file.read_text()
    code, second = _run_until(env, "cases: reminder", while_running=the_admin_logs_in_to_the_desk)
    assert code == 0, second
    assert "intake: 0 started, 0 new episode, 56 already running, 56 already existed, 0 rejected" in second
    assert admin_file.read_text() == password  # made once: the second run logs in with the first's password
