"""The desk's own settings, from the environment (beside the worker's: ``infra.settings``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from infra.settings import Settings


def _number(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, not {value}")
    return value


@dataclass(frozen=True)
class DeskSettings:
    base: Settings
    host: str = "127.0.0.1"
    port: int = 8000
    # Browser sessions end after this long without a request, and after ``session_hours`` in any case.
    session_idle: timedelta = timedelta(minutes=30)
    session_longest: timedelta = timedelta(hours=12)
    # Cookies only over HTTPS (set it behind a TLS-terminating proxy; off for http://localhost).
    secure_cookies: bool = False
    lockout_after: int = 5
    lockout_for: timedelta = timedelta(minutes=15)
    approval_expiry: timedelta = timedelta(hours=48)
    max_body_bytes: int = 256 * 1024
    # OpenID Connect against the bank's identity provider (production): its issuer's discovery
    # URL, this client's id and secret, and the claims the role and team are read from.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_role_claim: str = "arrears_role"
    oidc_team_claim: str = "arrears_team"
    public_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "DeskSettings":
        env = dict(os.environ if env is None else env)
        return cls(
            base=Settings.from_env(env),
            host=env.get("ARREARS_DESK_HOST", cls.host),
            port=_number(env, "ARREARS_DESK_PORT", cls.port),
            session_idle=timedelta(minutes=_number(env, "ARREARS_DESK_SESSION_IDLE_MINUTES", 30)),
            session_longest=timedelta(hours=_number(env, "ARREARS_DESK_SESSION_HOURS", 12)),
            secure_cookies=env.get("ARREARS_DESK_SECURE_COOKIES", "").strip().lower() in ("1", "true", "yes"),
            lockout_after=_number(env, "ARREARS_DESK_LOCKOUT_AFTER", cls.lockout_after),
            lockout_for=timedelta(minutes=_number(env, "ARREARS_DESK_LOCKOUT_MINUTES", 15)),
            approval_expiry=timedelta(hours=_number(env, "ARREARS_APPROVAL_EXPIRY_HOURS", 48)),
            max_body_bytes=_number(env, "ARREARS_DESK_MAX_BODY_BYTES", cls.max_body_bytes, 1024),
            oidc_issuer=env.get("ARREARS_OIDC_ISSUER") or None,
            oidc_client_id=env.get("ARREARS_OIDC_CLIENT_ID") or None,
            oidc_client_secret=env.get("ARREARS_OIDC_CLIENT_SECRET") or None,
            oidc_role_claim=env.get("ARREARS_OIDC_ROLE_CLAIM", cls.oidc_role_claim),
            oidc_team_claim=env.get("ARREARS_OIDC_TEAM_CLAIM", cls.oidc_team_claim),
            public_url=env.get("ARREARS_DESK_PUBLIC_URL") or None,
        )
