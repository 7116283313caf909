"""SMS over HTTP (httpx), selected by ``ARREARS_SMS_URL``: the one generic JSON protocol Arrears speaks.

Point ``ARREARS_SMS_URL`` at a gateway that speaks it (or a small adapter in front of yours):

    https://sms.example/v1/messages               no credentials
    https://user:token@sms.example/v1/messages    HTTP basic auth; the credentials are taken out of the
                                                  URL and sent as an Authorization header, never logged

Request, one per message::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <key>           the same on every retry of the same message
    {"to": "+15555550123", "from": "<sender>", "body": "<text>", "reference": "<key>"}

A provider that honours ``Idempotency-Key`` (answers a key it has seen with the first answer and
sends nothing) never delivers a message twice, however often Arrears retries.

Responses:

    2xx  {"message_id": "..."}                      accepted; the id is kept in the case ledger
    4xx  {"error": "invalid_number"}                the number is wrong: ``InvalidPhoneNumber``
    4xx  {"error": "opted_out"}                     the borrower opted out: ``OptedOut``
    4xx  {"error": "<code>", "message": "<text>"}   any other refusal: ``SmsRejected``
    408, 429, 5xx (``Retry-After`` honoured)        try again later

Errors are sorted for Temporal's retry policy. A provider that is down, slow, rate-limiting or
unreachable is retried here with exponential backoff (``backoff * 2**n``, at most ``max_backoff``);
when ``attempts`` are used up ``send`` raises a retryable ``SmsProviderUnavailable`` and the
activity's retry policy takes over. A refusal (the ``4xx`` rows above) and a 2xx answer that breaks
the protocol (``SmsProviderProtocolError``) are non-retryable, so the case records the failure.
No message or log line names the phone number or the text: they are personal data.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import structlog
from temporalio.exceptions import ApplicationError

log = structlog.get_logger("arrears.sms")

# 408 (the provider timed out reading us) and 429 (slow down) are "later", like the 5xx.
RETRYABLE_STATUS = frozenset({408, 429})
# Refusals with their own error type, by the provider's error code.
REFUSALS = {
    "invalid_number": ("InvalidPhoneNumber", "the provider says the phone number is invalid"),
    "opted_out": ("OptedOut", "the borrower has opted out of SMS at the provider"),
}
# Runs of 7 or more digits (with the usual separators) in a provider's error text: phone numbers.
_NUMBER = re.compile(r"\+?\d(?:[\s().-]{0,2}\d){6,}")


class SmsError(ApplicationError):
    """What ``send`` raises: an ApplicationError, so Temporal reads its ``type`` and ``non_retryable``."""


class HttpSmsProvider:
    """Sends text messages to one HTTP endpoint speaking the protocol above.

    ``timeout`` bounds each attempt (connecting, sending and reading the answer together), so one
    ``send`` takes at most about ``attempts * timeout + (attempts - 1) * max_backoff`` seconds; the
    activity's start-to-close timeout must be longer than that (see ``longest_send``)."""

    def __init__(self, url: str, *, timeout: float = 10.0, attempts: int = 4, backoff: float = 0.5,
                 max_backoff: float = 8.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        if not timeout > 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("timeout must be positive, backoff and max_backoff not negative")
        try:
            self.url, auth = _split_credentials(url)
        except ValueError as err:
            raise ValueError(f"SMS provider URL: {err}") from None
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._client = httpx.AsyncClient(auth=auth, timeout=httpx.Timeout(timeout), transport=transport,
                                         follow_redirects=False,
                                         headers={"Accept": "application/json", "User-Agent": "arrears-sms"})

    @property
    def longest_send(self) -> float:
        """The most seconds one ``send`` can take before it gives up (for the activity's timeout)."""
        return self.attempts * self.timeout + (self.attempts - 1) * self.max_backoff

    async def send(self, *, to: str, body: str, sender: str, idempotency_key: str) -> str:
        """Send one message; return the provider's message id. Raises ``SmsError`` (see the module)."""
        payload = {"to": to, "from": sender, "body": body, "reference": idempotency_key}
        headers = {"Idempotency-Key": idempotency_key}
        problem = ""
        for attempt in range(1, self.attempts + 1):
            retry_after: float | None = None
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self._client.post(self.url, json=payload, headers=headers)
            except (TimeoutError, httpx.TimeoutException):
                problem = f"no answer within {self.timeout:g} s"
            except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as err:
                problem = f"{type(err).__name__}: {_redacted(str(err))}"
            else:
                status = response.status_code
                if response.is_success:
                    return self._accepted(response, idempotency_key, attempt)
                if not (status in RETRYABLE_STATUS or status >= 500):
                    raise self._refused(response, idempotency_key, attempt)
                problem = f"HTTP {status}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == self.attempts:
                break
            delay = min(retry_after if retry_after is not None else self.backoff * 2 ** min(attempt - 1, 30),
                        self.max_backoff)
            log.warning("sms_provider_retry", idempotency_key=idempotency_key, attempt=attempt, problem=problem,
                        retry_in=round(delay, 3))
            await asyncio.sleep(delay)
        log.warning("sms_provider_unavailable", idempotency_key=idempotency_key, attempts=self.attempts,
                    problem=problem)
        raise SmsError(f"SMS provider unavailable after {self.attempts} attempt(s); last: {problem}",
                       type="SmsProviderUnavailable")

    def _accepted(self, response: httpx.Response, key: str, attempt: int) -> str:
        data = _json_object(response)
        message_id = data.get("message_id") if data is not None else None
        if isinstance(message_id, int) and not isinstance(message_id, bool):
            message_id = str(message_id)
        if not isinstance(message_id, str) or not message_id.strip():
            log.error("sms_provider_protocol_error", idempotency_key=key, status=response.status_code,
                      attempt=attempt)
            raise SmsError(f"SMS provider answered HTTP {response.status_code} without a \"message_id\" "
                           "string in a JSON object body; the protocol requires {\"message_id\": \"...\"}",
                           type="SmsProviderProtocolError", non_retryable=True)
        log.info("sms_provider_accepted", idempotency_key=key, status=response.status_code, attempt=attempt,
                 message_id=message_id)
        return message_id

    def _refused(self, response: httpx.Response, key: str, attempt: int) -> SmsError:
        status = response.status_code
        if status < 400:
            log.error("sms_provider_protocol_error", idempotency_key=key, status=status, attempt=attempt)
            return SmsError(f"SMS provider answered HTTP {status}, which the protocol does not allow "
                            "(redirects are not followed: ARREARS_SMS_URL must name the final address)",
                            type="SmsProviderProtocolError", non_retryable=True)
        code, text = _provider_error(response)
        log.warning("sms_provider_refused", idempotency_key=key, status=status, attempt=attempt, error=code[:60])
        if code in REFUSALS:
            kind, what = REFUSALS[code]
            return SmsError(f"{what} (HTTP {status} {code})", type=kind, non_retryable=True)
        hint = " (check the credentials in ARREARS_SMS_URL)" if status in (401, 403) else ""
        said = ": ".join(part for part in (code, text) if part) or "no error text"
        return SmsError(f"SMS provider rejected the message: HTTP {status}, {said}{hint}",
                        type="SmsRejected", non_retryable=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def sms_provider_from_url(url: str | None, **options: float) -> HttpSmsProvider | None:
    """The provider ``ARREARS_SMS_URL`` names, or None (messages go to the outbox folder);
    ``options`` (timeout, attempts, backoff, max_backoff) tune its retries."""
    if not url or not url.strip():
        return None
    try:
        _split_credentials(url.strip())
    except ValueError as err:
        raise ValueError(f"ARREARS_SMS_URL: {err}") from None
    return HttpSmsProvider(url.strip(), **options)  # type: ignore[arg-type]


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """The URL without user info (safe to show) and the basic auth it carried. Never echoes the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("no host")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    host = parts.netloc.rpartition("@")[2]
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit((parts.scheme, host, parts.path or "/", parts.query, "")), auth


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _provider_error(response: httpx.Response) -> tuple[str, str]:
    """The provider's error code and text, phone numbers blanked, shortened."""
    data = _json_object(response)
    if data is None:
        return "", _redacted(response.text.strip())[:200]
    error, text = data.get("error"), data.get("message")
    if isinstance(error, dict):
        error, text = error.get("code"), error.get("message", text)
    return (_redacted(str(error)).strip()[:100] if error is not None else "",
            _redacted(str(text)).strip()[:200] if text is not None else "")


def _redacted(text: str) -> str:
    return _NUMBER.sub("<number>", text)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
