"""Passphrase KDF, secret boxes and sealed boxes: right keys open, wrong keys say so."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.pwhash import argon2id

from kithnet.crypto import sealed, secretbox
from kithnet.crypto.errors import BadKdfParams, BadKey, BadPassphrase, DecryptionFailed
from kithnet.crypto.identity import Identity
from kithnet.crypto.kdf import KdfParams, derive_key

FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}


def test_kdf_is_repeatable_and_depends_on_passphrase_and_salt() -> None:
    params = KdfParams.new(**FAST)
    key = derive_key("correct horse", params)
    assert len(key) == 32
    assert derive_key("correct horse", params) == key
    assert derive_key("correct horsf", params) != key
    assert derive_key("correct horse", KdfParams.new(**FAST)) != key


def test_kdf_params_survive_storage_and_can_be_raised_later() -> None:
    params = KdfParams.new(**FAST)
    stored = params.to_dict()
    assert KdfParams.from_dict(stored) == params
    stronger = KdfParams(params.salt, opslimit=params.opslimit + 1, memlimit=params.memlimit)
    assert derive_key("pw", stronger) != derive_key("pw", params)


def test_the_same_passphrase_typed_two_unicode_ways_gives_the_same_key() -> None:
    params = KdfParams.new(**FAST)
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert derive_key(composed, params) == derive_key(decomposed, params)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {},
        {"algorithm": "scrypt", "salt": "00" * 16, "opslimit": 2, "memlimit": 2**16},
        {"algorithm": "argon2id13", "salt": "00" * 15, "opslimit": 2, "memlimit": 2**16},
        {"algorithm": "argon2id13", "salt": "zz", "opslimit": 2, "memlimit": 2**16},
        {"algorithm": "argon2id13", "salt": "00" * 16, "opslimit": 0, "memlimit": 2**16},
        {"algorithm": "argon2id13", "salt": "00" * 16, "opslimit": 2, "memlimit": 2**50},
        {"algorithm": "argon2id13", "salt": "00" * 16, "opslimit": "2", "memlimit": 2**16},
    ],
)
def test_tampered_kdf_params_are_refused(bad: object) -> None:
    with pytest.raises(BadKdfParams):
        KdfParams.from_dict(bad)


@given(st.binary(max_size=2000), st.binary(max_size=50))
def test_secret_box_round_trip(plaintext: bytes, associated: bytes) -> None:
    key = secretbox.new_key()
    box = secretbox.encrypt(key, plaintext, associated)
    assert len(box) == len(plaintext) + secretbox.OVERHEAD
    assert secretbox.decrypt(key, box, associated) == plaintext


def test_secret_box_refuses_wrong_key_tampering_and_wrong_context() -> None:
    key = secretbox.new_key()
    box = secretbox.encrypt(key, b"private post", b"community-1")
    with pytest.raises(DecryptionFailed, match="key is wrong"):
        secretbox.decrypt(secretbox.new_key(), box, b"community-1")
    tampered = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(DecryptionFailed):
        secretbox.decrypt(key, tampered, b"community-1")
    with pytest.raises(DecryptionFailed):
        secretbox.decrypt(key, box, b"community-2")
    with pytest.raises(DecryptionFailed):
        secretbox.decrypt(key, box[:10])
    with pytest.raises(BadKey):
        secretbox.encrypt(b"short", b"x")


def test_sealed_box_opens_only_for_its_recipient() -> None:
    bob, eve = Identity.generate(), Identity.generate()
    box = sealed.seal(bob.public_key, b"meet at the hall")
    assert len(box) == len(b"meet at the hall") + sealed.OVERHEAD
    assert sealed.unseal(bob, box) == b"meet at the hall"
    with pytest.raises(DecryptionFailed, match="not addressed to this identity"):
        sealed.unseal(eve, box)
    with pytest.raises(DecryptionFailed):
        sealed.unseal(bob, box[:-1] + bytes([box[-1] ^ 1]))
    with pytest.raises(DecryptionFailed):
        sealed.unseal(bob, b"")


def test_kdf_refuses_what_it_cannot_use_with_its_own_errors() -> None:
    params = KdfParams.new(**FAST)
    with pytest.raises(BadPassphrase):
        derive_key("broken \ud800 surrogate", params)
    with pytest.raises(BadKdfParams):
        derive_key("pw", params, size=8)
    with pytest.raises(BadKdfParams):
        KdfParams.from_dict({**params.to_dict(), "opslimit": True})
