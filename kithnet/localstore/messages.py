"""Direct messages in the store: this member's conversations (`messages`) and the
sealed messages held for others (`dm_relay`), schema 3 (docs/storage.md).

`dm` records never pass through `Store.ingest`: the node checks them and calls these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kithnet.core.direct import DirectMessage
from kithnet.core.envelope import Record

if TYPE_CHECKING:
    from kithnet.localstore.store import Store

RELAY_PER_RECIPIENT = 200
RELAY_PER_SENDER = 100
RELAY_PER_PAIR = 20  # from one sender to one recipient
RELAY_TOTAL = 10_000
RELAY_LIFETIME_MS = 14 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Message:
    id: bytes
    peer: bytes  # the other member
    direction: str  # 'in' or 'out'
    text: str
    created_at: int
    state: str
    forwarders: int


@dataclass(frozen=True, slots=True)
class Conversation:
    peer: bytes
    name: str
    last: Message
    unread: int
    count: int


_COLUMNS = "id, peer, direction, text, created_at, state, forwarders"


def _message(row: Sequence[object]) -> Message:
    return Message(*row)  # type: ignore[arg-type]


class Messages:
    """Queries and changes over a store's direct messages."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def _db(self) -> Any:
        return self._store.db

    # This member's messages ---------------------------------------------------------

    def add_sent(self, record: Record, text: str, now: int) -> None:
        """Keep a message this member wrote (state 'waiting') before it is sent."""
        with self._store._transaction():
            self._db.execute(
                "INSERT INTO messages VALUES (?, ?, 'out', ?, ?, ?, 'waiting', 0, ?)",
                (
                    record.id,
                    record.fields["recipient"],
                    text,
                    record.created_at,
                    now,
                    record.envelope,
                ),
            )

    def add_received(self, message: DirectMessage, envelope: bytes, now: int) -> bool:
        """Keep a message read out of a dm addressed to this member; False if it was
        already here."""
        with self._store._transaction():
            cursor = self._db.execute(
                "INSERT INTO messages VALUES (?, ?, 'in', ?, ?, ?, 'unread', 0, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (message.id, message.sender, message.text, message.created_at, now, envelope),
            )
            return bool(cursor.rowcount)

    def has(self, record_id: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM messages WHERE id = ?", (record_id,)).fetchone()
        return row is not None

    def message(self, record_id: bytes) -> Message | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE id = ?",  # noqa: S608
            (record_id,),
        ).fetchone()
        return _message(row) if row else None

    def mark_delivered(self, record_id: bytes) -> None:
        with self._store._transaction():
            self._db.execute(
                "UPDATE messages SET state = 'delivered' WHERE id = ? AND direction = 'out'",
                (record_id,),
            )

    def mark_forwarded(self, record_id: bytes, forwarders: int) -> None:
        """`forwarders` more members now hold a sent message for its recipient."""
        if not forwarders:
            return
        with self._store._transaction():
            self._db.execute(
                "UPDATE messages SET forwarders = forwarders + ?, state = 'forwarded'"
                " WHERE id = ? AND state IN ('waiting', 'forwarded')",
                (forwarders, record_id),
            )

    def undelivered(self, recipient: bytes | None = None) -> list[tuple[bytes, bytes, int]]:
        """(id, envelope, forwarders) of sent messages not yet delivered (to
        `recipient`, or to anyone), oldest first."""
        if recipient is None:
            rows = self._db.execute(
                "SELECT id, envelope, forwarders, peer FROM messages"
                " WHERE state IN ('waiting', 'forwarded') ORDER BY created_at, id LIMIT 1000"
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT id, envelope, forwarders, peer FROM messages"
                " WHERE peer = ? AND state IN ('waiting', 'forwarded')"
                " ORDER BY created_at, id LIMIT 1000",
                (recipient,),
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def conversations(self, *, limit: int = 50, hidden: Sequence[bytes] = ()) -> list[Conversation]:
        """One entry per member this member has written to or heard from (but those in
        `hidden`), the newest first, by when messages arrived here (a sender's clock
        could bury or float a message)."""
        marks = ", ".join("?" for _ in hidden)
        rows = self._db.execute(
            "SELECT peer, count(*), sum(state = 'unread'), max(received_at) FROM messages"  # noqa: S608
            f" WHERE peer NOT IN ({marks}) GROUP BY peer"
            " ORDER BY max(received_at) DESC LIMIT ?",
            (*hidden, limit),
        ).fetchall()
        names = self._store.names([row[0] for row in rows])
        found = []
        for peer, count, unread, _ in rows:
            last = self._db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE peer = ?"  # noqa: S608
                " ORDER BY received_at DESC, id DESC LIMIT 1",
                (peer,),
            ).fetchone()
            found.append(Conversation(peer, names.get(peer, ""), _message(last), unread, count))
        return found

    def conversation(self, peer: bytes, *, limit: int = 100) -> list[Message]:
        """The newest `limit` messages with one member, oldest first (by arrival)."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE peer = ?"  # noqa: S608
            " ORDER BY received_at DESC, id DESC LIMIT ?",
            (peer, limit),
        ).fetchall()
        return [_message(row) for row in reversed(rows)]

    def mark_read(self, peer: bytes, ids: Sequence[bytes] | None = None) -> int:
        """Mark a conversation read (only messages `ids`, if given: those shown);
        returns how many messages were unread."""
        with self._store._transaction():
            if ids is None:
                cursor = self._db.execute(
                    "UPDATE messages SET state = 'read' WHERE peer = ? AND state = 'unread'",
                    (peer,),
                )
                return int(cursor.rowcount)
            changed = 0
            for record_id in ids:
                cursor = self._db.execute(
                    "UPDATE messages SET state = 'read' WHERE id = ? AND peer = ?"
                    " AND state = 'unread'",
                    (record_id, peer),
                )
                changed += int(cursor.rowcount)
            return changed

    def unread_count(self, *, hidden: Sequence[bytes] = ()) -> int:
        marks = ", ".join("?" for _ in hidden)
        row = self._db.execute(
            f"SELECT count(*) FROM messages WHERE state = 'unread' AND peer NOT IN ({marks})",  # noqa: S608
            tuple(hidden),
        ).fetchone()
        return int(row[0])

    def received_from(self, sender: bytes) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM messages WHERE peer = ? AND direction = 'in'", (sender,)
        ).fetchone()
        return int(row[0])

    def has_written_to(self, member: bytes) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE peer = ? AND direction = 'out' LIMIT 1", (member,)
        ).fetchone()
        return row is not None

    def waiting_unheld(self, *, limit: int = 1000) -> list[tuple[bytes, bytes, bytes]]:
        """(id, envelope, recipient) of sent messages that no member holds yet and that
        have not been delivered, oldest first."""
        rows = self._db.execute(
            "SELECT id, envelope, peer FROM messages WHERE state = 'waiting'"
            " ORDER BY created_at, id LIMIT ?",
            (limit,),
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    def unread(self) -> int:
        row = self._db.execute("SELECT count(*) FROM messages WHERE state = 'unread'").fetchone()
        return int(row[0])

    # Held for others -----------------------------------------------------------------

    def shared_communities(self, a: bytes, b: bytes) -> list[bytes]:
        """Communities this member is in of which `a` and `b` are both members (joined,
        or holding a role, and not banned)."""
        me = self._store.identity.public_key
        rows = self._db.execute(
            "SELECT community FROM members WHERE member = ?1 AND joined AND NOT banned"
            " INTERSECT SELECT community FROM members WHERE member = ?2 AND joined AND NOT banned"
            " INTERSECT SELECT community FROM members WHERE member = ?3 AND joined AND NOT banned",
            (a, b, me),
        ).fetchall()
        return sorted(row[0] for row in rows)

    def hold(self, record: Record, now: int) -> bool:
        """Keep a sealed dm for its recipient; False if it was held already. Keeps the
        bounds: the oldest of the sender's, then of the recipient's, then of all go
        first, and anything older than RELAY_LIFETIME_MS."""
        recipient = record.fields["recipient"]
        with self._store._transaction():
            cursor = self._db.execute(
                "INSERT INTO dm_relay VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (record.id, recipient, record.author, record.envelope, now),
            )
            if not cursor.rowcount:
                return False
            db = self._db
            # Beyond a bound, the oldest message of whoever holds the most goes: someone
            # who floods pushes out their own messages, not others'.
            db.execute(
                "DELETE FROM dm_relay WHERE id IN (SELECT id FROM dm_relay WHERE sender = ?"
                " AND recipient = ? ORDER BY received_at DESC, id DESC LIMIT -1 OFFSET ?)",
                (record.author, recipient, RELAY_PER_PAIR),
            )
            db.execute(
                "DELETE FROM dm_relay WHERE id IN (SELECT id FROM dm_relay WHERE sender = ?"
                " ORDER BY received_at DESC, id DESC LIMIT -1 OFFSET ?)",
                (record.author, RELAY_PER_SENDER),
            )
            self._evict("recipient = ?", (recipient,), RELAY_PER_RECIPIENT)
            self._evict("1", (), RELAY_TOTAL)
            db.execute("DELETE FROM dm_relay WHERE received_at < ?", (now - RELAY_LIFETIME_MS,))
        return True

    def _evict(self, where: str, args: tuple[Any, ...], bound: int) -> None:
        """While more than `bound` held messages match `where`, drop the oldest of the
        sender holding the most of them."""
        db = self._db
        while True:
            row = db.execute(
                f"SELECT count(*) FROM dm_relay WHERE {where}",  # noqa: S608
                args,
            ).fetchone()
            if row[0] <= bound:
                return
            [top] = db.execute(
                f"SELECT sender FROM dm_relay WHERE {where} GROUP BY sender"  # noqa: S608
                " ORDER BY count(*) DESC, sender LIMIT 1",
                args,
            ).fetchone()
            db.execute(
                "DELETE FROM dm_relay WHERE id = (SELECT id FROM dm_relay WHERE sender = ?"  # noqa: S608
                f" AND {where} ORDER BY received_at, id LIMIT 1)",
                (top, *args),
            )

    def is_held(self, record_id: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM dm_relay WHERE id = ?", (record_id,)).fetchone()
        return row is not None

    def held_for(self, recipient: bytes, now: int) -> list[tuple[bytes, bytes]]:
        """(id, envelope) of the messages held for `recipient`, oldest first (those
        past RELAY_LIFETIME_MS are forgotten now)."""
        with self._store._transaction():
            self._db.execute(
                "DELETE FROM dm_relay WHERE received_at < ?", (now - RELAY_LIFETIME_MS,)
            )
        rows = self._db.execute(
            "SELECT id, envelope FROM dm_relay WHERE recipient = ? AND received_at >= ?"
            " ORDER BY received_at, id",
            (recipient, now - RELAY_LIFETIME_MS),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def release(self, record_ids: Sequence[bytes]) -> None:
        """Forget held messages their recipient now has."""
        if not record_ids:
            return
        with self._store._transaction():
            self._db.executemany("DELETE FROM dm_relay WHERE id = ?", [(i,) for i in record_ids])

    def held_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM dm_relay").fetchone()[0])
