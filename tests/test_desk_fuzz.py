"""The desk's API fuzzed from its own OpenAPI document (schemathesis): whatever arrives, the desk
answers it without a server error. The desk runs as `python -m desk serve`, as in production, in
front of a worker on the Temporal dev server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
import schemathesis

from tests.conftest import ROOT
from tests.desk_fixtures import Desk

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]
EXAMPLES = int(os.environ.get("ARREARS_FUZZ_EXAMPLES", "8"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fuzz(url: str, headers: dict[str, str], loan_id: str) -> list[str]:
    """Every operation, with valid and invalid input, on an unknown and on a real case: the
    server errors seen (none expected)."""
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    errors: list[str] = []
    calls: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in ({}, {"loan_id": loan_id}):
                if path_parameters and "{loan_id}" not in operation.path:
                    continue
                strategy = operation.as_strategy(generation_mode=mode, headers=headers,
                                                 path_parameters=path_parameters or None)

                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(strategy)
                def one(case: Any) -> None:
                    calls.append(case.method)
                    response = case.call(base_url=url, headers=headers, timeout=60)
                    if response.status_code >= 500:
                        errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                      f"{response.text[:300]}")

                try:
                    one()
                except Unsatisfiable:
                    continue  # nothing to make invalid (an operation without parameters or body)
    assert len(calls) >= 100, f"only {len(calls)} requests were made"
    return errors


async def test_no_input_makes_the_desk_fail(desk: Desk) -> None:
    port = _free_port()
    base = desk.desk.settings.base
    env = {**os.environ, "ARREARS_DATA_DIR": str(base.data_dir),
           "TEMPORAL_ADDRESS": desk.env.client.service_client.config.target_host, "ARREARS_DESK_PORT": str(port)}
    env.pop("ARREARS_DATABASE_URL", None)
    env.pop("ARREARS_PAYLOAD_KEYS", None)
    server = subprocess.Popen([sys.executable, "-m", "desk", "serve"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=url) as http:
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "the desk did not start"
                await asyncio.sleep(0.2)
        loan_id, _ = await desk.case()
        # A supervisor's token: every operation is open to it, so the fuzzing reaches the case.
        errors = await asyncio.to_thread(fuzz, url, desk.auth("s1"), loan_id)
        assert errors == [], "\n".join(errors[:20])
        # And the desk is still answering afterwards.
        async with httpx.AsyncClient(base_url=url, headers=desk.auth("s1")) as http:
            assert (await http.get(f"/api/v1/cases/{loan_id}")).status_code == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output[-2000:]
