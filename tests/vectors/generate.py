"""Writes the golden vectors in this folder. Append-only: a vector already in a file is
never rewritten, so existing vectors stay the contract other implementations test
against. Keys and times are fixed, and Ed25519 is deterministic, so a run with no new
vectors changes nothing.

    .venv/bin/python -m tests.vectors.generate
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import msgpack

from kithnet.core.envelope import ID_DOMAIN, SIGN_DOMAIN, encode_body, record_id
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode

HERE = Path(__file__).parent
NOW_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z: the validator's clock for every vector
T = NOW_MS - 3_600_000  # records were made an hour earlier

ALICE = Identity.from_seed(bytes([1]) * 32)
BOB = Identity.from_seed(bytes([2]) * 32)
CAROL = Identity.from_seed(bytes([3]) * 32)
COMMUNITY = bytes.fromhex("c0" * 32)
POST_ID = bytes.fromhex("a1" * 32)
INVITE = InviteCode.create(
    ALICE,
    COMMUNITY,
    "Loft insulators of Leeds",
    ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"],
    expires_at=NOW_MS + 7 * 24 * 3_600_000,
    secret=bytes([9]) * 32,
)


def envelope(
    identity: Identity,
    body: bytes,
    *,
    version: int = 1,
    author: bytes | None = None,
    signature: bytes | None = None,
) -> bytes:
    author = identity.public_key if author is None else author
    sig = identity.sign(SIGN_DOMAIN + body) if signature is None else signature
    packed: bytes = msgpack.packb([version, author, body, sig], use_bin_type=True)
    return packed


def signed(identity: Identity, **fields: Any) -> bytes:
    fields.setdefault("created_at", T)
    return envelope(identity, encode_body(fields))


def c(**fields: Any) -> dict[str, Any]:
    """Fields of a record in the vectors' community."""
    return {"community": COMMUNITY, **fields}


def record_vectors() -> Iterator[tuple[str, bytes, bool, str]]:
    ok = "valid"
    yield (
        "profile",
        signed(
            ALICE,
            kind="profile",
            name="Alice",
            bio="Insulation and solar.",
            skills=["loft-insulation", "solar-pv"],
            services=["loft-insulation"],
        ),
        True,
        ok,
    )
    yield "profile-minimal", signed(BOB, kind="profile", name="Bob"), True, ok
    yield (
        "community-public",
        signed(
            ALICE,
            kind="community",
            name="Loft insulators of Leeds",
            description="People who insulate lofts.",
            tags=["loft-insulation", "leeds"],
            visibility="public",
        ),
        True,
        ok,
    )
    yield (
        "community-private",
        signed(ALICE, kind="community", name="Our street", visibility="private"),
        True,
        ok,
    )
    yield (
        "role-grant",
        signed(ALICE, kind="role_grant", **c(subject=BOB.public_key, role="moderator")),
        True,
        ok,
    )
    yield (
        "role-revoke",
        signed(ALICE, kind="role_revoke", **c(subject=BOB.public_key, role="moderator")),
        True,
        ok,
    )
    yield (
        "invite",
        signed(
            ALICE,
            kind="invite",
            **c(invite_key=INVITE.invite_key, expires_at=INVITE.expires_at, max_uses=10),
        ),
        True,
        ok,
    )
    yield (
        "join",
        signed(
            CAROL,
            kind="join",
            **c(invite_key=INVITE.invite_key, proof=INVITE.prove_join(CAROL.public_key)),
        ),
        True,
        ok,
    )
    yield "leave", signed(CAROL, kind="leave", **c()), True, ok
    yield "post", signed(BOB, kind="post", **c(type="post", text="Hello, loft people!")), True, ok
    yield (
        "post-question",
        signed(
            CAROL,
            kind="post",
            **c(
                type="question",
                text="Does anybody know someone who can insulate my loft?",
                tags=["loft-insulation"],
            ),
        ),
        True,
        ok,
    )
    yield (
        "post-offer",
        signed(
            ALICE,
            kind="post",
            **c(
                type="offer",
                text="Loft insulation, 270 mm mineral wool.",
                tags=["loft-insulation"],
                area="Leeds and Bradford",
                terms="Free survey; quote after.",
            ),
        ),
        True,
        ok,
    )
    yield (
        "post-reply-attachment",
        signed(
            BOB,
            kind="post",
            **c(
                type="post",
                text="Here is my loft.",
                reply_to=POST_ID,
                attachments=[
                    {
                        "hash": bytes([7]) * 32,
                        "size": 123456,
                        "mime": "image/jpeg",
                        "name": "loft.jpg",
                    }
                ],
            ),
        ),
        True,
        ok,
    )
    yield "reaction", signed(BOB, kind="reaction", **c(target=POST_ID, emoji="👍")), True, ok
    yield "edit", signed(BOB, kind="edit", **c(target=POST_ID, text="Hello again.")), True, ok
    yield "delete", signed(BOB, kind="delete", **c(target=POST_ID)), True, ok
    yield (
        "reference",
        signed(
            CAROL,
            kind="reference",
            **c(
                subject=ALICE.public_key,
                skill="loft-insulation",
                text="Alice insulated our loft in two days; warm since.",
                relationship="hired",
                evidence=POST_ID,
            ),
        ),
        True,
        ok,
    )
    yield (
        "reference-no-community",
        signed(
            BOB,
            kind="reference",
            subject=ALICE.public_key,
            skill="solar-pv",
            text="Fitted panels with her.",
            relationship="worked_with",
        ),
        True,
        ok,
    )
    yield "reference-revoke", signed(CAROL, kind="reference_revoke", **c(target=POST_ID)), True, ok
    yield "reference-hide", signed(ALICE, kind="reference_hide", target=POST_ID), True, ok
    yield (
        "moderation-ban",
        signed(ALICE, kind="moderation", **c(action="ban", target=CAROL.public_key, reason="spam")),
        True,
        ok,
    )
    yield (
        "moderation-remove",
        signed(BOB, kind="moderation", **c(action="remove", target=POST_ID)),
        True,
        ok,
    )
    yield (
        "referral-community",
        signed(
            BOB,
            kind="referral",
            **c(
                question=POST_ID,
                to_community=bytes([5]) * 32,
                invite=INVITE.encode(),
                note="Ask here.",
            ),
        ),
        True,
        ok,
    )
    yield (
        "referral-member",
        signed(BOB, kind="referral", **c(question=POST_ID, to_member=ALICE.public_key)),
        True,
        ok,
    )
    yield (
        "announcement",
        signed(
            ALICE,
            kind="announcement",
            **c(
                name="Loft insulators of Leeds",
                tags=["loft-insulation"],
                visibility="public",
                invite=INVITE.encode(),
                members=42,
            ),
        ),
        True,
        ok,
    )
    yield (
        "key-update",
        signed(
            ALICE,
            kind="key_update",
            **c(epoch=2, keys=[{"member": BOB.public_key, "box": bytes([8]) * 80}]),
        ),
        True,
        ok,
    )
    yield "dm", signed(ALICE, kind="dm", recipient=BOB.public_key, box=bytes([6]) * 100), True, ok
    yield (
        "unknown-field-ignored",
        signed(BOB, kind="post", **c(type="post", text="x", future_field=[1, 2])),
        True,
        ok,
    )

    good_body = encode_body(c(kind="post", type="post", text="Hi", created_at=T))
    good = envelope(BOB, good_body)
    yield (
        "bad-signature",
        envelope(BOB, good_body, signature=ALICE.sign(SIGN_DOMAIN + good_body)),
        False,
        "bad_signature",
    )
    tampered = good_body.replace(b"Hi", b"Ho")
    yield (
        "tampered-body",
        envelope(BOB, tampered, signature=BOB.sign(SIGN_DOMAIN + good_body)),
        False,
        "bad_signature",
    )
    yield (
        "author-key-31-bytes",
        envelope(BOB, good_body, author=BOB.public_key[:31]),
        False,
        "bad_author_key",
    )
    yield (
        "signature-63-bytes",
        envelope(BOB, good_body, signature=bytes(63)),
        False,
        "bad_signature",
    )
    yield "newer-version", envelope(BOB, good_body, version=2), False, "unsupported_version"
    yield (
        "oversize",
        signed(BOB, kind="post", **c(type="post", text="x" * 70_000)),
        False,
        "oversize",
    )
    yield (
        "body-just-over-64k",
        signed(BOB, kind="post", **c(type="post", text="x" * 65_500)),
        False,
        "oversize",
    )
    yield "unknown-kind", signed(BOB, kind="poll", **c(question="?")), False, "unknown_kind"
    yield "missing-field", signed(BOB, kind="post", **c(text="no type")), False, "missing_field"
    yield (
        "missing-created-at",
        envelope(BOB, encode_body(c(kind="post", type="post", text="x"))),
        False,
        "missing_field",
    )
    yield "missing-kind", signed(BOB, **c(type="post", text="x")), False, "missing_field"
    yield (
        "self-reference",
        signed(
            ALICE,
            kind="reference",
            subject=ALICE.public_key,
            skill="solar-pv",
            text="I am great.",
            relationship="hired",
        ),
        False,
        "self_reference",
    )
    yield (
        "dm-to-self",
        signed(ALICE, kind="dm", recipient=ALICE.public_key, box=b"x"),
        False,
        "self_reference",
    )
    yield (
        "clock-skew",
        signed(
            BOB,
            kind="post",
            **c(type="post", text="from the future", created_at=NOW_MS + 3_600_000),
        ),
        False,
        "clock_skew",
    )
    yield (
        "created-at-in-seconds",
        signed(BOB, kind="post", **c(type="post", text="x", created_at=NOW_MS // 1000)),
        False,
        "bad_field",
    )
    yield (
        "post-without-community",
        signed(BOB, kind="post", type="post", text="x"),
        False,
        "missing_field",
    )
    yield "profile-with-community", signed(BOB, kind="profile", **c(name="Bob")), False, "bad_field"
    yield (
        "offer-without-tags",
        signed(BOB, kind="post", **c(type="offer", text="x")),
        False,
        "bad_field",
    )
    yield (
        "tag-not-canonical",
        signed(BOB, kind="post", **c(type="question", text="x", tags=["Loft Insulation"])),
        False,
        "bad_field",
    )
    yield (
        "join-bad-proof",
        signed(
            BOB,
            kind="join",
            **c(invite_key=INVITE.invite_key, proof=INVITE.prove_join(CAROL.public_key)),
        ),
        False,
        "bad_proof",
    )
    yield (
        "referral-two-destinations",
        signed(
            BOB,
            kind="referral",
            **c(question=POST_ID, to_community=COMMUNITY, to_member=ALICE.public_key),
        ),
        False,
        "bad_field",
    )
    yield (
        "community-id-wrong-length",
        signed(BOB, kind="post", community=COMMUNITY[:16], type="post", text="x"),
        False,
        "malformed",
    )
    yield (
        "non-canonical-envelope",
        (b"\x94\x01\xc5\x00\x20" + BOB.public_key + good[2 + 2 + 32 :]),
        False,
        "malformed",
    )
    yield "trailing-bytes", good + b"\x00", False, "malformed"
    yield "truncated", good[:-10], False, "malformed"
    dup = (
        b"\x85"
        + msgpack.packb("kind")
        + msgpack.packb("post")
        + msgpack.packb("type")
        + msgpack.packb("post")
        + msgpack.packb("text")
        + msgpack.packb("a")
        + msgpack.packb("created_at")
        + msgpack.packb(T)
        + msgpack.packb("text")
        + msgpack.packb("b")
    )
    yield "duplicate-body-key", envelope(BOB, dup), False, "malformed"
    yield (
        "float-in-body",
        signed(BOB, kind="post", **c(type="post", text="x", score=1.5)),
        False,
        "malformed",
    )
    yield "body-not-a-map", envelope(BOB, msgpack.packb(["post"])), False, "malformed"


def _dm_body_of_size(size: int) -> bytes:
    """A valid dm whose body is exactly `size` bytes (padded by an unknown field)."""
    for pad in range(size - 60_200, size - 60_000):
        body = encode_body(
            {
                "kind": "dm",
                "created_at": T,
                "recipient": BOB.public_key,
                "box": bytes([6]) * 60_000,
                "padding": "p" * pad,
            }
        )
        if len(body) == size:
            return body
    raise AssertionError(f"no padding gives a body of {size} bytes")


def boundary_vectors() -> Iterator[tuple[str, bytes, bool, str]]:
    """Added after the first set: the body limit at the byte."""
    at_limit = _dm_body_of_size(65_536)
    yield "body-exactly-64k", envelope(ALICE, at_limit), True, "valid"
    over = _dm_body_of_size(65_537)
    yield "body-64k-plus-one", envelope(ALICE, over), False, "oversize"


def invite_vectors() -> Iterator[tuple[str, str, bool, str]]:
    code = INVITE.encode()
    yield "valid", code, True, "valid"
    yield "valid-upper-case", code.upper(), True, "valid"
    spaced = "\n ".join(code[i : i + 40] for i in range(0, len(code), 40))
    yield "valid-with-spaces-and-newlines", spaced, True, "valid"
    flipped = code[:30] + ("a" if code[30] != "a" else "b") + code[31:]
    yield "one-character-mistyped", flipped, False, "checksum"
    swapped = code[:40] + code[41] + code[40] + code[42:]
    assert swapped != code
    yield "two-characters-swapped", swapped, False, "checksum"
    yield "cut-short", code[:-20], False, "checksum"
    yield "wrong-prefix", "kith2" + code[5:], False, "format"
    yield "not-a-code", "hello world", False, "format"
    yield "forbidden-character", code[:50] + "9" + code[51:], False, "format"
    expired = InviteCode.create(
        ALICE, COMMUNITY, "Old invite", [], expires_at=NOW_MS - 1, secret=bytes([10]) * 32
    )
    yield "expired", expired.encode(), False, "expired"
    forged = InviteCode.create(
        BOB,
        COMMUNITY,
        "Loft insulators of Leeds",
        list(INVITE.addresses),
        expires_at=INVITE.expires_at,
        secret=bytes([9]) * 32,
    )
    body = msgpack.unpackb(forged.signed_body, raw=False)
    body["inviter"] = ALICE.public_key  # claims Alice invited, signed by Bob
    yield (
        "forged-inviter",
        _raw_code(1, msgpack.packb(body, use_bin_type=True), forged.signature),
        False,
        "signature",
    )
    yield "newer-version", _raw_code(2, INVITE.signed_body, INVITE.signature), False, "version"
    # Added after the first set: one invite, one encoding.
    body = msgpack.unpackb(INVITE.signed_body, raw=False)
    repeated = msgpack.packb(body, use_bin_type=True)
    repeated = bytes([repeated[0] + 1]) + repeated[1:] + msgpack.packb("name") + msgpack.packb("X")
    yield (
        "repeated-key",
        _raw_code(1, repeated, ALICE.sign(b"kithnet/invite/v1\x00" + repeated)),
        False,
        "format",
    )
    wide = b"\x93\xcc\x01" + msgpack.packb(INVITE.signed_body, use_bin_type=True)
    wide += msgpack.packb(INVITE.signature, use_bin_type=True)
    yield "non-canonical-payload", _with_checksum(wide), False, "format"
    body["addrs"] = ["/ip4/127.0.0.1/tcp/4001"]
    no_peer = msgpack.packb(body, use_bin_type=True)
    yield (
        "address-without-peer-id",
        _raw_code(1, no_peer, ALICE.sign(b"kithnet/invite/v1\x00" + no_peer)),
        False,
        "format",
    )


def _raw_code(version: int, body: bytes, signature: bytes) -> str:
    return _with_checksum(msgpack.packb([version, body, signature], use_bin_type=True))


def _with_checksum(payload: bytes) -> str:
    checksum = hashlib.blake2b(b"kithnet/invite-checksum/v1\x00" + payload, digest_size=5).digest()
    return "kith1" + base64.b32encode(payload + checksum).decode().rstrip("=").lower()


def _append(
    path: Path, rows: Iterator[dict[str, Any]], name_of: Callable[[dict[str, Any]], str]
) -> int:
    existing = set()
    if path.exists():
        existing = {json.loads(line)["name"] for line in path.read_text().splitlines() if line}
    added = 0
    with path.open("a", encoding="utf-8") as out:
        for row in rows:
            if name_of(row) in existing:
                continue
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            added += 1
    return added


def record_rows() -> Iterator[dict[str, Any]]:
    for name, data, valid, reason in chain(record_vectors(), boundary_vectors()):
        row: dict[str, Any] = {
            "name": name,
            "envelope_hex": data.hex(),
            "valid": valid,
            "reason": reason,
            "now_ms": NOW_MS,
        }
        try:
            outer = msgpack.unpackb(data, raw=False)
            row["id_hex"] = record_id(outer[1], outer[2]).hex()
        except Exception:
            row["id_hex"] = None
        yield row


def invite_rows() -> Iterator[dict[str, Any]]:
    for name, code, valid, reason in invite_vectors():
        row: dict[str, Any] = {
            "name": name,
            "code": code,
            "valid": valid,
            "reason": reason,
            "now_ms": NOW_MS,
        }
        if valid:
            row.update(
                community_hex=INVITE.community.hex(),
                community_name=INVITE.community_name,
                inviter_hex=INVITE.inviter.hex(),
                addresses=list(INVITE.addresses),
                expires_at=INVITE.expires_at,
                invite_key_hex=INVITE.invite_key.hex(),
            )
        yield row


def main() -> None:
    assert ID_DOMAIN  # the id rule is the one in kithnet.core.envelope
    added = _append(HERE / "records.jsonl", record_rows(), lambda r: r["name"])
    added += _append(HERE / "invites.jsonl", invite_rows(), lambda r: r["name"])
    print(f"added {added} vectors")


if __name__ == "__main__":
    main()
