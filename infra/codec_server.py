"""Codec server: lets the Temporal Web UI and CLI show encrypted payloads in clear.

Implements Temporal's remote codec protocol: ``POST /encode`` and ``POST /decode``
(also under one namespace segment, ``/{namespace}/decode``, for the CLI's endpoint
template) with the JSON body ``{"payloads": [...]}`` in Temporal's JSON payload form,
answered in the same shape. ``GET /health`` answers ``{"status": "ok"}``.

    ARREARS_PAYLOAD_KEYS=... python -m infra.codec_server --port 8081
    temporal server start-dev --ui-codec-endpoint http://localhost:8081
    temporal workflow show -w loan-L1 --codec-endpoint http://localhost:8081 \
        [--codec-auth "Bearer $ARREARS_CODEC_TOKEN"]

Settings: ``ARREARS_PAYLOAD_KEYS`` (required), ``ARREARS_CODEC_ORIGINS`` (comma-separated
UI origins allowed by CORS; default http://localhost:8233), ``ARREARS_CODEC_TOKEN``
(optional; then every POST needs ``Authorization: Bearer <token>``). Anyone who can reach
the server can decrypt: it binds 127.0.0.1 unless ``--host`` says otherwise. Logs name
the method, route and status only, never a payload.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from infra.codec import SETTING, PayloadDecryptionError, codec_from_setting

log = logging.getLogger("arrears.codec_server")

ORIGINS_SETTING = "ARREARS_CODEC_ORIGINS"
TOKEN_SETTING = "ARREARS_CODEC_TOKEN"
DEFAULT_ORIGINS: tuple[str, ...] = ("http://localhost:8233",)
DEFAULT_PORT = 8081
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
ALLOWED_METHODS = "POST, OPTIONS"
MAX_BODY_BYTES = 32 * 1024 * 1024  # a page of history from the UI; Temporal caps a payload at 2 MiB
_BODY_SHAPE = 'a JSON object {"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}'


class CodecHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server holding the codec, the allowed origins and the optional token."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], codec: PayloadCodec, origins: Sequence[str] = DEFAULT_ORIGINS,
                 token: str | None = None) -> None:
        self.codec = codec
        self.origins = frozenset(o.rstrip("/") for o in origins if o.strip())
        self._expected_auth = f"Bearer {token}".encode() if token else None
        super().__init__(address, CodecRequestHandler)

    def __repr__(self) -> str:  # never the token
        return f"CodecHTTPServer(address={self.server_address!r}, origins={sorted(self.origins)!r})"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def authorized(self, header: str | None) -> bool:
        if self._expected_auth is None:
            return True
        return header is not None and hmac.compare_digest(header.strip().encode(), self._expected_auth)


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
        if not self.server.authorized(self.headers.get("Authorization")):
            self.close_connection = True
            self._send_json(401, {"error": "missing or wrong bearer token"},
                            extra={"WWW-Authenticate": 'Bearer realm="arrears-codec"'})
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
        log.info("%s %s %s", self.command or "-", route, code)

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
                origins: Sequence[str] = DEFAULT_ORIGINS, token: str | None = None) -> CodecHTTPServer:
    """A bound, not yet serving, codec server (``port=0``: any free port; see ``server.url``)."""
    return CodecHTTPServer((host, port), codec, origins=origins, token=token)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``python -m infra.codec_server [--host H] [--port P] [--origin URL ...]``; exit 2 on bad settings."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m infra.codec_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--origin", action="append", default=None,
                        help=f"a Web UI origin allowed by CORS, repeatable (default: {ORIGINS_SETTING} "
                             f"or {DEFAULT_ORIGINS[0]})")
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
    token = env.get(TOKEN_SETTING) or None

    if not logging.getLogger().handlers:
        from infra import logging as arrears_logging
        arrears_logging.configure()
    try:
        server = make_server(codec, args.host, args.port, origins=origins, token=token)
    except OSError as err:
        print(f"codec server: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and token is None:
        log.warning("codec server listens on %s without %s: anyone who can reach it can decrypt payloads",
                    args.host, TOKEN_SETTING)
    # PID 1 in a container ignores SIGTERM unless handled: stop serving cleanly.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("codec server on %s (keys %s; origins %s; token %s)", server.url, ", ".join(codec.key_ids),
             ", ".join(sorted(server.origins)), "required" if token else "not required")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
