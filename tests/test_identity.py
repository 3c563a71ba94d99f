"""Identity keys: signatures, the spoken fingerprint and the libp2p peer id."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID

from kithnet.crypto.errors import BadKey, BadSignature
from kithnet.crypto.identity import Identity, fingerprint, peer_id, verify

seeds = st.binary(min_size=32, max_size=32)


def test_signatures_verify_and_anything_else_is_refused() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    signature = alice.sign(b"hello")
    verify(alice.public_key, b"hello", signature)
    with pytest.raises(BadSignature):
        verify(bob.public_key, b"hello", signature)
    with pytest.raises(BadSignature):
        verify(alice.public_key, b"hellO", signature)
    with pytest.raises(BadSignature):
        verify(alice.public_key, b"hello", signature[:-1])
    with pytest.raises(BadKey):
        verify(alice.public_key[:31], b"hello", signature)


def test_identity_round_trips_through_its_seed() -> None:
    alice = Identity.generate()
    again = Identity.from_seed(alice.seed)
    assert again.public_key == alice.public_key
    assert again.sign(b"x") == alice.sign(b"x")
    with pytest.raises(BadKey):
        Identity.from_seed(b"short")


def test_fingerprint_is_five_groups_of_five_digits_and_pinned() -> None:
    key = Identity.from_seed(bytes([1]) * 32).public_key
    assert key.hex() == "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    # Pinned: the documented encoding (docs/protocol.md) must not drift.
    assert fingerprint(key) == "25020 13514 26374 48103 57110"
    assert re.fullmatch(r"\d{5}( \d{5}){4}", fingerprint(Identity.generate().public_key))


def test_fingerprint_follows_the_documented_recipe() -> None:
    import hashlib

    key = Identity.from_seed(bytes([1]) * 32).public_key
    digest = hashlib.blake2b(b"kithnet/fingerprint/v1\x00" + key, digest_size=25).digest()
    groups = [int.from_bytes(digest[i : i + 5], "big") % 100000 for i in range(0, 25, 5)]
    assert fingerprint(key) == " ".join(f"{g:05d}" for g in groups)


@given(seeds)
def test_peer_id_matches_libp2p(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    libp2p_key = Ed25519PrivateKey(identity.signing_key)
    assert peer_id(identity.public_key) == ID.from_pubkey(libp2p_key.get_public_key()).to_base58()
    assert peer_id(identity.public_key).startswith("12D3KooW")


def test_libp2p_signatures_by_the_same_key_verify_with_pynacl() -> None:
    identity = Identity.generate()
    signature = Ed25519PrivateKey(identity.signing_key).sign(b"libp2p data")
    verify(identity.public_key, b"libp2p data", signature)
