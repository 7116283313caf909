"""The worker's capacity as settings, its start, and a provider's rate limit (dev server, worker.py).

- What one worker takes on at once is set per queue and sizes the ledger's pool; a bad value is
  refused, naming the setting.
- The worker polls at once on a fresh machine: nothing to prepare, no cache written; it takes
  letters only once its rendering processes are ready.
- An SMS provider's rate limit is the SMS queue's rate limit: a burst of texts goes out at the
  provider's pace instead of failing against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.harness import ROOT, WorkerProcess, address_of, dev_server, environment, until_quiet
from infra.settings import Settings
from tests.sms_provider_stub import SmsProviderStub

HEADER = ("loan_id,borrower_name,phone,email,address,timezone,jurisdiction,currency,outstanding_amount,"
          "amount_past_due,days_past_due,product,risk_grade")


def _portfolio(path: Path, count: int, tag: str) -> None:
    rows = [HEADER] + [f"R-{tag}-{n:03d},Borrower {n},+4477009001{n:02d},b{n}@example.com,\"1 Road, Town\","
                       f"Europe/London,UK,GBP,4000.00,300.00,5,personal_loan,B" for n in range(count)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_capacity_settings_size_the_ledger_pool_and_bad_values_are_named():
    settings = Settings.from_env({"ARREARS_ACTIVITY_SLOTS": "20", "ARREARS_SMS_SLOTS": "4", "ARREARS_EMAIL_SLOTS": "6",
                                  "ARREARS_LETTER_PROCESSES": "3", "ARREARS_SMS_RATE": "2.5"})
    assert (settings.activity_slots, settings.sms_slots, settings.email_slots) == (20, 4, 6)
    assert settings.letter_processes == 3 and settings.sms_rate == 2.5 and settings.email_rate is None
    assert settings.ledger_connections == 20 + 4 + 6 + 3 + 1  # a connection for every slot (the sync's too)
    for env, message in [({"ARREARS_SMS_RATE": "fast"}, "ARREARS_SMS_RATE: 'fast' is not a number"),
                         ({"ARREARS_EMAIL_RATE": "0"}, "ARREARS_EMAIL_RATE: must be more than 0"),
                         ({"ARREARS_ACTIVITY_SLOTS": "0"}, "ARREARS_ACTIVITY_SLOTS: must be at least 1"),
                         ({"ARREARS_WORKFLOW_CACHE": "lots"}, "ARREARS_WORKFLOW_CACHE: 'lots' is not a whole number"),
                         ({"ARREARS_LETTER_PROCESSES": "-1"}, "ARREARS_LETTER_PROCESSES: must be at least 0")]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)


@pytest.mark.e2e
async def test_the_worker_polls_at_once_on_a_fresh_machine_and_takes_letters_once_it_can_print(tmp_path):
    home = tmp_path / "home"  # a machine that has never run Arrears: no caches, nothing prepared
    home.mkdir()
    async with dev_server(tmp_path / "server") as server:
        env = environment(address_of(server), tmp_path / "data", HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            await worker.ready(letters=True)
        finally:
            assert worker.stop() == 0
    log = (tmp_path / "worker.log").read_text()
    assert log.index('"worker started"') < log.index('"letter press ready"') < log.index('"letters started"')
    assert not list(home.rglob("*")), "the worker wrote into the user's home (a cache?)"


@pytest.mark.e2e
async def test_a_burst_of_texts_goes_out_at_the_providers_rate_limit(tmp_path):
    texts, rate = 16, 2.0
    tag = uuid.uuid4().hex[:6]
    _portfolio(tmp_path / "loans.csv", texts, tag)
    with SmsProviderStub() as provider:
        async with dev_server(tmp_path / "server") as server:
            env = environment(address_of(server), tmp_path / "data", ARREARS_SMS_URL=provider.url,
                              ARREARS_SMS_RATE=str(rate))
            intake = subprocess.run([sys.executable, "starter.py", "--file", str(tmp_path / "loans.csv"),
                                     "--strategy", "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=120)
            assert intake.returncode == 0, intake.stdout + intake.stderr
            worker = WorkerProcess(env, tmp_path / "worker.log").start()
            try:
                await worker.ready(letters=False)
                await until_quiet(lambda: len(provider.requests), 60, idle=0.5, quiet_for=4)
            finally:
                worker.stop()
        arrivals = sorted(r.at for r in provider.requests)
    assert len({r.idempotency_key for r in provider.requests}) >= texts  # every borrower's first text
    # The server's limiter lets a short burst through, then holds the queue to its rate: the first
    # texts of a burst of sixteen, which would all leave at once otherwise, take seconds to go out.
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= 2 * rate + 2, f"{busiest} texts within one second at a limit of {rate}/s"
    burst = 3 * rate
    assert arrivals[texts - 1] - arrivals[0] >= (texts - burst) / rate, [round(t - arrivals[0], 2) for t in arrivals]
    assert worker.log_faults()["activity attempt failed"] == 0


def test_the_worker_keeps_bytecode_of_its_own_where_python_may_not_write_any(tmp_path):
    """The sandbox imports the workflow modules for every case: compiled once into a folder of the
    worker's, never into the source tree, even under PYTHONDONTWRITEBYTECODE."""
    code = ("import sys; from pathlib import Path; from infra.bytecode import keep_bytecode; "
            "keep_bytecode(Path(sys.argv[1])); import workflows.loan_collection as m; print(m.__cached__)")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cache = tmp_path / "bytecode"
    source_cache = ROOT / "workflows" / "__pycache__"
    before = set(source_cache.iterdir()) if source_cache.exists() else set()
    done = subprocess.run([sys.executable, "-c", code, str(cache)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cached = Path(done.stdout.strip())
    assert cached.is_file() and cache in cached.parents and cached.name.startswith("loan_collection.")
    assert (set(source_cache.iterdir()) if source_cache.exists() else set()) == before


async def test_a_send_queued_on_the_cases_queue_before_the_upgrade_still_runs(env, data_dir):
    """A case's SMS scheduled on ``collections`` by an earlier version (in retry across the deploy)."""
    from activities.models import CaseFacts, ContactRequest
    from tests.conftest import make_loan, settings_for
    from tests.legacy_send import LegacySend
    from worker import WORKFLOWS, build_activities, build_worker

    activities = build_activities(settings_for(data_dir))
    loan = make_loan()
    request = ContactRequest(idempotency_key=f"{loan.loan_id}/00001/reminder/sms", loan=loan, template="reminder_soft",
                             facts=CaseFacts(stage="reminder", days_past_due=5, amount_past_due="450.00",
                                             outstanding="5000.00"))
    try:
        async with build_worker(env.client, settings_for(data_dir), task_queue=f"tq-{uuid.uuid4().hex}",
                                activities=activities, workflows=[*WORKFLOWS, LegacySend]) as workers:
            receipt = await env.client.execute_workflow(LegacySend.run, request.model_dump(mode="json"),
                                                        id=f"legacy-{loan.loan_id}", task_queue=workers.task_queue)
        assert receipt["channel"] == "sms"
        assert [a["state"] for a in await activities.ledger.attempts(loan.loan_id)] == ["sent"]
    finally:
        await activities.aclose()


async def test_cases_start_with_their_search_attributes_once_the_namespace_has_them(tmp_path):
    """Intake on a namespace that lacks the attributes registers them, but starts that first batch
    without (the server may take seconds to accept new ones); the next intake sets them at start."""
    from temporalio.api.enums.v1 import EventType

    async with dev_server(tmp_path / "server") as server:
        env = environment(address_of(server), tmp_path / "data")
        started = []
        for batch in ("first", "second"):
            _portfolio(tmp_path / f"{batch}.csv", 2, f"{batch}-{uuid.uuid4().hex[:4]}")
            intake = subprocess.run([sys.executable, "starter.py", "--file", str(tmp_path / f"{batch}.csv")],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert intake.returncode == 0 and "2 started" in intake.stdout, intake.stdout + intake.stderr
            loan_id = (tmp_path / f"{batch}.csv").read_text().splitlines()[1].split(",")[0]
            history = await server.client.get_workflow_handle(f"loan-{loan_id}").fetch_history()
            first = history.events[0]
            assert first.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
            started.append(set(first.workflow_execution_started_event_attributes.search_attributes.indexed_fields))
    assert started[0] == set()
    assert {"CollectionStage", "DaysPastDue", "RiskGrade", "OutstandingAmount", "CollectionPaused"} <= started[1]
