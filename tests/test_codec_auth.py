"""The codec server's token authentication (``--auth token``): a shared token, or a desk API token of
a role that may read borrower data, checked in the ledger database. Real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from desk.policy import Identity
from desk.store import DeskStore
from infra.codec import ENCODING, EncryptionCodec
from infra.codec_server import (
    CodecHTTPServer,
    DeskTokens,
    TokenAuth,
    auth_from_settings,
    auth_mode,
    decrypting_roles,
    make_server,
)
from infra.codec_server import main as server_main
from ledger import Ledger
from tests.conftest import ROOT
from tests.test_payload_codec import running

KEY = bytes(range(32))
KEYS_SETTING = f"k-a:{base64.b64encode(KEY).decode()}"
SHARED = "shared-codec-token-0123456789abcdef"
UI = "http://localhost:8080"
NAME = "Ada Lovelace-Example"
# name: role; "gone" is a supervisor whose token is revoked before it is ever used.
USERS = {"s1": "supervisor", "c1": "compliance", "a1": "agent", "f1": "field_agent", "ad": "admin",
         "p1": "payments", "gone": "supervisor"}


def the_codec() -> EncryptionCodec:
    return EncryptionCodec([("k-a", KEY)])


def _body(items: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(p) for p in items]}


def _from_body(body: dict[str, Any]) -> list[Payload]:
    return [json_format.ParseDict(item, Payload()) for item in body["payloads"]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Ledgered:
    url: str
    tokens: dict[str, str]


async def _users(url: str) -> dict[str, str]:
    store = DeskStore(Ledger.connect(url))
    try:
        await store.ledger.migrate()
        tokens = {}
        for name, role in USERS.items():
            await store.add_user(name, role)
            tokens[name] = await store.create_token(name)
        await store.revoke_tokens("gone")
        return tokens
    finally:
        await store.ledger.close()


async def _revoke(url: str, name: str) -> None:
    store = DeskStore(Ledger.connect(url))
    try:
        await store.revoke_tokens(name)
    finally:
        await store.ledger.close()


@pytest.fixture(scope="module")
def ledgered(tmp_path_factory: pytest.TempPathFactory) -> Ledgered:
    url = f"sqlite:///{tmp_path_factory.mktemp('codec-auth') / 'arrears.db'}"
    return Ledgered(url, asyncio.run(_users(url)))


@contextlib.contextmanager
def serving(auth: TokenAuth | None, origins: tuple[str, ...] = (UI,)) -> Iterator[CodecHTTPServer]:
    try:
        with running(make_server(the_codec(), "127.0.0.1", 0, origins=origins, auth=auth)) as server:
            yield server
    finally:
        if auth is not None:
            auth.close()


def desk_auth(ledgered: Ledgered, **options: Any) -> TokenAuth:
    return TokenAuth(static_token=SHARED, desk_tokens=DeskTokens(ledgered.url), roles=decrypting_roles(), **options)


async def sealed(*values: Any) -> tuple[list[Payload], list[Payload]]:
    plain = pydantic_data_converter.payload_converter.to_payloads(list(values))
    return plain, await the_codec().encode(plain)


def test_the_roles_that_may_decrypt_are_those_that_see_every_case_and_every_detail():
    assert decrypting_roles() == {"supervisor", "compliance"}


async def test_no_token_or_a_wrong_one_is_401_and_names_no_secret(ledgered: Ledgered):
    _, encrypted = await sealed({"name": NAME})
    s1 = ledgered.tokens["s1"]
    token_id = s1.split("_")[1]
    wrong = [{}, {"Authorization": ""}, bearer("nope"), bearer(SHARED + "x"), {"Authorization": SHARED},
             {"Authorization": f"Basic {base64.b64encode(SHARED.encode()).decode()}"}, bearer(s1 + "x"),
             bearer(f"arr_{token_id}_not-the-secret"), bearer("arr_0000000000000000_x"), {"Authorization": "Bearer"}]
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        for headers in wrong:
            for path in ("/encode", "/decode", "/default/decode"):
                answer = http.post(path, json=_body(encrypted), headers={"Origin": UI, **headers})
                assert answer.status_code == 401, (path, headers, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert answer.headers["access-control-allow-origin"] == UI  # the UI can read why
                assert SHARED not in answer.text and s1 not in answer.text and NAME not in answer.text
        assert http.get("/health").status_code == 200  # health needs no token


async def test_a_revoked_desk_token_is_401(ledgered: Ledgered):
    _, encrypted = await sealed({"name": NAME})
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        answer = http.post("/decode", json=_body(encrypted), headers=bearer(ledgered.tokens["gone"]))
        assert answer.status_code == 401 and "revoked" in answer.json()["error"]
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("user", ["a1", "f1", "ad", "p1"])
async def test_a_desk_token_of_a_role_that_may_not_read_borrower_data_is_403(ledgered: Ledgered, user: str):
    _, encrypted = await sealed({"name": NAME})
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        answer = http.post("/decode", json=_body(encrypted), headers=bearer(ledgered.tokens[user]))
        assert answer.status_code == 403
        assert f"role {USERS[user]} may not read decrypted case payloads" in answer.json()["error"]
        assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
        assert NAME not in answer.text


@pytest.mark.parametrize("user", ["s1", "c1"])
async def test_a_supervisor_or_compliance_desk_token_decodes(ledgered: Ledgered, user: str):
    plain, encrypted = await sealed({"name": NAME}, None, "text")
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        answer = http.post("/default/decode", json=_body(encrypted), headers=bearer(ledgered.tokens[user]))
        assert answer.status_code == 200, answer.text
        assert _from_body(answer.json()) == plain
        # The same token encodes (the UI encodes a signal's or query's arguments).
        encoded = http.post("/encode", json=_body(plain), headers=bearer(ledgered.tokens[user]))
        assert encoded.status_code == 200
        assert [p.metadata["encoding"] for p in _from_body(encoded.json())] == [ENCODING] * 3


async def test_the_shared_token_decodes(ledgered: Ledgered):
    plain, encrypted = await sealed({"name": NAME})
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        for scheme in ("Bearer", "bearer"):
            answer = http.post("/decode", json=_body(encrypted), headers={"Authorization": f"{scheme} {SHARED}"})
            assert answer.status_code == 200, answer.text
            assert _from_body(answer.json()) == plain
    # Without the database: the shared token alone.
    with serving(TokenAuth(static_token=SHARED)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/decode", json=_body(encrypted), headers=bearer(SHARED)).status_code == 200
        desk_token = http.post("/decode", json=_body(encrypted), headers=bearer(ledgered.tokens["s1"]))
        assert desk_token.status_code == 401


async def test_auth_none_is_unchanged_no_token_needed():
    plain, encrypted = await sealed({"name": NAME})
    with serving(None) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        answer = http.post("/decode", json=_body(encrypted))
        assert answer.status_code == 200 and _from_body(answer.json()) == plain
        assert http.post("/decode", json=_body(encrypted), headers=bearer("anything")).status_code == 200
    assert auth_mode({}) == "none" and auth_from_settings("none", {}) is None
    # As before the setting existed: a shared token alone means it is required.
    assert auth_mode({"ARREARS_CODEC_TOKEN": SHARED}) == "token"
    assert auth_mode({"ARREARS_CODEC_AUTH": "Token"}) == "token"
    assert auth_mode({"ARREARS_CODEC_AUTH": "token"}, "none") == "none"  # the flag wins


def test_the_preflight_needs_no_token_and_allows_the_authorization_header(ledgered: Ledgered):
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        preflight = http.options("/decode", headers={
            "Origin": UI, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == UI
        allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-namespace"} <= allowed


class CountingTokens:
    """A desk token lookup that counts its calls (and can fail), standing in for the database."""

    def __init__(self, identities: dict[str, Identity]) -> None:
        self.identities = identities
        self.calls = 0
        self.failing = False

    def __call__(self, token: str) -> Identity | None:
        self.calls += 1
        if self.failing:
            raise ConnectionError("database down at postgresql://temporal:pw@db")
        return self.identities.get(token)


def test_desk_tokens_are_remembered_for_the_ttl_and_errors_are_not(caplog):
    now = [1000.0]
    lookup = CountingTokens({"arr_1_s": Identity("s1", "supervisor"), "arr_2_a": Identity("a1", "agent")})
    auth = TokenAuth(desk_tokens=lookup, roles={"supervisor"}, ttl=30, clock=lambda: now[0])
    for _ in range(5):
        assert auth.check("Bearer arr_1_s").status == 200
        assert auth.check("Bearer arr_2_a").status == 403
        assert auth.check("Bearer arr_9_x").status == 401
    assert lookup.calls == 3  # one round trip per token, not per request
    now[0] += 31
    del lookup.identities["arr_1_s"]  # revoked: noticed once the entry is older than the ttl
    assert auth.check("Bearer arr_1_s").status == 401 and lookup.calls == 4

    lookup.failing = True
    now[0] += 31
    verdict = auth.check("Bearer arr_2_a")
    assert verdict.status == 503
    assert "pw" not in caplog.text and "ConnectionError" in caplog.text
    lookup.failing = False
    assert auth.check("Bearer arr_2_a").status == 403  # asked again: the failure was not remembered
    assert "arr_" not in repr(auth)

    uncached = TokenAuth(desk_tokens=lookup, roles={"supervisor"}, ttl=0)
    calls = lookup.calls
    uncached.check("Bearer arr_2_a")
    uncached.check("Bearer arr_2_a")
    assert lookup.calls == calls + 2


async def test_a_token_revoked_while_in_use_stops_working_after_the_ttl(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'arrears.db'}"
    tokens = await _users(url)
    _, encrypted = await sealed({"name": NAME})
    now = [0.0]
    auth = TokenAuth(desk_tokens=DeskTokens(url), roles=decrypting_roles(), ttl=30, clock=lambda: now[0])
    with serving(auth) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/decode", json=_body(encrypted), headers=bearer(tokens["s1"])).status_code == 200
        await _revoke(url, "s1")
        assert http.post("/decode", json=_body(encrypted), headers=bearer(tokens["s1"])).status_code == 200
        now[0] += 31
        assert http.post("/decode", json=_body(encrypted), headers=bearer(tokens["s1"])).status_code == 401


async def test_the_log_says_who_decrypted_and_never_a_token(ledgered: Ledgered, caplog):
    caplog.set_level(logging.DEBUG)
    _, encrypted = await sealed({"name": NAME})
    with serving(desk_auth(ledgered)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/decode", json=_body(encrypted), headers=bearer(ledgered.tokens["s1"]))
        http.post("/decode", json=_body(encrypted), headers=bearer(ledgered.tokens["a1"]))
        http.post("/decode", json=_body(encrypted), headers=bearer(SHARED))
        http.post("/decode", json=_body(encrypted), headers=bearer("wrong-token-value"))
    assert "POST decode 200 by s1" in caplog.text and "POST decode 403 by a1" in caplog.text
    assert "POST decode 200 by shared token" in caplog.text and "POST decode 401" in caplog.text
    for secret in (*ledgered.tokens.values(), SHARED, "wrong-token-value", NAME):
        assert secret not in caplog.text
        # A desk token is arr_<id>_<secret>: its id may be looked up (and logged by the database
        # driver), its secret (which may itself hold "_") never.
        if secret.startswith("arr_"):
            assert secret.split("_", 2)[2] not in caplog.text


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--auth", "token"], {}, "set at least one"),
    ([], {"ARREARS_CODEC_AUTH": "token"}, "set at least one"),
    ([], {"ARREARS_CODEC_AUTH": "maybe"}, "ARREARS_CODEC_AUTH: 'maybe' is not one of none, token"),
    (["--auth", "none"], {"ARREARS_CODEC_TOKEN": SHARED}, "ARREARS_CODEC_TOKEN is set but --auth"),
    ([], {"ARREARS_CODEC_AUTH": "none", "ARREARS_CODEC_TOKEN": SHARED}, "unset one of them"),
    (["--auth", "token"], {"ARREARS_CODEC_TOKEN": SHARED, "ARREARS_CODEC_TOKEN_TTL": "soon"}, "not a number"),
    (["--auth", "token"], {"ARREARS_CODEC_TOKEN": SHARED, "ARREARS_CODEC_TOKEN_TTL": "-1"}, "between 0 and"),
    (["--auth", "token"], {"ARREARS_DATABASE_URL": "nosuchdriver://user:hunter2@db/x"}, "cannot open the ledger"),
])
def test_bad_auth_settings_stop_the_server_with_a_reason(argv: list[str], env: dict[str, str], message: str,
                                                          capsys):
    assert server_main(["--port", "0", *argv], env={"ARREARS_PAYLOAD_KEYS": KEYS_SETTING, **env}) == 2
    err = capsys.readouterr().err
    assert message in err and SHARED not in err and "hunter2" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_python_dash_m_with_auth_token_checks_desk_tokens_in_the_database(ledgered: Ledgered):
    plain, encrypted = await sealed({"name": NAME})
    port = _free_port()
    env = {**os.environ, "ARREARS_PAYLOAD_KEYS": KEYS_SETTING, "ARREARS_CODEC_AUTH": "token",
           "ARREARS_CODEC_TOKEN": SHARED, "ARREARS_DATABASE_URL": ledgered.url, "ARREARS_CODEC_ORIGINS": UI}
    process = subprocess.Popen([sys.executable, "-m", "infra.codec_server", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
                time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            def decode(headers: dict[str, str]) -> httpx.Response:
                return http.post("/decode", json=_body(encrypted), headers=headers)

            assert decode({}).status_code == 401
            assert decode(bearer(ledgered.tokens["gone"])).status_code == 401
            assert decode(bearer(ledgered.tokens["a1"])).status_code == 403
            ok = decode(bearer(ledgered.tokens["s1"]))
            assert ok.status_code == 200 and _from_body(ok.json()) == plain
            assert decode(bearer(SHARED)).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode() + process.stderr.read().decode()
    assert "token required" in output and "compliance, supervisor" in output
    for secret in (*ledgered.tokens.values(), SHARED, KEYS_SETTING.split(":")[1]):
        assert secret not in output
