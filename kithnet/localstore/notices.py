"""What to tell the member about: replies to their posts, referrals answering their
questions, references about them and direct messages, that arrived after a cursor.

Records are ordered by `records.seq` (arrival in this store); direct messages never
enter `records`, so their part of the cursor is the newest `received_at` seen and the
ids received at that very millisecond (so none is told twice, and none is skipped).
Nothing by the member themselves, and nothing by a member they muted or blocked
(`marks`).

A record can arrive before what makes it count (a reply before its author's join): it
waits, pending, and takes effect later under the `seq` it arrived with, which a look in
between has already passed. So a cursor also keeps the `seq`s of the records still
pending when it was made (the newest PENDING_KEPT), and the next look tells those that
count by then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The setting that keeps how far the member was told. It counts this store's arrivals
# (`records.seq`), so a backup leaves it out: a restored store starts from then.
CURSOR_SETTING = "notifications.cursor"
PENDING_KEPT = 1000  # pending records a cursor remembers to look at again
_NOTIFIED_KINDS = ("post", "referral", "reference")  # what may turn out to be news


@dataclass(frozen=True, slots=True)
class NoticeCursor:
    """Where the last look ended: records up to `seq`, messages received up to
    `message_at` (those at `message_at` itself listed in `message_ids`)."""

    seq: int
    message_at: int
    message_ids: tuple[bytes, ...] = ()
    pending: tuple[int, ...] = ()  # records up to `seq` that had not taken effect yet


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # 'reply', 'referral', 'reference' or 'message'
    id: bytes  # the reply, referral, reference or message
    who: bytes  # its author
    who_name: str
    text: str
    created_at: int
    order: int  # arrival: records.seq, or received_at for a message
    community: bytes | None = None
    community_name: str = ""
    about: bytes | None = None  # the member's post replied to, or question referred
    extra: dict[str, Any] = field(default_factory=dict)


def now_cursor(db: Any) -> NoticeCursor:
    """A cursor past everything held now (a first look starts here)."""
    seq = db.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0]
    at = db.execute(
        "SELECT coalesce(max(received_at), 0) FROM messages WHERE direction = 'in'"
    ).fetchone()[0]
    ids = db.execute(
        "SELECT id FROM messages WHERE direction = 'in' AND received_at = ?", (at,)
    ).fetchall()
    pending = db.execute(
        "SELECT seq FROM records WHERE status = 'pending' AND seq <= ?"
        " AND kind IN (SELECT value FROM json_each(?)) ORDER BY seq DESC LIMIT ?",
        (seq, json.dumps(_NOTIFIED_KINDS), PENDING_KEPT),
    ).fetchall()
    return NoticeCursor(
        seq,
        at,
        tuple(sorted(bytes(row[0]) for row in ids)),
        tuple(sorted(int(row[0]) for row in pending)),
    )


def since(
    db: Any, me: bytes, after: NoticeCursor, *, limit: int
) -> tuple[list[Notice], bool, NoticeCursor]:
    """The notices that arrived after `after`, oldest first: at most `limit` of each
    kind, the oldest ones; whether more are left; and the cursor to look from next (past
    what is returned and no further, so what is left is told by the next look)."""
    top = now_cursor(db)
    waited = json.dumps(list(after.pending))  # those pending then, if they count now
    late: list[Notice] = []  # pending at the last look, counting now: told in full
    fresh: list[Notice] = []
    end = top.seq
    for query in (_replies, _referrals, _references):
        rows = query(db, me, after.seq, top.seq, waited, limit + 1 + len(after.pending))
        late += [n for n in rows if n.order <= after.seq]
        arrived = [n for n in rows if n.order > after.seq]
        fresh += arrived
        if len(arrived) > limit:  # this kind has more: stop at its limit-th
            end = min(end, arrived[limit - 1].order)
    found = late + [n for n in fresh if n.order <= end]
    messages = _messages(db, after, limit)
    more = end < top.seq or len(messages) > limit
    message_at, message_ids = top.message_at, top.message_ids
    if len(messages) > limit:
        messages = messages[:limit]
        message_at = messages[-1].order
        message_ids = tuple(
            sorted(
                {n.id for n in messages if n.order == message_at}
                | (set(after.message_ids) if after.message_at == message_at else set())
            )
        )
    found += messages
    found.sort(key=lambda n: (n.created_at, n.id))
    pending = tuple(seq for seq in top.pending if seq <= end)
    return found, more, NoticeCursor(end, message_at, message_ids, pending)


def _replies(db: Any, me: bytes, low: int, high: int, waited: str, limit: int) -> list[Notice]:
    rows = db.execute(
        "SELECT p.rowid, p.id, p.author, coalesce(pr.name, ''), p.text, p.created_at,"
        " p.community, coalesce(c.name, ''), p.reply_to"
        " FROM posts AS p"
        " JOIN posts AS mine ON mine.rowid = (SELECT seq FROM records WHERE id = p.reply_to)"
        " LEFT JOIN profiles AS pr ON pr.member = p.author"
        " LEFT JOIN communities AS c ON c.id = p.community"
        " WHERE (p.rowid > ? AND p.rowid <= ? OR p.rowid IN (SELECT value FROM json_each(?)))"
        " AND p.reply_to IS NOT NULL"
        " AND mine.author = ? AND mine.community = p.community AND p.author != ?"
        " AND p.deleted = 0 AND p.removed = 0"
        " AND p.author NOT IN (SELECT member FROM marks WHERE mark IN ('mute', 'block'))"
        " ORDER BY p.rowid LIMIT ?",
        (low, high, waited, me, me, limit),
    ).fetchall()
    return [
        Notice("reply", r[1], r[2], r[3], r[4], r[5], r[0], r[6], r[7], about=r[8]) for r in rows
    ]


def _referrals(db: Any, me: bytes, low: int, high: int, waited: str, limit: int) -> list[Notice]:
    rows = db.execute(
        "SELECT r.seq, f.id, f.author, coalesce(pr.name, ''), f.note, f.created_at,"
        " f.community, coalesce(c.name, ''), f.question, f.to_member,"
        " coalesce(tp.name, ''), f.to_community, coalesce(tc.name, d.name, ''), f.invite"
        " FROM records AS r JOIN referrals AS f ON f.id = r.id"
        " JOIN posts AS q ON q.rowid = (SELECT seq FROM records WHERE id = f.question)"
        " LEFT JOIN profiles AS pr ON pr.member = f.author"
        " LEFT JOIN communities AS c ON c.id = f.community"
        " LEFT JOIN profiles AS tp ON tp.member = f.to_member"
        " LEFT JOIN communities AS tc ON tc.id = f.to_community"
        " LEFT JOIN directory AS d ON d.community = f.to_community"
        " WHERE (r.seq > ? AND r.seq <= ? OR r.seq IN (SELECT value FROM json_each(?)))"
        " AND r.kind = 'referral' AND r.status = 'allowed'"
        " AND q.author = ? AND f.author != ? AND f.deleted = 0"
        " AND f.author NOT IN (SELECT member FROM marks WHERE mark IN ('mute', 'block'))"
        " ORDER BY r.seq LIMIT ?",
        (low, high, waited, me, me, limit),
    ).fetchall()
    return [
        Notice(
            "referral",
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[0],
            r[6],
            r[7],
            about=r[8],
            extra={
                "to_member": r[9],
                "to_member_name": r[10],
                "to_community": r[11],
                "to_community_name": r[12],
                "invite": r[13],
            },
        )
        for r in rows
    ]


def _references(db: Any, me: bytes, low: int, high: int, waited: str, limit: int) -> list[Notice]:
    rows = db.execute(
        "SELECT r.seq, f.id, f.author, coalesce(pr.name, ''), f.text, f.created_at,"
        " f.community, coalesce(c.name, ''), f.skill"
        " FROM records AS r JOIN refs AS f ON f.id = r.id"
        " LEFT JOIN profiles AS pr ON pr.member = f.author"
        " LEFT JOIN communities AS c ON c.id = f.community"
        " WHERE (r.seq > ? AND r.seq <= ? OR r.seq IN (SELECT value FROM json_each(?)))"
        " AND r.kind = 'reference' AND r.status = 'allowed'"
        " AND f.subject = ? AND f.author != ?"
        " AND f.author NOT IN (SELECT member FROM marks WHERE mark IN ('mute', 'block'))"
        " ORDER BY r.seq LIMIT ?",
        (low, high, waited, me, me, limit),
    ).fetchall()
    return [
        Notice("reference", r[1], r[2], r[3], r[4], r[5], r[0], r[6], r[7], extra={"skill": r[8]})
        for r in rows
    ]


def _messages(db: Any, after: NoticeCursor, limit: int) -> list[Notice]:
    rows = db.execute(
        "SELECT m.id, m.peer, coalesce(pr.name, ''), m.text, m.created_at, m.received_at"
        " FROM messages AS m LEFT JOIN profiles AS pr ON pr.member = m.peer"
        " WHERE m.direction = 'in' AND m.received_at >= ?"
        " AND m.peer NOT IN (SELECT member FROM marks WHERE mark IN ('mute', 'block'))"
        " ORDER BY m.received_at, m.id",
        (after.message_at,),
    ).fetchall()
    seen = set(after.message_ids)
    fresh = [r for r in rows if not (r[5] == after.message_at and bytes(r[0]) in seen)]
    return [
        Notice("message", bytes(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in fresh[: limit + 1]
    ]


def thread_root(db: Any, post: bytes) -> bytes:
    """The top-level post of the thread `post` is in (itself if it is one)."""
    current = post
    for _ in range(64):
        row = db.execute(
            "SELECT reply_to FROM posts WHERE rowid = (SELECT seq FROM records WHERE id = ?)",
            (current,),
        ).fetchone()
        if row is None or row[0] is None:
            return current
        current = bytes(row[0])
    return current
