"""Invite codes: text a person can paste or scan that lets someone join a community.

`kith1` + base32 of (payload + 5-byte checksum). The payload is a signed msgpack
envelope like a record's. Spec: docs/protocol.md, "Invite codes".
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime

import msgpack
import segno

from kithnet.crypto.errors import BadSignature, CryptoError
from kithnet.crypto.identity import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    Identity,
    fingerprint,
    verify,
)

PREFIX = "kith1"
VERSION = 1
SIGN_DOMAIN = b"kithnet/invite/v1\x00"
CHECKSUM_DOMAIN = b"kithnet/invite-checksum/v1\x00"
JOIN_DOMAIN = b"kithnet/join/v1\x00"
CHECKSUM_SIZE = 5
SECRET_SIZE = 32
COMMUNITY_ID_SIZE = 32
MAX_NAME_BYTES = 80
MAX_ADDRESSES = 8
MAX_ADDRESS_BYTES = 256
MAX_PAYLOAD_BYTES = 2048
MAX_TEXT_CHARS = 4096

_ALPHABET = set(string.ascii_lowercase + "234567")
# A dialable bootstrap address names its peer: /<protocols...>/p2p/<base58 peer id>.
_BOOTSTRAP_ADDRESS = re.compile(r"(?:/[^/\s]+)+/p2p/[1-9A-HJ-NP-Za-km-z]+")
# Characters people confuse with base32 ones; read as the letter they resemble.
_LOOKALIKES = str.maketrans({"0": "o", "1": "l", "8": "b"})


class InviteCodeError(CryptoError):
    """An invite code cannot be used; the message says why and what to do."""


class InviteFormatError(InviteCodeError):
    """The text is not a Kithnet invite code at all."""


class InviteChecksumError(InviteCodeError):
    """The code was mistyped or cut short."""


class InviteVersionError(InviteCodeError):
    """The code was made by a newer Kithnet."""


class InviteSignatureError(InviteCodeError):
    """The code's signature does not match its inviter: it was altered."""


class InviteExpired(InviteCodeError):
    """The code is past its expiry."""


@dataclass(frozen=True, slots=True)
class InviteCode:
    """What an invite code carries. `secret` is the bearer proof: keep codes private."""

    community: bytes
    community_name: str
    inviter: bytes
    addresses: tuple[str, ...]
    secret: bytes
    expires_at: int
    signature: bytes
    signed_body: bytes

    @classmethod
    def create(
        cls,
        inviter: Identity,
        community: bytes,
        community_name: str,
        addresses: tuple[str, ...] | list[str],
        expires_at: int,
        secret: bytes | None = None,
    ) -> InviteCode:
        """Make and sign a new invite; `expires_at` is in milliseconds since the epoch."""
        secret = os.urandom(SECRET_SIZE) if secret is None else secret
        body_map = {
            "community": community,
            "name": community_name,
            "inviter": inviter.public_key,
            "addrs": list(addresses),
            "secret": secret,
            "expires_at": expires_at,
        }
        _check_body(body_map)
        body = msgpack.packb(body_map, use_bin_type=True)
        signature = inviter.sign(SIGN_DOMAIN + body)
        return cls(
            community=community,
            community_name=community_name,
            inviter=inviter.public_key,
            addresses=tuple(addresses),
            secret=secret,
            expires_at=expires_at,
            signature=signature,
            signed_body=body,
        )

    @property
    def invite_key(self) -> bytes:
        """The public key of the secret; the inviter's `invite` record names it."""
        return Identity.from_seed(self.secret).public_key

    def encode(self) -> str:
        """The code as lowercase text starting with `kith1`."""
        payload = msgpack.packb([VERSION, self.signed_body, self.signature], use_bin_type=True)
        data = payload + _checksum(payload)
        return PREFIX + base64.b32encode(data).decode("ascii").rstrip("=").lower()

    def check_fresh(self, now_ms: int) -> None:
        """Raise InviteExpired if the code is past its expiry at `now_ms`."""
        if now_ms >= self.expires_at:
            when = datetime.fromtimestamp(self.expires_at / 1000, tz=UTC)
            raise InviteExpired(
                f"this invite to {self.community_name!r} expired on "
                f"{when:%Y-%m-%d %H:%M} UTC; ask the person who invited you "
                f"({fingerprint(self.inviter)}) for a new one"
            )

    def prove_join(self, joiner_public_key: bytes) -> bytes:
        """The proof a joiner puts in its `join` record: the secret signs who joins where."""
        return Identity.from_seed(self.secret).sign(
            JOIN_DOMAIN + self.community + joiner_public_key
        )


def verify_join_proof(invite_key: bytes, community: bytes, joiner: bytes, proof: bytes) -> None:
    """Raise BadSignature unless `proof` shows the joiner held the invite's secret."""
    verify(invite_key, JOIN_DOMAIN + community + joiner, proof)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(CHECKSUM_DOMAIN + payload, digest_size=CHECKSUM_SIZE).digest()


def _check_body(body: dict[str, object]) -> None:
    def bad(what: str) -> InviteFormatError:
        return InviteFormatError(f"this invite code is malformed: {what}")

    community = body.get("community")
    if not isinstance(community, bytes) or len(community) != COMMUNITY_ID_SIZE:
        raise bad(f"the community id must be {COMMUNITY_ID_SIZE} bytes")
    name = body.get("name")
    if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_NAME_BYTES:
        raise bad(f"the community name must be 1 to {MAX_NAME_BYTES} bytes of text")
    inviter = body.get("inviter")
    if not isinstance(inviter, bytes) or len(inviter) != PUBLIC_KEY_SIZE:
        raise bad(f"the inviter key must be {PUBLIC_KEY_SIZE} bytes")
    addrs = body.get("addrs")
    if not isinstance(addrs, list) or len(addrs) > MAX_ADDRESSES:
        raise bad(f"there must be at most {MAX_ADDRESSES} addresses")
    for addr in addrs:
        if not isinstance(addr, str) or not _BOOTSTRAP_ADDRESS.fullmatch(addr):
            raise bad("an address is not a multiaddr ending in /p2p/<peer id>")
        if len(addr.encode()) > MAX_ADDRESS_BYTES:
            raise bad(f"an address is longer than {MAX_ADDRESS_BYTES} bytes")
    secret = body.get("secret")
    if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
        raise bad(f"the secret must be {SECRET_SIZE} bytes")
    expires_at = body.get("expires_at")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool) or expires_at < 0:
        raise bad("the expiry must be a non-negative integer")


def _normalise(text: str) -> str:
    compact = "".join(text.split()).lower()
    if not compact.startswith(PREFIX):
        raise InviteFormatError(
            f"this is not a Kithnet invite code: a code starts with {PREFIX!r}; "
            "check that you copied all of it"
        )
    rest = compact[len(PREFIX) :].translate(_LOOKALIKES)
    for position, char in enumerate(rest, start=len(PREFIX) + 1):
        if char not in _ALPHABET:
            raise InviteFormatError(
                f"character {char!r} at position {position} cannot appear in an invite "
                "code; check for a typing mistake"
            )
    return rest


def decode(text: str) -> InviteCode:
    """Parse and verify an invite code. Whitespace and letter case are ignored.

    Raises InviteFormatError, InviteChecksumError, InviteVersionError or
    InviteSignatureError; the expiry is checked separately by `check_fresh`.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise InviteFormatError("this text is far too long to be an invite code")
    rest = _normalise(text)
    try:
        data = base64.b32decode(rest.upper() + "=" * (-len(rest) % 8))
    except ValueError as exc:
        raise InviteChecksumError(
            "the invite code was mistyped or cut short; copy it again"
        ) from exc
    canonical = base64.b32encode(data).decode("ascii").rstrip("=").lower()
    if len(data) <= CHECKSUM_SIZE or canonical != rest:
        raise InviteChecksumError("the invite code was mistyped or cut short; copy it again")
    payload, checksum = data[:-CHECKSUM_SIZE], data[-CHECKSUM_SIZE:]
    if _checksum(payload) != checksum:
        raise InviteChecksumError(
            "the invite code was mistyped or cut short (its checksum does not match); copy it again"
        )
    return _decode_payload(payload)


def _decode_payload(payload: bytes) -> InviteCode:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InviteFormatError("this invite code is malformed: it is too long")
    try:
        outer = msgpack.unpackb(
            payload, raw=False, max_bin_len=MAX_PAYLOAD_BYTES, max_array_len=16, max_map_len=0
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise InviteFormatError("this invite code is malformed") from exc
    if not isinstance(outer, list) or not outer or type(outer[0]) is not int:
        raise InviteFormatError("this invite code is malformed")
    if outer[0] > VERSION:
        raise InviteVersionError(
            f"this invite code was made by a newer Kithnet (format {outer[0]}); "
            "update Kithnet to use it"
        )
    if outer[0] != VERSION or len(outer) != 3:
        raise InviteFormatError("this invite code is malformed")
    _, body, signature = outer
    if not isinstance(body, bytes) or not isinstance(signature, bytes):
        raise InviteFormatError("this invite code is malformed")
    if msgpack.packb(outer, use_bin_type=True) != payload:
        raise InviteFormatError("this invite code is malformed: it is not in canonical form")
    if len(signature) != SIGNATURE_SIZE:
        raise InviteFormatError("this invite code is malformed: bad signature length")
    try:
        fields = msgpack.unpackb(
            body,
            raw=False,
            max_bin_len=MAX_PAYLOAD_BYTES,
            max_str_len=MAX_PAYLOAD_BYTES,
            max_array_len=MAX_ADDRESSES + 1,
            max_map_len=32,
            max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise InviteFormatError("this invite code is malformed") from exc
    if not isinstance(fields, dict) or not all(type(k) is str for k in fields):
        raise InviteFormatError("this invite code is malformed")
    # One encoding per invite: re-encoding must give the signed bytes back (this also
    # refuses a repeated key, which implementations would resolve differently).
    if msgpack.packb(fields, use_bin_type=True) != body:
        raise InviteFormatError("this invite code is malformed: it is not in canonical form")
    _check_body(fields)
    try:
        verify(fields["inviter"], SIGN_DOMAIN + body, signature)
    except BadSignature as exc:
        raise InviteSignatureError(
            "this invite code's signature does not match its inviter: it was altered; "
            "ask for a new code"
        ) from exc
    return InviteCode(
        community=fields["community"],
        community_name=fields["name"],
        inviter=fields["inviter"],
        addresses=tuple(fields["addrs"]),
        secret=fields["secret"],
        expires_at=fields["expires_at"],
        signature=signature,
        signed_body=body,
    )


QR_QUIET_ZONE = 4  # modules of light margin a scanner needs around a QR code


def _qr(code_text: str) -> segno.QRCode:
    # Upper case, so QR's compact alphanumeric mode fits; `decode` ignores the case.
    return segno.make(code_text.upper(), error="m", micro=False)


def qr_png(code_text: str, scale: int = 4) -> bytes:
    """A PNG QR code of an invite code."""
    buffer = io.BytesIO()
    _qr(code_text).save(buffer, kind="png", scale=scale, border=QR_QUIET_ZONE)
    return buffer.getvalue()


def qr_matrix(code_text: str) -> list[list[bool]]:
    """The QR code of an invite code as rows of modules, True for dark, with its quiet
    zone, for an app to paint at whatever size it needs (the same code `qr_png` draws)."""
    rows = _qr(code_text).matrix_iter(scale=1, border=QR_QUIET_ZONE)
    return [[bool(module) for module in row] for row in rows]
