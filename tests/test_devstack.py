"""`make run`'s dev stack as a process: starts, loads the sample portfolio, stops on Ctrl-C, resumes."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_until(env: dict[str, str], wanted: str, seconds: float = 90) -> tuple[int, str]:
    """Start the stack, wait for ``wanted`` in its output, then press Ctrl-C; return exit code and output."""
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
        process.send_signal(signal.SIGINT)
        output.append(process.stdout.read())
        return process.wait(timeout=60), "".join(output)
    finally:
        if process.poll() is None:
            process.kill()


def test_the_dev_stack_loads_the_portfolio_stops_cleanly_and_resumes(tmp_path: Path):
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}", "ARREARS_UI_PORT": str(_free_port()),
           "ARREARS_CODEC_PORT": str(_free_port()), "ARREARS_DATA_DIR": str(tmp_path / "data")}
    env.pop("ARREARS_PAYLOAD_KEYS", None)
    code, first = _run_until(env, "cases: reminder")
    assert code == 0, first
    assert "intake: 56 started, 0 already existed, 0 rejected" in first
    assert f"http://localhost:{env['ARREARS_UI_PORT']}/namespaces/default/workflows" in first
    assert "stopped" in first
    assert (tmp_path / "data" / "temporal.sqlite").exists()
    # The demo encrypts payloads with a key of its own, kept private beside the cases it opens.
    keys = tmp_path / "data" / "payload-keys"
    assert keys.stat().st_mode & 0o777 == 0o600 and f"http://localhost:{env['ARREARS_CODEC_PORT']}" in first
    # No borrower's name, phone or e-mail in the server's store: they travel encrypted.
    stored = (tmp_path / "data" / "temporal.sqlite").read_bytes()
    rows = list(csv.DictReader((ROOT / "examples" / "portfolio.csv").open(encoding="utf-8")))
    assert b"binary/encrypted" in stored
    assert [r["loan_id"] for r in rows if any(r[f].encode() in stored for f in ("borrower_name", "phone", "email"))] == []

    code, second = _run_until(env, "cases: reminder")
    assert code == 0, second
    assert "intake: 0 started, 56 already existed, 0 rejected" in second
