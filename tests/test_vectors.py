"""Golden vectors: checked with this code and, independently, with `cryptography`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kithnet.core.envelope import Record, decode, encode_body
from kithnet.core.errors import REASONS, RecordError
from kithnet.core.kinds import KINDS
from kithnet.core.validation import validate
from kithnet.crypto import invite

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict[str, Any]]:
    lines = (VECTORS / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


RECORDS = load("records.jsonl")
INVITES = load("invites.jsonl")


def test_the_vector_files_cover_what_the_spec_promises() -> None:
    assert len(RECORDS) >= 30
    assert len({v["name"] for v in RECORDS}) == len(RECORDS)
    kinds = set()
    for vector in RECORDS:
        if vector["valid"]:
            outer = msgpack.unpackb(bytes.fromhex(vector["envelope_hex"]), raw=False)
            kinds.add(msgpack.unpackb(outer[2], raw=False)["kind"])
    assert kinds == set(KINDS)
    reasons = {v["reason"] for v in RECORDS if not v["valid"]}
    assert {
        "bad_signature",
        "bad_author_key",
        "unsupported_version",
        "oversize",
        "unknown_kind",
        "missing_field",
        "malformed",
    } <= reasons
    assert reasons <= set(REASONS)


@pytest.mark.parametrize("vector", RECORDS, ids=[v["name"] for v in RECORDS])
def test_record_vector_with_kithnet(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["envelope_hex"])

    def read() -> Record:
        record = decode(data)
        validate(record, vector["now_ms"])
        return record

    if not vector["valid"]:
        with pytest.raises(RecordError) as info:
            read()
        assert info.value.reason == vector["reason"]
        return
    record = read()
    assert record.id.hex() == vector["id_hex"]
    # Re-encoding the decoded body gives the signed bytes: our encoder is stable.
    assert encode_body(record.fields) == record.body


@pytest.mark.parametrize(
    "vector",
    [v for v in RECORDS if v["valid"] or v["reason"] == "bad_signature"],
    ids=[v["name"] for v in RECORDS if v["valid"] or v["reason"] == "bad_signature"],
)
def test_record_vector_with_cryptography(vector: dict[str, Any]) -> None:
    """An independent reading: plain msgpack, OpenSSL's Ed25519, hashlib's BLAKE2b."""
    version, author, body, signature = msgpack.unpackb(
        bytes.fromhex(vector["envelope_hex"]), raw=False
    )
    assert version == 1
    key = Ed25519PublicKey.from_public_bytes(author)
    message = b"kithnet/record/v1\x00" + body
    if vector["valid"]:
        key.verify(signature, message)
        expected = hashlib.blake2b(b"kithnet/id/v1\x00" + author + body, digest_size=32)
        assert expected.hexdigest() == vector["id_hex"]
    else:
        with pytest.raises(InvalidSignature):
            key.verify(signature, message)


ERROR_NAMES = {
    invite.InviteFormatError: "format",
    invite.InviteChecksumError: "checksum",
    invite.InviteVersionError: "version",
    invite.InviteSignatureError: "signature",
    invite.InviteExpired: "expired",
}


@pytest.mark.parametrize("vector", INVITES, ids=[v["name"] for v in INVITES])
def test_invite_vector(vector: dict[str, Any]) -> None:
    def read() -> invite.InviteCode:
        code = invite.decode(vector["code"])
        code.check_fresh(vector["now_ms"])
        return code

    if not vector["valid"]:
        with pytest.raises(invite.InviteCodeError) as info:
            read()
        assert ERROR_NAMES[type(info.value)] == vector["reason"]
        return
    code = read()
    assert code.community.hex() == vector["community_hex"]
    assert code.community_name == vector["community_name"]
    assert code.inviter.hex() == vector["inviter_hex"]
    assert list(code.addresses) == vector["addresses"]
    assert code.expires_at == vector["expires_at"]
    assert code.invite_key.hex() == vector["invite_key_hex"]
    # Independent check of the inviter's signature over the signed body.
    Ed25519PublicKey.from_public_bytes(code.inviter).verify(
        code.signature, b"kithnet/invite/v1\x00" + code.signed_body
    )


def test_the_generator_still_reproduces_every_committed_vector() -> None:
    """Signing is deterministic: if this code now encodes or signs differently, the
    vectors other implementations rely on would silently stop matching it."""
    from tests.vectors import generate

    assert list(generate.record_rows()) == RECORDS
    assert list(generate.invite_rows()) == INVITES
