"""Errors raised by kithnet.crypto, each worded for the person at the keyboard."""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error this package raises."""


class BadSignature(CryptoError):
    """A signature does not match the key and the signed bytes."""


class BadKey(CryptoError):
    """Bytes given as a key are not a usable key (wrong length or invalid point)."""


class DecryptionFailed(CryptoError):
    """Ciphertext could not be opened: the key is wrong or the data was altered."""


class BadKdfParams(CryptoError):
    """Stored key-derivation parameters are missing, malformed or out of range."""


class BadPassphrase(CryptoError):
    """A passphrase cannot be used (it is not encodable text)."""
