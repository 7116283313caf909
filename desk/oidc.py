"""Log-in through the bank's identity provider: OpenID Connect, authorization code with PKCE.

``GET /login/oidc`` sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE
(S256) challenge; what it must remember (state, nonce, code verifier, redirect URI) stays on the
server, keyed by a random value in a short-lived HttpOnly cookie (SameSite=Lax: the provider's
redirect back is a top-level cross-site GET). ``GET /login/oidc/callback`` checks the state,
exchanges the code at the token endpoint, verifies the ID token (signature against the provider's
JWKS, ``iss``, ``aud``, ``exp``, ``iat``, ``nonce``, ``azp``, ``at_hash``), reads the role (and team)
from the configured claims, and opens a desk session exactly as the password log-in does.

The role comes from the verified ID token only. The pending log-ins live in this process's memory:
one desk process per provider client (a restart only means starting the log-in again).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from desk.api import SESSION_COOKIE, problem
from desk.config import DeskSettings
from desk.policy import load_policy
from desk.store import DeskError, DeskStore, check_name

log = structlog.get_logger("desk.oidc")

PENDING_COOKIE = "arrears_oidc"
PENDING_FOR = 600  # seconds from /login/oidc to the callback
PENDING_MOST = 10_000  # log-ins under way at once; the oldest are dropped beyond
LEEWAY = 60  # seconds of clock skew allowed on exp, iat, nbf
JWKS_REFETCH_AFTER = 60  # an unknown key id refetches the JWKS at most this often
# Signature algorithms accepted for ID tokens: asymmetric only (never "none", never HS* with the secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
TIMEOUT = httpx.Timeout(10.0)


class OidcRefused(Exception):
    def __init__(self, status: int, reason: str, field: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field


class ProviderDown(Exception):
    """The identity provider could not be reached or answered nonsense (not the user's fault)."""


@dataclass(frozen=True)
class _Pending:
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    expires: float


class Provider:
    """The provider's discovery document (fetched once) and JWKS (refetched on an unknown key id)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0
        self._lock = asyncio.Lock()

    async def _get_json(self, url: str) -> Any:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as err:
            raise ProviderDown(f"{url}: {err or type(err).__name__}") from None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is not None:
            return self._metadata
        async with self._lock:
            if self._metadata is None:
                url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
                data = await self._get_json(url)
                if not isinstance(data, dict):
                    raise ProviderDown(f"{url}: not a JSON object")
                missing = [key for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
                           if not isinstance(data.get(key), str)]
                if missing:
                    raise ProviderDown(f"{url}: no {', '.join(missing)}")
                if data["issuer"].rstrip("/") != self.issuer.rstrip("/"):
                    raise ProviderDown(f"{url}: issuer {data['issuer']!r} is not the configured {self.issuer!r}")
                self._metadata = data
        return self._metadata

    async def keys(self, refresh: bool = False) -> KeySet:
        async with self._lock:
            stale = refresh and time.monotonic() - self._jwks_at >= JWKS_REFETCH_AFTER
            if self._jwks is None or stale:
                assert self._metadata is not None
                url = self._metadata["jwks_uri"]
                data = await self._get_json(url)
                try:
                    self._jwks = KeySet.import_key_set(data)
                except (JoseError, ValueError, TypeError, KeyError) as err:
                    raise ProviderDown(f"{url}: not a JWK set ({err})") from None
                self._jwks_at = time.monotonic()
            return self._jwks


def _role(claims: dict[str, Any], claim: str, roles: set[str]) -> str:
    value = claims.get(claim)
    if value is None or value == "" or value == []:
        raise OidcRefused(403, f"the identity provider sent no {claim!r} claim: no role on the desk", claim)
    if isinstance(value, str):
        if value not in roles:
            raise OidcRefused(403, f"the {claim!r} claim {value!r} is not a desk role "
                                   f"({', '.join(sorted(roles))})", claim)
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        known = sorted(set(value) & roles)
        if not known:
            raise OidcRefused(403, f"the {claim!r} claim names no desk role ({', '.join(sorted(roles))})", claim)
        if len(known) > 1:
            raise OidcRefused(403, f"the {claim!r} claim names several desk roles ({', '.join(known)}); "
                                   "a user has one", claim)
        return known[0]
    raise OidcRefused(403, f"the {claim!r} claim is neither a role nor a list of them", claim)


def _team(claims: dict[str, Any], claim: str) -> str | None:
    value = claims.get(claim)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or value == "" or value == []:
        return None
    if not isinstance(value, str):
        raise OidcRefused(403, f"the {claim!r} claim is not one team", claim)
    try:
        return check_name(value, claim)
    except DeskError as err:
        raise OidcRefused(403, err.reason, claim) from None


def _jose_reason(err: JoseError) -> str:
    if isinstance(err, ExpiredTokenError):
        return "the ID token has expired"
    if isinstance(err, BadSignatureError):
        return "the ID token's signature does not verify against the identity provider's keys"
    if isinstance(err, InvalidKeyIdError):
        return "the ID token is signed with a key the identity provider does not publish"
    if isinstance(err, ClaimError):
        return f"the ID token's claims do not hold: {err.description or err.error}"
    return f"the ID token is not valid: {err.description or err.error}"


def add_oidc(app: FastAPI, store: DeskStore, settings: DeskSettings) -> None:
    if not settings.oidc_issuer or not settings.oidc_client_id:
        raise ValueError("OpenID Connect needs ARREARS_OIDC_ISSUER and ARREARS_OIDC_CLIENT_ID")
    issuer, client_id, secret = settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret
    provider = Provider(issuer)
    roles = set(load_policy().roles)
    pending: dict[str, _Pending] = {}

    def remember(entry: _Pending) -> str:
        now = time.monotonic()
        for key in [key for key, old in pending.items() if old.expires <= now]:
            del pending[key]
        while len(pending) >= PENDING_MOST:
            del pending[next(iter(pending))]
        key = secrets.token_urlsafe(32)
        pending[key] = entry
        return key

    def refused(err: OidcRefused) -> Response:
        log.warning("oidc_refused", status=err.status, reason=err.reason)
        response = problem(err.status, err.reason, err.field)
        response.delete_cookie(PENDING_COOKIE, path="/login/oidc")
        return response

    def provider_down(err: ProviderDown) -> Response:
        log.error("oidc_provider_unreachable", error=str(err))
        response = problem(502, "the identity provider could not be reached or gave an unusable answer; "
                                "try again later")
        response.delete_cookie(PENDING_COOKIE, path="/login/oidc")
        return response

    @app.get("/login/oidc", include_in_schema=False)
    async def login_oidc(request: Request) -> Response:
        try:
            metadata = await provider.metadata()
        except ProviderDown as err:
            return provider_down(err)
        base = (settings.public_url or str(request.base_url)).rstrip("/")
        entry = _Pending(state=generate_token(32), nonce=generate_token(32), code_verifier=generate_token(64),
                         redirect_uri=f"{base}/login/oidc/callback", expires=time.monotonic() + PENDING_FOR)
        key = remember(entry)
        url = add_params_to_uri(metadata["authorization_endpoint"], [
            ("response_type", "code"), ("client_id", client_id), ("redirect_uri", entry.redirect_uri),
            ("scope", "openid profile"), ("state", entry.state), ("nonce", entry.nonce),
            ("code_challenge", create_s256_code_challenge(entry.code_verifier)), ("code_challenge_method", "S256")])
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(PENDING_COOKIE, key, max_age=PENDING_FOR, path="/login/oidc", httponly=True,
                            samesite="lax", secure=settings.secure_cookies)
        return response

    async def exchange(metadata: dict[str, Any], entry: _Pending, code: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": entry.redirect_uri,
                "code_verifier": entry.code_verifier}
        headers = {"Accept": "application/json"}
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if secret is None:
            form["client_id"] = client_id
        elif "client_secret_basic" in methods or "client_secret_post" not in methods:
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=client_id, client_secret=secret)
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.post(metadata["token_endpoint"], data=form, headers=headers)
        except httpx.HTTPError as err:
            raise ProviderDown(f"token endpoint: {err or type(err).__name__}") from None
        if response.status_code >= 500:
            raise ProviderDown(f"token endpoint: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderDown(f"token endpoint: HTTP {response.status_code}, not a JSON object")
        if response.status_code != 200 or "error" in body:
            error = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
            raise OidcRefused(401, f"the identity provider would not exchange the code: {error}")
        if not isinstance(body.get("id_token"), str):
            raise OidcRefused(401, "the identity provider's token response has no ID token")
        return body

    async def verify(metadata: dict[str, Any], entry: _Pending, tokens: dict[str, Any]) -> dict[str, Any]:
        advertised = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        registry = JWSRegistry(algorithms=[alg for alg in advertised if alg in ALGORITHMS] or ["RS256"],
                               strict_check_header=False)
        try:
            try:
                token = jwt.decode(tokens["id_token"], await provider.keys(), registry=registry)
            except InvalidKeyIdError:  # the provider may have rotated its keys
                token = jwt.decode(tokens["id_token"], await provider.keys(refresh=True), registry=registry)
            access_token = tokens.get("access_token")
            claims = CodeIDToken(token.claims, token.header, {
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "value": client_id},
                "sub": {"essential": True},
            }, {"nonce": entry.nonce, "client_id": client_id,
                **({"access_token": access_token} if isinstance(access_token, str) else {})})
            claims.validate(leeway=LEEWAY)
        except JoseError as err:
            raise OidcRefused(401, _jose_reason(err), getattr(err, "claim", "")) from None
        except (ValueError, TypeError, KeyError) as err:  # a token too malformed for the libraries
            raise OidcRefused(401, f"the ID token is malformed ({type(err).__name__})") from None
        return dict(claims)

    @app.get("/login/oidc/callback", include_in_schema=False)
    async def callback(request: Request) -> Response:
        key = request.cookies.get(PENDING_COOKIE, "")
        entry = pending.pop(key, None) if key else None  # one try per log-in
        params = request.query_params
        try:
            if entry is None or entry.expires <= time.monotonic():
                raise OidcRefused(401, "no log-in under way in this browser, or it took too long; "
                                       "start again at /login/oidc")
            if not secrets.compare_digest(params.get("state", ""), entry.state):
                raise OidcRefused(403, "the state does not match the log-in this browser started", "state")
            if "error" in params:
                raise OidcRefused(401, "the identity provider refused the log-in: "
                                       f"{params.get('error_description') or params['error']}")
            code = params.get("code", "")
            if not code:
                raise OidcRefused(401, "the identity provider sent no authorization code", "code")
            metadata = await provider.metadata()
            tokens = await exchange(metadata, entry, code)
            claims = await verify(metadata, entry, tokens)
            subject = claims["sub"]
            role = _role(claims, settings.oidc_role_claim, roles)
            team = _team(claims, settings.oidc_team_claim)
            name = claims.get("preferred_username")
            name = name if isinstance(name, str) and name else subject
            try:
                user = await store.oidc_user(subject, name, role, team)
            except DeskError as err:
                raise OidcRefused(403, err.reason, "preferred_username") from None
            if not user.active:
                raise OidcRefused(403, f"the desk user {user.name!r} is disabled")
        except OidcRefused as err:
            return refused(err)
        except ProviderDown as err:
            return provider_down(err)
        session_id, _csrf = await store.open_session(user, settings.session_longest, via="oidc")
        log.info("oidc_login", user=user.name, role=user.role, team=user.team)
        response = RedirectResponse("/api/v1/me", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                            secure=settings.secure_cookies, max_age=int(settings.session_longest.total_seconds()))
        response.delete_cookie(PENDING_COOKIE, path="/login/oidc")
        return response
