"""Exactly-once effects: a retried activity, or a worker killed mid-send, never texts twice.

Every effect is claimed in the ledger under its idempotency key (loan, sequence, stage, action;
not the run id) before the provider is called, and confirmed after.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from activities.channels import CollectionActivities
from activities.models import ContactReceipt, ContactRequest
from domain.stages import Stage
from infra.settings import Settings
from ledger import Ledger
from tests.conftest import (
    NO_RULES,
    ROOT,
    events,
    make_loan,
    settings_for,
    status,
    strategy,
)
from tests.ledger_fixtures import BACKENDS, scratch_database
from worker import build_activities, build_worker
from workflows.inputs import CaseInput, case_workflow_id
from workflows.loan_collection import LoanCollectionWorkflow

# One text, then nothing for a long while: the reminder stage with a single SMS.
ONE_TEXT = strategy().model_copy(deep=True)
ONE_TEXT.stages[Stage.REMINDER].treatments[:] = ONE_TEXT.stages[Stage.REMINDER].treatments[:1]
ONE_TEXT.stages[Stage.REMINDER].treatments[0] = ONE_TEXT.stages[Stage.REMINDER].treatments[0].model_copy(
    update={"at": [timedelta(0)]})


class Counting(CollectionActivities):
    """The real activities, counting what reaches the provider, and failing where a test says."""

    def __init__(self, base: CollectionActivities, *, lose_first_answer: bool = False,
                 provider_down_first: bool = False) -> None:
        super().__init__(ledger=base.ledger, outbox=base.outbox, templates=base.templates, sender=base.sender,
                         field_agents=base.field_agents, press=base.press)
        self.delivered: list[str] = []
        self.lose_first_answer = lose_first_answer
        self.provider_down_first = provider_down_first

    async def _sms(self, request: ContactRequest) -> ContactReceipt:
        if self.provider_down_first and activity.info().attempt == 1:
            raise TimeoutError("provider did not answer")
        receipt = await super()._sms(request)
        self.delivered.append(request.idempotency_key)
        return receipt

    @activity.defn(name="send_sms")
    async def send_sms(self, request: ContactRequest) -> ContactReceipt:
        receipt = await super().send_sms(request)
        if self.lose_first_answer and activity.info().attempt == 1:
            raise RuntimeError("connection lost before the result reached Temporal")
        return receipt


async def _start(client: Client, task_queue: str):
    loan = make_loan()
    return loan, await client.start_workflow(
        LoanCollectionWorkflow.run, CaseInput(loan=loan, strategy=ONE_TEXT, compliance=NO_RULES),
        id=case_workflow_id(loan.loan_id), task_queue=task_queue)


async def _run_with(env, data_dir: Path, **failures) -> tuple[Counting, dict, list[dict]]:
    activities = Counting(build_activities(settings_for(data_dir)), **failures)
    try:
        async with build_worker(env.client, settings_for(data_dir), task_queue=f"tq-{uuid.uuid4().hex}",
                                activities=activities) as worker:
            loan, handle = await _start(env.client, worker.task_queue)
            await env.sleep(timedelta(hours=1))
            state = await status(handle)
        return activities, state, await activities.ledger.attempts(loan.loan_id)
    finally:
        await activities.ledger.close()


async def test_a_retry_after_the_send_finds_it_in_the_ledger_and_sends_nothing(env, data_dir):
    activities, state, attempts = await _run_with(env, data_dir, lose_first_answer=True)
    assert len(activities.delivered) == 1, "the provider got the text once"
    assert [(a["channel"], a["state"], a["tries"]) for a in attempts] == [("sms", "sent", 1)]
    assert len(list((data_dir / "outbox" / "sms").glob("*.json"))) == 1
    assert len(events(state, "sms_sent", "sent")) == 1


async def test_a_retry_after_a_provider_timeout_sends_once_and_counts_the_tries(env, data_dir):
    activities, state, attempts = await _run_with(env, data_dir, provider_down_first=True)
    assert len(activities.delivered) == 1
    assert [(a["state"], a["tries"]) for a in attempts] == [("sent", 2)]
    assert attempts[0]["provider_message_id"] and attempts[0]["location"].endswith(".json")
    assert len(events(state, "sms_sent", "sent")) == 1


async def _status_once_taken_over(handle) -> dict:
    """The query first goes to the dead worker's sticky queue; ask again until the new one answers."""
    for _ in range(30):
        try:
            return await handle.query("status", rpc_timeout=timedelta(seconds=3))
        except RPCError:
            await asyncio.sleep(1)
    raise AssertionError("no worker answered the status query")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_worker_killed_mid_send_is_replaced_and_the_text_still_goes_once(env, data_dir, tmp_path, backend):
    async with scratch_database(backend, tmp_path) as url:
        await _killed_mid_send(env, data_dir, url)


async def _killed_mid_send(env, data_dir: Path, url: str) -> None:
    settings = Settings(data_dir=data_dir, database_url=url)
    task_queue = f"tq-{uuid.uuid4().hex}"
    address = env.client.service_client.config.target_host
    crashing = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", address, task_queue, str(data_dir)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "ARREARS_DATABASE_URL": url})
    try:
        loan, handle = await _start(env.client, task_queue)
        for _ in range(600):
            if crashing.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert crashing.returncode == -9, crashing.stderr.read().decode()[-2000:] if crashing.stderr else ""
    finally:
        if crashing.poll() is None:
            crashing.kill()
    sms = list((data_dir / "outbox" / "sms").glob("*.json"))
    assert len(sms) == 1, "the provider has the text"
    ledger = Ledger.connect(settings.ledger_url)
    try:
        before = await ledger.attempts(loan.loan_id)
        assert [(a["state"], a["tries"]) for a in before] == [("sending", 1)], "claimed, never confirmed"

        # A new worker takes over. The server holds its clock while the dead worker's activity is
        # out, so the 30-second start-to-close timeout runs in real time; then the retry comes here.
        replacement = build_activities(settings, ledger)
        async with build_worker(env.client, settings, task_queue=task_queue,
                                activities=replacement):
            for _ in range(240):
                after = await ledger.attempts(loan.loan_id)
                if after[0]["state"] == "sent":
                    break
                await asyncio.sleep(0.5)
            state = await _status_once_taken_over(handle)
    finally:
        await ledger.close()
    assert [(a["state"], a["tries"]) for a in after] == [("sent", 2)]
    assert list((data_dir / "outbox" / "sms").glob("*.json")) == sms, "still one text, the same one"
    sent = events(state, "sms_sent", "sent")
    assert len(sent) == 1 and sent[0]["detail"]["idempotency_key"] == after[0]["idempotency_key"]
