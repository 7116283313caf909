"""Codec server: lets the Temporal Web UI and CLI show encrypted payloads in clear.

Implements Temporal's remote codec protocol: ``POST /encode`` and ``POST /decode``
(also under one namespace segment, ``/{namespace}/decode``, for the CLI's endpoint
template) with the JSON body ``{"payloads": [...]}`` in Temporal's JSON payload form,
answered in the same shape. ``GET /health`` answers ``{"status": "ok"}``.

    ARREARS_PAYLOAD_KEYS=... python -m infra.codec_server --port 8081
    temporal server start-dev --ui-codec-endpoint http://localhost:8081
    temporal workflow show -w loan-L1 --codec-endpoint http://localhost:8081 \
        [--codec-auth "Bearer $ARREARS_CODEC_TOKEN"]

Who may decrypt (``--auth``, or ``ARREARS_CODEC_AUTH``):

``none``
    No token (or, when ``ARREARS_CODEC_TOKEN`` is set, that one shared token): the loopback
    development default ``make run`` uses.
``token``
    Every POST needs ``Authorization: Bearer <token>``: either ``ARREARS_CODEC_TOKEN`` (a shared
    token for a gateway or script), or a desk API token (``python -m desk tokens create NAME``)
    of a user whose role sees every case and every contact detail (supervisor and compliance in
    ``compliance/roles.toml``), checked in the ledger database ``ARREARS_DATABASE_URL`` and
    remembered for ``ARREARS_CODEC_TOKEN_TTL`` seconds (default 30; 0: ask every time), so a
    revoked token stops working within that time. No or an unknown token: 401; a role that may
    not read borrower data: 403; the database not answering: 503.

Unset, the mode is ``token`` when ``ARREARS_CODEC_TOKEN`` is set and ``none`` otherwise. The Web
UI calls this server from the browser and sends no header of its own choosing: behind the
bank's SSO (``TEMPORAL_AUTH_*``) with ``TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true`` it sends the
signed-in user's access token, which the gateway in front of this server checks before it
forwards the request with ``ARREARS_CODEC_TOKEN``.

Other settings: ``ARREARS_PAYLOAD_KEYS`` (required), ``ARREARS_CODEC_ORIGINS`` (comma-separated
UI origins allowed by CORS; default http://localhost:8233). Anyone who can reach the server
without ``token`` can decrypt: it binds 127.0.0.1 unless ``--host`` says otherwise. Logs name the
method, route, status and who (a desk user's name, or "shared token"), never a token or a payload.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from infra.codec import SETTING, PayloadDecryptionError, codec_from_setting

if TYPE_CHECKING:
    from desk.policy import Identity, Policy

log = logging.getLogger("arrears.codec_server")

ORIGINS_SETTING = "ARREARS_CODEC_ORIGINS"
TOKEN_SETTING = "ARREARS_CODEC_TOKEN"
AUTH_SETTING = "ARREARS_CODEC_AUTH"
TOKEN_TTL_SETTING = "ARREARS_CODEC_TOKEN_TTL"
DATABASE_SETTING = "ARREARS_DATABASE_URL"
AUTH_MODES = ("none", "token")
DEFAULT_TOKEN_TTL = 30.0
DEFAULT_ORIGINS: tuple[str, ...] = ("http://localhost:8233",)
DEFAULT_PORT = 8081
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
ALLOWED_METHODS = "POST, OPTIONS"
MAX_BODY_BYTES = 32 * 1024 * 1024  # a page of history from the UI; Temporal caps a payload at 2 MiB
_BODY_SHAPE = 'a JSON object {"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}'
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([!-~]+)")
_REALM = 'Bearer realm="arrears-codec"'


# -- who may decrypt ----------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What the server makes of a request's ``Authorization`` header."""

    status: int  # 200 accepted; 401 no or unknown token; 403 a role that may not; 503 cannot check now
    reason: str = ""
    who: str | None = None  # for the log: a desk user's name, or "shared token"


ACCEPTED = Verdict(200)


def decrypting_roles(policy: Policy | None = None) -> frozenset[str]:
    """The roles that may read decrypted case payloads: those that see every case and every contact
    detail at the desk, since a decrypted payload shows them all (supervisor and compliance)."""
    from desk.policy import CONTACT_DETAILS, load_policy

    policy = policy or load_policy()
    return frozenset(name for name, role in policy.roles.items()
                     if role.cases == "all" and set(CONTACT_DETAILS) <= role.contact_details)


class DeskTokens:
    """Desk API tokens checked against ``desk_tokens`` in the ledger database, callable from the
    server's request threads: a thread running an event loop of its own owns the connections."""

    def __init__(self, database_url: str, timeout: float = 5.0) -> None:
        from desk.store import DeskStore
        from ledger import Ledger

        async def opened() -> DeskStore:
            return DeskStore(Ledger.connect(database_url, pool_size=2))

        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="codec-desk-tokens", daemon=True)
        self._thread.start()
        try:
            self._store = self._run(opened())
        except BaseException:
            self._stop_loop()
            raise

    def __repr__(self) -> str:  # never the database URL (it holds a password)
        return "DeskTokens()"

    def _run(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise

    def __call__(self, token: str) -> Identity | None:
        return self._run(self._store.token_identity(token))

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._store.ledger.close())
        finally:
            self._stop_loop()


class TokenAuth:
    """``Authorization: Bearer <token>`` required: the shared ``static_token``, or a desk API token
    (looked up with ``desk_tokens``) of a user whose role is one of ``roles``. What a desk token
    resolves to is remembered for ``ttl`` seconds (by the token's SHA-256, never the token)."""

    def __init__(self, *, static_token: str | None = None, desk_tokens: Callable[[str], Identity | None] | None = None,
                 roles: Collection[str] = (), ttl: float = DEFAULT_TOKEN_TTL, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not static_token and desk_tokens is None:
            raise ValueError("token authentication needs a shared token or desk tokens to check")
        self._static = static_token.encode() if static_token else None
        self.desk_tokens = desk_tokens
        self.roles = frozenset(roles)
        self.ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Identity | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        return (f"TokenAuth(shared_token={self._static is not None}, desk_tokens={self.desk_tokens is not None}, "
                f"roles={sorted(self.roles)!r}, ttl={self.ttl!r})")

    def describe(self) -> str:
        accepted = (["the shared token"] if self._static else []) + (
            [f"desk tokens of {', '.join(sorted(self.roles)) or 'no role'}"] if self.desk_tokens else [])
        return "token required: " + " or ".join(accepted)

    def check(self, header: str | None) -> Verdict:
        if header is None or not header.strip():
            return Verdict(401, "a bearer token is required (Authorization: Bearer <token>)")
        match = _BEARER.fullmatch(header.strip())
        if match is None:
            return Verdict(401, "the Authorization header must be: Bearer <token>")
        token = match.group(1)
        if self._static is not None and hmac.compare_digest(token.encode(), self._static):
            return Verdict(200, who="shared token")
        if self.desk_tokens is None:
            return Verdict(401, "wrong bearer token")
        try:
            identity = self._desk_identity(token)
        except Exception as err:  # noqa: BLE001 - the type only: a driver's message might quote the URL
            log.error("codec server cannot check desk tokens: %s", type(err).__name__)
            return Verdict(503, "cannot check the token now; try again")
        if identity is None:
            return Verdict(401, "unknown or revoked token")
        if identity.role not in self.roles:
            return Verdict(403, f"role {identity.role} may not read decrypted case payloads "
                                f"({', '.join(sorted(self.roles)) or 'no role'} may)", who=identity.name)
        return Verdict(200, who=identity.name)

    def _desk_identity(self, token: str) -> Identity | None:
        assert self.desk_tokens is not None
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        identity = self.desk_tokens(token)  # an error is not remembered: the next request asks again
        if self.ttl > 0:
            with self._lock:
                self._cache[key] = (now + self.ttl, identity)
                self._cache.move_to_end(key)
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
        return identity

    def close(self) -> None:
        close = getattr(self.desk_tokens, "close", None)
        if close is not None:
            close()


# -- the server -------------------------------------------------------------------
class CodecHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding the codec, the allowed origins and who may decrypt
    (``auth``; or just the shared ``token``; neither: anyone who reaches it)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], codec: PayloadCodec, origins: Sequence[str] = DEFAULT_ORIGINS,
                 token: str | None = None, auth: TokenAuth | None = None) -> None:
        if token and auth is not None:
            raise ValueError("give the shared token to the TokenAuth, not beside it")
        self.codec = codec
        self.origins = frozenset(o.rstrip("/") for o in origins if o.strip())
        self.auth = auth if auth is not None else TokenAuth(static_token=token) if token else None
        super().__init__(address, CodecRequestHandler)

    def __repr__(self) -> str:  # never the token
        return f"CodecHTTPServer(address={self.server_address!r}, origins={sorted(self.origins)!r})"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def check(self, header: str | None) -> Verdict:
        return ACCEPTED if self.auth is None else self.auth.check(header)


class CodecRequestHandler(BaseHTTPRequestHandler):
    """One request of the remote codec protocol."""

    server: CodecHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "ArrearsCodec/1"

    def version_string(self) -> str:  # no Python version in the Server header
        return self.server_version

    # -- routing ---------------------------------------------------------------
    def _route(self) -> str | None:
        """``encode``/``decode`` for ``/encode``, ``/{namespace}/decode``...; ``health``; else None."""
        parts = [p for p in urlsplit(getattr(self, "path", "") or "").path.split("/") if p]
        if parts == ["health"]:
            return "health"
        if 1 <= len(parts) <= 2 and parts[-1] in ("encode", "decode"):
            return parts[-1]
        return None

    def do_OPTIONS(self) -> None:
        if self._route() not in ("encode", "decode"):
            self._send_json(404, {"error": "not found"})
            return
        origin = self.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            self._send_json(403, {"error": "origin not allowed; add it to " + ORIGINS_SETTING})
            return
        self.send_response(204)
        self._cors_headers()
        self.send_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
        self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        route = self._route()
        if route == "health":
            self._send_json(200, {"status": "ok"})
        elif route is None:
            self._send_json(404, {"error": "not found"})
        else:
            self._send_json(405, {"error": "use POST"}, extra={"Allow": ALLOWED_METHODS})

    def do_POST(self) -> None:
        self._who: str | None = None
        route = self._route()
        if route not in ("encode", "decode"):
            self.close_connection = True
            self._send_json(404 if route is None else 405, {"error": "not found" if route is None else "use GET"})
            return
        origin = self.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin):
            self.close_connection = True
            self._send_json(403, {"error": "origin not allowed; add it to " + ORIGINS_SETTING})
            return
        verdict = self.server.check(self.headers.get("Authorization"))
        self._who = verdict.who
        if verdict.status != 200:
            self.close_connection = True
            extra = {}
            if verdict.status == 401:
                sent = bool((self.headers.get("Authorization") or "").strip())
                extra["WWW-Authenticate"] = _REALM + (', error="invalid_token"' if sent else "")
            elif verdict.status == 403:
                extra["WWW-Authenticate"] = _REALM + ', error="insufficient_scope"'
            else:
                extra["Retry-After"] = "5"
            self._send_json(verdict.status, {"error": verdict.reason}, extra=extra)
            return
        body = self._read_body()
        if body is None:
            return
        payloads, problem = _parse(body)
        if payloads is None:
            self._send_json(400, {"error": f"malformed body: {problem}; expected {_BODY_SHAPE}"})
            return
        codec = self.server.codec
        try:
            if route == "encode":
                result = asyncio.run(codec.encode(list(payloads.payloads)))
            else:
                result = asyncio.run(codec.decode(list(payloads.payloads)))
        except PayloadDecryptionError as err:  # names a key id at most
            self._send_json(400, {"error": str(err)})
            return
        except Exception as err:  # noqa: BLE001 - the type only: a message might quote a payload
            log.error("codec %s failed: %s", route, type(err).__name__)
            self._send_json(500, {"error": f"codec {route} failed ({type(err).__name__})"})
            return
        self._send_json(200, {"payloads": [json_format.MessageToDict(p) for p in result]})

    # -- helpers ---------------------------------------------------------------
    def _origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/") in self.server.origins

    def _cors_headers(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and self._origin_allowed(origin):
            self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Vary", "Origin")

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            self.close_connection = True
            self._send_json(411, {"error": "a Content-Length is required"})
            return None
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_json(400, {"error": "bad Content-Length"})
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    def _send_json(self, status: int, body: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors_headers()
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:  # answered before reading the body: the client must not reuse the connection
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        route = self._route() or "?"
        who = getattr(self, "_who", None) if self.command == "POST" else None
        log.info("%s %s %s%s", self.command or "-", route, code, f" by {who}" if who else "")

    def log_message(self, format: str, *args: Any) -> None:
        # Only http.server's own errors reach here (bad request lines): no payload contents.
        log.warning("codec server: " + format, *args)


def _parse(body: bytes) -> tuple[Payloads | None, str]:
    """The payloads of a request body, or None and why (never quoting the body)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None, "not JSON"
    if isinstance(document, dict) and "payloads" not in document and not set(document) - {"payloads"}:
        # No payloads at all: protobuf's JSON form omits an empty list (the CLI sends `{}` for a
        # query without arguments).
        return Payloads(), ""
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        return None, "no \"payloads\" list"
    if not all(isinstance(item, dict) for item in document["payloads"]):
        return None, "the payloads are not in Temporal's JSON payload form"
    payloads = Payloads()
    try:  # strict: an unknown field is an error, never a payload silently emptied
        json_format.ParseDict(document, payloads)
    except (json_format.ParseError, TypeError, ValueError):
        return None, "the payloads are not in Temporal's JSON payload form"
    return payloads, ""


def make_server(codec: PayloadCodec, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                origins: Sequence[str] = DEFAULT_ORIGINS, token: str | None = None,
                auth: TokenAuth | None = None) -> CodecHTTPServer:
    """A bound, not yet serving, codec server (``port=0``: any free port; see ``server.url``)."""
    return CodecHTTPServer((host, port), codec, origins=origins, token=token, auth=auth)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_mode(env: Mapping[str, str], flag: str | None = None) -> str:
    """``--auth``, else ``ARREARS_CODEC_AUTH``, else ``token`` when a shared token is set (as before
    the setting existed), else ``none``."""
    mode = (flag or env.get(AUTH_SETTING, "")).strip().lower()
    if not mode:
        return "token" if env.get(TOKEN_SETTING) else "none"
    if mode not in AUTH_MODES:
        raise ValueError(f"{AUTH_SETTING}: {mode!r} is not one of {', '.join(AUTH_MODES)}")
    return mode


def auth_from_settings(mode: str, env: Mapping[str, str]) -> TokenAuth | None:
    """Who may decrypt under ``mode``; ValueError names the setting at fault (never a token or URL)."""
    token = env.get(TOKEN_SETTING) or None
    if mode == "none":
        if token:  # only an explicit none gets here with a token: which one was meant?
            raise ValueError(f"{TOKEN_SETTING} is set but --auth/{AUTH_SETTING} is none: unset one of them")
        return None
    database_url = env.get(DATABASE_SETTING) or None
    if token is None and database_url is None:
        raise ValueError(f"--auth token accepts {TOKEN_SETTING} and desk API tokens checked in "
                         f"{DATABASE_SETTING}: set at least one")
    ttl_text = env.get(TOKEN_TTL_SETTING, "").strip()
    try:
        ttl = float(ttl_text) if ttl_text else DEFAULT_TOKEN_TTL
    except ValueError:
        raise ValueError(f"{TOKEN_TTL_SETTING}: {ttl_text!r} is not a number of seconds") from None
    if not 0 <= ttl <= 3600:
        raise ValueError(f"{TOKEN_TTL_SETTING}: must be between 0 and 3600 seconds, not {ttl_text}")
    if database_url is None:
        return TokenAuth(static_token=token, ttl=ttl)
    from desk.policy import PolicyError

    try:
        roles = decrypting_roles()
    except PolicyError as err:
        raise ValueError(str(err)) from None
    try:
        desk_tokens = DeskTokens(database_url)
    except Exception as err:  # noqa: BLE001 - the type only: the message may quote the URL's password
        raise ValueError(f"{DATABASE_SETTING}: cannot open the ledger database ({type(err).__name__})") from None
    return TokenAuth(static_token=token, desk_tokens=desk_tokens, roles=roles, ttl=ttl)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``python -m infra.codec_server [--host H] [--port P] [--origin URL ...] [--auth none|token]``;
    exit 2 on bad settings."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m infra.codec_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--origin", action="append", default=None,
                        help=f"a Web UI origin allowed by CORS, repeatable (default: {ORIGINS_SETTING} "
                             f"or {DEFAULT_ORIGINS[0]})")
    parser.add_argument("--auth", choices=AUTH_MODES, default=None,
                        help=f"token: every POST needs a bearer token ({TOKEN_SETTING}, or a desk API token of a "
                             f"role that may read borrower data, checked in {DATABASE_SETTING}); none: no token "
                             f"(loopback development). Default: {AUTH_SETTING}, else token when {TOKEN_SETTING} "
                             "is set, else none")
    args = parser.parse_args(argv)

    try:
        codec = codec_from_setting(env.get(SETTING))
    except ValueError as err:
        print(f"codec server: {err}", file=sys.stderr)
        return 2
    if codec is None:
        print(f"codec server: {SETTING} is not set: nothing to decrypt with. Generate a key with "
              "`python -m infra.codec keygen` and give the worker and this server the same value.", file=sys.stderr)
        return 2
    origins = args.origin or [o.strip() for o in env.get(ORIGINS_SETTING, "").split(",") if o.strip()] \
        or list(DEFAULT_ORIGINS)
    try:
        mode = auth_mode(env, args.auth)
        auth = auth_from_settings(mode, env)
    except ValueError as err:
        print(f"codec server: {err}", file=sys.stderr)
        return 2

    if not logging.getLogger().handlers:
        from infra import logging as arrears_logging
        arrears_logging.configure()
    try:
        server = make_server(codec, args.host, args.port, origins=origins, auth=auth)
    except OSError as err:
        print(f"codec server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        if auth is not None:
            auth.close()
        return 2
    if not _is_loopback(args.host) and auth is None:
        log.warning("codec server listens on %s without a token (--auth none): anyone who can reach it can "
                    "decrypt payloads", args.host)
    if auth is not None and auth.desk_tokens is not None:
        try:  # the database may still be starting: say so now, answer 503 until it is up
            auth.desk_tokens("arr_0_0")
        except Exception as err:  # noqa: BLE001 - the type only
            log.warning("codec server cannot read desk tokens yet (%s): desk tokens get 503 until it can",
                        type(err).__name__)
    # PID 1 in a container ignores SIGTERM unless handled: stop serving cleanly.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("codec server on %s (keys %s; origins %s; %s)", server.url, ", ".join(codec.key_ids),
             ", ".join(sorted(server.origins)), auth.describe() if auth is not None else "no token required")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if auth is not None:
            auth.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
