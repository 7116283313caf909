"""E-mail over SMTP (aiosmtplib), selected by ``ARREARS_SMTP_URL``.

    smtp://host[:port]                 plain SMTP (port 25), upgraded with STARTTLS when the server offers it
    smtp://user:password@host:587      the same, logging in after STARTTLS
    smtp://host:587?starttls=required  refuse to send unless the server offers STARTTLS
    smtps://user:password@host[:465]   implicit TLS

Errors are sorted for Temporal's retry policy: a server that is down, slow or says "try later"
(4xx) raises a retryable ``SmtpUnavailable``; a server that refuses the message or the recipient
for good (5xx) raises a non-retryable ``EmailRejected``, so the case records the failure instead
of retrying for ever. No message names the recipient: addresses are personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from temporalio.exceptions import ApplicationError

STARTTLS_MODES = ("auto", "required", "off")


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: str = "auto"
    timeout: float = 30.0

    @property
    def address(self) -> str:
        """Where mail goes, without credentials (for logs and errors)."""
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"

    async def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        """Hand one message to the server; return the server's reply (it names its queue id)."""
        start_tls = {"auto": None, "required": True, "off": False}[self.starttls]
        try:
            refused, reply = await aiosmtplib.send(
                message, sender=sender, recipients=[recipient], hostname=self.host, port=self.port,
                username=self.username, password=self.password, use_tls=self.implicit_tls,
                start_tls=None if self.implicit_tls else start_tls, timeout=self.timeout)
        except aiosmtplib.SMTPAuthenticationError as err:
            # Our credentials, not the message: retry until an operator fixes the setting.
            raise ApplicationError(f"SMTP server {self.address} refused the login ({err.code}): check the "
                                   "credentials in ARREARS_SMTP_URL", type="SmtpUnavailable") from None
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise _by_code(min(r.code for r in err.recipients), "the server refused the recipient") from None
        except aiosmtplib.SMTPResponseException as err:
            raise _by_code(err.code, f"the server answered {err.code} {err.message}") from None
        except (aiosmtplib.SMTPException, OSError) as err:
            raise ApplicationError(f"SMTP server {self.address} unavailable: {type(err).__name__}: {err}",
                                   type="SmtpUnavailable") from None
        if refused:
            raise _by_code(min(code for code, _ in refused.values()), "the server refused the recipient")
        return reply


def _by_code(code: int, what: str) -> ApplicationError:
    if code >= 500:
        return ApplicationError(f"e-mail rejected: {what} ({code})", type="EmailRejected", non_retryable=True)
    return ApplicationError(f"e-mail deferred: {what} ({code})", type="SmtpUnavailable")


def mailer_from_url(url: str | None) -> SmtpMailer | None:
    """The mailer ``ARREARS_SMTP_URL`` names, or None (e-mails go to the outbox folder)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"ARREARS_SMTP_URL: scheme must be smtp or smtps, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("ARREARS_SMTP_URL: no host")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError(f"ARREARS_SMTP_URL: {err}") from None
    starttls = parse_qs(parts.query).get("starttls", ["auto"])[0]
    if starttls not in STARTTLS_MODES:
        raise ValueError(f"ARREARS_SMTP_URL: starttls must be one of {', '.join(STARTTLS_MODES)}, not {starttls!r}")
    implicit = parts.scheme == "smtps"
    return SmtpMailer(host=parts.hostname, port=port or (465 if implicit else 25),
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None,
                      implicit_tls=implicit, starttls=starttls)
