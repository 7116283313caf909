"""A contact carries the last instant it may reach the borrower (``not_after``): past it the activity
refuses for good (``ContactWindowPassed``), contacts nobody and records the attempt as not sent, so the
case can defer it under a new key; a send confirmed before still answers with its receipt. A call task
carries the window in which the agent may dial (``callable_from`` / ``callable_until``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.models import CaseFacts, ContactRequest, WorkItemRequest
from infra.settings import Settings
from tests.conftest import make_loan
from tests.mail_server import Mailbox
from tests.sms_provider_stub import SmsProviderStub
from worker import build_activities

FACTS = CaseFacts(stage="contact", days_past_due=40, amount_past_due="450.00", outstanding="5000.00", agent="a1")
CHANNELS = {"sms": ("send_sms", "reminder_soft"), "email": ("send_email", "repayment_options"),
            "letter": ("issue_letter", "legal_letter")}


def _past() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture
def provider() -> Iterator[SmsProviderStub]:
    with SmsProviderStub() as stub:
        yield stub


@pytest.fixture
async def activities(provider: SmsProviderStub, smtp_url: str, data_dir: Path, ledger):
    """Every channel at a real endpoint (SMS provider, SMTP server), the ledger on SQLite and PostgreSQL."""
    built = build_activities(Settings(data_dir=data_dir, sms_url=provider.url, smtp_url=smtp_url,
                                      letter_processes=0), ledger)
    built.sms.backoff = built.sms.max_backoff = 0.01
    try:
        yield built
    finally:
        await built.aclose()


def _request(channel: str, not_after: datetime | None) -> ContactRequest:
    return ContactRequest(idempotency_key=f"{uuid.uuid4().hex[:8]}/00007/contact/{channel}", loan=make_loan(),
                          template=CHANNELS[channel][1], facts=FACTS, not_after=not_after)


async def _attempt(activities, key: str) -> dict:
    [attempt] = [a for a in await activities.ledger.attempts() if a["idempotency_key"] == key]
    return attempt


def _kept_files(data_dir: Path) -> list[Path]:
    return [p for folder in ("outbox", "letters") for p in (data_dir / folder).rglob("*") if p.is_file()]


@pytest.mark.parametrize("channel", sorted(CHANNELS))
async def test_a_contact_past_its_not_after_is_refused_for_good_and_reaches_nobody(
        channel: str, activities, provider: SmsProviderStub, mailbox: Mailbox, data_dir: Path) -> None:
    deadline = _past()
    request = _request(channel, deadline)
    with pytest.raises(ApplicationError) as refused:
        await getattr(activities, CHANNELS[channel][0])(request)
    assert refused.value.type == "ContactWindowPassed" and refused.value.non_retryable
    assert deadline.isoformat() in refused.value.message, "the refusal names the instant"
    assert provider.requests == [] and mailbox.messages == [], "nobody was contacted"
    assert _kept_files(data_dir) == [], "no message or letter was kept as if it had gone out"
    attempt = await _attempt(activities, request.idempotency_key)
    assert attempt["state"] == "failed" and attempt["reason"].startswith("ContactWindowPassed")
    assert attempt["provider_message_id"] is None
    # The case tries again later under a new key, within the new window: it goes out, once.
    again = _request(channel, _later())
    receipt = await getattr(activities, CHANNELS[channel][0])(again)
    assert (await _attempt(activities, again.idempotency_key))["state"] == "sent"
    assert receipt.channel == channel
    assert len(provider.messages) + len(mailbox.messages) == (1 if channel != "letter" else 0)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
async def test_a_contact_within_its_not_after_or_without_one_goes_out(
        channel: str, activities, provider: SmsProviderStub, mailbox: Mailbox) -> None:
    for not_after in (_later(), None):
        request = _request(channel, not_after)
        await getattr(activities, CHANNELS[channel][0])(request)
        assert (await _attempt(activities, request.idempotency_key))["state"] == "sent"
    assert len(provider.messages) + len(mailbox.messages) == (2 if channel != "letter" else 0)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
async def test_a_send_confirmed_before_answers_with_its_receipt_even_past_not_after(
        channel: str, activities, provider: SmsProviderStub, mailbox: Mailbox) -> None:
    request = _request(channel, _later())
    first = await getattr(activities, CHANNELS[channel][0])(request)
    # Temporal retries after a lost completion, by when the window has passed: the same receipt, nothing sent.
    late = request.model_copy(update={"not_after": _past()})
    again = await getattr(activities, CHANNELS[channel][0])(late)
    assert again == first
    assert len(provider.requests) + len(mailbox.messages) == (1 if channel != "letter" else 0)
    assert (await _attempt(activities, request.idempotency_key))["state"] == "sent"


# -- call tasks ----------------------------------------------------------------------------------

def _call(callable_from: datetime | None, callable_until: datetime | None) -> WorkItemRequest:
    return WorkItemRequest(idempotency_key=f"{uuid.uuid4().hex[:8]}/00009/contact/call", loan=make_loan(),
                           facts=FACTS, callable_from=callable_from, callable_until=callable_until)


async def test_a_call_task_carries_when_the_agent_may_dial_in_the_ledger_and_its_queue_file(activities) -> None:
    opens = datetime(2031, 3, 4, 13, 0, tzinfo=UTC)
    closes = datetime(2031, 3, 5, 2, 0, tzinfo=UTC)
    request = _call(opens, closes)
    item = await activities.create_call_task(request)
    stored = await activities.ledger.work_item(request.idempotency_key)
    assert (stored.payload["callable_from"], stored.payload["callable_until"]) == (
        "2031-03-04T13:00:00+00:00", "2031-03-05T02:00:00+00:00")
    assert stored.payload["timezone"] == "America/New_York"
    queued = json.loads(Path(item.location).read_text(encoding="utf-8"))
    assert (queued["callable_from"], queued["callable_until"]) == (stored.payload["callable_from"],
                                                                   stored.payload["callable_until"])


async def test_a_call_task_without_a_window_says_so(activities) -> None:
    request = _call(None, None)
    await activities.create_call_task(request)
    payload = (await activities.ledger.work_item(request.idempotency_key)).payload
    assert payload["callable_from"] is None and payload["callable_until"] is None


async def test_a_call_task_whose_window_has_closed_reaches_no_agent(activities, data_dir: Path) -> None:
    request = _call(_past() - timedelta(hours=8), _past())
    with pytest.raises(ApplicationError) as refused:
        await activities.create_call_task(request)
    assert refused.value.type == "ContactWindowPassed" and refused.value.non_retryable
    assert await activities.ledger.open_work("calls") == []
    assert not (data_dir / "queues" / "calls").exists() or not any((data_dir / "queues" / "calls").iterdir())


async def test_a_call_task_queued_in_time_is_answered_again_after_its_window(activities) -> None:
    request = _call(_past(), _later())
    first = await activities.create_call_task(request)
    late = request.model_copy(update={"callable_until": _past()})
    assert await activities.create_call_task(late) == first
    assert [i.item_id for i in await activities.ledger.open_work("calls")] == [first.item_id]


@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_without_a_provider_the_outbox_is_the_channel_and_a_late_message_never_lands_there(
        channel: str, data_dir: Path) -> None:
    outbox_only = build_activities(Settings(data_dir=data_dir, letter_processes=0))
    try:
        request = _request(channel, _past())
        with pytest.raises(ApplicationError, match="may reach the borrower until") as refused:
            await getattr(outbox_only, CHANNELS[channel][0])(request)
        assert refused.value.type == "ContactWindowPassed"
        assert _kept_files(data_dir) == []
        assert (await _attempt(outbox_only, request.idempotency_key))["state"] == "failed"
    finally:
        await outbox_only.aclose()
