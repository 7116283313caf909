"""The demo with real channels, end to end on the dev server: worker.py and starter.py as processes,
e-mail to a real SMTP server, SMS to a local HTTP provider, letters on disk; the worker is killed
mid-run and replaced, and the ledger still holds every attempt once, all of them sent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from tests.conftest import ROOT
from tests.sms_provider_stub import SmsProviderStub

pytestmark = pytest.mark.e2e

HEADER = ("loan_id,borrower_name,phone,email,address,timezone,jurisdiction,currency,outstanding_amount,"
          "amount_past_due,days_past_due,product,risk_grade")


@pytest.fixture
def provider() -> Iterator[SmsProviderStub]:
    with SmsProviderStub() as stub:
        yield stub


def _portfolio(path: Path, tag: str) -> None:
    loans = {
        f"E2C-{tag}-US-REMIND": "US,USD,5000.00,450.00,5,America/New_York,+15555550123,ada@example.com",
        f"E2C-{tag}-CN-REMIND": "CN,CNY,52000.00,3800.00,5,Asia/Shanghai,+8613800000123,wang@example.cn",
        f"E2C-{tag}-US-LETTER": "US,USD,9000.00,2400.00,95,America/Chicago,+15555550124,bo@example.com",
        f"E2C-{tag}-CN-LETTER": "CN,CNY,88000.00,9100.00,95,Asia/Shanghai,+8613800000124,li@example.cn",
    }
    rows = [HEADER]
    for loan_id, fields in loans.items():
        jur, cur, outstanding, past_due, dpd, zone, phone, mail = fields.split(",")
        rows.append(f"{loan_id},Borrower {loan_id[-6:]},{phone},{mail},\"1 Example Road, Town\",{zone},{jur},{cur},"
                    f"{outstanding},{past_due},{dpd},personal_loan,B")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _worker(run_env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=run_env, stdout=out,
                                stderr=subprocess.STDOUT)


async def _attempts(ledger: Ledger) -> list[dict]:
    try:
        return await ledger.attempts()
    except Exception:  # noqa: BLE001 - the worker has not created the schema yet
        return []


async def _until(predicate, what: str, seconds: float = 90.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_demo_delivers_real_mail_texts_and_letters_once_even_when_the_worker_is_killed(
        address, tmp_path, mailbox, smtp_url, provider):
    data = tmp_path / "data"
    run_env = {**os.environ, "TEMPORAL_ADDRESS": address, "ARREARS_DATA_DIR": str(data),
               "ARREARS_TASK_QUEUE": f"e2c-{uuid.uuid4().hex[:8]}", "ARREARS_SMTP_URL": smtp_url,
               "ARREARS_SMS_URL": provider.url}
    run_env.pop("ARREARS_DATABASE_URL", None)
    _portfolio(tmp_path / "loans.csv", uuid.uuid4().hex[:6])
    log = tmp_path / "worker.log"
    first = _worker(run_env, log)
    ledger = Ledger.connect(f"sqlite:///{data / 'arrears.db'}")
    second = None
    try:
        intake = subprocess.run([sys.executable, "starter.py", "--file", str(tmp_path / "loans.csv"),
                                 "--strategy", "demo"], cwd=ROOT, env=run_env, capture_output=True, text=True,
                                timeout=120)
        assert intake.returncode == 0, intake.stdout + intake.stderr
        # Kill the worker as soon as the first messages are out: the rest is still to come.
        await _until(lambda: _sent_count(ledger, 2), "the first two messages")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = _worker(run_env, log)
        # Reminder loans: two SMS and an e-mail each; letter loans: the validation notice (US) and the letter.
        expected = {"US-REMIND": {"sms": 2, "email": 1}, "CN-REMIND": {"sms": 2, "email": 1},
                    "US-LETTER": {"letter": 1}, "CN-LETTER": {"letter": 1}}

        async def complete():
            attempts = await _attempts(ledger)
            return all(sum(1 for a in attempts if a["loan_id"].endswith(kind) and a["channel"] == channel
                           and a["state"] == "sent") >= count
                       for kind, channels in expected.items() for channel, count in channels.items()) and attempts

        attempts = await _until(complete, "every loan's messages", seconds=120)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        await ledger.close()

    # The ledger: one row per key (the unique constraint), every one of them sent.
    keys = [a["idempotency_key"] for a in attempts]
    assert len(keys) == len(set(keys)) and all(a["state"] == "sent" for a in attempts), attempts
    # SMS: the provider delivered one message per key; a key sent again after the kill was de-duplicated.
    sms_keys = {a["idempotency_key"] for a in attempts if a["channel"] == "sms"}
    assert sorted(m.idempotency_key for m in provider.messages) == sorted(sms_keys)
    # E-mail: every message in the ledger arrived at the SMTP server, in the borrower's language.
    mailed = {m["X-Arrears-Idempotency-Key"]: m for m in mailbox.messages}
    assert set(mailed) == {a["idempotency_key"] for a in attempts if a["channel"] == "email"}
    cn_mail = next(m for k, m in mailed.items() if "CN-REMIND" in k)
    assert "退订" in cn_mail.get_content() or "账户" in cn_mail.get_content()
    # Letters: files a person can open, referenced by path and hash.
    letters = [a for a in attempts if a["channel"] == "letter"]
    assert letters and all(Path(a["location"]).exists() and a["sha256"] for a in letters)
    assert sum(1 for line in log.read_text().splitlines() if '"worker started"' in line) == 2


async def _sent_count(ledger: Ledger, at_least: int) -> bool:
    return sum(1 for a in await _attempts(ledger) if a["state"] == "sent") >= at_least
