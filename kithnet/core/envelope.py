"""The signed-record envelope: `[1, author, body, sig]` in msgpack (docs/protocol.md).

Decoding verifies the signature over the exact body bytes received before it decodes
the body, and refuses anything that is not the one canonical encoding of an envelope.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgpack

from kithnet.core.errors import UnsupportedVersion, WireError
from kithnet.crypto.errors import BadSignature
from kithnet.crypto.identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, verify

FORMAT_VERSION = 1
SIGN_DOMAIN = b"kithnet/record/v1\x00"
ID_DOMAIN = b"kithnet/id/v1\x00"
ID_SIZE = 32
COMMUNITY_ID_SIZE = 32
MAX_BODY_SIZE = 64 * 1024
# Array header (1) + version (1) + author (2 + 32) + body (5 + body) + signature (2 + 64).
ENVELOPE_OVERHEAD = 107
MAX_ENVELOPE_SIZE = MAX_BODY_SIZE + ENVELOPE_OVERHEAD
MAX_INT = 2**63 - 1
# Nesting and element-count limits for a body; kinds are shallow and small.
MAX_DEPTH = 4
MAX_CONTAINER_ITEMS = 1024

_HEAD_UNPACK = {
    "raw": False,
    "max_bin_len": MAX_ENVELOPE_SIZE,
    "max_str_len": 0,
    "max_array_len": 16,
    "max_map_len": 0,
    "max_ext_len": 0,
}


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded, signature-checked record. `fields` is the body map, read-only so it
    cannot drift from the signed `body`."""

    envelope: bytes
    author: bytes
    body: bytes
    signature: bytes
    id: bytes
    fields: Mapping[str, Any]

    @property
    def kind(self) -> str:
        kind: str = self.fields["kind"]
        return kind

    @property
    def community(self) -> bytes | None:
        community: bytes | None = self.fields.get("community")
        return community

    @property
    def created_at(self) -> int:
        created_at: int = self.fields["created_at"]
        return created_at


def record_id(author: bytes, body: bytes) -> bytes:
    """BLAKE2b-256 of the id domain, the author key and the body bytes."""
    return hashlib.blake2b(ID_DOMAIN + author + body, digest_size=ID_SIZE).digest()


def encode_body(fields: Mapping[str, Any]) -> bytes:
    """The msgpack encoding of a body map, as this implementation signs it."""
    try:
        packed: bytes = msgpack.packb(dict(fields), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:  # UnicodeError is a ValueError
        raise WireError(f"these fields cannot be encoded in a record: {exc}") from exc
    return packed


def pack_envelope(author: bytes, body: bytes, signature: bytes) -> bytes:
    """The canonical envelope bytes for an author, body and signature."""
    packed: bytes = msgpack.packb([FORMAT_VERSION, author, body, signature], use_bin_type=True)
    return packed


def sign_record(identity: Identity, fields: Mapping[str, Any]) -> Record:
    """Build and sign a record; raises WireError if `fields` cannot travel.

    The body passes the same checks `decode` applies, so every record built here decodes
    elsewhere. Kind rules are not checked: call `kithnet.core.validation.validate`.
    """
    body = encode_body(fields)
    if len(body) > MAX_BODY_SIZE:
        raise WireError(f"record body exceeds the {MAX_BODY_SIZE}-byte limit", "oversize")
    decoded = decode_body(body)
    signature = identity.sign(SIGN_DOMAIN + body)
    return Record(
        envelope=pack_envelope(identity.public_key, body, signature),
        author=identity.public_key,
        body=body,
        signature=signature,
        id=record_id(identity.public_key, body),
        fields=MappingProxyType(decoded),
    )


_CANONICAL_HEAD = b"\x94\x01\xc4\x20"  # array of 4, version 1, bin 8 of 32 bytes
_SIGNATURE_HEAD = b"\xc4\x40"  # bin 8 of 64 bytes


def _slice_canonical(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Split a canonical version 1 envelope by its fixed layout, or return None.

    Every acceptable envelope has exactly this layout, so this is the whole parse for
    them; anything else goes through `_read_envelope` to learn what is wrong.
    """
    if not data.startswith(_CANONICAL_HEAD) or len(data) < 36 + 2 + 66:
        return None
    marker = data[36]
    if marker == 0xC4:
        size, start = data[37], 38
    elif marker == 0xC5:
        size, start = int.from_bytes(data[37:39], "big"), 39
        if size < 0x100:
            return None
    elif marker == 0xC6:
        size, start = int.from_bytes(data[37:41], "big"), 41
        if size < 0x10000:
            return None
    else:
        return None
    end = start + size
    if size > MAX_BODY_SIZE or len(data) != end + 66 or data[end : end + 2] != _SIGNATURE_HEAD:
        return None
    return data[4:36], data[start:end], data[end + 2 :]


def _read_version(data: bytes) -> int:
    """Read only the array header and the version, so a newer format whose other
    elements this version cannot parse is still reported as a newer version."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_ENVELOPE_SIZE)
    unpacker.feed(data)
    try:
        if unpacker.read_array_header() == 0:
            raise WireError("record envelope must be a non-empty msgpack array")
        version = unpacker.unpack()
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"record is not a msgpack envelope: {exc}") from exc
    if type(version) is not int:
        raise WireError("record envelope must start with an integer format version")
    if version > FORMAT_VERSION:
        raise UnsupportedVersion(version)
    if version != FORMAT_VERSION:
        raise WireError(f"record format version {version} does not exist")
    return version


def _read_envelope(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Parse a non-canonical candidate envelope to say exactly what is wrong with it."""
    if len(data) > MAX_ENVELOPE_SIZE:
        raise WireError(
            f"record of {len(data)} bytes exceeds the {MAX_ENVELOPE_SIZE}-byte limit",
            "oversize",
        )
    _read_version(data)
    try:
        outer = msgpack.unpackb(data, **_HEAD_UNPACK)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"record is not a msgpack envelope: {exc}") from exc
    if not isinstance(outer, list):
        raise WireError("record envelope must be a msgpack array")
    if len(outer) != 4:
        raise WireError("a version 1 record envelope has exactly 4 elements")
    _, author, body, signature = outer
    if not isinstance(author, bytes) or not isinstance(body, bytes):
        raise WireError("record author and body must be binary")
    if not isinstance(signature, bytes):
        raise WireError("record signature must be binary")
    if len(author) != PUBLIC_KEY_SIZE:
        raise WireError(
            f"record author key must be {PUBLIC_KEY_SIZE} bytes, got {len(author)}",
            "bad_author_key",
        )
    if len(signature) != SIGNATURE_SIZE:
        raise WireError(
            f"record signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}",
            "bad_signature",
        )
    if len(body) > MAX_BODY_SIZE:
        raise WireError(f"record body exceeds the {MAX_BODY_SIZE}-byte limit", "oversize")
    # One encoding only: the same author, body and signature are the same bytes everywhere.
    if pack_envelope(author, body, signature) != data:
        raise WireError("record envelope is not in canonical msgpack form")
    return author, body, signature


_SCALARS = (str, bytes, bool, type(None))


def _check_values(values: Iterable[object], depth: int) -> bool:
    """Refuse floats, integers beyond 64 bits and nesting deeper than MAX_DEPTH.

    Returns whether a nested map was seen (its keys need the duplicate check).
    """
    nested_map = False
    for value in values:
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is int:
            if not -MAX_INT - 1 <= value <= MAX_INT:  # type: ignore[operator]
                raise WireError("record body integers must fit in a signed 64-bit integer")
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                raise WireError("record body is nested too deeply")
            if kind is dict:
                nested_map = True
                if not all(type(k) is str for k in value):  # type: ignore[attr-defined]
                    raise WireError("record body map keys must be strings")
                _check_values(value.values(), depth + 1)  # type: ignore[attr-defined]
            elif _check_values(value, depth + 1):  # type: ignore[arg-type]
                nested_map = True
        elif kind is float:
            raise WireError("record bodies carry no floating-point numbers")
        else:
            raise WireError(f"record bodies carry no {kind.__name__} values")
    return nested_map


def _no_duplicate_keys(pairs: list[tuple[object, object]]) -> dict[object, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise WireError("record body map repeats a key")
    return result


_BODY_UNPACK: dict[str, Any] = {
    "raw": False,
    "max_bin_len": MAX_BODY_SIZE,
    "max_str_len": MAX_BODY_SIZE,
    "max_array_len": MAX_CONTAINER_ITEMS,
    "max_map_len": MAX_CONTAINER_ITEMS,
    "max_ext_len": 0,
    "strict_map_key": False,
}


def _map_header_size(body: bytes) -> int | None:
    """The element count a top-level msgpack map header declares, or None if not a map."""
    first = body[0] if body else 0
    if 0x80 <= first <= 0x8F:
        return first & 0x0F
    if first == 0xDE and len(body) >= 3:
        return int.from_bytes(body[1:3], "big")
    if first == 0xDF and len(body) >= 5:
        return int.from_bytes(body[1:5], "big")
    return None


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode a body map and check the fields every record has (kind, created_at, community)."""
    try:
        fields = msgpack.unpackb(body, **_BODY_UNPACK)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"record body is not valid msgpack: {exc}") from exc
    if not isinstance(fields, dict):
        raise WireError("record body must be a msgpack map")
    if not all(type(k) is str for k in fields):
        raise WireError("record body map keys must be strings")
    # A repeated key would read differently in implementations that keep the first
    # value and those that keep the last: refuse it. The header count catches it at the
    # top level for free; nested maps (rare) are decoded once more with a checking hook.
    if _map_header_size(body) != len(fields):
        raise WireError("record body map repeats a key")
    if _check_values(fields.values(), 1):
        try:
            msgpack.unpackb(body, object_pairs_hook=_no_duplicate_keys, **_BODY_UNPACK)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise WireError(f"record body is not valid msgpack: {exc}") from exc
    kind = fields.get("kind")
    if kind is None:
        raise WireError("record body has no 'kind'", "missing_field")
    if not isinstance(kind, str) or not kind:
        raise WireError("record 'kind' must be a non-empty string")
    created_at = fields.get("created_at")
    if created_at is None:
        raise WireError("record body has no 'created_at'", "missing_field")
    if type(created_at) is not int or created_at < 0:
        raise WireError("record 'created_at' must be a non-negative integer (milliseconds)")
    if "community" in fields:
        community = fields["community"]
        if not isinstance(community, bytes) or len(community) != COMMUNITY_ID_SIZE:
            raise WireError(f"record 'community' must be {COMMUNITY_ID_SIZE} bytes")
    return fields


def decode(data: bytes) -> Record:
    """Parse an envelope, verify its signature, then decode its body.

    Returns a Record or raises WireError (UnsupportedVersion for a newer format);
    arbitrary bytes never raise anything else.
    """
    return _decode(bytes(data), check_signature=True)


def decode_stored(data: bytes) -> Record:
    """Decode an envelope this node verified when it first took it in (read back from the
    member's own encrypted store), without checking the signature again."""
    return _decode(data, check_signature=False)


def _decode(data: bytes, *, check_signature: bool) -> Record:
    parts = _slice_canonical(data)
    author, body, signature = parts if parts is not None else _read_envelope(data)
    if check_signature:
        try:
            verify(author, SIGN_DOMAIN + body, signature)
        except BadSignature as exc:
            raise WireError(
                "record signature does not match its author and body", "bad_signature"
            ) from exc
    return Record(
        envelope=data,
        author=author,
        body=body,
        signature=signature,
        id=record_id(author, body),
        fields=MappingProxyType(decode_body(body)),
    )
