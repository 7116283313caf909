"""OpenID Connect log-in for the desk against a small identity provider served over loopback.

The provider (discovery, JWKS, authorize, token) signs ID tokens with an RSA key made here; each
test chooses the claims, and how the token is spoiled, before it logs in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

from desk.api import SESSION_COOKIE, create_app
from desk.cases import CaseDesk
from desk.config import DeskSettings
from desk.oidc import PENDING_COOKIE, add_oidc
from desk.policy import load_policy
from desk.store import DeskStore
from infra.settings import Settings
from ledger import Ledger

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLIENT_ID = "arrears-desk"
CLIENT_SECRET = "s3cret:with/odd chars"


@dataclass
class Provider:
    """A fake identity provider; ``claims`` and ``spoil`` say what the next ID token holds."""

    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    claims: dict[str, Any] = field(default_factory=dict)
    spoil: dict[str, Any] = field(default_factory=dict)
    auth_methods: list[str] = field(default_factory=lambda: ["client_secret_basic", "client_secret_post"])
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                    "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"], "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": self.auth_methods}

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            return {"keys": [self.key.as_dict(private=False)]}

        @app.get("/authorize")
        async def authorize(request: Request) -> RedirectResponse:
            asked = dict(request.query_params)
            assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
            assert asked["code_challenge_method"] == "S256" and "openid" in asked["scope"].split()
            code = secrets.token_urlsafe(16)
            self.codes[code] = asked
            return RedirectResponse(f"{asked['redirect_uri']}?code={code}&state={asked['state']}", status_code=302)

        @app.post("/token")
        async def token(request: Request) -> JSONResponse:
            form = dict(await request.form())
            self.token_requests.append({"form": form, "authorization": request.headers.get("authorization")})
            asked = self.codes.pop(str(form.get("code")), None)
            if asked is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "unknown code"}, 400)
            if request.headers.get("authorization"):
                expected = base64.b64encode(b"arrears-desk:s3cret%3Awith%2Fodd%20chars").decode()
                client_ok = request.headers["authorization"] == f"Basic {expected}"
            else:
                client_ok = form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET
            if not client_ok:
                return JSONResponse({"error": "invalid_client"}, 401)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(str(form["code_verifier"]).encode()).digest())
            if challenge.rstrip(b"=").decode() != asked["code_challenge"] or form["redirect_uri"] != asked["redirect_uri"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE or redirect_uri"}, 400)
            now = int(time.time())
            claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": asked["nonce"],
                      **self.claims, **self.spoil.get("claims", {})}
            key = self.spoil.get("key", self.key)
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
            return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                 "expires_in": 300, "id_token": id_token})

        return app


@dataclass
class World:
    provider: Provider
    store: DeskStore
    tmp: Path

    def desk(self, **overrides: Any) -> httpx.AsyncClient:
        """A browser on a desk whose OIDC settings are these (a fresh cookie jar)."""
        settings = DeskSettings(base=Settings(data_dir=self.tmp), oidc_issuer=self.provider.issuer,
                                oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET, public_url="http://desk",
                                **overrides)
        app = create_app(CaseDesk(None, load_policy(), self.store, self.store.ledger, settings))  # type: ignore[arg-type]
        add_oidc(app, self.store, settings)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://desk")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: Any) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("oidc")
    provider = Provider()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    provider.issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(provider.app(), log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    ledger = Ledger.connect(f"sqlite:///{tmp}/l.db")
    await ledger.migrate()
    try:
        yield World(provider, DeskStore(ledger), tmp)
    finally:
        await ledger.close()
        server.should_exit = True
        await serving
        sock.close()


@pytest.fixture(autouse=True)
def fresh_provider(world: World) -> None:
    world.provider.claims, world.provider.spoil = {}, {}
    world.provider.auth_methods = ["client_secret_basic", "client_secret_post"]


async def log_in(world: World, browser: httpx.AsyncClient, claims: dict[str, Any], *,
                 state: str | None = None) -> httpx.Response:
    """Start at /login/oidc, let the provider authorize, and come back: the callback's answer."""
    world.provider.claims = claims
    start = await browser.get("/login/oidc")
    assert start.status_code == 303, start.text
    pending = next(line for line in start.headers.get_list("set-cookie") if line.startswith(f"{PENDING_COOKIE}="))
    assert "HttpOnly" in pending and "SameSite=lax" in pending and "Path=/login/oidc" in pending
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    assert asked["code_challenge_method"] == ["S256"] and asked["nonce"] and asked["state"]
    assert asked["redirect_uri"] == ["http://desk/login/oidc/callback"]
    async with httpx.AsyncClient() as to_provider:
        authorized = await to_provider.get(start.headers["location"])
    assert authorized.status_code == 302, authorized.text
    back = urlsplit(authorized.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://desk/login/oidc/callback"
    query = {name: values[0] for name, values in parse_qs(back.query).items()}
    if state is not None:
        query["state"] = state
    return await browser.get("/login/oidc/callback", params=query)


async def me(browser: httpx.AsyncClient) -> httpx.Response:
    return await browser.get("/api/v1/me")


def refused(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert SESSION_COOKIE not in response.cookies
    body = response.json()
    for word in words:
        assert word in body["reason"] or word == body.get("field"), body
    return body


async def test_a_supervisor_logs_in_and_the_session_knows_them(world: World) -> None:
    async with world.desk() as browser:
        done = await log_in(world, browser, {"sub": "u-100", "preferred_username": "sara", "arrears_role": "supervisor",
                                             "arrears_team": "t1"})
        assert done.status_code == 303 and done.headers["location"] == "/api/v1/me"
        cookie = done.headers.get_list("set-cookie")
        session = next(line for line in cookie if line.startswith(f"{SESSION_COOKIE}="))
        assert "HttpOnly" in session and "SameSite=strict" in session
        answer = await me(browser)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["name"], body["role"], body["team"], body["via"]) == ("sara", "supervisor", "t1", "session")
        assert body["csrf_token"]
    request = world.provider.token_requests[-1]
    assert request["authorization"].startswith("Basic ") and "client_secret" not in request["form"]
    assert request["form"]["code_verifier"]
    user = await world.store.user("sara")
    assert user is not None and not user.has_password


async def test_the_role_follows_the_claim_at_each_login(world: World) -> None:
    async with world.desk() as browser:
        assert (await log_in(world, browser, {"sub": "u-200", "preferred_username": "ravi",
                                              "arrears_role": "supervisor"})).status_code == 303
        assert (await me(browser)).json()["role"] == "supervisor"
    async with world.desk() as browser:
        assert (await log_in(world, browser, {"sub": "u-200", "preferred_username": "ravi",
                                              "arrears_role": "agent", "arrears_team": "t2"})).status_code == 303
        body = (await me(browser)).json()
        assert (body["name"], body["role"], body["team"]) == ("ravi", "agent", "t2")
    user = await world.store.user("ravi")
    assert user is not None and user.role == "agent"


async def test_the_name_falls_back_to_the_subject_and_client_secret_post_works(world: World) -> None:
    world.provider.auth_methods = ["client_secret_post"]
    async with world.desk() as browser:
        assert (await log_in(world, browser, {"sub": "u-300", "arrears_role": "compliance"})).status_code == 303
        body = (await me(browser)).json()
        assert (body["name"], body["role"], body["team"]) == ("u-300", "compliance", None)
    form = world.provider.token_requests[-1]["form"]
    assert form["client_id"] == CLIENT_ID and form["client_secret"] == CLIENT_SECRET


@pytest.mark.parametrize("spoil, words", [
    ({"key": RSAKey.generate_key(2048, parameters={"kid": "k1"})}, ("signature",)),
    ({"claims": {"aud": "another-client"}}, ("aud",)),
    ({"claims": {"nonce": "not-the-nonce"}}, ("nonce",)),
    ({"claims": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}}, ("expired",)),
    ({"claims": {"iss": "http://evil.example"}}, ("iss",)),
], ids=["bad-signature", "wrong-audience", "wrong-nonce", "expired", "wrong-issuer"])
async def test_a_spoiled_id_token_is_refused(world: World, spoil: dict[str, Any], words: tuple[str, ...]) -> None:
    world.provider.spoil = spoil
    async with world.desk() as browser:
        answer = await log_in(world, browser, {"sub": "u-400", "preferred_username": "mallory",
                                               "arrears_role": "supervisor"})
        refused(answer, 401, *words)
        assert (await me(browser)).status_code == 401
    assert await world.store.user("mallory") is None


@pytest.mark.parametrize("claims, words", [
    ({}, ("arrears_role", "no")),
    ({"arrears_role": "wizard"}, ("arrears_role", "wizard")),
    ({"arrears_role": ["supervisor", "agent"]}, ("arrears_role", "several")),
    ({"arrears_role": 7}, ("arrears_role",)),
], ids=["missing", "unknown", "several", "not-text"])
async def test_a_missing_or_unknown_role_is_refused_naming_the_claim(world: World, claims: dict[str, Any],
                                                                     words: tuple[str, ...]) -> None:
    async with world.desk() as browser:
        answer = await log_in(world, browser, {"sub": "u-500", "preferred_username": "nobody", **claims})
        body = refused(answer, 403, *words)
        assert body["field"] == "arrears_role"
        assert (await me(browser)).status_code == 401
    assert await world.store.user("nobody") is None


async def test_a_forged_state_is_refused_and_the_login_cannot_be_retried(world: World) -> None:
    async with world.desk() as browser:
        answer = await log_in(world, browser, {"sub": "u-600", "preferred_username": "eve",
                                               "arrears_role": "supervisor"}, state="forged")
        refused(answer, 403, "state")
        assert (await me(browser)).status_code == 401
    async with world.desk() as browser:  # a callback with no log-in started in this browser
        refused(await browser.get("/login/oidc/callback", params={"code": "x", "state": "y"}), 401, "start again")
    assert await world.store.user("eve") is None


async def test_the_role_claim_name_is_configurable(world: World) -> None:
    async with world.desk(oidc_role_claim="groups", oidc_team_claim="teams") as browser:
        answer = await log_in(world, browser, {"sub": "u-700", "preferred_username": "gina",
                                               "groups": ["staff", "vpn-users", "payments"], "teams": ["t1"],
                                               "arrears_role": "supervisor"})
        assert answer.status_code == 303, answer.text
        body = (await me(browser)).json()
        assert (body["name"], body["role"], body["team"]) == ("gina", "payments", "t1")
    async with world.desk(oidc_role_claim="groups") as browser:
        answer = await log_in(world, browser, {"sub": "u-701", "preferred_username": "hal",
                                               "arrears_role": "supervisor"})
        assert refused(answer, 403, "groups")["field"] == "groups"


async def test_a_provider_user_cannot_take_over_a_local_user(world: World) -> None:
    await world.store.add_user("local1", "admin", password="correct horse battery staple")
    async with world.desk() as browser:
        answer = await log_in(world, browser, {"sub": "u-800", "preferred_username": "local1",
                                               "arrears_role": "supervisor"})
        refused(answer, 403, "local")
    user = await world.store.user("local1")
    assert user is not None and user.role == "admin"


async def test_an_unreachable_provider_is_not_a_500(world: World, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings = DeskSettings(base=Settings(data_dir=tmp_path), oidc_issuer=dead, oidc_client_id=CLIENT_ID,
                            oidc_client_secret=CLIENT_SECRET, public_url="http://desk")
    app = create_app(CaseDesk(None, load_policy(), world.store, world.store.ledger, settings))  # type: ignore[arg-type]
    add_oidc(app, world.store, settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://desk") as browser:
        answer = await browser.get("/login/oidc")
        assert answer.status_code == 502 and "identity provider" in answer.json()["reason"]
