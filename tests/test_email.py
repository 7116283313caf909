"""E-mail over SMTP against a real SMTP server (aiosmtpd): what arrives, in which language, once;
deferrals retried, refusals recorded for good; and a case on the time-skipping server mailing through it."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import update
from temporalio.exceptions import ApplicationError

from activities.channels import CollectionActivities
from activities.models import CaseFacts, ContactRequest
from activities.smtp import mailer_from_url
from infra.settings import Settings
from ledger.schema import contact_attempts
from tests.conftest import events, make_loan, start_case, status
from tests.mail_server import free_port, serve
from worker import build_activities, build_worker

FACTS = CaseFacts(stage="reminder", days_past_due=12, amount_past_due="450.00", outstanding="5000.00")


@pytest.fixture
async def mailing(smtp_url: str, data_dir: Path, ledger):
    """The e-mail activity over SMTP, its ledger on SQLite and on PostgreSQL (the `ledger` fixture)."""
    activities = build_activities(Settings(data_dir=data_dir, smtp_url=smtp_url), ledger)
    try:
        yield activities
    finally:
        await activities.aclose()


def _request(template: str = "reminder_soft", **loan) -> ContactRequest:
    return ContactRequest(idempotency_key=f"{uuid.uuid4().hex[:8]}/00001/reminder/email", loan=make_loan(**loan),
                          template=template, facts=FACTS)


async def _attempt(activities: CollectionActivities, key: str) -> dict:
    [attempt] = [a for a in await activities.ledger.attempts() if a["idempotency_key"] == key]
    return attempt


# -- delivery ----------------------------------------------------------------------------------

async def test_a_long_idempotency_key_arrives_whole_in_its_header(mailing, mailbox):
    """A key with the loan's episode makes the header line longer than the 78 columns a header is folded
    at by default: folded onto its own line, it read back with a space in it and matched no ledger row."""
    loan = make_loan(loan_id="US-REMIND-000000412")
    request = ContactRequest(idempotency_key=f"{loan.loan_id}/2026-11-26.2/00003/reminder/email", loan=loan,
                             template="reminder_soft", facts=FACTS)
    await mailing.send_email(request)
    [message] = mailbox.messages
    assert message["X-Arrears-Idempotency-Key"] == request.idempotency_key


async def test_an_email_arrives_over_smtp_with_the_sender_the_amount_and_the_opt_out(mailing, mailbox, data_dir):
    request = _request("repayment_options")
    receipt = await mailing.send_email(request)
    [message] = mailbox.messages
    assert mailbox.envelopes == [("collections@arrears.example", ["ada@example.com"])]
    assert message["To"] == "ada@example.com" and message["Message-ID"] == f"<{receipt.message_id}@arrears>"
    assert message["X-Arrears-Idempotency-Key"] == request.idempotency_key
    body = message.get_content()
    assert "Arrears Demo Bank" in body and "USD 450.00" in body and "UNSUBSCRIBE" in body
    attempt = await _attempt(mailing, request.idempotency_key)
    assert (attempt["state"], attempt["tries"], attempt["channel"]) == ("sent", 1, "email")
    # The server has it: the outbox keeps no copy naming the borrower; the ledger keeps its hash.
    assert receipt.location == "" and not (data_dir / "outbox").exists()
    assert attempt["sha256"] == receipt.sha256 and len(receipt.sha256) == 64


async def test_outbox_copies_keep_the_message_that_went_out_when_asked_for(smtp_url, mailbox, data_dir, ledger):
    activities = build_activities(Settings(data_dir=data_dir, smtp_url=smtp_url, outbox_copies=True), ledger)
    try:
        receipt = await activities.send_email(_request("repayment_options"))
    finally:
        await activities.aclose()
    [message] = mailbox.messages
    kept = email.message_from_bytes(Path(receipt.location).read_bytes(), policy=policy.default)
    assert kept["Message-ID"] == message["Message-ID"]
    assert kept.get_content().replace("\r\n", "\n") == message.get_content().replace("\r\n", "\n")


async def test_without_a_copy_a_retry_renders_the_same_message_dated_by_its_claim(mailing, mailbox, ledger):
    """The worker died after the server took the e-mail and before the ledger heard: the retry sends
    the same bytes (SMTP cannot fold it; mail clients fold by Message-ID), dated when first claimed."""
    request = _request("repayment_options")
    claimed = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    await ledger.claim(request.idempotency_key, loan_id=request.loan.loan_id, jurisdiction="US", channel="email",
                       template=request.template, retain_until=claimed.date() + timedelta(days=1000))
    stamp = update(contact_attempts).where(contact_attempts.c.idempotency_key == request.idempotency_key)
    async with ledger.engine.begin() as connection:
        await connection.execute(stamp.values(created_at=claimed))
    first = await mailing.send_email(request)
    async with ledger.engine.begin() as connection:
        await connection.execute(stamp.values(state="sending"))
    again = await mailing.send_email(request)
    assert [parsedate_to_datetime(m["Date"]) for m in mailbox.messages] == [claimed, claimed]
    assert again.sha256 == first.sha256 and again.message_id == first.message_id
    assert (await _attempt(mailing, request.idempotency_key))["sha256"] == first.sha256


async def test_a_chinese_borrower_gets_the_chinese_template_intact(mailing, mailbox):
    await mailing.send_email(_request("repayment_options", jurisdiction="CN", currency="CNY",
                                      timezone="Asia/Shanghai", phone="+8613800138000"))
    [message] = mailbox.messages
    assert "逾期" in message["Subject"] or "账户" in message["Subject"]
    body = message.get_content()
    assert "退订" in body and "CNY 450.00" in body and "Arrears Demo Bank" in body


async def test_a_retried_email_activity_does_not_mail_the_borrower_again(mailing, mailbox):
    request = _request()
    first = await mailing.send_email(request)
    again = await mailing.send_email(request)
    assert len(mailbox.messages) == 1
    assert again.message_id == first.message_id and again.location == first.location
    assert (await _attempt(mailing, request.idempotency_key))["tries"] == 1


async def test_a_server_that_says_try_later_is_retried_and_the_message_arrives_once(mailing, mailbox):
    mailbox.defer = 1
    request = _request()
    with pytest.raises(ApplicationError) as deferred:
        await mailing.send_email(request)
    assert deferred.value.type == "SmtpUnavailable" and not deferred.value.non_retryable
    assert "451" in deferred.value.message
    assert (await _attempt(mailing, request.idempotency_key))["state"] == "sending"
    await mailing.send_email(request)  # Temporal's retry
    assert len(mailbox.messages) == 1
    attempt = await _attempt(mailing, request.idempotency_key)
    assert (attempt["state"], attempt["tries"]) == ("sent", 2)


async def test_a_refused_address_fails_for_good_is_recorded_and_is_not_named_in_the_error(mailing, mailbox):
    mailbox.refuse.add("gone@example.com")
    request = _request(email="gone@example.com")
    with pytest.raises(ApplicationError) as refused:
        await mailing.send_email(request)
    assert refused.value.type == "EmailRejected" and refused.value.non_retryable
    assert "550" in refused.value.message and "gone@example.com" not in refused.value.message
    attempt = await _attempt(mailing, request.idempotency_key)
    assert attempt["state"] == "failed" and attempt["reason"].startswith("EmailRejected")
    assert mailbox.messages == []


async def test_a_server_that_is_down_is_a_retryable_failure(data_dir):
    activities = build_activities(Settings(data_dir=data_dir, smtp_url=f"smtp://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(ApplicationError) as down:
            await activities.send_email(_request())
    finally:
        await activities.ledger.close()
    assert down.value.type == "SmtpUnavailable" and not down.value.non_retryable
    assert "smtp://127.0.0.1" in down.value.message


class _Accounts:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) in {
            (b"arrears", b"s3cret"), ("arrears", "s3cret")}
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize(("password", "delivered"), [("s3cret", 1), ("wrong", 0)])
async def test_the_mailer_logs_in_with_the_credentials_in_the_url(mailbox, data_dir, password, delivered):
    for url in serve(mailbox, authenticator=_Accounts(), auth_required=True, auth_require_tls=False):
        settings = Settings(data_dir=data_dir, smtp_url=url.replace("smtp://", f"smtp://arrears:{password}@"))
        activities = build_activities(settings)
        try:
            if delivered:
                await activities.send_email(_request())
            else:
                with pytest.raises(ApplicationError, match="refused the login .*ARREARS_SMTP_URL") as refused:
                    await activities.send_email(_request())
                assert not refused.value.non_retryable and password not in refused.value.message
        finally:
            await activities.ledger.close()
    assert len(mailbox.messages) == delivered


@pytest.mark.parametrize(("url", "reason"), [
    ("http://mail.example", "scheme must be smtp or smtps"),
    ("smtp://", "no host"),
    ("smtp://mail.example:port", "Port could not be cast"),
    ("smtp://mail.example?starttls=maybe", "starttls must be one of auto, required, off"),
])
def test_a_bad_smtp_url_names_the_setting_and_the_reason(url, reason):
    with pytest.raises(ValueError, match=f"ARREARS_SMTP_URL: .*{reason}"):
        mailer_from_url(url)


def test_smtp_urls_as_users_write_them():
    assert mailer_from_url(None) is None and mailer_from_url("") is None
    plain = mailer_from_url("smtp://mail.example")
    assert (plain.port, plain.implicit_tls, plain.starttls, plain.username) == (25, False, "auto", None)
    tls = mailer_from_url("smtps://bank%40mail:p%2Fw@mail.example")
    assert (tls.port, tls.implicit_tls, tls.username, tls.password) == (465, True, "bank@mail", "p/w")
    assert tls.address == "smtps://mail.example:465"
    assert mailer_from_url("smtp://mail.example:587?starttls=required").starttls == "required"


# -- a case mails through the server -------------------------------------------------------------

async def test_a_case_on_the_time_skipping_server_mails_the_borrower_through_smtp(env, smtp_url, mailbox, data_dir):
    settings = Settings(data_dir=data_dir, smtp_url=smtp_url)
    activities = build_activities(settings)
    try:
        async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                activities=activities) as worker:
            handle = await start_case(env.client, worker)
            await env.sleep(timedelta(days=3))
            state = await status(handle)
        ledger_emails = [a for a in await activities.ledger.attempts() if a["channel"] == "email"]
    finally:
        await activities.ledger.close()
    sent = events(state, "email_sent", "sent")
    assert len(sent) >= 1 and len(mailbox.messages) == len(sent) == len(ledger_emails)
    assert {m["X-Arrears-Idempotency-Key"] for m in mailbox.messages} == {a["idempotency_key"] for a in ledger_emails}
    assert all(a["state"] == "sent" for a in ledger_emails)
