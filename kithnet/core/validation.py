"""Stateless validation of a decoded record against its kind's rules (docs/protocol.md).

What needs known state (roles, bans, the author of an edited post) is judged by
`kithnet.core.authority`; everything else is here.
"""

from __future__ import annotations

from collections import Counter

from kithnet.core.envelope import Record, decode
from kithnet.core.errors import RecordError, ValidationError
from kithnet.core.fields import FieldError
from kithnet.core.kinds import KINDS
from kithnet.crypto.errors import BadSignature
from kithnet.crypto.invite import verify_join_proof

# Records dated more than this after the validator's clock are refused (and accepted
# later, when sync offers them again): a wrong clock cannot pin a post to the top.
MAX_FUTURE_SKEW_MS = 10 * 60 * 1000
# 2024-01-01T00:00:00Z: anything earlier was written in seconds, not milliseconds.
MIN_CREATED_AT = 1_704_067_200_000


def validate(record: Record, now_ms: int) -> None:
    """Raise ValidationError (with a reason code) if `record` breaks a rule of its kind."""
    spec = KINDS.get(record.kind)
    if spec is None:
        raise ValidationError(f"unknown record kind {record.kind!r}", "unknown_kind")
    created_at = record.created_at
    if created_at > now_ms + MAX_FUTURE_SKEW_MS:
        raise ValidationError(
            f"record is dated {(created_at - now_ms) // 1000} s in the future; "
            "its author's clock is wrong",
            "clock_skew",
        )
    if created_at < MIN_CREATED_AT:
        raise ValidationError(
            "record 'created_at' is before 2024: it must be in milliseconds", "bad_field"
        )
    has_community = record.community is not None
    if spec.community == "required" and not has_community:
        raise ValidationError(f"a {spec.name} record needs a 'community'", "missing_field")
    if spec.community == "absent" and has_community:
        raise ValidationError(f"a {spec.name} record belongs to no community", "bad_field")
    fields = record.fields
    for field in spec.fields:
        if field.name not in fields:
            if field.required:
                raise ValidationError(f"a {spec.name} record needs {field.name!r}", "missing_field")
            continue
        try:
            field.type.check(fields[field.name])
        except FieldError as exc:
            raise ValidationError(f"{spec.name} {field.name!r} {exc}", "bad_field") from exc
    for rule in spec.rules:
        rule(fields, record.author)
    if spec.name == "join":
        assert record.community is not None
        try:
            verify_join_proof(
                fields["invite_key"], record.community, record.author, fields["proof"]
            )
        except BadSignature as exc:
            raise ValidationError(
                "the join proof does not match the invite: the joiner did not hold its code",
                "bad_proof",
            ) from exc


def accept(data: bytes, now_ms: int, rejected: Counter[str]) -> Record | None:
    """Decode and validate; on failure count the reason in `rejected` and return None.

    The drop-and-count step for bytes from peers: nothing here raises for bad input.
    """
    try:
        record = decode(data)
        validate(record, now_ms)
    except RecordError as exc:
        rejected[exc.reason] += 1
        return None
    return record
