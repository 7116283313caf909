"""A fake SMS provider speaking Arrears' JSON protocol on a real local HTTP server.

Tests script its replies (503 twice, then a slow answer, then 200 ...); what it was sent is kept in
``requests`` (every POST, retries included) and ``messages`` (one per Idempotency-Key: what a
borrower's phone would have received). It honours the Idempotency-Key like a real provider should:
a key it has accepted before gets the same message id again and is not delivered twice.

    with SmsProviderStub(credentials=("arrears", "s3cret")) as stub:
        stub.script(Reply(503), Reply(503))      # then the default: accept
        os.environ["ARREARS_SMS_URL"] = stub.url # http://arrears:s3cret@127.0.0.1:<port>/v1/messages
        ...
        assert len(stub.messages) == 1

Run on its own (``python -m tests.sms_provider_stub --port 8089``) it accepts everything and prints
each message, for demos.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body=None`` on a 2xx means: accept the message and answer its id."""

    status: int = 200
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (after the message was accepted, if it was)
    drip: float = 0.0  # seconds between the body's bytes: a provider that answers, but very slowly


@dataclass(frozen=True)
class Received:
    """One request as the provider saw it."""

    path: str
    headers: dict[str, str]
    payload: Any
    auth: tuple[str, str] | None  # (user, password) from HTTP basic auth, if sent
    at: float = field(default_factory=time.monotonic)  # when it arrived (a monotonic clock)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True)
class Delivered:
    message_id: str
    to: str
    sender: str
    body: str
    reference: str
    idempotency_key: str


class SmsProviderStub:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering POSTs per its script."""

    def __init__(self, *, credentials: tuple[str, str] | None = None, path: str = "/v1/messages") -> None:
        self.credentials = credentials
        self.path = path
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._requests: list[Received] = []
        self._delivered: dict[str, Delivered] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self, port: int = 0) -> SmsProviderStub:
        stub = self

        class Handler(_Handler):
            provider = stub

        self._server = _Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sms-provider-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the SMS provider stub is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The endpoint without credentials."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def url(self) -> str:
        """The endpoint as ARREARS_SMS_URL would name it: with the credentials, if the stub wants them."""
        if self.credentials is None:
            return self.base_url
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}{self.path}"

    # -- script and record --------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order; after them, accept every message."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._delivered.clear()

    @property
    def requests(self) -> list[Received]:
        """Every request received, retries included, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[Delivered]:
        """Messages delivered: one per Idempotency-Key, however often it was sent."""
        with self._lock:
            return list(self._delivered.values())

    def _reply_to(self, received: Received) -> Reply:
        with self._lock:
            self._requests.append(received)
            if self.credentials is not None and received.auth != self.credentials:
                return Reply(401, {"error": "unauthorized", "message": "bad or missing credentials"})
            if received.path.split("?")[0] != self.path:
                return Reply(404, {"error": "not_found"})
            return self._script.popleft() if self._script else Reply()

    def _deliver(self, received: Received) -> str:
        payload = received.payload if isinstance(received.payload, dict) else {}
        with self._lock:
            key = received.idempotency_key or f"no-key-{len(self._requests)}"
            if key not in self._delivered:
                self._delivered[key] = Delivered(
                    message_id=f"SM{len(self._delivered) + 1:06d}", to=str(payload.get("to", "")),
                    sender=str(payload.get("from", "")), body=str(payload.get("body", "")),
                    reference=str(payload.get("reference", "")), idempotency_key=key)
            return self._delivered[key].message_id


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a slow answer closes its socket; that is expected here.
        pass


class _Handler(BaseHTTPRequestHandler):
    provider: SmsProviderStub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        received = Received(path=self.path, headers={k.lower(): v for k, v in self.headers.items()},
                            payload=payload, auth=_basic_auth(self.headers.get("Authorization")))
        stub = self.provider
        reply = stub._reply_to(received)
        body = reply.body
        if 200 <= reply.status < 300 and body is None:
            body = {"message_id": stub._deliver(received)}
        if reply.delay:
            time.sleep(reply.delay)
        data = (body if isinstance(body, str) else json.dumps(body if body is not None else {})).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not reply.drip:
            self.wfile.write(data)
            return
        self.wfile.flush()
        for byte in data:
            time.sleep(reply.drip)
            self.wfile.write(bytes([byte]))
            self.wfile.flush()


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except ValueError:
        return None
    return user, password


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A fake SMS provider that accepts every message.")
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()
    running = SmsProviderStub().start(args.port)
    print(f"SMS provider stub on {running.base_url} (Ctrl-C to stop)", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            delivered = running.messages
            for message in delivered[seen:]:
                print(json.dumps(message.__dict__, ensure_ascii=False), flush=True)
            seen = len(delivered)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
