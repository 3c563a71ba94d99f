"""Symmetric authenticated encryption: XChaCha20-Poly1305 (IETF AEAD).

For private-community content and backups. A box is nonce (24 bytes) followed by the
ciphertext and its 16-byte tag; a random nonce is safe with 192-bit nonces.
"""

from __future__ import annotations

import os

import nacl.bindings as sodium
import nacl.exceptions

from kithnet.crypto.errors import BadKey, DecryptionFailed

KEY_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
NONCE_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


def new_key() -> bytes:
    """A fresh random 32-byte key."""
    return os.urandom(KEY_SIZE)


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise BadKey(f"a secret-box key is {KEY_SIZE} bytes, got {len(key)}")


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    """Encrypt and authenticate `plaintext`; `associated_data` is authenticated only."""
    _check_key(key)
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, associated_data, nonce, key
    )
    return nonce + ciphertext


def decrypt(key: bytes, box: bytes, associated_data: bytes = b"") -> bytes:
    """Open a box made by `encrypt`; DecryptionFailed if the key or data is wrong."""
    _check_key(key)
    if len(box) < OVERHEAD:
        raise DecryptionFailed("the encrypted data is too short to be valid")
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            box[NONCE_SIZE:], associated_data, box[:NONCE_SIZE], key
        )
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionFailed(
            "could not decrypt: the key is wrong or the data was altered"
        ) from exc
