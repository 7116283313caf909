"""What a person wrote about a borrower's circumstances (a hardship's or a dispute's reason, a hold's
reason, a note): often health or family data. The case hands it to the ledger in an event's
``private`` and forgets it; the ledger keeps it in ``case_events.private``, encrypted with the payload
keys (``ARREARS_PAYLOAD_KEYS``, AES-256-GCM: the first key encrypts, any key decrypts), and only the
compliance role reads it back (``desk``).

The column holds JSON: the names of the fields (never their text) and the ciphertext, so anyone may
see *that* a reason was given. The ciphertext seals the loan and the event's number with the text
(and the case's episode, for a case that has one: each episode numbers its events from the start), so
a value moved to another row does not decrypt there. A row of a case from before episodes (episode
"") was sealed without one and is read back so. A ledger without keys keeps no text at all: the
column says it was withheld, and why.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload

from infra.codec import ENCODING, EncryptionCodec, PayloadDecryptionError

# Field names are the domain's (``reason``, ``note``), shown in clear: never more than a short name.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
WITHHELD = "no payload keys (ARREARS_PAYLOAD_KEYS) to encrypt it with: the text was not kept"


class PrivateUnreadable(ValueError):
    """A stored private text cannot be read back: the message says why (never the text)."""


def seal(codec: EncryptionCodec | None, loan_id: str, seq: int, private: dict[str, str] | None,
         episode: str = "") -> str | None:
    """The column's value for an event's ``private`` (None when it has none)."""
    if not private:
        return None
    fields = sorted(name if _FIELD.fullmatch(name) else "text" for name in private)
    if codec is None:
        return json.dumps({"fields": fields, "withheld": WITHHELD})
    plain = json.dumps({"loan_id": loan_id, **_episode(episode), "seq": seq, "private": private},
                       ensure_ascii=False).encode()
    sealed = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=plain))
    return json.dumps({"fields": fields, "key_id": codec.encrypting_key_id,
                       "sealed": base64.b64encode(sealed.SerializeToString()).decode()})


def _episode(episode: str) -> dict[str, str]:
    # A case from before episodes seals what it always sealed: its rows read back as they were.
    return {"episode": episode} if episode else {}


def fields(stored: str | None) -> list[str]:
    """The names of the private fields an event has (their text stays sealed)."""
    if not stored:
        return []
    try:
        names = json.loads(stored).get("fields")
    except (ValueError, AttributeError):
        return ["text"]
    return [str(name) for name in names] if isinstance(names, list) else ["text"]


def unseal(codec: EncryptionCodec | None, loan_id: str, seq: int, stored: str | None,
           episode: str = "") -> dict[str, str]:
    """The private text of event ``seq`` of ``loan_id``'s case ``episode``; PrivateUnreadable when it
    was withheld, the key is not configured, or it belongs to another row."""
    if not stored:
        return {}
    try:
        held: dict[str, Any] = json.loads(stored)
    except ValueError:
        raise PrivateUnreadable("not a private value the ledger wrote") from None
    if "sealed" not in held:
        raise PrivateUnreadable(str(held.get("withheld") or "not kept"))
    if codec is None:
        raise PrivateUnreadable("encrypted, and no payload keys (ARREARS_PAYLOAD_KEYS) are configured here")
    try:
        payload = Payload()
        payload.ParseFromString(base64.b64decode(held["sealed"], validate=True))
        if payload.metadata.get("encoding") != ENCODING:  # clear text put there by hand is not ours
            raise PrivateUnreadable("not encrypted: the ledger never writes it so")
        plain = json.loads(codec.decrypt(payload).data)
    except PayloadDecryptionError as err:
        raise PrivateUnreadable(str(err)) from None
    except (DecodeError, ValueError, TypeError):
        raise PrivateUnreadable("the stored ciphertext is damaged") from None
    if not isinstance(plain, dict) or (plain.get("loan_id"), plain.get("episode", ""), plain.get("seq")) != (
            loan_id, episode, seq):
        raise PrivateUnreadable("sealed for another event: it was moved here")
    return dict(plain.get("private") or {})


def read_back(codec: EncryptionCodec | None, loan_id: str, seq: int, stored: str | None,
              episode: str = "") -> dict[str, Any]:
    """``fields``, and the text (``private``) or why it cannot be read (``unreadable``)."""
    try:
        return {"fields": fields(stored), "private": unseal(codec, loan_id, seq, stored, episode)}
    except PrivateUnreadable as err:
        return {"fields": fields(stored), "unreadable": str(err)}
