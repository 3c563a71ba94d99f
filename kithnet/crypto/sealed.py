"""Sealed boxes to a member's Ed25519 key, for direct messages and community keys.

The recipient's Ed25519 public key is converted to X25519; the sender stays anonymous
to the box itself (the record that carries it is signed separately).
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public

from kithnet.crypto.errors import DecryptionFailed
from kithnet.crypto.identity import Identity, curve25519_public_key

OVERHEAD = 48  # ephemeral X25519 key (32) + Poly1305 tag (16)


def seal(recipient_public_key: bytes, plaintext: bytes) -> bytes:
    """Encrypt `plaintext` so that only the holder of the recipient's identity can read it."""
    box = nacl.public.SealedBox(nacl.public.PublicKey(curve25519_public_key(recipient_public_key)))
    return bytes(box.encrypt(plaintext))


def unseal(identity: Identity, sealed_box: bytes) -> bytes:
    """Open a sealed box addressed to `identity`; DecryptionFailed if it is not."""
    box = nacl.public.SealedBox(nacl.public.PrivateKey(identity.curve25519_private_key()))
    try:
        return box.decrypt(sealed_box)
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise DecryptionFailed(
            "could not open the sealed message: it is not addressed to this identity "
            "or it was altered"
        ) from exc
