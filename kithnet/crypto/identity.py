"""A member's identity: an Ed25519 key pair, its libp2p peer id and its fingerprint.

The same key signs records and identifies the member's libp2p host, so the peer id
is derived here without importing libp2p (docs/protocol.md, "Identity").
"""

from __future__ import annotations

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.signing

from kithnet.crypto.errors import BadKey, BadSignature

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64

FINGERPRINT_DOMAIN = b"kithnet/fingerprint/v1\x00"
FINGERPRINT_GROUPS = 5
_GROUP_BYTES = 5  # each group of 5 digits comes from 40 bits, as Signal's safety numbers do

_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Identity:
    """An Ed25519 signing key. Keep it secret; share `public_key`."""

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)

    @classmethod
    def generate(cls) -> Identity:
        """Make a new random identity."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Rebuild an identity from the 32-byte seed returned by `seed`."""
        if len(seed) != SEED_SIZE:
            raise BadKey(f"an identity seed is {SEED_SIZE} bytes, got {len(seed)}")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        """The 32 secret bytes from which the whole key pair is rebuilt."""
        return bytes(self._signing_key)

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        """The PyNaCl key, for libp2p's Ed25519PrivateKey wrapper."""
        return self._signing_key

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `message`."""
        return self._signing_key.sign(message).signature

    def curve25519_private_key(self) -> bytes:
        """The X25519 private key converted from this Ed25519 key (for sealed boxes)."""
        return bytes(self._signing_key.to_curve25519_private_key())

    def __repr__(self) -> str:
        return f"Identity({fingerprint(self.public_key)})"


def check_public_key(public_key: bytes) -> None:
    """Raise BadKey unless `public_key` is 32 bytes."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise BadKey(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise BadSignature unless `signature` is `public_key`'s signature of `message`."""
    check_public_key(public_key)
    if len(signature) != SIGNATURE_SIZE:
        raise BadSignature(f"an Ed25519 signature is {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        # crypto_sign_open is the fastest verify PyNaCl exposes (no VerifyKey object).
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.RuntimeError) as exc:
        raise BadSignature("the signature does not match the key and the data") from exc


def curve25519_public_key(public_key: bytes) -> bytes:
    """The X25519 public key converted from an Ed25519 public key."""
    check_public_key(public_key)
    try:
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except nacl.exceptions.CryptoError as exc:
        raise BadKey("this public key is not a valid Ed25519 point") from exc


def fingerprint(public_key: bytes) -> str:
    """A short text two people can read to each other to compare keys.

    Five groups of five decimal digits (about 83 bits): BLAKE2b-200 of a domain tag
    and the key, cut into 40-bit chunks, each reduced modulo 100000.
    """
    check_public_key(public_key)
    digest = hashlib.blake2b(
        FINGERPRINT_DOMAIN + public_key, digest_size=FINGERPRINT_GROUPS * _GROUP_BYTES
    ).digest()
    groups = []
    for i in range(FINGERPRINT_GROUPS):
        chunk = digest[i * _GROUP_BYTES : (i + 1) * _GROUP_BYTES]
        groups.append(f"{int.from_bytes(chunk, 'big') % 100000:05d}")
    return " ".join(groups)


def _base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_BASE58_ALPHABET[rem])
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + "".join(reversed(out))


def peer_id(public_key: bytes) -> str:
    """The libp2p peer id (base58btc, "12D3KooW...") of an Ed25519 public key.

    libp2p encodes the key as protobuf PublicKey{Type: Ed25519, Data: key} and, since
    that is at most 42 bytes, wraps it in an identity multihash.
    """
    check_public_key(public_key)
    protobuf = b"\x08\x01\x12\x20" + public_key
    multihash = b"\x00" + bytes([len(protobuf)]) + protobuf
    return _base58(multihash)


def public_key_of_peer(peer: str) -> bytes | None:
    """The Ed25519 public key a libp2p peer id names (the inverse of `peer_id`), or None
    if `peer` is not the peer id of an Ed25519 key."""
    if not peer or len(peer) > 64 or any(c not in _BASE58_ALPHABET for c in peer):
        return None
    number = 0
    for char in peer:
        number = number * 58 + _BASE58_ALPHABET.index(char)
    data = number.to_bytes(38, "big") if number < 1 << (8 * 38) else b""
    if len(data) != 38 or not data.startswith(b"\x00\x24\x08\x01\x12\x20"):
        return None
    key = data[6:]
    try:
        return key if peer_id(key) == peer else None
    except BadKey:
        return None


# The name the blob service uses.
public_key_of = public_key_of_peer
