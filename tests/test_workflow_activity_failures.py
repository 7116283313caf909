"""A channel that keeps failing is recorded as failed; the case carries on (activities replaced by name)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import ContactReceipt, ContactRequest
from tests.conftest import events, make_loan, settings_for, start_case, status
from worker import build_activities, build_worker

ATTEMPTS: list[str] = []


@activity.defn(name="send_sms")
async def sms_provider_refuses(request: ContactRequest) -> ContactReceipt:
    ATTEMPTS.append(request.idempotency_key)
    raise ApplicationError("provider says the number is invalid", type="InvalidRecipient", non_retryable=True)


async def test_a_non_retryable_channel_failure_is_recorded_and_the_case_carries_on(env, data_dir):
    real = build_activities(settings_for(data_dir)).all()
    activities = [a for a in real if getattr(a, "__temporal_activity_definition").name != "send_sms"]
    async with build_worker(env.client, settings_for(data_dir), task_queue=f"tq-{uuid.uuid4().hex}",
                            activities=[*activities, sms_provider_refuses]) as worker:
        handle = await start_case(env.client, worker)
        await env.sleep(timedelta(days=3))
        state = await status(handle)
    failed = events(state, "sms_failed", "failed")
    assert len(failed) == 2 and "number is invalid" in failed[0]["reason"]
    # Not retried: one attempt per message, each under its own key.
    assert len(ATTEMPTS) == 2 and len(set(ATTEMPTS)) == 2
    # The e-mail channel still works and the case is still collecting.
    assert len(events(state, "email_sent", "sent")) == 1 and state["outcome"] is None


LETTER_ATTEMPTS: list[int] = []


@activity.defn(name="issue_letter")
async def letter_printer_jams_twice(request: ContactRequest) -> ContactReceipt:
    LETTER_ATTEMPTS.append(activity.info().attempt)
    if activity.info().attempt < 3:
        raise RuntimeError("printer jammed")
    return ContactReceipt(idempotency_key=request.idempotency_key, channel="letter", message_id="m",
                          location="/letters/x.txt", sha256="0" * 64)


async def test_the_legal_letter_is_retried_until_it_is_issued(env, data_dir):
    real = build_activities(settings_for(data_dir)).all()
    activities = [a for a in real if getattr(a, "__temporal_activity_definition").name != "issue_letter"]
    async with build_worker(env.client, settings_for(data_dir), task_queue=f"tq-{uuid.uuid4().hex}",
                            activities=[*activities, letter_printer_jams_twice]) as worker:
        handle = await start_case(env.client, worker, make_loan(days_past_due=95))
        await env.sleep(timedelta(days=1))
        state = await status(handle)
    assert LETTER_ATTEMPTS == [1, 2, 3]
    assert len(events(state, "letter_sent", "sent")) == 1 and not events(state, "letter_failed")
