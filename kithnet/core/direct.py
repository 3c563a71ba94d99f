"""Direct messages: what a `dm` record's sealed box holds (docs/protocol.md, "Direct
messages").

The box is a sealed box to the recipient's key holding a small msgpack map: the text,
and the sender's and the recipient's keys again, so that a box lifted out of one record
cannot be passed off inside a record signed by someone else (a forwarder re-signing a
message as its own) or addressed to someone else. The record's signature names the
sender; forwarders see only who writes to whom, when, and how long, never the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from kithnet.core.envelope import Record, sign_record
from kithnet.core.errors import RecordError
from kithnet.core.validation import validate
from kithnet.crypto.errors import DecryptionFailed
from kithnet.crypto.identity import Identity
from kithnet.crypto.sealed import seal, unseal

MAX_TEXT_BYTES = 16_000  # as long as the longest post


class DirectMessageError(RecordError):
    """A `dm` record that cannot be read by the member it names: `undecryptable` (not
    sealed to this member, or altered), `malformed` (the box holds no message),
    `wrong_recipient` or `wrong_sender` (the box names someone else)."""


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A message read out of a `dm` record."""

    id: bytes
    sender: bytes
    recipient: bytes
    text: str
    created_at: int


def message_fields(sender: bytes, recipient: bytes, text: str) -> dict[str, Any]:
    """The fields of a `dm` record carrying `text` from `sender` to `recipient`;
    ValueError if the text is empty or too long."""
    if not text.strip():
        raise ValueError("a message needs some text")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise ValueError(f"a message is at most {MAX_TEXT_BYTES} bytes of text")
    inner: bytes = msgpack.packb(
        {"text": text, "sender": sender, "recipient": recipient}, use_bin_type=True
    )
    return {"kind": "dm", "recipient": recipient, "box": seal(recipient, inner)}


def sign_message(identity: Identity, recipient: bytes, text: str, now_ms: int) -> Record:
    """A signed, valid `dm` record from `identity` to `recipient`; ValueError or
    RecordError if it cannot be made (text too long, writing to oneself)."""
    fields = message_fields(identity.public_key, recipient, text)
    fields["created_at"] = now_ms
    record = sign_record(identity, fields)
    validate(record, now_ms)
    return record


def open_message(identity: Identity, record: Record) -> DirectMessage:
    """Read a (decoded, validated) `dm` record addressed to `identity`; raises
    DirectMessageError if this member cannot."""
    fields: Mapping[str, Any] = record.fields
    if fields.get("recipient") != identity.public_key:
        raise DirectMessageError("this message is addressed to someone else", "wrong_recipient")
    try:
        inner = unseal(identity, fields["box"])
    except DecryptionFailed as exc:
        raise DirectMessageError(str(exc), "undecryptable") from exc
    try:
        content = msgpack.unpackb(
            inner,
            raw=False,
            max_str_len=MAX_TEXT_BYTES,
            max_bin_len=64,
            max_array_len=16,
            max_map_len=16,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DirectMessageError(f"the sealed message is not readable: {exc}", "malformed") from exc
    if not isinstance(content, dict) or not isinstance(content.get("text"), str):
        raise DirectMessageError("the sealed message holds no text", "malformed")
    if content.get("recipient") != identity.public_key:
        raise DirectMessageError(
            "the sealed message was written for someone else", "wrong_recipient"
        )
    if content.get("sender") != record.author:
        raise DirectMessageError("the sealed message was written by someone else", "wrong_sender")
    return DirectMessage(
        record.id, record.author, identity.public_key, content["text"], record.created_at
    )
