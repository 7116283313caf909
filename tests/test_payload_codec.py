"""Payload encryption (infra.codec) and the codec server for the Temporal UI and CLI (infra.codec_server)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.failure.v1 import Failure
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    QueryWorkflowRequest,
)
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.loan import Loan
from infra import codec as codec_module
from infra.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadDecryptionError,
    codec_from_setting,
    data_converter_with,
    generate_key,
    parse_keys,
)
from infra.codec_server import CodecHTTPServer, make_server
from infra.codec_server import main as server_main
from infra.search_attributes import ensure_search_attributes
from infra.settings import Settings
from tests.conftest import DEV_SERVER, ROOT, TEST_SERVER, events, make_loan, start_case
from worker import build_activities, build_worker
from workflows.field_visit import FieldVisitWorkflow
from workflows.loan_collection import LoanCollectionWorkflow

KEY_A = bytes(range(32))
KEY_B = b"\xfb\xff" * 16  # "+/+/" in standard base64, "-_-_" in urlsafe
KEY_C = bytes(range(100, 132))
B64_A = base64.b64encode(KEY_A).decode()
B64_B_STD = base64.b64encode(KEY_B).decode()
B64_B_URL = base64.urlsafe_b64encode(KEY_B).decode()
SECRETS_TEXT = (B64_A, B64_B_STD, B64_B_URL, B64_A.rstrip("="), B64_B_URL.rstrip("="))

NAME, PHONE, EMAIL, ADDRESS = "Ada Lovelace-Example", "+15555550199", "ada.lovelace@example.org", "42 Cipher Lane, Springfield"
PERSONAL = (NAME, PHONE, EMAIL, ADDRESS)
UI = "http://localhost:8233"
REPLAY_WORKFLOWS = [LoanCollectionWorkflow, FieldVisitWorkflow]


def codec(*ids: str) -> EncryptionCodec:
    keys = {"k-a": KEY_A, "k-b": KEY_B, "k-c": KEY_C}
    return EncryptionCodec([(key_id, keys[key_id]) for key_id in ids or ("k-a",)])


def payloads(*values: Any) -> list[Payload]:
    return pydantic_data_converter.payload_converter.to_payloads(list(values))


def borrower() -> Loan:
    return make_loan(borrower_name=NAME, phone=PHONE, email=EMAIL, address=ADDRESS, days_past_due=5)


# -- the codec ------------------------------------------------------------------
async def test_payloads_round_trip_and_leave_only_ciphertext():
    original = payloads(borrower(), {"note": NAME}, None, "x" * 1_000_000, b"\x00\x01")
    original.append(Payload())  # no metadata, no data
    the_codec = codec("k-a")
    encoded = await the_codec.encode(original)

    assert len(encoded) == len(original)
    for before, after in zip(original, encoded, strict=True):
        assert dict(after.metadata) == {"encoding": ENCODING, KEY_ID_METADATA: b"k-a"}
        # nonce + ciphertext (as long as the serialized payload) + 16-byte tag
        assert len(after.data) == 12 + len(before.SerializeToString()) + 16
        for text in PERSONAL:
            assert text.encode() not in after.SerializeToString()
    assert await the_codec.decode(encoded) == original

    # Through the data converter, as a worker and a client use it: the typed value comes back.
    converter = data_converter_with(the_codec)
    loan = borrower()
    [wire] = await converter.encode([loan])
    assert wire.metadata["encoding"] == ENCODING and NAME.encode() not in wire.data
    assert await converter.decode([wire], [Loan]) == [loan]


async def test_every_encryption_uses_a_fresh_nonce():
    the_codec = codec("k-a")
    [payload] = payloads({"name": NAME})
    first, second = await the_codec.encode([payload, payload])
    third, = await the_codec.encode([payload])
    datas = {first.data, second.data, third.data}
    assert len(datas) == 3
    assert len({d[:12] for d in datas}) == 3
    assert await the_codec.decode([first, second, third]) == [payload] * 3


def _with(payload: Payload, *, data: bytes | None = None, key_id: bytes | None = None) -> Payload:
    changed = Payload()
    changed.CopyFrom(payload)
    if data is not None:
        changed.data = data
    if key_id is not None:
        changed.metadata[KEY_ID_METADATA] = key_id
    return changed


async def test_tampering_with_the_ciphertext_nonce_or_key_id_is_detected():
    the_codec = codec("k-a", "k-b")
    [sealed] = await the_codec.encode(payloads({"name": NAME}))
    data = sealed.data

    flipped_ciphertext = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    flipped_nonce = bytes([data[0] ^ 0x80]) + data[1:]
    flipped_tag = data[:-1] + bytes([data[-1] ^ 1])
    for bad in (flipped_ciphertext, flipped_nonce, flipped_tag, data[:-1] + data[-1:] + b"\x00"):
        with pytest.raises(PayloadDecryptionError, match="'k-a' failed authentication"):
            await the_codec.decode([_with(sealed, data=bad)])
    with pytest.raises(PayloadDecryptionError, match="truncated"):
        await the_codec.decode([_with(sealed, data=data[:27])])
    # Another configured key's id: decryption fails, it does not silently use the other key.
    with pytest.raises(PayloadDecryptionError, match="'k-b' failed authentication"):
        await the_codec.decode([_with(sealed, key_id=b"k-b")])
    # The key id is bound as associated data: even under an id whose key has the same bytes,
    # a payload moved to another id does not decrypt.
    twins = EncryptionCodec([("one", KEY_A), ("two", KEY_A)])
    [moved] = await twins.encode(payloads("x"))
    assert (await twins.decode([moved]))[0] == payloads("x")[0]
    with pytest.raises(PayloadDecryptionError, match="'two' failed authentication"):
        await twins.decode([_with(moved, key_id=b"two")])
    missing_id = _with(sealed)
    del missing_id.metadata[KEY_ID_METADATA]
    with pytest.raises(PayloadDecryptionError, match=KEY_ID_METADATA):
        await the_codec.decode([missing_id])


async def test_an_unknown_key_id_is_named_and_no_key_material_is_shown():
    [sealed] = await codec("k-c").encode(payloads({"name": NAME}))
    the_codec = codec("k-a", "k-b")
    with pytest.raises(PayloadDecryptionError) as caught:
        await the_codec.decode([sealed])
    message = str(caught.value)
    assert "'k-c'" in message and "not configured" in message and "k-a, k-b" in message
    for text in (*SECRETS_TEXT, base64.b64encode(KEY_C).decode(), KEY_A.hex(), NAME):
        assert text not in message
    assert "k-a" in repr(the_codec) and B64_A not in repr(the_codec) and str(KEY_A) not in repr(the_codec)


async def test_unencrypted_payloads_pass_through_decode_untouched():
    plain = [*payloads({"name": NAME}, None, b"raw", "text"), Payload(),
             Payload(metadata={"encoding": b"binary/zlib"}, data=b"\x78\x9c")]
    decoded = await codec("k-a").decode(plain)
    assert decoded == plain
    # A mixed batch (a history from before and after encryption) decodes payload by payload.
    [sealed] = await codec("k-a").encode(plain[:1])
    assert await codec("k-a").decode([plain[1], sealed, plain[2]]) == [plain[1], plain[0], plain[2]]


async def test_rotation_the_new_key_encrypts_and_the_old_key_still_decrypts():
    before = codec("k-a")
    after = codec("k-b", "k-a")  # the new key first, the retired one kept for old payloads
    original = payloads({"name": NAME})
    [old] = await before.encode(original)
    [new] = await after.encode(original)

    assert old.metadata[KEY_ID_METADATA] == b"k-a" and new.metadata[KEY_ID_METADATA] == b"k-b"
    assert after.encrypting_key_id == "k-b" and after.key_ids == ["k-b", "k-a"]
    assert await after.decode([old, new]) == original * 2
    with pytest.raises(PayloadDecryptionError, match="'k-b'"):
        await before.decode([new])


def test_the_setting_accepts_standard_and_urlsafe_base64_with_or_without_padding():
    value = f" k-a:{B64_A} , k-b:{B64_B_URL.rstrip('=')},k-c:{base64.b64encode(KEY_C).decode()}"
    assert parse_keys(value) == [("k-a", KEY_A), ("k-b", KEY_B), ("k-c", KEY_C)]
    assert parse_keys(f"k-b:{B64_B_STD}") == [("k-b", KEY_B)]
    the_codec = codec_from_setting(value)
    assert isinstance(the_codec, EncryptionCodec) and the_codec.key_ids == ["k-a", "k-b", "k-c"]
    assert codec_from_setting(None) is None and codec_from_setting("") is None and codec_from_setting("  ") is None


@pytest.mark.parametrize(("value", "entry", "reason"), [
    (B64_A, "entry 1 of 1", "no ':'"),
    (f"k-a:{B64_A},{B64_B_STD}", "entry 2 of 2", "no ':'"),
    (f"k-a:{B64_A},:{B64_B_STD}", "entry 2 of 2", "key id before ':' is empty"),
    ("k-a:", "entry 1 of 1", "key after ':' is empty"),
    (f"k-a:{B64_A},,k-b:{B64_B_STD}", "entry 2 of 3", "empty"),
    (f"k-a:{B64_A[:-6]}*{B64_A[-5:]}", "entry 1 of 1", "not valid base64"),
    (f"k-a:{B64_A},k-b:{base64.b64encode(KEY_B[:16]).decode()}", "entry 2 of 2", "32 bytes (AES-256), not 16"),
    (f"k-a:{B64_A},k-a:{B64_B_STD}", "entry 2 of 2", "repeats entry 1"),
    (f"bad id!:{B64_A}", "entry 1 of 1", "key id must be"),
    (f"{B64_B_STD}:{B64_A}", "entry 1 of 1", "key id must be"),  # key and id swapped
])
def test_a_bad_setting_names_the_entry_and_the_reason_never_the_key(value: str, entry: str, reason: str):
    with pytest.raises(ValueError) as caught:
        parse_keys(value)
    message = str(caught.value)
    assert message.startswith(f"ARREARS_PAYLOAD_KEYS: {entry}: ")
    assert reason in message
    for text in SECRETS_TEXT:
        assert text not in message and text[:12] not in message
    with pytest.raises(ValueError):
        codec_from_setting(value)


def test_an_empty_setting_is_refused_by_parse_keys():
    with pytest.raises(ValueError, match="ARREARS_PAYLOAD_KEYS: no keys"):
        parse_keys(" , ")


def test_generated_keys_parse_are_random_and_their_ids_say_nothing_of_the_key():
    entries = [generate_key(datetime(2025, 3, 4, tzinfo=UTC)) for _ in range(20)]
    parsed = [parse_keys(entry)[0] for entry in entries]
    assert len({key for _, key in parsed}) == 20 and len({key_id for key_id, _ in parsed}) == 20
    for entry, (key_id, key) in zip(entries, parsed, strict=True):
        assert key_id.startswith("k20250304-") and len(key) == 32
        assert key_id not in base64.urlsafe_b64encode(key).decode() and entry.split(":", 1)[1] not in key_id
    assert EncryptionCodec(parsed).key_ids[0] == parsed[0][0]


def test_the_command_line_prints_a_usable_key_and_checks_the_setting(monkeypatch, capsys):
    assert codec_module.main(["keygen"]) == 0
    entry = capsys.readouterr().out.strip()
    [(key_id, _)] = parse_keys(entry)

    monkeypatch.setenv("ARREARS_PAYLOAD_KEYS", f"{entry},k-a:{B64_A}")
    assert codec_module.main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"encrypting with {key_id}" in out and entry.split(":", 1)[1] not in out and B64_A not in out
    monkeypatch.setenv("ARREARS_PAYLOAD_KEYS", f"k-a:{B64_A[:20]}")
    assert codec_module.main(["check"]) == 2
    assert "entry 1 of 1" in capsys.readouterr().err
    assert codec_module.main([]) == 2


def test_data_converter_with_keeps_the_pydantic_converter():
    assert data_converter_with(None) is pydantic_data_converter
    the_codec = codec("k-a")
    converter = data_converter_with(the_codec)
    assert converter.payload_codec is the_codec
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert converter.failure_converter_class is pydantic_data_converter.failure_converter_class
    assert pydantic_data_converter.payload_codec is None  # the shared converter is not changed


async def test_failure_messages_are_encrypted_only_when_asked():
    error = ApplicationError(f"e-mail rejected: 550 <{EMAIL}> unknown", type="EmailRejected")
    clear, sealed = Failure(), Failure()
    await data_converter_with(codec("k-a")).encode_failure(error, clear)
    assert EMAIL.encode() in clear.SerializeToString()  # the control: by default a message stays in clear
    converter = data_converter_with(codec("k-a"), encode_failure_attributes=True)
    await converter.encode_failure(error, sealed)
    assert EMAIL.encode() not in sealed.SerializeToString()
    assert sealed.encoded_attributes.metadata["encoding"] == ENCODING
    restored = await converter.decode_failure(sealed)
    assert isinstance(restored, ApplicationError) and EMAIL in restored.message and restored.type == "EmailRejected"


# -- on the time-skipping server --------------------------------------------------
def _payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a protobuf message, with where it sits."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    yield from _payloads_in(item, f"{where}[{key}]")
        elif isinstance(value, Message):
            yield from _payloads_in(value, where)
        else:  # a repeated message field
            for index, item in enumerate(value):
                yield from _payloads_in(item, f"{where}[{index}]")


async def _raw_history(client: Client, workflow_id: str) -> list[Any]:
    """The history as the server stores it: the raw gRPC service, no data converter at all."""
    events_: list[Any] = []
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history(GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
            next_page_token=token))
        events_.extend(page.history.events)
        token = page.next_page_token
        if not token:
            return events_


@contextlib.asynccontextmanager
async def _case_worker(the_codec: EncryptionCodec | None, tmp_path: Path):
    """A time-skipping server whose client encrypts with ``the_codec`` (or not), and a worker on it."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=data_converter_with(the_codec))
    try:
        await ensure_search_attributes(env.client)
        settings = Settings(data_dir=tmp_path / "data")
        activities = build_activities(settings)
        try:
            async with build_worker(env.client, settings, task_queue=f"tq-{uuid.uuid4().hex}",
                                    activities=activities) as worker:
                yield env, worker
        finally:
            await activities.aclose()
    finally:
        await env.shutdown()


@pytest.mark.parametrize("encrypted", [True, False], ids=["with-codec", "control-without-codec"])
async def test_borrower_data_never_reaches_the_history_in_clear(tmp_path: Path, encrypted: bool):
    the_codec = codec("k-b", "k-a") if encrypted else None
    async with _case_worker(the_codec, tmp_path) as (env, worker):
        loan = borrower()
        handle = await start_case(env.client, worker, loan)
        await env.sleep(timedelta(days=3))
        state = await handle.query("status")  # through the client's codec
        raw_query = await env.client.workflow_service.query_workflow(QueryWorkflowRequest(
            namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=handle.id),
            query=WorkflowQuery(query_type="status")))
        plain_client = Client(**{**env.client.config(), "data_converter": pydantic_data_converter})
        plain_query: Any
        try:
            plain_query = await plain_client.get_workflow_handle(handle.id).query("status")
        except Exception as err:  # noqa: BLE001 - whatever the SDK raises on an unknown encoding
            plain_query = err
        history_events = await _raw_history(env.client, handle.id)
        fetched = await handle.fetch_history()

    # The case ran: it opened and sent the borrower its first SMS (to the phone in the input).
    assert state["loan_id"] == loan.loan_id and events(state, "sms_sent", "sent")
    sms = [json.loads(p.read_text()) for p in (tmp_path / "data" / "outbox" / "sms").glob("*.json")]
    assert sms and PHONE in json.dumps(sms)

    raw = b"".join(event.SerializeToString() for event in history_events)
    assert len(history_events) > 10
    found = [text for text in PERSONAL if text.encode() in raw]
    query_bytes = raw_query.query_result.SerializeToString()
    if not encrypted:
        # The control: without the codec, all four are there for anyone reading the history.
        assert found == list(PERSONAL)
        assert ENCODING not in raw and not isinstance(plain_query, Exception)
        return

    assert found == []
    assert loan.loan_id.encode() not in query_bytes
    assert raw_query.query_result.payloads[0].metadata["encoding"] == ENCODING
    # Every payload the SDK writes is encrypted; only search attributes (indexed by the server, no
    # personal data by design), headers (not passed to codecs by default) and the patch markers
    # the SDK core writes itself (the patch id) stay in clear.
    clear = [where for event in history_events for where, p in _payloads_in(event)
             if p.metadata.get("encoding") != ENCODING
             and ".search_attributes." not in where and ".header." not in where
             and not where.startswith(".marker_recorded_event_attributes.details[patch-data]")]
    assert clear == []
    encrypted_count = sum(1 for event in history_events for _, p in _payloads_in(event)
                          if p.metadata.get("encoding") == ENCODING)
    assert encrypted_count >= 5
    # A client without the keys cannot read the case.
    assert isinstance(plain_query, Exception)

    # The encrypted history replays with the codec, and not without it.
    with_codec = Replayer(workflows=REPLAY_WORKFLOWS, data_converter=data_converter_with(the_codec))
    assert (await with_codec.replay_workflow(fetched)).replay_failure is None
    without = Replayer(workflows=REPLAY_WORKFLOWS, data_converter=pydantic_data_converter)
    assert (await without.replay_workflow(fetched, raise_on_replay_failure=False)).replay_failure is not None


class _StrictCodec(EncryptionCodec):
    """A codec that (wrongly) refuses unencrypted payloads: the control for pass-through."""

    async def decode(self, payloads: Any) -> list[Payload]:
        if any(p.metadata.get("encoding") != ENCODING for p in payloads):
            raise PayloadDecryptionError("not encrypted")
        return await super().decode(payloads)


HISTORY_FILES = [ROOT / "tests" / "histories" / name for name in (
    "untouched_default_ladder--0--loan-REPLAY-LADDER.json",
    "untouched_default_ladder--1--loan-REPLAY-LADDER-visit-12.json",
)]


@pytest.mark.parametrize("path", HISTORY_FILES, ids=[p.name.split("--", 1)[1] for p in HISTORY_FILES])
async def test_a_history_recorded_before_encryption_replays_with_the_codec(path: Path):
    text = path.read_text()
    assert base64.b64encode(b"json/plain").decode() in text  # recorded in clear
    history = WorkflowHistory.from_json(path.stem.split("--")[-1], json.loads(text))
    replayer = Replayer(workflows=REPLAY_WORKFLOWS, data_converter=data_converter_with(codec("k-b", "k-a")))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
    strict = Replayer(workflows=REPLAY_WORKFLOWS,
                      data_converter=data_converter_with(_StrictCodec([("k-a", KEY_A)])))
    assert (await strict.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is not None


# -- the codec server -------------------------------------------------------------
@contextlib.contextmanager
def running(server: CodecHTTPServer) -> Iterator[CodecHTTPServer]:
    """``server`` answering on a thread of its own until the block ends."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def serving(token: str | None = None, origins: tuple[str, ...] = (UI,)) -> Iterator[CodecHTTPServer]:
    with running(make_server(codec("k-b", "k-a"), "127.0.0.1", 0, origins=origins, token=token)) as server:
        yield server


def _body(items: list[Payload]) -> dict[str, Any]:
    return {"payloads": [json_format.MessageToDict(p) for p in items]}


def _from_body(body: dict[str, Any]) -> list[Payload]:
    return [json_format.ParseDict(item, Payload()) for item in body["payloads"]]


async def test_the_codec_server_encodes_and_decodes_over_http(caplog):
    caplog.set_level(logging.DEBUG)
    original = payloads(borrower(), {"name": NAME}, None)
    with serving() as server, httpx.Client(base_url=server.url, timeout=10) as http:
        encoded = http.post("/encode", json=_body(original), headers={"Origin": UI, "X-Namespace": "default"})
        assert encoded.status_code == 200, encoded.text
        assert encoded.headers["access-control-allow-origin"] == UI
        sealed = _from_body(encoded.json())
        assert [p.metadata["encoding"] for p in sealed] == [ENCODING] * 3
        assert [p.metadata[KEY_ID_METADATA] for p in sealed] == [b"k-b"] * 3
        assert NAME not in encoded.text
        # What the server encrypts, a worker with the same keys decrypts, and the other way round.
        assert await codec("k-a", "k-b").decode(sealed) == original
        worker_sealed = await codec("k-a").encode(original)

        # The CLI's endpoint template puts the namespace in the path.
        for path in ("/decode", "/default/decode"):
            decoded = http.post(path, json=_body([*sealed, *worker_sealed, *original]))
            assert decoded.status_code == 200, decoded.text
            assert _from_body(decoded.json()) == original * 3
        assert http.post("/decode", json={"payloads": []}).json() == {"payloads": []}

        unknown = http.post("/decode", json=_body(await codec("k-c").encode(original[:1])))
        assert unknown.status_code == 400 and "'k-c'" in unknown.json()["error"]
        assert http.get("/decode").status_code == 405
        assert http.post("/a/b/decode", json={"payloads": []}).status_code == 404
        assert http.get("/health").json() == {"status": "ok"}
    for text in (*PERSONAL, B64_A, B64_B_STD):
        assert text not in caplog.text
    assert "POST decode 200" in caplog.text


def test_the_codec_server_answers_the_ui_preflight_for_allowed_origins_only():
    with serving(token="s3cret", origins=(UI, "http://127.0.0.1:8233")) as server, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        for origin in (UI, "http://127.0.0.1:8233"):
            preflight = http.options("/decode", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace,authorization"})
            assert preflight.status_code == 204  # no token needed: browsers never send one on a preflight
            assert preflight.headers["access-control-allow-origin"] == origin
            assert {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")} >= {
                "content-type", "x-namespace", "authorization"}
            assert "POST" in preflight.headers["access-control-allow-methods"]
        refused = http.options("/decode", headers={"Origin": "http://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        cross = http.post("/decode", json={"payloads": []},
                          headers={"Origin": "http://evil.example", "Authorization": "Bearer s3cret"})
        assert cross.status_code == 403
        # An error the UI must be able to read carries the CORS header too.
        denied = http.post("/decode", json={"payloads": []}, headers={"Origin": UI})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == UI


def test_the_codec_server_requires_the_token_when_one_is_configured():
    body = _body(payloads({"name": NAME}))
    with serving(token="s3cret") as server, httpx.Client(base_url=server.url, timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Bearer s3cret-and-more"}, {"Authorization": "Basic czNjcmV0"}):
            for path in ("/encode", "/decode"):
                answer = http.post(path, json=body, headers=headers)
                assert answer.status_code == 401, (path, headers)
                assert "s3cret" not in answer.text and NAME not in answer.text
                assert answer.headers["www-authenticate"].startswith("Bearer")
        ok = http.post("/encode", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        back = http.post("/decode", json=ok.json(), headers={"Authorization": "Bearer s3cret"})
        assert _from_body(back.json()) == payloads({"name": NAME})
        assert http.get("/health").status_code == 200


def test_no_payloads_at_all_is_an_empty_list_as_the_cli_sends_for_a_query_without_arguments():
    with serving() as server, httpx.Client(base_url=server.url, timeout=10) as http:
        for path in ("/encode", "/decode"):
            answer = http.post(path, content=b"{}", headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text
            assert answer.json().get("payloads", []) == []


@pytest.mark.parametrize(("content", "reason"), [
    (b"not json at all", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b'[{"payloads": []}]', '"payloads" list'),
    (b'{"payload": []}', '"payloads" list'),
    (b'{"payloads": null}', '"payloads" list'),
    (b'{"payloads": {"data": "eA=="}}', '"payloads" list'),
    (b'{"payloads": [{"data": 12, "metadata": {"note": "Ada Lovelace-Example"}}]}', "Temporal's JSON payload form"),
    (b'{"payloads": [{"data": ["Ada Lovelace-Example"]}]}', "Temporal's JSON payload form"),
    (b'{"payloads": [{"metadata": "Ada Lovelace-Example"}]}', "Temporal's JSON payload form"),
    (b'{"payloads": ["Ada Lovelace-Example"]}', "Temporal's JSON payload form"),
])
def test_a_malformed_body_is_a_400_with_a_clear_message_that_does_not_echo_it(content: bytes, reason: str):
    with serving() as server, httpx.Client(base_url=server.url, timeout=10) as http:
        for path in ("/encode", "/decode"):
            answer = http.post(path, content=content, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert error.startswith("malformed body: ") and reason in error and '{"payloads": [' in error
            assert NAME not in error
        # The connection survives a bad request: the next one on it works.
        assert http.post("/decode", json={"payloads": []}).status_code == 200


def test_the_codec_server_refuses_to_start_without_good_keys(capsys):
    assert server_main(["--port", "0"], env={}) == 2
    assert "ARREARS_PAYLOAD_KEYS is not set" in capsys.readouterr().err
    assert server_main(["--port", "0"], env={"ARREARS_PAYLOAD_KEYS": f"k-a:{B64_A[:30]}"}) == 2
    err = capsys.readouterr().err
    assert "entry 1 of 1" in err and B64_A[:30] not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_dash_m_infra_codec_server_serves_and_stops_on_sigterm():
    port = _free_port()
    env = {**os.environ, "ARREARS_PAYLOAD_KEYS": f"k-a:{B64_A}", "ARREARS_CODEC_ORIGINS": "http://ui.example:8080"}
    process = subprocess.Popen([sys.executable, "-m", "infra.codec_server", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        preflight = httpx.options(f"http://127.0.0.1:{port}/decode", headers={"Origin": "http://ui.example:8080"})
        assert preflight.headers["access-control-allow-origin"] == "http://ui.example:8080"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode() + process.stderr.read().decode()
    assert "k-a" in output and B64_A not in output


async def test_the_temporal_cli_reads_an_encrypted_history_through_the_codec_server(tmp_path: Path, caplog):
    """The real client of the protocol: ``temporal workflow show --codec-endpoint``."""
    caplog.set_level(logging.INFO, logger="arrears.codec_server")
    async with _case_worker(codec("k-b", "k-a"), tmp_path) as (env, worker):
        handle = await start_case(env.client, worker, borrower())
        await env.sleep(timedelta(days=1))
        address = env.client.service_client.config.target_host

        def show(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(DEV_SERVER), "workflow", "show", "-w", handle.id, "--address", address,
                                   "-o", "json", *extra], capture_output=True, text=True, timeout=60, check=False)

        with serving(token="s3cret") as server:
            plain = show()
            decoded = show("--codec-endpoint", server.url + "/{namespace}", "--codec-auth", "Bearer s3cret")
            # The CLI retries a failing codec until its deadline: keep that short.
            refused = show("--codec-endpoint", server.url, "--codec-auth", "Bearer nope", "--command-timeout", "3s")
            # A query (no arguments: the CLI posts `{}` to encode) answered by the running worker.
            query = await asyncio.create_subprocess_exec(
                str(DEV_SERVER), "workflow", "query", "-w", handle.id, "--type", "status", "--address", address,
                "--codec-endpoint", server.url, "--codec-auth", "Bearer s3cret", "-o", "json",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            queried, query_error = await asyncio.wait_for(query.communicate(), timeout=60)
    assert query.returncode == 0, query_error.decode()
    assert json.loads(queried)["queryResult"][0]["loan_id"] == handle.id.removeprefix("loan-")
    assert plain.returncode == 0, plain.stderr
    assert NAME not in plain.stdout
    assert base64.b64encode(ENCODING).decode() in plain.stdout  # the metadata, as the CLI prints it
    assert decoded.returncode == 0, decoded.stderr
    # The CLI prints payload data as base64: decode the case's input as it shows it.
    started = json.loads(decoded.stdout)["events"][0]["workflowExecutionStartedEventAttributes"]
    [shown] = started["input"]["payloads"]
    assert base64.b64decode(shown["metadata"]["encoding"]) == b"json/plain"
    case_input = json.loads(base64.b64decode(shown["data"]))
    assert case_input["loan"]["borrower_name"] == NAME and case_input["loan"]["email"] == EMAIL
    assert refused.returncode != 0 and NAME not in refused.stdout
    assert "POST decode 200" in caplog.text and "POST decode 401" in caplog.text
    assert NAME not in caplog.text


# -- wired: settings, the client factory, the worker ----------------------------------------------

def test_the_client_factory_encrypts_exactly_when_keys_are_set_and_settings_never_print_them():
    from infra.client import data_converter
    from infra.settings import Settings

    key = generate_key()
    settings = Settings.from_env({"ARREARS_PAYLOAD_KEYS": key})
    assert isinstance(data_converter(settings).payload_codec, EncryptionCodec)
    assert data_converter(Settings.from_env({})).payload_codec is None
    assert data_converter().payload_codec is None  # replay and recorders: plain
    assert key.split(":")[1] not in repr(settings)
    with pytest.raises(ValueError, match="ARREARS_PAYLOAD_KEYS: entry 1"):
        Settings.from_env({"ARREARS_PAYLOAD_KEYS": "k1:not-a-key"})


def test_the_worker_refuses_to_start_with_a_bad_key_and_does_not_print_it(tmp_path):
    env = {**os.environ, "ARREARS_DATA_DIR": str(tmp_path), "ARREARS_PAYLOAD_KEYS": "k1:c2VjcmV0LWJ1dC1zaG9ydA=="}
    done = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ARREARS_PAYLOAD_KEYS" in done.stdout + done.stderr and "c2VjcmV0" not in done.stdout + done.stderr
