"""Negentropy V1 set reconciliation: the wire format matches the published one, and two
sides always end knowing exactly what each lacks, in few round trips."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kithnet.p2p.negentropy import (
    INFINITY,
    Negentropy,
    NegentropyError,
    Storage,
    encode_varint,
)

# Items and answers published with the reference implementation's tests
# (hoytech/negentropy, kotlin/src/test: FingerprintTest, NegentropyBasicTest).
A = (1678011277, bytes.fromhex("eb6b05c2e3b008592ac666594d78ed83e7b9ab30f825b9b08878128f7500008c"))
B = (1678011278, bytes.fromhex("39b916432333e069a4386917609215cc688eb99f06fed01aadc29b1b4b92d6f0"))
C = (1678011279, bytes.fromhex("abc81d58ebe3b9a87100d47f58bf15e9b1cbf62d38623f11d0f0d17179f5f3ba"))


def test_varints_are_most_significant_digit_first() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x81\x00"
    assert encode_varint(300) == b"\x82\x2c"
    assert encode_varint(INFINITY) == bytes.fromhex("81ffffffffffffffff7f")


def test_fingerprints_match_the_published_ones() -> None:
    assert Storage([A]).fingerprint(0, 1).hex() == "6d74e1212fcafc8a81d090f0ffbde8b0"
    assert Storage([A, B]).fingerprint(0, 2).hex() == "96b26d110825d4b1805fc56988a3e65d"
    three = Storage([A, B, C])
    assert three.fingerprint(0, 3).hex() == "c15ce60f185fd24ae341076caa93daa5"
    assert three.fingerprint(0, 2).hex() == "96b26d110825d4b1805fc56988a3e65d"


def test_the_first_message_matches_the_published_one() -> None:
    message = Negentropy(Storage([A, B, C])).initiate()
    assert message.hex() == "6100000203" + A[1].hex() + B[1].hex() + C[1].hex()
    # Equal sets: the server has nothing to say, the client nothing more to ask.
    reply = Negentropy(Storage([A, B, C])).reconcile(message)
    client = Negentropy(Storage([A, B, C]))
    client.initiate()
    assert client.reconcile_client(reply) == (None, [], [])


def test_a_newer_version_gets_the_version_we_speak() -> None:
    assert Negentropy(Storage([A])).reconcile(bytes.fromhex("62aabbccddeeff")) == b"\x61"


def items(count: int, rng: random.Random) -> list[tuple[int, bytes]]:
    start = 1_764_000_000_000
    # Timestamps collide often, so that bounds need id prefixes.
    return [(start + rng.randrange(count // 3 + 1), rng.randbytes(32)) for _ in range(count)]


def reconcile(
    client_items: list[tuple[int, bytes]],
    server_items: list[tuple[int, bytes]],
    frame_size_limit: int = 0,
) -> tuple[set[bytes], set[bytes], int, int]:
    """Run the protocol to the end: (have, need, round trips, bytes both ways)."""
    client = Negentropy(Storage(client_items), frame_size_limit)
    server = Negentropy(Storage(server_items), frame_size_limit)
    message: bytes | None = client.initiate()
    have: set[bytes] = set()
    need: set[bytes] = set()
    rounds = 0
    wire = 0
    while message is not None:
        rounds += 1
        assert rounds < 100, "reconciliation does not end"
        if frame_size_limit:
            assert len(message) <= frame_size_limit
        reply = server.reconcile(message)
        if frame_size_limit:
            assert len(reply) <= frame_size_limit
        wire += len(message) + len(reply)
        message, got_have, got_need = client.reconcile_client(reply)
        have.update(got_have)
        need.update(got_need)
    return have, need, rounds, wire


Item = tuple[int, bytes]
Case = Callable[[list[Item], random.Random], tuple[list[Item], list[Item]]]
CASES: dict[str, Case] = {
    "equal": lambda shared, rng: (shared, shared),
    "disjoint": lambda shared, rng: (shared, items(len(shared), rng)),
    "one percent apart": lambda shared, rng: (
        [x for i, x in enumerate(shared) if i % 200 != 0],
        [x for i, x in enumerate(shared) if i % 200 != 100],
    ),
    "client empty": lambda shared, rng: ([], shared),
    "server empty": lambda shared, rng: (shared, []),
    "both empty": lambda shared, rng: ([], []),
}


@pytest.mark.parametrize("frame_size_limit", [0, 4096])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("size", [1, 31, 32, 600, 5000])
def test_both_sides_learn_exactly_the_difference(
    case: str, size: int, frame_size_limit: int
) -> None:
    rng = random.Random(f"{case}-{size}")
    mine, theirs = CASES[case](items(size, rng), rng)
    have, need, _, _ = reconcile(mine, theirs, frame_size_limit)
    mine_ids = {i for _, i in mine}
    their_ids = {i for _, i in theirs}
    assert have == mine_ids - their_ids
    assert need == their_ids - mine_ids


def test_round_trips_grow_with_the_log_of_the_set() -> None:
    rng = random.Random(7)
    for size in (1_000, 10_000, 100_000):
        shared = items(size, rng)
        mine = [x for i, x in enumerate(shared) if i % 100 != 0]  # 1 % missing
        have, need, rounds, _ = reconcile(mine, shared)
        assert have == set()
        assert need == {x[1] for i, x in enumerate(shared) if i % 100 == 0}
        assert rounds <= math.ceil(math.log(size / 32, 16)) + 2, (size, rounds)


@given(st.binary(max_size=400))
def test_malformed_messages_raise_only_the_protocol_error(data: bytes) -> None:
    server = Negentropy(Storage([A, B, C]))
    try:
        reply = server.reconcile(b"\x61" + data)
    except NegentropyError:
        return
    assert reply[0] == 0x61


def test_a_huge_declared_id_list_is_refused_before_reading() -> None:
    message = b"\x61\x00\x00\x02" + encode_varint(10**9) + os.urandom(64)
    with pytest.raises(NegentropyError, match="longer than the message"):
        Negentropy(Storage([A])).reconcile(message)
