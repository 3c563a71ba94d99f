"""Passphrase key derivation with Argon2id, its parameters kept beside the salt.

The parameters travel with the salt (in a store's header file, in a backup) so that a
later version can raise them without losing the ability to open old data.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Any

import nacl.pwhash.argon2id as argon2id

from kithnet.crypto.errors import BadKdfParams, BadPassphrase

ALGORITHM = "argon2id13"
SALT_SIZE = argon2id.SALTBYTES  # 16
KEY_SIZE = 32
MAX_KEY_SIZE = 64

# MODERATE: about 0.5-1 s and 256 MiB on this kind of machine; a desktop unlock can
# afford it once per start. Tests pass a smaller profile.
DEFAULT_OPSLIMIT = argon2id.OPSLIMIT_MODERATE
DEFAULT_MEMLIMIT = argon2id.MEMLIMIT_MODERATE
# Upper bounds so a tampered header cannot make us allocate without limit.
MAX_OPSLIMIT = 64
MAX_MEMLIMIT = 4 * 1024**3


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id parameters and salt; `to_dict` and `from_dict` store them."""

    salt: bytes
    opslimit: int = DEFAULT_OPSLIMIT
    memlimit: int = DEFAULT_MEMLIMIT
    algorithm: str = ALGORITHM

    @classmethod
    def new(cls, opslimit: int = DEFAULT_OPSLIMIT, memlimit: int = DEFAULT_MEMLIMIT) -> KdfParams:
        """Fresh parameters with a random salt."""
        params = cls(salt=os.urandom(SALT_SIZE), opslimit=opslimit, memlimit=memlimit)
        params.check()
        return params

    def check(self) -> None:
        """Raise BadKdfParams if any value is out of the range libsodium and we accept."""
        if self.algorithm != ALGORITHM:
            raise BadKdfParams(f"unknown key-derivation algorithm {self.algorithm!r}")
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_SIZE:
            raise BadKdfParams(f"the salt must be {SALT_SIZE} bytes")
        if type(self.opslimit) is not int or not (
            argon2id.OPSLIMIT_MIN <= self.opslimit <= MAX_OPSLIMIT
        ):
            raise BadKdfParams(f"opslimit {self.opslimit!r} is out of range")
        if type(self.memlimit) is not int or not (
            argon2id.MEMLIMIT_MIN <= self.memlimit <= MAX_MEMLIMIT
        ):
            raise BadKdfParams(f"memlimit {self.memlimit!r} is out of range")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (the salt as hex)."""
        return {
            "algorithm": self.algorithm,
            "salt": self.salt.hex(),
            "opslimit": self.opslimit,
            "memlimit": self.memlimit,
        }

    @classmethod
    def from_dict(cls, data: object) -> KdfParams:
        """Read what `to_dict` wrote; raise BadKdfParams on anything else."""
        if not isinstance(data, dict):
            raise BadKdfParams("key-derivation parameters must be a mapping")
        try:
            params = cls(
                salt=bytes.fromhex(data["salt"]),
                opslimit=data["opslimit"],
                memlimit=data["memlimit"],
                algorithm=data["algorithm"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadKdfParams(f"key-derivation parameters are incomplete: {exc}") from exc
        params.check()
        return params


def derive_key(passphrase: str, params: KdfParams, size: int = KEY_SIZE) -> bytes:
    """Derive a `size`-byte key from a passphrase (NFC-normalised, UTF-8).

    Slow on purpose: never call it on the thread that paints.
    """
    params.check()
    if not argon2id.BYTES_MIN <= size <= MAX_KEY_SIZE:
        raise BadKdfParams(f"a derived key is {argon2id.BYTES_MIN} to {MAX_KEY_SIZE} bytes")
    try:
        normalised = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadPassphrase("the passphrase contains characters that are not text") from exc
    return argon2id.kdf(
        size, normalised, params.salt, opslimit=params.opslimit, memlimit=params.memlimit
    )
