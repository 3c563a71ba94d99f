"""Kind rules: each rule refuses what it must, with the reason code a node counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from kithnet.core.envelope import sign_record
from kithnet.core.errors import ValidationError
from kithnet.core.fields import normalise_tag
from kithnet.core.validation import MAX_FUTURE_SKEW_MS, accept, validate
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from tests.strategies import NOW_MS

ALICE = Identity.from_seed(bytes([1]) * 32)
BOB = Identity.from_seed(bytes([2]) * 32)
COMMUNITY = bytes([0xC0]) * 32
TARGET = bytes([0xA1]) * 32


def reason_for(identity: Identity, **fields: Any) -> str:
    fields.setdefault("created_at", NOW_MS)
    record = sign_record(identity, fields)
    with pytest.raises(ValidationError) as info:
        validate(record, NOW_MS)
    return info.value.reason


def test_unknown_kinds_are_dropped_and_counted() -> None:
    rejected: Counter[str] = Counter()
    poll = sign_record(ALICE, {"kind": "poll", "created_at": NOW_MS, "community": COMMUNITY})
    post = sign_record(
        ALICE,
        {"kind": "post", "created_at": NOW_MS, "community": COMMUNITY, "type": "post", "text": "x"},
    )
    results = [accept(data, NOW_MS, rejected) for data in (poll.envelope, post.envelope, b"junk")]
    assert results == [None, post, None]
    assert rejected == Counter({"unknown_kind": 1, "malformed": 1})


def test_nobody_vouches_for_themselves() -> None:
    fields = {"subject": ALICE.public_key, "skill": "plumbing", "text": "I am great"}
    assert reason_for(ALICE, kind="reference", relationship="hired", **fields) == "self_reference"


def test_a_moderator_cannot_ban_themselves_and_nobody_messages_themselves() -> None:
    assert (
        reason_for(
            ALICE, kind="moderation", community=COMMUNITY, action="ban", target=ALICE.public_key
        )
        == "self_reference"
    )
    assert reason_for(ALICE, kind="dm", recipient=ALICE.public_key, box=b"x") == "self_reference"


def test_records_from_the_future_are_refused_within_a_window() -> None:
    def post(created_at: int) -> Any:
        return sign_record(
            BOB,
            {
                "kind": "post",
                "community": COMMUNITY,
                "created_at": created_at,
                "type": "post",
                "text": "x",
            },
        )

    validate(post(NOW_MS + MAX_FUTURE_SKEW_MS), NOW_MS)
    with pytest.raises(ValidationError) as info:
        validate(post(NOW_MS + MAX_FUTURE_SKEW_MS + 1), NOW_MS)
    assert info.value.reason == "clock_skew"
    assert "clock is wrong" in str(info.value)


def test_timestamps_in_seconds_are_refused() -> None:
    reason = reason_for(BOB, kind="profile", name="Bob", created_at=NOW_MS // 1000)
    assert reason == "bad_field"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"kind": "post", "type": "post", "text": "no community"}, "missing_field"),
        ({"kind": "profile", "name": "Bob", "community": COMMUNITY}, "bad_field"),
        ({"kind": "profile"}, "missing_field"),
        ({"kind": "profile", "name": ""}, "bad_field"),
        ({"kind": "profile", "name": "x" * 65}, "bad_field"),
        ({"kind": "profile", "name": "Bob", "skills": ["Plumbing"]}, "bad_field"),
        ({"kind": "profile", "name": "Bob", "skills": ["a", "a"]}, "bad_field"),
        ({"kind": "profile", "name": "Bob", "skills": "plumbing"}, "bad_field"),
        ({"kind": "community", "name": "C", "visibility": "secret"}, "bad_field"),
        (
            {"kind": "role_grant", "community": COMMUNITY, "subject": b"short", "role": "owner"},
            "bad_field",
        ),
        ({"kind": "post", "community": COMMUNITY, "type": "offer", "text": "x"}, "bad_field"),
        (
            {"kind": "post", "community": COMMUNITY, "type": "post", "text": "x", "area": "Leeds"},
            "bad_field",
        ),
        ({"kind": "post", "community": COMMUNITY, "type": "post"}, "bad_field"),
        ({"kind": "referral", "community": COMMUNITY, "question": TARGET}, "bad_field"),
        (
            {
                "kind": "referral",
                "community": COMMUNITY,
                "question": TARGET,
                "to_member": BOB.public_key,
                "invite": "kith1x",
            },
            "bad_field",
        ),
        (
            {"kind": "announcement", "community": COMMUNITY, "name": "C", "visibility": "private"},
            "bad_field",
        ),
        ({"kind": "key_update", "community": COMMUNITY, "epoch": 1, "keys": []}, "bad_field"),
        (
            {
                "kind": "invite",
                "community": COMMUNITY,
                "invite_key": TARGET,
                "expires_at": 1,
                "max_uses": 0,
            },
            "bad_field",
        ),
        ({"kind": "reaction", "community": COMMUNITY, "target": TARGET, "emoji": ""}, "bad_field"),
    ],
)
def test_field_rules(fields: dict[str, Any], reason: str) -> None:
    assert reason_for(ALICE, **fields) == reason


def test_a_join_must_prove_it_held_the_invite_secret() -> None:
    code = InviteCode.create(ALICE, COMMUNITY, "C", [], NOW_MS + 1000)
    good = sign_record(
        BOB,
        {
            "kind": "join",
            "community": COMMUNITY,
            "created_at": NOW_MS,
            "invite_key": code.invite_key,
            "proof": code.prove_join(BOB.public_key),
        },
    )
    validate(good, NOW_MS)
    # A proof made for someone else cannot be replayed by another joiner.
    stolen = code.prove_join(ALICE.public_key)
    reason = reason_for(
        BOB, kind="join", community=COMMUNITY, invite_key=code.invite_key, proof=stolen
    )
    assert reason == "bad_proof"


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("Loft Insulation", "loft-insulation"),
        ("  solar  PV ", "solar-pv"),
        ("Straße", "strasse"),
        ("Ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
        ("plumbing/heating", "plumbing-heating"),
    ],
)
def test_tags_are_normalised_so_the_same_skill_matches(raw: str, tag: str) -> None:
    assert normalise_tag(raw) == tag
