"""Why a record was refused. Every error carries a stable `reason` code (the same codes
appear in tests/vectors and in the counts a node keeps of what it dropped)."""

from __future__ import annotations


class RecordError(Exception):
    """A record was refused. `reason` is a stable code; the message is for people."""

    reason = "invalid"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class WireError(RecordError):
    """The bytes are not a well-formed, correctly signed record envelope."""

    reason = "malformed"


class UnsupportedVersion(WireError):
    """The envelope uses a newer format version than this Kithnet understands."""

    reason = "unsupported_version"

    def __init__(self, version: int) -> None:
        super().__init__(
            f"this record uses format version {version}, newer than this Kithnet "
            "understands; update Kithnet to read it",
        )
        self.version = version


class ValidationError(RecordError):
    """A correctly signed record breaks a rule of its kind."""


# Reason codes, listed so that counters and docs can enumerate them.
REASONS = (
    "malformed",
    "oversize",
    "unsupported_version",
    "bad_author_key",
    "bad_signature",
    "unknown_kind",
    "missing_field",
    "bad_field",
    "clock_skew",
    "self_reference",
    "bad_proof",
    "not_authorised",
    "pending",
    "pending_full",
    "direct_only",
)
