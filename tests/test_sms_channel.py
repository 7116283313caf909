"""The SMS channel through the HTTP provider adapter, against a local provider: delivered once under
its key, retried when the provider is down, refusals recorded; a case stops texting a borrower the
provider reports opted out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from temporalio.exceptions import ApplicationError

from activities.models import CaseFacts, ContactRequest
from infra.settings import Settings
from ledger.schema import contact_attempts
from tests.conftest import events, make_loan, start_case, status
from tests.sms_provider_stub import Reply, SmsProviderStub
from worker import build_activities, build_worker

FACTS = CaseFacts(stage="reminder", days_past_due=12, amount_past_due="450.00", outstanding="5000.00")


@pytest.fixture
def provider() -> Iterator[SmsProviderStub]:
    with SmsProviderStub(credentials=("arrears", "s3cret")) as stub:
        yield stub


def _settings(data_dir: Path, provider: SmsProviderStub) -> Settings:
    return Settings(data_dir=data_dir, sms_url=provider.url, sms_from="DEMOBANK")


@pytest.fixture
async def texting(provider, data_dir, ledger):
    """The SMS activity over HTTP, its ledger on SQLite and on PostgreSQL (the `ledger` fixture)."""
    activities = build_activities(_settings(data_dir, provider), ledger)
    activities.sms.backoff = activities.sms.max_backoff = 0.01  # keep retries fast in tests
    try:
        yield activities
    finally:
        await activities.aclose()


def _request(**loan) -> ContactRequest:
    return ContactRequest(idempotency_key=f"{uuid.uuid4().hex[:8]}/00001/reminder/sms", loan=make_loan(**loan),
                          template="reminder_soft", facts=FACTS)


async def _attempt(activities, key: str) -> dict:
    [attempt] = [a for a in await activities.ledger.attempts() if a["idempotency_key"] == key]
    return attempt


async def test_a_text_reaches_the_provider_once_with_the_provider_message_id_in_the_ledger(texting, provider):
    request = _request(jurisdiction="CN", currency="CNY", timezone="Asia/Shanghai", phone="+8613800138000")
    receipt = await texting.send_sms(request)
    [message] = provider.messages
    assert (message.to, message.sender, message.idempotency_key) == ("+8613800138000", "DEMOBANK",
                                                                    request.idempotency_key)
    assert "退订" in message.body and "Arrears Demo Bank" in message.body
    assert provider.requests[0].auth == ("arrears", "s3cret")
    assert receipt.message_id == message.message_id
    attempt = await _attempt(texting, request.idempotency_key)
    assert (attempt["state"], attempt["provider_message_id"]) == ("sent", message.message_id)
    again = await texting.send_sms(request)  # Temporal retried after a lost completion
    assert again.message_id == message.message_id and len(provider.requests) == 1


async def test_with_a_provider_no_copy_is_kept_and_a_retry_after_a_crash_sends_the_same_text_once(
        texting, provider, data_dir):
    request = _request()
    first = await texting.send_sms(request)
    assert first.location == "" and not (data_dir / "outbox").exists(), "the text names the borrower"
    # The worker died after the provider took the text and before the ledger heard of it.
    async with texting.ledger.engine.begin() as connection:
        await connection.execute(update(contact_attempts).where(
            contact_attempts.c.idempotency_key == request.idempotency_key).values(state="sending"))
    again = await texting.send_sms(request)
    assert len(provider.requests) == 2 and provider.requests[0].payload == provider.requests[1].payload
    assert len(provider.messages) == 1 and again.message_id == first.message_id
    attempt = await _attempt(texting, request.idempotency_key)
    assert (attempt["state"], attempt["tries"], attempt["sha256"]) == ("sent", 2, first.sha256)
    assert again.sha256 == first.sha256 and not (data_dir / "outbox").exists()


async def test_outbox_copies_keep_each_text_when_asked_for(provider, data_dir, ledger):
    activities = build_activities(Settings(data_dir=data_dir, sms_url=provider.url, outbox_copies=True), ledger)
    activities.sms.backoff = activities.sms.max_backoff = 0.01
    try:
        receipt = await activities.send_sms(_request())
    finally:
        await activities.aclose()
    assert Path(receipt.location).parent == data_dir / "outbox" / "sms"
    assert json.loads(Path(receipt.location).read_text(encoding="utf-8"))["body"] == provider.messages[0].body


async def test_a_provider_that_is_down_is_retried_and_the_text_goes_out_once(texting, provider):
    provider.script(Reply(503), Reply(503), Reply(503))
    request = _request()
    with pytest.raises(ApplicationError) as down:
        await texting.send_sms(request)
    assert down.value.type == "SmsProviderUnavailable" and not down.value.non_retryable
    assert (await _attempt(texting, request.idempotency_key))["state"] == "sending"
    await texting.send_sms(request)  # the activity's next try
    assert len(provider.messages) == 1 and len(provider.requests) == 4
    assert {r.idempotency_key for r in provider.requests} == {request.idempotency_key}
    assert (await _attempt(texting, request.idempotency_key))["tries"] == 2


@pytest.mark.parametrize(("error", "kind"), [("invalid_number", "InvalidPhoneNumber"), ("opted_out", "OptedOut")])
async def test_a_refusal_is_final_and_recorded_without_the_number(texting, provider, error, kind):
    provider.script(Reply(400, {"error": error, "message": "refused +1 555 555 0123"}))
    request = _request()
    with pytest.raises(ApplicationError) as refused:
        await texting.send_sms(request)
    assert refused.value.type == kind and refused.value.non_retryable
    attempt = await _attempt(texting, request.idempotency_key)
    assert attempt["state"] == "failed" and attempt["reason"].startswith(kind)
    assert "555" not in attempt["reason"] and provider.messages == []


async def test_a_case_stops_texting_a_borrower_the_provider_reports_opted_out(env, provider, data_dir):
    provider.script(Reply(400, {"error": "opted_out"}))
    settings = _settings(data_dir, provider)
    activities = build_activities(settings)
    try:
        async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                activities=activities) as worker:
            handle = await start_case(env.client, worker, make_loan(days_past_due=5))
            await env.sleep(timedelta(days=14))
            state = await status(handle)
    finally:
        await activities.aclose()
    assert len(events(state, "sms_failed", "failed")) == 1
    assert events(state, "opt_out_at_provider")[0]["detail"]["channel"] == "sms"
    assert "sms" in state["ceased_channels"]
    assert provider.messages == [] and len(provider.requests) == 1, "no text after the opt-out"
    assert len(events(state, "email_sent", "sent")) >= 2, "other channels go on"
