"""``make run``: the engine on one machine, on the embedded defaults.

Starts the Temporal dev server (SQLite file under .data/, Web UI), registers
the search attributes, starts a worker, loads the sample portfolio with the
``demo`` strategy, prints where to look and what to try, and shows how many
cases stand in each stage until Ctrl-C stops everything. A second run resumes
the same cases: the SQLite file keeps them, and intake does not duplicate them.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from infra.client import connect
from infra.codec import generate_key
from infra.settings import Settings
from workflows.search_attributes import ALL_KEYS, COLLECTION_STAGE

BIN = Path(sys.executable).parent
PORTFOLIO = Path("examples/portfolio.csv")
UI_PORT = int(os.environ.get("ARREARS_UI_PORT", "8233"))
CODEC_PORT = int(os.environ.get("ARREARS_CODEC_PORT", "8081"))
CODEC = f"http://localhost:{CODEC_PORT}"
DESK_PORT = int(os.environ.get("ARREARS_DESK_PORT", "8000"))
DESK = f"http://127.0.0.1:{DESK_PORT}"
_SA_TYPES = {"KEYWORD": "Keyword", "INT": "Int", "DOUBLE": "Double", "BOOL": "Bool", "DATETIME": "Datetime"}


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait_for_port(host: str, port: int, process: subprocess.Popen, seconds: float = 60, *,
                   name: str = "the Temporal dev server", log: str = "server.log") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited early (code {process.returncode}); see .data/{log}")
        if _port_open(host, port):
            return
        time.sleep(0.3)
    raise SystemExit(f"{name} did not open {host}:{port} within {seconds:.0f}s")


def start_server(settings: Settings) -> subprocess.Popen:
    host, _, port = settings.temporal_address.rpartition(":")
    host = host or "127.0.0.1"
    if _port_open(host, int(port)):
        raise SystemExit(f"{settings.temporal_address} is already in use: stop the other server, "
                         "or set TEMPORAL_ADDRESS to a free port")
    attributes = [arg for key in ALL_KEYS
                  for arg in ("--search-attribute", f"{key.name}={_SA_TYPES[key.indexed_value_type.name]}")]
    log = (settings.data_dir / "server.log").open("ab")
    server = subprocess.Popen(
        [str(BIN / "temporal"), "server", "start-dev", "--db-filename", str(settings.data_dir / "temporal.sqlite"),
         "--ip", host if host != "localhost" else "127.0.0.1", "--port", port, "--ui-port", str(UI_PORT),
         "--namespace", settings.temporal_namespace, "--log-level", "warn", "--ui-disable-news-fetch",
         "--ui-codec-endpoint", CODEC, *attributes],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_for_port("127.0.0.1" if host == "localhost" else host, int(port), server)
    return server


def payload_keys(settings: Settings) -> str:
    """The demo's encryption keys: ARREARS_PAYLOAD_KEYS, or one made on the first run and kept in
    .data/payload-keys (mode 0600): the cases in .data/temporal.sqlite cannot be read without it."""
    if settings.payload_keys:
        return settings.payload_keys
    path = settings.data_dir / "payload-keys"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(generate_key() + "\n")
    return path.read_text().strip()


def start_codec_server(settings: Settings, env: dict[str, str]) -> subprocess.Popen:
    """The codec server the Web UI and the temporal CLI decrypt case payloads through (loopback only)."""
    if _port_open("127.0.0.1", CODEC_PORT):
        raise SystemExit(f"port {CODEC_PORT} is already in use: set ARREARS_CODEC_PORT to a free port")
    codec = subprocess.Popen(
        [sys.executable, "-m", "infra.codec_server", "--port", str(CODEC_PORT),
         "--origin", f"http://localhost:{UI_PORT}", "--origin", f"http://127.0.0.1:{UI_PORT}"],
        env=env, stdout=(settings.data_dir / "codec.log").open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True)
    _wait_for_port("127.0.0.1", CODEC_PORT, codec, name="the codec server", log="codec.log")
    return codec


def desk_admin(settings: Settings, env: dict[str, str]) -> str:
    """The desk's first user, ``admin``, made on the first run; its password is kept in
    .data/desk-admin (mode 0600). Returns where the password is, or why there is none."""
    path = settings.data_dir / "desk-admin"
    if path.exists():
        return f"password in {path}"
    made = subprocess.run([sys.executable, "-m", "desk", "users", "add", "admin", "--role", "admin"],
                          capture_output=True, text=True, env=env)
    if made.returncode != 0:
        return f"not made: {made.stderr.strip()}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(made.stdout.strip().splitlines()[-1] + "\n")
    return f"password in {path} (made now, mode 0600)"


def start_desk(settings: Settings, env: dict[str, str]) -> subprocess.Popen:
    """The desk (python -m desk serve): where people and the bank's systems act on cases."""
    if _port_open("127.0.0.1", DESK_PORT):
        raise SystemExit(f"port {DESK_PORT} is already in use: set ARREARS_DESK_PORT to a free port")
    desk = subprocess.Popen([sys.executable, "-m", "desk", "serve", "--port", str(DESK_PORT)], env=env,
                            stdout=(settings.data_dir / "desk.log").open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    _wait_for_port("127.0.0.1", DESK_PORT, desk, name="the desk", log="desk.log")
    return desk


def banner(example_loan: str, admin: str = "") -> str:
    wid = f"loan-{example_loan}"
    return f"""
  Arrears is running (demo strategy: the whole ladder in under three minutes; NOT for production).

  Temporal UI     http://localhost:{UI_PORT}/namespaces/default/workflows
                  filter:  CollectionStage = "contact"     or   CollectionPaused = true
  Logs            .data/worker.log  .data/server.log     Outbox: .data/outbox/  Queues: .data/queues/  Letters (PDF): .data/letters/
  Case ledger     .data/arrears.db (every attempt, the audit trail, work queues; ARREARS_DATABASE_URL for PostgreSQL)

  Payloads      encrypted (AES-256-GCM; keys: ARREARS_PAYLOAD_KEYS or .data/payload-keys); the UI and the CLI decrypt through {CODEC}

  Desk (API)      {DESK}/api/v1/openapi.json     log in: {DESK}/login as admin ({admin})
                  people and systems act on cases here, as who they are; a token for a supervisor:
    .venv/bin/python -m desk users add sup-1 --role supervisor      # prints a password, last line
    .venv/bin/python -m desk tokens create sup-1                     # prints a token, last line
    export ARREARS_DESK_URL={DESK} ARREARS_DESK_TOKEN=<the token>
    .venv/bin/arrears case {example_loan}
    .venv/bin/arrears send {example_loan} assign agent=agent-7
    .venv/bin/arrears work calls --all                               # as agent-7: arrears report ITEM no_answer

  Try, as the supervisor (arrears sends through the desk, which stamps who acted):
    .venv/bin/arrears send {example_loan} promise_to_pay amount=100.00 due_date={time.strftime('%Y-%m-%d')}
    .venv/bin/arrears send {example_loan} hardship "reason=job loss"
    .venv/bin/arrears send {example_loan} payment_received amount=50.00 reference=PAY-0001

  Read-only in Temporal (the temporal CLI is .venv/bin/temporal; the codec endpoint shows clear text):
    export TEMPORAL_CODEC_ENDPOINT={CODEC}
    .venv/bin/temporal workflow query  --workflow-id {wid} --type status
    .venv/bin/temporal workflow list --query 'CollectionStage="litigation"'

  Ctrl-C stops everything; `make run` again resumes the same cases.
"""


async def tally(settings: Settings) -> str:
    client = await connect(settings)
    counts: collections.Counter[str] = collections.Counter()
    async for execution in client.list_workflows("WorkflowType = 'LoanCollectionWorkflow'"):
        if execution.status is not None and execution.status.name != "RUNNING":
            counts["closed"] += 1
        else:
            counts[execution.typed_search_attributes.get(COLLECTION_STAGE) or "starting"] += 1
    order = ["starting", "reminder", "contact", "field_visit", "legal_letter", "litigation", "closed"]
    return "  cases: " + " · ".join(f"{name} {counts[name]}" for name in order if counts[name] or name != "starting")


def _stop(process: subprocess.Popen | None, name: str, seconds: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop in {seconds:.0f}s; killing it")
        process.kill()
        process.wait()


def main() -> int:
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(settings, payload_keys=payload_keys(settings))
    env = {**os.environ, "ARREARS_PAYLOAD_KEYS": settings.payload_keys or ""}
    server = worker = codec = desk = None
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"  starting the payload codec server on {CODEC}")
        codec = start_codec_server(settings, env)
        print(f"  starting the Temporal dev server on {settings.temporal_address} (data: {settings.data_dir}/temporal.sqlite)")
        server = start_server(settings)
        print("  starting a worker")
        worker = subprocess.Popen([sys.executable, "worker.py"], stdout=(settings.data_dir / "worker.log").open("ab"),
                                  stderr=subprocess.STDOUT, start_new_session=True, env=env)
        admin = desk_admin(settings, env)
        print(f"  starting the desk on {DESK}")
        desk = start_desk(settings, env)
        print(f"  loading {PORTFOLIO} with the demo strategy")
        intake = subprocess.run([sys.executable, "starter.py", "--file", str(PORTFOLIO), "--strategy", "demo"],
                                capture_output=True, text=True, env=env)
        print("  " + (intake.stdout.strip() or intake.stderr.strip()))
        if intake.returncode == 2:
            print(intake.stderr)
            return 2
        first_loan = next(line.split(",")[0] for line in PORTFOLIO.read_text().splitlines()[1:] if line.strip())
        print(banner(first_loan, admin))
        while not interrupted:
            if worker.poll() is not None:
                print(f"  the worker exited (code {worker.returncode}); see {settings.data_dir}/worker.log")
                return 1
            if desk.poll() is not None:
                print(f"  the desk exited (code {desk.returncode}); see {settings.data_dir}/desk.log")
                return 1
            if server.poll() is not None:
                print(f"  the dev server exited (code {server.returncode}); see {settings.data_dir}/server.log")
                return 1
            try:
                print(asyncio.run(tally(settings)), flush=True)
            except Exception as err:  # the tally is a convenience; never let it stop the stack
                print(f"  (could not count cases: {err})")
            for _ in range(100):
                if interrupted:
                    break
                time.sleep(0.1)
        print("\n  stopping: worker first (finishing in-flight tasks), then the server")
        return 0
    finally:
        _stop(desk, "desk")
        _stop(worker, "worker")
        _stop(server, "dev server")
        _stop(codec, "codec server")
        print("  stopped")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
