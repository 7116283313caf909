"""Payload encryption: borrower data leaves the process only as AES-256-GCM ciphertext.

Every payload (workflow and activity inputs and results, signals, queries, updates,
failure details) is serialized and encrypted with the first configured key; its
metadata names the key (``encryption-key-id``) so older keys keep decrypting after
a rotation. Payloads recorded before encryption (no ``binary/encrypted`` encoding)
pass through ``decode`` untouched: running cases and their histories keep working.

    ARREARS_PAYLOAD_KEYS="k20250101-3fa9c2:<base64 32 bytes>,k20240101-0be17d:<base64>"
    python -m infra.codec keygen        # one new ``id:base64`` entry
    python -m infra.codec check         # validate ARREARS_PAYLOAD_KEYS, print the key ids
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

SETTING = "ARREARS_PAYLOAD_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# Bound into every ciphertext with the key id: a payload cannot be moved under another id.
_AAD_PREFIX = b"arrears/payload/v1:"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PayloadDecryptionError(ValueError):
    """An encrypted payload could not be decrypted: unknown key id, or it failed authentication."""


def _shown(key_id: str) -> str:
    """A key id read from a payload, safe to put in a message (bounded, printable)."""
    return repr(key_id[:64] + ("…" if len(key_id) > 64 else ""))


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec; the first key encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[tuple[str, bytes]] | Mapping[str, bytes]) -> None:
        entries = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not entries:
            raise ValueError("EncryptionCodec: at least one key is needed")
        ciphers: dict[str, AESGCM] = {}
        for number, (key_id, key) in enumerate(entries, start=1):
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"EncryptionCodec: key {number}: the id must be 1-64 characters "
                                 "of letters, digits, '.', '_' or '-'")
            if key_id in ciphers:
                raise ValueError(f"EncryptionCodec: key {number}: id {key_id!r} is given twice")
            if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
                raise ValueError(f"EncryptionCodec: key {number} ({key_id!r}): must be {KEY_BYTES} bytes")
            ciphers[key_id] = AESGCM(bytes(key))
        self._ciphers = ciphers
        self._encrypting = entries[0][0]

    @classmethod
    def from_setting(cls, value: str) -> EncryptionCodec:
        """The codec ``ARREARS_PAYLOAD_KEYS`` describes; ValueError naming the bad entry."""
        return cls(parse_keys(value))

    @property
    def encrypting_key_id(self) -> str:
        return self._encrypting

    @property
    def key_ids(self) -> list[str]:
        """Every configured key id, the encrypting one first."""
        return list(self._ciphers)

    def __repr__(self) -> str:  # never the keys
        return f"EncryptionCodec(key_ids={self.key_ids!r})"

    # -- the codec -----------------------------------------------------------
    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted under the encrypting key with a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._encrypting].encrypt(nonce, payload.SerializeToString(), _aad(self._encrypting))
        return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: self._encrypting.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload as it was before ``encrypt``; any other payload is returned as is."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadDecryptionError(f"encrypted payload without the {KEY_ID_METADATA!r} metadata")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {_shown(key_id)}, which is not configured in {SETTING} "
                f"(configured: {', '.join(self._ciphers)}); keep retired keys in the list to decrypt old payloads")
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptionError(f"encrypted payload under key id {_shown(key_id)} is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id))
        except InvalidTag:
            raise PayloadDecryptionError(
                f"encrypted payload under key id {_shown(key_id)} failed authentication "
                "(altered, or encrypted with a different key of that id)") from None
        original = Payload()
        try:
            original.ParseFromString(plain)
        except DecodeError:
            raise PayloadDecryptionError(
                f"payload under key id {_shown(key_id)} decrypted to something that is not a payload") from None
        return original

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


# -- the setting ---------------------------------------------------------------
def _b64_key(text: str) -> bytes:
    """Standard or urlsafe base64, padding optional; binascii.Error when it is not base64."""
    normalized = text.strip().replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    return base64.b64decode(normalized, validate=True)


def parse_keys(value: str) -> list[tuple[str, bytes]]:
    """``id:base64key`` entries, comma-separated, the encrypting key first.

    Raises ``ValueError("ARREARS_PAYLOAD_KEYS: entry N: why")``; the message never holds key text.
    """
    entries = [part.strip() for part in (value or "").split(",")]
    if not any(entries):
        raise ValueError(f"{SETTING}: no keys (expected comma-separated id:base64key entries; "
                         "generate one with `python -m infra.codec keygen`)")
    keys: list[tuple[str, bytes]] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{SETTING}: entry {number} of {len(entries)}"
        if not entry:
            raise ValueError(f"{where}: empty (a stray comma?)")
        key_id, colon, encoded = entry.partition(":")
        key_id, encoded = key_id.strip(), encoded.strip()
        if not colon:
            raise ValueError(f"{where}: expected id:base64key, found no ':'")
        if not key_id:
            raise ValueError(f"{where}: the key id before ':' is empty")
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"{where}: the key id must be 1-64 characters of letters, digits, '.', '_' or '-'")
        if not encoded:
            raise ValueError(f"{where}: the key after ':' is empty")
        try:
            key = _b64_key(encoded)
        except (binascii.Error, ValueError):
            raise ValueError(f"{where}: the key is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{where}: the key must decode to {KEY_BYTES} bytes (AES-256), not {len(key)}")
        if key_id in seen:
            raise ValueError(f"{where}: the key id repeats entry {seen[key_id]}")
        seen[key_id] = number
        keys.append((key_id, key))
    return keys


def codec_from_setting(value: str | None) -> EncryptionCodec | None:
    """The codec for an ``ARREARS_PAYLOAD_KEYS`` value; None when it is unset or empty."""
    if value is None or not value.strip():
        return None
    return EncryptionCodec.from_setting(value)


def codec_from_env(env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    """``codec_from_setting`` over ``ARREARS_PAYLOAD_KEYS`` in ``env`` (default: os.environ)."""
    return codec_from_setting((os.environ if env is None else env).get(SETTING))


def generate_key(now: datetime | None = None) -> str:
    """A new ``id:base64`` entry: a random 256-bit key; the id (date + random) says nothing of the key."""
    day = (now or datetime.now(UTC)).strftime("%Y%m%d")
    key = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    return f"k{day}-{secrets.token_hex(3)}:{key}"


def data_converter_with(codec: PayloadCodec | None, *, encode_failure_attributes: bool = False) -> DataConverter:
    """The pydantic data converter, with ``codec`` when one is given.

    ``encode_failure_attributes`` also moves failure messages and stack traces into the
    encrypted attributes (they may quote an address an e-mail server refused).
    """
    if codec is None:
        return pydantic_data_converter
    changes: dict[str, object] = {"payload_codec": codec}
    if encode_failure_attributes:
        changes["failure_converter_class"] = DefaultFailureConverterWithEncodedAttributes
    return dataclasses.replace(pydantic_data_converter, **changes)  # type: ignore[arg-type]


# -- command line ----------------------------------------------------------------
_USAGE = """usage: python -m infra.codec keygen | check

  keygen   print a new key entry (id:base64) for ARREARS_PAYLOAD_KEYS; put it FIRST to
           encrypt with it, and keep the older entries after it so old payloads still decrypt
  check    validate ARREARS_PAYLOAD_KEYS and print the key ids (never the keys)"""


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["keygen"]:
        print(generate_key())
        return 0
    if args == ["check"]:
        try:
            codec = codec_from_env()
        except ValueError as err:
            print(err, file=sys.stderr)
            return 2
        if codec is None:
            print(f"{SETTING} is not set: payloads are not encrypted", file=sys.stderr)
            return 1
        print(f"ok: encrypting with {codec.encrypting_key_id}; decrypting with {', '.join(codec.key_ids)}")
        return 0
    print(_USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
