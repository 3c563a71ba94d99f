"""The signed-record envelope: round trips, canonical form, and what bad bytes do."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from kithnet.core.envelope import (
    MAX_BODY_SIZE,
    SIGN_DOMAIN,
    decode,
    encode_body,
    pack_envelope,
    record_id,
    sign_record,
)
from kithnet.core.errors import REASONS, RecordError, UnsupportedVersion, WireError
from kithnet.core.kinds import KINDS
from kithnet.core.validation import accept, validate
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from tests.strategies import NOW_MS, fields_of, make_consistent

ALICE = Identity.from_seed(bytes([1]) * 32)
BOB = Identity.from_seed(bytes([2]) * 32)
COMMUNITY = bytes([0xC0]) * 32


def post(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "post",
        "community": COMMUNITY,
        "created_at": NOW_MS - 1000,
        "type": "post",
        "text": "Hello",
        **extra,
    }


VALID = sign_record(ALICE, post()).envelope


@pytest.mark.parametrize("kind", sorted(KINDS))
@given(data=st.data())
def test_every_kind_signs_verifies_and_validates(kind: str, data: st.DataObject) -> None:
    fields = make_consistent(data.draw(fields_of(kind)))
    if kind == "join":
        secret = data.draw(st.binary(min_size=32, max_size=32))
        code = InviteCode.create(BOB, fields["community"], "c", [], NOW_MS, secret=secret)
        fields["invite_key"] = code.invite_key
        fields["proof"] = code.prove_join(ALICE.public_key)
    record = sign_record(ALICE, fields)
    validate(record, NOW_MS)
    again = decode(record.envelope)
    assert again == record
    assert again.id == record_id(ALICE.public_key, record.body)
    assert dict(again.fields) == fields


def _independently_verified(envelope: bytes) -> bool:
    """True if `envelope` is a canonical envelope whose signature OpenSSL accepts."""
    items = msgpack.unpackb(envelope, raw=False)
    version, author, body, signature = items
    if msgpack.packb(items, use_bin_type=True) != envelope or version != 1:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(author).verify(signature, SIGN_DOMAIN + body)
    except InvalidSignature:
        return False
    return True


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    try:
        record = decode(data)
    except WireError:
        return
    assert _independently_verified(record.envelope)


edits = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete"]), st.integers(0), st.integers(0, 255)
    ),
    min_size=1,
    max_size=4,
)


@given(edits)
def test_edited_envelopes_are_refused_unless_still_validly_signed(
    changes: list[tuple[str, int, int]],
) -> None:
    """Random edits near a valid record reach deep into the parser; whatever is accepted
    must be a canonical envelope that an independent Ed25519 implementation verifies."""
    data = bytearray(VALID)
    for action, position, value in changes:
        index = position % (len(data) + 1)
        if action == "insert":
            data.insert(index, value)
        elif data and action == "replace":
            data[index % len(data)] = value
        elif data:
            del data[index % len(data)]
    try:
        record = decode(bytes(data))
    except WireError:
        return
    assert bytes(data) == VALID or _independently_verified(record.envelope)


@given(
    st.lists(st.one_of(st.integers(-5, 5), st.binary(max_size=70), st.text(max_size=5)), max_size=6)
)
def test_arbitrary_arrays_decode_or_raise_wire_error(items: list[object]) -> None:
    data = msgpack.packb(items, use_bin_type=True)
    with pytest.raises(WireError):
        decode(data)


@given(st.integers(0, len(VALID) * 8 - 1))
def test_any_single_bit_change_is_rejected(bit: int) -> None:
    mutated = bytearray(VALID)
    mutated[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(WireError):
        decode(bytes(mutated))


def test_every_single_bit_change_of_a_record_is_rejected() -> None:
    """Exhaustive over one small record: no flipped bit yields a valid envelope."""
    accepted = []
    for bit in range(len(VALID) * 8):
        mutated = bytearray(VALID)
        mutated[bit // 8] ^= 1 << (bit % 8)
        try:
            decode(bytes(mutated))
        except WireError:
            continue
        accepted.append(bit)
    assert accepted == []


@pytest.mark.parametrize(
    "rest",
    [
        [b"author", b"body", b"sig", b"extra"],
        ["a string", {"a": "map"}, 1.5],
        [],
        [msgpack.ExtType(5, b"new")],
    ],
    ids=["bins", "other-types", "nothing-else", "ext"],
)
def test_newer_version_is_named_whatever_follows_it(rest: list[object]) -> None:
    newer = msgpack.packb([2, *rest], use_bin_type=True)
    with pytest.raises(UnsupportedVersion) as info:
        decode(newer)
    assert info.value.version == 2
    assert info.value.reason == "unsupported_version"
    assert "update Kithnet" in str(info.value)


def test_unknown_body_fields_are_ignored_but_stay_signed() -> None:
    record = sign_record(ALICE, post(mood="sunny", extra={"nested": [1, 2]}))
    validate(record, NOW_MS)
    assert record.fields["mood"] == "sunny"
    # The signature covers them: changing one breaks it.
    tampered_body = record.body.replace(b"sunny", b"rainy")
    with pytest.raises(WireError) as info:
        decode(pack_envelope(record.author, tampered_body, record.signature))
    assert info.value.reason == "bad_signature"


def test_record_id_follows_the_documented_rule_and_ignores_the_signature() -> None:
    record = sign_record(ALICE, post())
    expected = hashlib.blake2b(
        b"kithnet/id/v1\x00" + ALICE.public_key + record.body, digest_size=32
    )
    assert record.id == expected.digest()
    # The id names the statement, not one signature of it: the same body by another
    # author is another record, and other fields give another id.
    assert record_id(BOB.public_key, record.body) != record.id
    assert sign_record(ALICE, post(text="Hello!")).id != record.id


def test_body_at_the_limit_is_accepted_and_one_byte_more_is_not() -> None:
    base = post(text="")
    overhead = len(encode_body(base))
    # A str of n bytes needs a 3- or 5-byte header more than the empty one: find the
    # text length that makes the body exactly MAX_BODY_SIZE.
    for text_len in range(MAX_BODY_SIZE - overhead - 8, MAX_BODY_SIZE - overhead + 1):
        body = encode_body(post(text="x" * text_len))
        if len(body) == MAX_BODY_SIZE:
            break
    else:
        raise AssertionError("no text length gives a body at the limit")
    at_limit = body
    over = encode_body(post(text="x" * (text_len + 1)))
    assert len(over) == MAX_BODY_SIZE + 1
    ok = decode(pack_envelope(ALICE.public_key, at_limit, ALICE.sign(SIGN_DOMAIN + at_limit)))
    assert len(ok.body) == MAX_BODY_SIZE
    with pytest.raises(WireError) as info:
        decode(pack_envelope(ALICE.public_key, over, ALICE.sign(SIGN_DOMAIN + over)))
    assert info.value.reason == "oversize"


def test_containers_nest_at_most_four_deep_counting_the_body_map() -> None:
    three_lists: Any = [[["x"]]]  # with the body map: four containers deep
    four_lists: Any = [[[["x"]]]]
    record = sign_record(ALICE, post(deep=three_lists))
    assert decode(record.envelope).fields["deep"] == three_lists
    with pytest.raises(WireError, match="nested too deeply"):
        sign_record(ALICE, post(deep=four_lists))
    with pytest.raises(WireError, match="nested too deeply"):
        sign_record(ALICE, post(deep=[{"a": {"b": [1]}}]))


def test_fields_that_cannot_be_encoded_are_a_wire_error() -> None:
    for bad in ({1, 2}, "\ud800", 2**64, 1.5):
        with pytest.raises(WireError):
            sign_record(ALICE, post(extra=bad))


def test_body_integer_beyond_64_bits_is_refused() -> None:
    body = encode_body(post(big=2**64 - 1))
    with pytest.raises(WireError):
        decode(pack_envelope(ALICE.public_key, body, ALICE.sign(SIGN_DOMAIN + body)))


def test_wire_errors_are_record_errors_with_reason_codes() -> None:
    with pytest.raises(RecordError) as info:
        decode(b"\x00")
    assert info.value.reason == "malformed"


def _signed_raw(body: bytes) -> bytes:
    return pack_envelope(ALICE.public_key, body, ALICE.sign(SIGN_DOMAIN + body))


def test_repeated_keys_are_refused_at_the_top_and_when_nested() -> None:
    """Implementations that keep the first or the last value would read them differently."""
    pack = msgpack.packb
    top = b"\x83" + pack("kind") + pack("post") + pack("created_at") + pack(NOW_MS)
    top += pack("kind") + pack("profile")
    with pytest.raises(WireError, match="repeats a key"):
        decode(_signed_raw(top))
    inner = b"\x82" + pack("hash") + pack(b"a" * 32, use_bin_type=True)
    inner += pack("hash") + pack(b"b" * 32, use_bin_type=True)
    nested = b"\x83" + pack("kind") + pack("post") + pack("created_at") + pack(NOW_MS)
    nested += pack("attachments") + b"\x91" + inner
    with pytest.raises(WireError, match="repeats a key"):
        decode(_signed_raw(nested))


# Values a peer could put in a body: every msgpack type the decoder may meet.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(0, 3), children, max_size=4)
    ),
    max_leaves=12,
)
KIND_NAMES = sorted(KINDS)


@given(st.binary(max_size=200))
def test_validly_signed_garbage_bodies_are_wire_errors(body: bytes) -> None:
    """Bytes that pass the signature still only ever decode or raise WireError."""
    try:
        record = decode(_signed_raw(body))
    except WireError:
        return
    # What decodes keeps the promises every record makes.
    assert isinstance(record.kind, str)
    assert record.kind
    assert type(record.created_at) is int
    assert record.community is None or len(record.community) == 32


@given(
    st.sampled_from([*KIND_NAMES, "poll"]),
    st.dictionaries(
        st.sampled_from(
            [
                "community",
                "created_at",
                "name",
                "type",
                "text",
                "tags",
                "subject",
                "skill",
                "target",
                "visibility",
                "keys",
                "attachments",
                "invite_key",
                "proof",
                "to_member",
                "to_community",
                "relationship",
                "action",
                "role",
                "epoch",
            ]
        ),
        msgpack_values,
        max_size=8,
    ),
)
def test_signed_records_with_any_field_values_are_accepted_or_counted(
    kind: str, fields: dict[str, Any]
) -> None:
    """What a peer sends is either accepted or dropped with a reason: nothing raises."""
    fields = {**fields, "kind": kind}
    body = msgpack.packb(fields, use_bin_type=True)
    rejected: Counter[str] = Counter()
    record = accept(_signed_raw(body), NOW_MS, rejected)
    if record is None:
        assert sum(rejected.values()) == 1
        assert set(rejected) <= set(REASONS)
    else:
        assert not rejected
        assert record.kind == kind


def test_a_records_fields_cannot_be_changed_after_signing() -> None:
    record = sign_record(ALICE, post())
    with pytest.raises(TypeError):
        record.fields["text"] = "changed"  # type: ignore[index]
    assert decode(record.envelope).fields["text"] == "Hello"
