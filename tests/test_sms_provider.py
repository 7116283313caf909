"""The HTTP SMS adapter against a real local HTTP server: retries, refusals, credentials, privacy."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import pytest_asyncio
from structlog.testing import capture_logs
from temporalio.exceptions import ApplicationError

from activities.sms_provider import HttpSmsProvider, SmsError, sms_provider_from_url
from tests.sms_provider_stub import Reply, SmsProviderStub

PHONE = "+15555550123"
BODY = "Ada, your payment of $450.00 is 5 days late."
KEY = "T-0001:1:reminder:sms"
FAST = {"timeout": 2.0, "attempts": 4, "backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture
def stub() -> Iterator[SmsProviderStub]:
    with SmsProviderStub(credentials=("arrears", "s3cr3t-token")) as running:
        yield running


@pytest_asyncio.fixture
async def provider(stub: SmsProviderStub) -> AsyncIterator[HttpSmsProvider]:
    sms = HttpSmsProvider(stub.url, **FAST)
    yield sms
    await sms.aclose()


async def send(sms: HttpSmsProvider, key: str = KEY) -> str:
    return await sms.send(to=PHONE, body=BODY, sender="Arrears", idempotency_key=key)


async def refused(sms: HttpSmsProvider) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await send(sms)
    assert PHONE not in str(caught.value) and PHONE not in caught.value.message
    return caught.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_message_goes_out_with_the_protocols_json_headers_and_basic_auth(stub, provider):
    message_id = await send(provider)

    assert message_id == "SM000001"
    [request] = stub.requests
    assert request.path == "/v1/messages"
    assert request.payload == {"to": PHONE, "from": "Arrears", "body": BODY, "reference": KEY}
    assert request.headers["idempotency-key"] == KEY
    assert request.headers["content-type"] == "application/json"
    assert request.auth == ("arrears", "s3cr3t-token")
    assert [m.to for m in stub.messages] == [PHONE]


async def test_credentials_leave_the_url_and_are_never_logged(stub, caplog):
    caplog.set_level(logging.DEBUG)
    async with HttpSmsProvider(stub.url, **FAST) as sms:
        assert sms.url == stub.base_url
        with capture_logs() as logs:
            stub.script(Reply(503))
            await send(sms)
    assert len(stub.requests) == 2
    logged = repr(logs) + caplog.text
    assert logs and "s3cr3t-token" not in logged and PHONE not in logged and BODY not in logged
    assert any(entry["event"] == "sms_provider_accepted" and entry["attempt"] == 2 for entry in logs)


async def test_percent_encoded_credentials_are_decoded_for_basic_auth():
    with SmsProviderStub(credentials=("acct@example", "p:ss/word")) as stub:
        url = f"http://acct%40example:p%3Ass%2Fword@127.0.0.1:{stub.port}/v1/messages"
        async with HttpSmsProvider(url, **FAST) as sms:
            await send(sms)
        assert stub.requests[0].auth == ("acct@example", "p:ss/word")


async def test_two_503s_then_success_sends_three_times_with_one_idempotency_key(stub, provider):
    stub.script(Reply(503), Reply(503, {"error": "overloaded"}))

    assert await send(provider) == "SM000001"

    assert len(stub.requests) == 3
    assert {r.headers["idempotency-key"] for r in stub.requests} == {KEY}
    assert {r.payload["reference"] for r in stub.requests} == {KEY}
    assert len(stub.messages) == 1


async def test_a_timeout_is_retried_and_the_provider_deduplicates_by_key(stub):
    # The provider accepts the message but answers too late: the retry must get the same message id.
    stub.script(Reply(200, delay=1.0))
    async with HttpSmsProvider(stub.url, timeout=0.3, attempts=3, backoff=0.01) as sms:
        started = time.monotonic()
        message_id = await send(sms)
        elapsed = time.monotonic() - started

    assert message_id == "SM000001"
    assert len(stub.requests) == 2 and len(stub.messages) == 1
    assert stub.requests[0].headers["idempotency-key"] == stub.requests[1].headers["idempotency-key"] == KEY
    assert 0.3 <= elapsed < 1.0  # gave up on the slow answer at the timeout, did not wait it out


async def test_a_slowly_dripping_answer_is_cut_off_at_the_timeout(stub):
    # Each byte arrives well within the read timeout, the whole answer does not: one attempt is bounded.
    stub.script(Reply(200, drip=0.1))
    async with HttpSmsProvider(stub.url, timeout=0.4, attempts=2, backoff=0.01) as sms:
        started = time.monotonic()
        assert await send(sms) == "SM000001"
        elapsed = time.monotonic() - started
    assert len(stub.requests) == 2 and len(stub.messages) == 1
    assert elapsed < 1.5


async def test_exhausting_the_attempts_raises_a_retryable_unavailable_error(stub, provider):
    stub.script(*[Reply(500)] * 4)

    err = await refused(provider)

    assert isinstance(err, SmsError)
    assert err.type == "SmsProviderUnavailable" and not err.non_retryable
    assert "4 attempt" in err.message and "HTTP 500" in err.message
    assert len(stub.requests) == 4 and not stub.messages
    assert "s3cr3t-token" not in err.message


async def test_an_unreachable_provider_is_retried_then_reported_retryable():
    async with HttpSmsProvider(f"http://u:secret@127.0.0.1:{free_port()}/v1/messages", attempts=3,
                               backoff=0.01, timeout=2.0) as sms:
        with capture_logs() as logs:
            err = await refused(sms)
    assert err.type == "SmsProviderUnavailable" and not err.non_retryable
    assert "ConnectError" in err.message and "secret" not in err.message
    assert [entry["attempt"] for entry in logs if entry["event"] == "sms_provider_retry"] == [1, 2]


async def test_backoff_doubles_between_attempts(stub):
    stub.script(Reply(503), Reply(503), Reply(503))
    async with HttpSmsProvider(stub.url, attempts=4, backoff=0.05, max_backoff=10.0) as sms:
        with capture_logs() as logs:
            started = time.monotonic()
            await send(sms)
            elapsed = time.monotonic() - started
    delays = [entry["retry_in"] for entry in logs if entry["event"] == "sms_provider_retry"]
    assert delays == [0.05, 0.1, 0.2]
    assert elapsed >= 0.35


async def test_backoff_is_capped(stub):
    stub.script(*[Reply(502)] * 5)
    async with HttpSmsProvider(stub.url, attempts=6, backoff=0.02, max_backoff=0.05) as sms:
        with capture_logs() as logs:
            await send(sms)
    assert [entry["retry_in"] for entry in logs if entry["event"] == "sms_provider_retry"] == [
        0.02, 0.04, 0.05, 0.05, 0.05]


async def test_429_waits_for_retry_after(stub):
    stub.script(Reply(429, {"error": "rate_limited"}, headers={"Retry-After": "1"}))
    async with HttpSmsProvider(stub.url, timeout=2.0, backoff=0.01, max_backoff=5.0) as sms:
        started = time.monotonic()
        assert await send(sms) == "SM000001"
        elapsed = time.monotonic() - started

    assert elapsed >= 1.0  # the header, not the 0.01 s backoff
    assert len(stub.requests) == 2


async def test_retry_after_is_capped_by_max_backoff(stub, provider):
    stub.script(Reply(429, headers={"Retry-After": "120"}))
    with capture_logs() as logs:
        started = time.monotonic()
        await send(provider)
    assert time.monotonic() - started < 5
    assert [entry["retry_in"] for entry in logs if entry["event"] == "sms_provider_retry"] == [0.05]


async def test_retry_after_may_be_an_http_date(stub):
    later = format_datetime(datetime.now(UTC) + timedelta(minutes=5), usegmt=True)
    stub.script(Reply(429, headers={"Retry-After": later}))
    async with HttpSmsProvider(stub.url, backoff=0.01, max_backoff=0.3) as sms:
        with capture_logs() as logs:
            await send(sms)
    assert [entry["retry_in"] for entry in logs if entry["event"] == "sms_provider_retry"] == [0.3]


async def test_an_invalid_number_is_not_retried(stub, provider):
    stub.script(Reply(400, {"error": "invalid_number", "message": f"{PHONE} is not a mobile number"}))

    err = await refused(provider)

    assert err.type == "InvalidPhoneNumber" and err.non_retryable
    assert "invalid" in err.message and "400" in err.message
    assert len(stub.requests) == 1 and not stub.messages


async def test_an_opt_out_is_not_retried(stub, provider):
    stub.script(Reply(400, {"error": "opted_out"}))

    err = await refused(provider)

    assert err.type == "OptedOut" and err.non_retryable
    assert "opted out" in err.message
    assert len(stub.requests) == 1


async def test_another_refusal_names_the_status_and_the_providers_text_without_the_number(stub, provider):
    stub.script(Reply(422, {"error": "body_too_long", "message": f"message to {PHONE} exceeds 1600 chars"}))

    err = await refused(provider)

    assert err.type == "SmsRejected" and err.non_retryable
    assert "HTTP 422" in err.message and "body_too_long" in err.message and "exceeds 1600 chars" in err.message
    assert "5555550123" not in err.message and "<number>" in err.message
    assert len(stub.requests) == 1


async def test_a_plain_text_refusal_is_reported(stub, provider):
    stub.script(Reply(403, "Forbidden: account suspended"))

    err = await refused(provider)

    assert err.type == "SmsRejected" and err.non_retryable
    assert "HTTP 403" in err.message and "account suspended" in err.message and "credentials" in err.message


async def test_wrong_credentials_are_a_refusal(stub):
    wrong = stub.url.replace("s3cr3t-token", "wrong")
    async with HttpSmsProvider(wrong, **FAST) as sms:
        err = await refused(sms)
    assert err.type == "SmsRejected" and "HTTP 401" in err.message and "wrong" not in err.message
    assert len(stub.requests) == 1 and not stub.messages


async def test_a_2xx_without_message_id_is_a_protocol_error(stub, provider):
    stub.script(Reply(200, {"status": "queued"}))

    err = await refused(provider)

    assert err.type == "SmsProviderProtocolError" and err.non_retryable
    assert "message_id" in err.message and "200" in err.message
    assert len(stub.requests) == 1


async def test_a_2xx_that_is_not_json_is_a_protocol_error(stub, provider):
    stub.script(Reply(202, "OK"))
    err = await refused(provider)
    assert err.type == "SmsProviderProtocolError" and err.non_retryable


async def test_a_redirect_is_not_followed(stub, provider):
    stub.script(Reply(301, headers={"Location": "https://elsewhere.example/v1/messages"}))
    err = await refused(provider)
    assert err.type == "SmsProviderProtocolError" and err.non_retryable and "301" in err.message
    assert len(stub.requests) == 1


async def test_a_custom_transport_is_used():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"message_id": "abc"})

    async with HttpSmsProvider("https://k:t@sms.example/v1/messages",
                               transport=httpx.MockTransport(answer)) as sms:
        assert await send(sms) == "abc"
    assert str(seen[0].url) == "https://sms.example/v1/messages"
    assert seen[0].headers["authorization"] == httpx.BasicAuth("k", "t")._auth_header


def test_no_url_means_no_provider():
    assert sms_provider_from_url(None) is None
    assert sms_provider_from_url("") is None
    assert sms_provider_from_url("  ") is None


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://user:hunter2@sms.example/send", "scheme must be http or https"),
    ("sms.example/v1/messages", "scheme must be http or https"),
    ("https:///v1/messages", "no host"),
    ("https://user:hunter2@/v1/messages", "no host"),
    ("https://sms.example:99999/v1", "port"),
    ("https://sms.example:http/v1", "port"),
])
def test_a_bad_url_is_refused_without_echoing_credentials(url, reason):
    with pytest.raises(ValueError) as caught:
        sms_provider_from_url(url)
    assert str(caught.value).startswith("ARREARS_SMS_URL: ") and reason in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_a_good_url_makes_a_provider_without_credentials_in_its_url():
    sms = sms_provider_from_url(" https://user:hunter2@sms.example:8443/v1/messages?account=7 ")
    assert isinstance(sms, HttpSmsProvider)
    assert sms.url == "https://sms.example:8443/v1/messages?account=7"
    assert sms.longest_send == 4 * 10.0 + 3 * 8.0
    await sms.aclose()
