"""The worker's capacity as settings, its start, and a provider's rate limit (dev server, worker.py).

- What one worker takes on at once is set per queue and sizes the ledger's pool; a bad value is
  refused, naming the setting.
- The worker polls at once on a fresh machine: nothing to prepare, no cache written; it takes
  letters only once its rendering processes are ready.
- An SMS provider's rate limit is the SMS queue's rate limit: a burst of texts goes out at the
  provider's pace instead of failing against it.
"""

from __future__ import annotations

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
    assert settings.ledger_connections == 20 + 4 + 6 + 3  # a connection for every slot: none waits for one
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
