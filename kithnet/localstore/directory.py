"""The public directory in the store: searching the `directory` table (each community's
newest allowed announcement, written by the judge) and building the listings a node
hands to others (docs/protocol.md, "The directory").

Holding a listing's genesis and grants does not make a member follow a community: the
communities a member is in come from their own membership and records, never from what
the directory brought.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kithnet.core.directory import MAX_GRANT_CHAIN, MAX_LISTING_BYTES, pack_listing
from kithnet.core.envelope import decode_stored

MAX_DIRECTORY = 1000  # communities the directory holds; beyond, the stalest go
# A stranger's community is kept for its listing alone: these tables hold its rows.
_LISTING_TABLES = ("directory", "roles", "members", "invites", "judge_marks")


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One public community as its newest announcement describes it."""

    community: bytes
    record_id: bytes
    author: bytes
    name: str
    description: str
    tags: tuple[str, ...]
    invite: str
    members: int | None
    created_at: int  # when it was announced (ms since the epoch)
    joined: bool  # this member is in it


class DirectoryStore:
    """Directory queries; a part of `Store`."""

    db: Any
    identity: Any

    if TYPE_CHECKING:

        def followed_communities(self) -> list[bytes]: ...

        def _transaction(self) -> AbstractContextManager[None]: ...

    def announced_at(self, community: bytes) -> int | None:
        """When the directory's announcement of `community` was made, if it has one."""
        row = self.db.execute(
            "SELECT created_at FROM directory WHERE community = ?", (community,)
        ).fetchone()
        return int(row[0]) if row else None

    def prune_listing(self, community: bytes) -> None:
        """Forget the announcements of a community this member is not in that a newer
        one replaced: a stranger's community keeps only what its listing needs."""
        if community in self.followed_communities():
            return
        with self._transaction():
            self.db.execute(
                "DELETE FROM records WHERE community = ? AND kind = 'announcement'"
                " AND id != (SELECT record_id FROM directory WHERE community = ?)",
                (community, community),
            )

    def stalest_listing(self, newer_than: int) -> bytes | None:
        """The community a full directory would forget for a listing announced at
        `newer_than`: the one announced longest ago, before that, of which this store
        holds only what listings bring (its genesis, announcement and owner grants), so
        never one the member made, joined, left or wrote in. None if there is none."""
        for community, created_at in self.db.execute(
            "SELECT community, created_at FROM directory ORDER BY created_at, community"
        ).fetchall():
            if created_at >= newer_than:
                return None
            other = self.db.execute(
                "SELECT 1 FROM records WHERE community = ? AND (author = ?"
                " OR kind NOT IN ('announcement', 'role_grant')) LIMIT 1",
                (community, self.identity.public_key),
            ).fetchone()
            genesis = self.db.execute(
                "SELECT author FROM records WHERE id = ?", (community,)
            ).fetchone()
            if other is None and genesis is not None and genesis[0] != self.identity.public_key:
                return bytes(community)
        return None

    def forget_listing(self, community: bytes) -> None:
        """Forget a stranger's community that only its listing brought (see
        `stalest_listing`): its records and the rows they made."""
        with self._transaction():
            self.db.execute("DELETE FROM records WHERE community = ?", (community,))
            self.db.execute("DELETE FROM records WHERE id = ?", (community,))
            for table in _LISTING_TABLES:
                self.db.execute(f"DELETE FROM {table} WHERE community = ?", (community,))  # noqa: S608
            self.db.execute("DELETE FROM communities WHERE id = ?", (community,))

    def directory_count(self) -> int:
        row = self.db.execute("SELECT count(*) FROM directory").fetchone()
        return int(row[0])

    def in_directory(self, community: bytes) -> bool:
        row = self.db.execute("SELECT 1 FROM directory WHERE community = ?", (community,))
        return row.fetchone() is not None

    def directory(self, text: str = "", tag: str = "", *, limit: int = 50) -> list[DirectoryEntry]:
        """Announced communities whose name, description or tags hold every word of
        `text` (case-insensitively) and, if given, carry `tag`; newest first."""
        return self._entries(text, tag, None, limit)

    def directory_entry(self, community: bytes) -> DirectoryEntry | None:
        found = self._entries("", "", community, 1)
        return found[0] if found else None

    def _entries(
        self, text: str, tag: str, community: bytes | None, limit: int
    ) -> list[DirectoryEntry]:
        rows = self.db.execute(
            "SELECT d.community, d.record_id, r.author, d.name, d.description, d.tags,"
            " d.invite, d.members, d.created_at,"
            " EXISTS (SELECT 1 FROM members AS m WHERE m.community = d.community"
            "  AND m.member = ?1 AND m.joined = 1)"
            " OR EXISTS (SELECT 1 FROM communities AS c WHERE c.id = d.community"
            "  AND c.creator = ?1)"
            " FROM directory AS d JOIN records AS r ON r.id = d.record_id"
            " WHERE ?2 IS NULL OR d.community = ?2"
            " ORDER BY d.created_at DESC, d.community",
            (self.identity.public_key, community),
        ).fetchall()
        words = text.casefold().split()
        found = []
        for row in rows:
            tags = tuple(row[5].split())
            if tag and tag not in tags:
                continue
            haystack = " ".join([row[3], row[4], *tags]).casefold()
            if not all(word in haystack for word in words):
                continue
            found.append(
                DirectoryEntry(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    tags,
                    row[6],
                    row[7],
                    row[8],
                    bool(row[9]),
                )
            )
            if len(found) >= limit:
                break
        return found

    def listing(self, community: bytes) -> list[bytes] | None:
        """The listing of a community in the directory: its newest announcement, its
        genesis, and the owner grants from the genesis author down to the announcer
        (newest grant to each, dated before the one it enables). None if it is not in
        the directory, the chain is longer than a listing carries, or it is too big."""
        row = self.db.execute(
            "SELECT r.envelope, r.author, r.created_at, g.envelope, g.author"
            " FROM directory AS d JOIN records AS r ON r.id = d.record_id"
            " JOIN records AS g ON g.id = d.community WHERE d.community = ?",
            (community,),
        ).fetchone()
        if row is None:
            return None
        announcement, announcer, before, genesis, creator = row
        grants: list[bytes] = []
        current = announcer
        while current != creator:
            if len(grants) >= MAX_GRANT_CHAIN:
                return None
            found = None
            for (envelope,) in self.db.execute(
                "SELECT envelope FROM records WHERE community = ? AND kind = 'role_grant'"
                " AND status = 'allowed' AND created_at <= ? ORDER BY created_at DESC, id DESC",
                (community, before),
            ):
                record = decode_stored(envelope)
                if record.fields["subject"] == current and record.fields["role"] == "owner":
                    found = record
                    break
            if found is None:
                return None
            grants.append(found.envelope)
            current, before = found.author, found.created_at
        envelopes = [announcement, genesis, *reversed(grants)]
        if len(pack_listing(envelopes)) > MAX_LISTING_BYTES:
            return None
        return envelopes

    def listings(self, *, limit: int = 500) -> list[list[bytes]]:
        """The listings of the newest `limit` communities in the directory."""
        rows = self.db.execute(
            "SELECT community FROM directory ORDER BY created_at DESC, community LIMIT ?",
            (limit,),
        ).fetchall()
        found = [self.listing(row[0]) for row in rows]
        return [listing for listing in found if listing is not None]
