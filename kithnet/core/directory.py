"""Directory listings (docs/protocol.md, "The directory"): an owner's `announcement` of a
public community together with what a stranger needs to judge it alone (the community's
genesis and, if the announcer is not its creator, the owner grants that lead to them).

Pure: a listing is checked by folding just its records with the reference authority
model, so a node that holds nothing of the community decides the same as one that does.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from kithnet.core.authority import Verdict, fold
from kithnet.core.envelope import Record

MAX_LISTING_RECORDS = 10  # the announcement, the genesis and up to 8 owner grants
MAX_GRANT_CHAIN = MAX_LISTING_RECORDS - 2
MAX_LISTING_BYTES = 64 * 1024  # one listing, packed


class ListingError(Exception):
    """A listing that is not one, or whose announcement does not stand on its own.

    `reason` is a counter name: `bad_listing` (not shaped as a listing) or
    `not_authorised` (the announcer is not an owner of a public community)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def pack_listing(envelopes: Sequence[bytes]) -> bytes:
    """A listing on the wire: a msgpack array of envelopes, the announcement first."""
    packed: bytes = msgpack.packb(list(envelopes), use_bin_type=True)
    return packed


def unpack_listing(data: bytes) -> list[bytes]:
    """The envelopes of a packed listing; raises ListingError if it is not one."""
    if len(data) > MAX_LISTING_BYTES:
        raise ListingError("bad_listing", f"a listing of {len(data)} bytes is over the limit")
    try:
        envelopes = msgpack.unpackb(
            data, raw=False, max_array_len=MAX_LISTING_RECORDS, max_bin_len=MAX_LISTING_BYTES
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ListingError("bad_listing", f"a listing is not readable: {exc}") from None
    return check_shape(envelopes)


def check_shape(envelopes: object) -> list[bytes]:
    """A list of 2 to MAX_LISTING_RECORDS envelopes, or ListingError."""
    if (
        not isinstance(envelopes, list)
        or not 2 <= len(envelopes) <= MAX_LISTING_RECORDS
        or not all(isinstance(e, bytes) for e in envelopes)
        or len(pack_listing(envelopes)) > MAX_LISTING_BYTES
    ):
        raise ListingError("bad_listing", "a listing is 2 to 10 record envelopes, at most 64 KiB")
    return envelopes


def check_listing(records: Sequence[Record]) -> Record:
    """Check decoded, verified and validated records as a listing and return its
    announcement: first an `announcement`, then its community's genesis, then only
    `role_grant`s in that community; judged together, every one is allowed (so the
    announcer is an owner and the genesis says public). Raises ListingError otherwise."""
    if len(records) < 2 or records[0].kind != "announcement":
        raise ListingError("bad_listing", "a listing starts with an announcement")
    announcement = records[0]
    community = announcement.community
    genesis = records[1]
    if genesis.kind != "community" or genesis.id != community:
        raise ListingError("bad_listing", "a listing carries its community's genesis second")
    # The grants, if any, are a chain of owner grants from the creator to the announcer:
    # nothing else (a moderator grant naming a stranger, say) may ride along.
    granter = genesis.author
    for record in records[2:]:
        if (
            record.kind != "role_grant"
            or record.community != community
            or record.fields.get("role") != "owner"
            or record.author != granter
        ):
            raise ListingError(
                "bad_listing", "a listing carries only the owner grants leading to its announcer"
            )
        granter = record.fields["subject"]
    if granter != announcement.author:
        raise ListingError("bad_listing", "a listing's grants do not lead to its announcer")
    if len({record.id for record in records}) != len(records):
        raise ListingError("bad_listing", "a listing repeats a record")
    _facts, decisions = fold(records)
    for record in records:  # a refused grant is no more welcome than a refused announcement
        decision = decisions[record.id]
        if decision.verdict is not Verdict.ALLOWED:
            raise ListingError(
                "not_authorised", f"a listing's {record.kind} is not allowed: {decision.reason}"
            )
    return announcement
