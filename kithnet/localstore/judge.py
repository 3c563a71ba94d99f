"""The store's judge: authority over SQL, and the derived state of allowed records.

It reaches the decisions `kithnet.core.authority.fold` reaches for the same set of
records, incrementally:

* Records of a community are judged in position order (created_at, id). A record that
  is allowed is applied to the derived tables and wakes the pending records it may
  unblock (its dependents, the community's records after a genesis, the records of a
  member whose facts changed, the joins waiting for an invite).
* A record that arrives after later-dated records of its community were judged is
  exact only if nothing it depends on changed after its position: a post, reaction,
  edit, reference, referral, announcement, key update or removal whose author's facts
  last changed before it, with nothing waiting for it. Anything else arriving out of
  order (a join, a ban, a role change, an invite, a delete) makes the judge throw away
  the community's derived state and judge all its records again: rare, and correct.

Derived state is commutative in allowed records (newest edit or profile wins by
position, deletions and removals are flags), so both paths end in the same tables.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from kithnet.core.authority import (
    CommunityFacts,
    Decision,
    InviteFacts,
    TargetFacts,
    Verdict,
    check_authority,
)
from kithnet.core.envelope import Record, decode_stored

Pos = tuple[int, bytes]
Trigger = tuple[Any, ...]

# Kinds whose judgement may take references out of effect (trust's graph). A reference
# that takes effect is reported as added instead; one leaving effect needs a community
# judged again, which counts as a change.
_GRAPH_KINDS = frozenset({"reference_revoke", "moderation"})

# Kinds that change what authority knows; out of order, they mean judging again.
_CONTROL_KINDS = frozenset({"community", "role_grant", "role_revoke", "join", "leave", "invite"})


def position(record: Record) -> Pos:
    return (record.created_at, record.id)


def target_of(record: Record) -> bytes | None:
    """The record id a record points at, for the dependents index."""
    fields = record.fields
    kind = record.kind
    if kind == "post":
        return fields.get("reply_to")
    if kind == "referral":
        target: bytes = fields["question"]
        return target
    if kind == "moderation":
        return fields["target"] if fields["action"] == "remove" else None
    return fields.get("target")


def _is_control(record: Record) -> bool:
    kind = record.kind
    if kind in _CONTROL_KINDS or kind == "delete":  # a delete may withdraw an invite
        return True
    return kind == "moderation" and record.fields["action"] != "remove"


def _tags(fields: Any, name: str = "tags") -> str:
    return " ".join(fields.get(name, ()))


class Judge:
    """Authority's KnownState over the store's tables, and the judging loop."""

    def __init__(self, db: Any, me: bytes, max_pending: int) -> None:
        self.db = db
        self.me = me  # this member: their own posts are never unread
        # A bound on records kept while they wait for something: beyond it a new
        # record that would wait is refused (not stored) as "pending_full".
        self.max_pending = max_pending
        self.dropped: set[bytes] = set()
        # The latest decision of every record judged in the current batch.
        self.decided: dict[bytes, Decision] = {}
        self._pending_count = 0
        # Caches that live for one judge_new call (a transaction that may roll back).
        self._communities: dict[bytes, CommunityFacts | None] = {}
        self._member_facts: dict[tuple[bytes, bytes], tuple[bool, bool, frozenset[str]]] = {}
        self._removed: dict[bytes, set[bytes]] = {}
        self._marks: dict[bytes, Pos] = {}
        self._unstored: dict[bytes, tuple[Any, ...]] = {}
        self._fts_ops: list[tuple[str, tuple[Any, ...]]] = []
        self._read_seq: dict[bytes, int] = {}
        self._unread: dict[bytes, int] = {}
        # New rows wait in these buffers and go in with one executemany: anything that
        # reads `records` or `posts` flushes them first (`_flush_rows`).
        self._record_rows: list[tuple[Any, ...]] = []
        self._post_rows: list[tuple[Any, ...]] = []
        self._buffered_seq: dict[bytes, int] = {}
        self._next_seq = 1
        self._any_pending = True
        # What the store's trust cache reads: references that took effect in this batch
        # (added to the graph as they are), and whether anything else may have changed
        # the references in effect (a revocation, a removal, a community judged again).
        self.refs_added: list[tuple[bytes, bytes, str]] = []
        self.graph_changed = False

    def forget(self) -> None:
        """Drop everything cached or queued: the transaction it belonged to failed."""
        self._reset()

    def _reset(self) -> None:
        self._record_rows.clear()
        self._post_rows.clear()
        self._buffered_seq.clear()
        self._fts_ops.clear()
        self._read_seq.clear()
        self._unread.clear()
        self._communities.clear()
        self._member_facts.clear()
        self._removed.clear()
        self._marks.clear()
        self._unstored.clear()

    # KnownState -------------------------------------------------------------------

    def community(self, community_id: bytes) -> CommunityFacts | None:
        if community_id not in self._communities:
            row = self.db.execute(
                "SELECT visibility FROM communities WHERE id = ?", (community_id,)
            ).fetchone()
            self._communities[community_id] = CommunityFacts(row[0]) if row else None
        return self._communities[community_id]

    def _facts(self, community_id: bytes, member: bytes) -> tuple[bool, bool, frozenset[str]]:
        """(joined, banned, roles) of a member, cached until they change."""
        pair = (community_id, member)
        facts = self._member_facts.get(pair)
        if facts is None:
            row = self.db.execute(
                "SELECT joined, banned FROM members WHERE community = ? AND member = ?", pair
            ).fetchone()
            roles = self.db.execute(
                "SELECT role FROM roles WHERE community = ? AND member = ?", pair
            ).fetchall()
            joined, banned = (bool(row[0]), bool(row[1])) if row else (False, False)
            facts = (joined, banned, frozenset(r[0] for r in roles))
            self._member_facts[pair] = facts
        return facts

    def roles(self, community_id: bytes, member: bytes) -> frozenset[str]:
        return self._facts(community_id, member)[2]

    def is_member(self, community_id: bytes, member: bytes) -> bool:
        joined, _, roles = self._facts(community_id, member)
        return joined or bool(roles)

    def is_banned(self, community_id: bytes, member: bytes) -> bool:
        return self._facts(community_id, member)[1]

    def target(self, record_id: bytes) -> TargetFacts | None:
        self._flush_rows()
        row = self.db.execute(
            "SELECT author, kind, community FROM records WHERE id = ? AND status = 'allowed'",
            (record_id,),
        ).fetchone()
        if row is None:
            return None
        subject = None
        if row[1] == "reference":
            found = self.db.execute("SELECT subject FROM refs WHERE id = ?", (record_id,))
            subject = found.fetchone()[0]
        return TargetFacts(row[0], row[1], row[2], subject)

    def invite(self, community_id: bytes, invite_key: bytes) -> InviteFacts | None:
        query = (
            "SELECT i.expires_at, i.withdrawn, i.max_uses, i.uses, r.author FROM invites AS i"
            " LEFT JOIN records AS r ON r.id = i.record_id"
            " WHERE i.community = ? AND i.invite_key = ?"
        )
        row = self.db.execute(query, (community_id, invite_key)).fetchone()
        if row is not None and row[4] is None:  # the invite's record is still buffered
            self._flush_rows()
            row = self.db.execute(query, (community_id, invite_key)).fetchone()
        return InviteFacts(row[0], bool(row[1]), row[2], row[3], row[4]) if row else None

    # Judging ----------------------------------------------------------------------

    def judge_new(self, records: Sequence[Record], rows: Sequence[tuple[Any, ...]]) -> None:
        """Judge and store new records. `rows` are their `records` rows without the
        status columns; a record is inserted when judged, with its status."""
        self._reset()
        self.dropped = set()
        self.decided = {}
        self._pending_count = self.db.execute(
            "SELECT count(*) FROM records WHERE status = 'pending'"
        ).fetchone()[0]
        self._any_pending = self._pending_count > 0
        self._next_seq = self.db.execute(
            "SELECT coalesce(max(seq), 0) + 1 FROM records"
        ).fetchone()[0]
        self._unstored = {record.id: row for record, row in zip(records, rows, strict=True)}
        groups: dict[bytes | None, list[Record]] = defaultdict(list)
        for record in records:
            key = record.id if record.kind == "community" else record.community
            groups[key].append(record)
        for community_id, group in groups.items():
            group.sort(key=position)
            if community_id is not None and not self._can_append(community_id, group):
                self._store_unjudged(group)
                self.rejudge(community_id)
            else:
                self._run(group)
        self._flush_rows()
        self._flush_marks()
        self._flush_fts()
        self._flush_unread()
        self._reset()

    def _store_unjudged(self, records: Iterable[Record]) -> None:
        self._flush_rows()
        rows = []
        for record in records:
            row = self._unstored.pop(record.id, None)
            if row is not None:
                rows.append((self._next_seq, *row))
                self._next_seq += 1
        self.db.executemany(
            "INSERT INTO records (seq, id, envelope, kind, author, community, created_at,"
            " received_at, target, status, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " 'pending', 'unjudged')",
            rows,
        )

    def _flush_rows(self) -> None:
        if self._record_rows:
            self.db.executemany(
                "INSERT INTO records (seq, id, envelope, kind, author, community, created_at,"
                " received_at, target, status, reason, waiting_for)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._record_rows,
            )
            self._record_rows.clear()
        if self._post_rows:
            self.db.executemany(
                "INSERT INTO posts (rowid, id, community, author, type, text, tags, area, terms,"
                " reply_to, created_at, removed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._post_rows,
            )
            self._post_rows.clear()

    def _can_append(self, community_id: bytes, group: Sequence[Record]) -> bool:
        self._flush_rows()
        marks = self.db.execute(
            "SELECT judged_at, judged_id, genesis_at, genesis_id FROM judge_marks"
            " WHERE community = ?",
            (community_id,),
        ).fetchone()
        if marks is None:
            return True
        judged: Pos = (marks[0], marks[1])
        genesis: Pos | None = (marks[2], marks[3]) if marks[2] is not None else None
        for record in group:
            pos = position(record)
            if pos > judged:
                break  # the group is sorted: the rest come after everything judged
            if _is_control(record) or genesis is None or genesis > pos:
                return False
            changed = self.db.execute(
                "SELECT changed_at, changed_id FROM members WHERE community = ? AND member = ?",
                (community_id, record.author),
            ).fetchone()
            if changed is not None and (changed[0], changed[1]) > pos:
                return False
            waiting = self.db.execute(
                "SELECT 1 FROM records WHERE status = 'pending' AND waiting_for = ? LIMIT 1",
                (record.id,),
            ).fetchone()
            if waiting is not None:
                return False
        return True

    def rejudge(self, community_id: bytes) -> None:
        """Forget a community's derived state and judge all its records again."""
        self.graph_changed = True
        db = self.db
        self._flush_rows()
        self._communities.pop(community_id, None)
        self._member_facts.clear()
        self._removed.pop(community_id, None)
        self._any_pending = True
        self._flush_fts()
        self._unread[community_id] = 0
        db.execute("UPDATE reads SET unread = 0 WHERE community = ?", (community_id,))
        db.execute(
            "DELETE FROM posts_fts WHERE rowid IN"
            " (SELECT rowid FROM posts WHERE community = ? AND deleted = 0 AND removed = 0)",
            (community_id,),
        )
        for table in (
            "posts",
            "reactions",
            "removed",
            "moderation_log",
            "refs",
            "referrals",
            "directory",
            "invites",
            "roles",
            "members",
            "judge_marks",
        ):
            db.execute(f"DELETE FROM {table} WHERE community = ?", (community_id,))  # noqa: S608
        db.execute("DELETE FROM communities WHERE id = ?", (community_id,))
        # Records elsewhere that point into this community (a revocation of one of its
        # references, say) are judged again with it, each at its own position.
        outside = db.execute(
            "SELECT d.id FROM records AS d JOIN records AS t ON d.target = t.id"
            " WHERE (t.community = ?1 OR t.id = ?1) AND d.community IS NOT ?1"
            " AND d.kind IN ('reference_revoke', 'reference_hide', 'edit', 'delete')",
            (community_id,),
        ).fetchall()
        db.executemany(
            "UPDATE records SET status = 'pending', reason = 'unjudged', waiting_for = NULL"
            " WHERE id = ?",
            outside,
        )
        db.execute(
            "UPDATE records SET status = 'pending', reason = 'unjudged', waiting_for = NULL"
            " WHERE community = ? OR id = ?",
            (community_id, community_id),
        )
        rows = db.execute(
            "SELECT envelope FROM records WHERE community = ? OR id = ?",
            (community_id, community_id),
        ).fetchall()
        rows += [
            db.execute("SELECT envelope FROM records WHERE id = ?", row).fetchone()
            for row in outside
        ]
        records = sorted((decode_stored(row[0]) for row in rows), key=position)
        self._run(records)

    def _run(self, records: Iterable[Record]) -> None:
        for record in records:
            pos = position(record)
            decision = check_authority(record, self)
            self._set_status(record, decision)
            if decision.verdict is Verdict.ALLOWED:
                self._retry(self._apply(record, pos), pos)
            if record.kind == "community":
                self._mark(record.id, pos)
            elif record.community is not None:
                self._mark(record.community, pos)

    def _mark(self, community_id: bytes, pos: Pos) -> None:
        known = self._marks.get(community_id)
        if known is None or pos > known:
            self._marks[community_id] = pos

    def _flush_marks(self) -> None:
        self.db.executemany(
            "INSERT INTO judge_marks (community, judged_at, judged_id) VALUES (?, ?, ?)"
            " ON CONFLICT (community) DO UPDATE SET judged_at = excluded.judged_at,"
            " judged_id = excluded.judged_id"
            " WHERE (excluded.judged_at, excluded.judged_id) > (judged_at, judged_id)",
            [(community_id, pos[0], pos[1]) for community_id, pos in self._marks.items()],
        )
        self._marks.clear()

    def _seq_of(self, record_id: bytes) -> int:
        seq = self._buffered_seq.get(record_id)
        if seq is None:
            self._flush_rows()
            seq = self.db.execute("SELECT seq FROM records WHERE id = ?", (record_id,)).fetchone()[
                0
            ]
        return seq

    def _set_status(self, record: Record, decision: Decision) -> None:
        self.decided[record.id] = decision
        if record.kind in _GRAPH_KINDS:
            self.graph_changed = True
        row = self._unstored.pop(record.id, None)
        if decision.verdict is Verdict.PENDING:
            if row is not None and self._pending_count >= self.max_pending:
                # The running count only ever overestimates: count again before refusing.
                self._flush_rows()
                self._pending_count = self.db.execute(
                    "SELECT count(*) FROM records WHERE status = 'pending'"
                ).fetchone()[0]
            if row is not None and self._pending_count >= self.max_pending:
                self.dropped.add(record.id)
                return
            self._any_pending = True
            self._pending_count += 1
        if row is not None:
            seq = self._next_seq
            self._next_seq += 1
            self._buffered_seq[record.id] = seq
            self._record_rows.append(
                (seq, *row, decision.verdict.value, decision.reason, decision.waiting_for)
            )
            return
        self._flush_rows()
        self.db.execute(
            "UPDATE records SET status = ?, reason = ?, waiting_for = ? WHERE id = ?",
            (decision.verdict.value, decision.reason, decision.waiting_for, record.id),
        )

    def _retry(self, triggers: set[Trigger], point: Pos) -> None:
        """Judge again the pending records that what just took effect may unblock, as
        `fold` does after each allowed record: in passes, each in position order, a
        record allowed early in a pass seen by the later ones, until a pass changes
        nothing. Woken records after the pass's cursor join the pass; earlier ones wait
        for the next pass."""
        if not (triggers and self._any_pending):
            return
        heap: list[tuple[Pos, bytes]] = []
        queued: dict[bytes, Record] = {}
        later: dict[bytes, Record] = {}
        cursor: Pos | None = None

        def wake(woken_by: set[Trigger]) -> None:
            for trigger in woken_by:
                for record_id, envelope in self._woken_by(trigger):
                    if record_id in queued or record_id in later:
                        continue
                    record = decode_stored(envelope)
                    if cursor is None or position(record) > cursor:
                        queued[record_id] = record
                        heapq.heappush(heap, (position(record), record_id))
                    else:
                        later[record_id] = record

        wake(triggers)
        while heap:
            while heap:
                pos, record_id = heapq.heappop(heap)
                record = queued.pop(record_id)
                cursor = pos
                decision = check_authority(record, self)
                self._set_status(record, decision)
                if decision.verdict is Verdict.ALLOWED:
                    wake(self._apply(record, point))
            cursor = None
            for record_id, record in later.items():
                queued[record_id] = record
                heapq.heappush(heap, (position(record), record_id))
            later = {}

    def _woken_by(self, trigger: Trigger) -> list[tuple[bytes, bytes]]:
        self._flush_rows()
        what = trigger[0]
        # Records of this batch not judged yet wait for their turn, as in `fold`.
        select = (
            "SELECT id, envelope FROM records"
            " WHERE status = 'pending' AND reason != 'unjudged' AND "
        )
        if what == "target":
            query, args = select + "waiting_for = ?", trigger[1:]
        elif what == "community":
            query, args = select + "community = ?", trigger[1:]
        elif what == "member":
            query, args = select + "community = ? AND author = ?", trigger[1:]
        else:  # an invite
            query, args = select + "community = ? AND waiting_for = ?", trigger[1:]
        rows: list[tuple[bytes, bytes]] = self.db.execute(query, args).fetchall()
        return rows

    # Derived state ----------------------------------------------------------------

    def _touch_member(self, community_id: bytes, member: bytes, point: Pos, **facts: int) -> None:
        """Record that (community, member)'s facts changed at `point`, setting `facts`."""
        self._member_facts.pop((community_id, member), None)
        names = ("changed_at", "changed_id", *facts)
        updates = ", ".join(f"{name} = excluded.{name}" for name in names)
        self.db.execute(
            f"INSERT INTO members (community, member, {', '.join(names)})"  # noqa: S608
            f" VALUES (?, ?, {', '.join('?' for _ in names)})"
            f" ON CONFLICT (community, member) DO UPDATE SET {updates}",
            (community_id, member, point[0], point[1], *facts.values()),
        )

    def _apply(self, record: Record, point: Pos) -> set[Trigger]:
        """Apply an allowed record to the derived tables; return what it may unblock."""
        triggers: set[Trigger] = {("target", record.id)}
        kind = record.kind
        fields = record.fields
        community_id = record.community
        db = self.db
        if kind == "community":
            self._communities.pop(record.id, None)
            db.execute(
                "INSERT INTO communities VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    fields["name"],
                    fields.get("description", ""),
                    _tags(fields),
                    fields["visibility"],
                    record.author,
                    record.created_at,
                ),
            )
            db.execute(
                "INSERT INTO roles VALUES (?, ?, 'owner') ON CONFLICT DO NOTHING",
                (record.id, record.author),
            )
            self._touch_member(record.id, record.author, point, joined=1)
            db.execute(
                "INSERT INTO judge_marks (community, judged_at, judged_id, genesis_at,"
                " genesis_id) VALUES (?1, ?2, ?3, ?2, ?3) ON CONFLICT (community) DO UPDATE"
                " SET genesis_at = ?2, genesis_id = ?3",
                (record.id, point[0], point[1]),
            )
            triggers.add(("community", record.id))
        elif kind == "profile":
            self._apply_profile(record)
        elif kind == "reference":
            if community_id is not None and record.id in self._removed_in(community_id):
                self.graph_changed = True  # removed before it arrived: read the graph anew
            else:
                self.refs_added.append((record.author, fields["subject"], fields["skill"]))
            db.execute(
                "INSERT INTO refs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    community_id,
                    record.author,
                    fields["subject"],
                    fields["skill"],
                    fields["text"],
                    fields["relationship"],
                    fields.get("evidence"),
                    record.created_at,
                ),
            )
        elif community_id is not None:
            triggers |= self._apply_in_community(record, community_id, point)
        return triggers

    def _apply_in_community(self, record: Record, community_id: bytes, point: Pos) -> set[Trigger]:
        triggers: set[Trigger] = set()
        kind = record.kind
        fields = record.fields
        db = self.db
        if kind == "post":
            self._apply_post(record, community_id)
        elif kind == "edit":
            self._apply_edit(record)
        elif kind == "reaction":
            db.execute(
                "INSERT INTO reactions (id, community, target, author, emoji, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    community_id,
                    fields["target"],
                    record.author,
                    fields["emoji"],
                    record.created_at,
                ),
            )
        elif kind == "delete":
            triggers |= self._apply_delete(fields["target"], community_id)
        elif kind in ("role_grant", "role_revoke"):
            subject = fields["subject"]
            if kind == "role_grant":
                db.execute(
                    "INSERT INTO roles VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (community_id, subject, fields["role"]),
                )
                self._touch_member(community_id, subject, point, joined=1)
            else:
                db.execute(
                    "DELETE FROM roles WHERE community = ? AND member = ? AND role = ?",
                    (community_id, subject, fields["role"]),
                )
                self._touch_member(community_id, subject, point)
            triggers.add(("member", community_id, subject))
        elif kind in ("join", "leave"):
            self._touch_member(community_id, record.author, point, joined=int(kind == "join"))
            if kind == "join":
                db.execute(
                    "UPDATE invites SET uses = uses + 1 WHERE community = ? AND invite_key = ?",
                    (community_id, fields["invite_key"]),
                )
            triggers.add(("member", community_id, record.author))
        elif kind == "invite":
            db.execute(
                "INSERT OR REPLACE INTO invites (community, invite_key, record_id, expires_at,"
                " max_uses, changed_at, changed_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    community_id,
                    fields["invite_key"],
                    record.id,
                    fields["expires_at"],
                    fields.get("max_uses"),
                    point[0],
                    point[1],
                ),
            )
            triggers.add(("invite", community_id, fields["invite_key"]))
        elif kind == "moderation":
            triggers |= self._apply_moderation(record, community_id, point)
        elif kind == "referral":
            db.execute(
                "INSERT INTO referrals (id, community, author, question, to_community,"
                " to_member, invite, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    community_id,
                    record.author,
                    fields["question"],
                    fields.get("to_community"),
                    fields.get("to_member"),
                    fields.get("invite", ""),
                    fields.get("note", ""),
                    record.created_at,
                ),
            )
        elif kind == "announcement":
            db.execute(
                "INSERT INTO directory VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (community) DO UPDATE SET record_id = excluded.record_id,"
                " name = excluded.name, description = excluded.description,"
                " tags = excluded.tags, invite = excluded.invite, members = excluded.members,"
                " created_at = excluded.created_at"
                " WHERE (excluded.created_at, excluded.record_id) > (created_at, record_id)",
                (
                    community_id,
                    record.id,
                    fields["name"],
                    fields.get("description", ""),
                    _tags(fields),
                    fields.get("invite", ""),
                    fields.get("members"),
                    record.created_at,
                ),
            )
        # key_update, reference_revoke and reference_hide are read from `records`.
        return triggers

    # Full-text index changes wait until the end of the batch: FTS5 writes its pending
    # terms out at every statement savepoint, so interleaving them with the other
    # tables' writes costs several times more than doing them together.

    def _fts(self, sql: str, args: tuple[Any, ...]) -> None:
        self._fts_ops.append((sql, args))

    def _flush_fts(self) -> None:
        ops = self._fts_ops
        start = 0
        while start < len(ops):
            end = start
            while end < len(ops) and ops[end][0] == ops[start][0]:
                end += 1
            self.db.executemany(ops[start][0], [args for _, args in ops[start:end]])
            start = end
        ops.clear()

    def _count_unread(self, community_id: bytes, author: bytes, seq: int, change: int) -> None:
        if author == self.me:
            return
        read_seq = self._read_seq.get(community_id)
        if read_seq is None:
            row = self.db.execute(
                "SELECT read_seq FROM reads WHERE community = ?", (community_id,)
            ).fetchone()
            read_seq = self._read_seq[community_id] = row[0] if row else 0
        if seq > read_seq:
            self._unread[community_id] = self._unread.get(community_id, 0) + change

    def _flush_unread(self) -> None:
        self.db.executemany(
            "INSERT INTO reads (community, unread) VALUES (?1, max(?2, 0))"
            " ON CONFLICT (community) DO UPDATE SET unread = unread + ?2",
            [(community, delta) for community, delta in self._unread.items() if delta],
        )
        self._unread.clear()

    def _fts_insert(self, rowid: int, community: bytes, text: str, tags: str, area: str) -> None:
        self._fts(
            "INSERT INTO posts_fts (rowid, text, tags, area, scope) VALUES (?, ?, ?, ?, ?)",
            (rowid, text, tags, area, community.hex()),
        )

    def _fts_delete(self, rowid: int) -> None:
        self._fts("DELETE FROM posts_fts WHERE rowid = ?", (rowid,))

    def _removed_in(self, community_id: bytes) -> set[bytes]:
        removed = self._removed.get(community_id)
        if removed is None:
            rows = self.db.execute(
                "SELECT record_id FROM removed WHERE community = ?", (community_id,)
            ).fetchall()
            removed = self._removed[community_id] = {row[0] for row in rows}
        return removed

    def _apply_post(self, record: Record, community_id: bytes) -> None:
        fields = record.fields
        removed = record.id in self._removed_in(community_id)
        text = fields.get("text", "")
        tags = _tags(fields)
        area = fields.get("area", "")
        seq = self._seq_of(record.id)
        self._post_rows.append(
            (
                seq,
                record.id,
                community_id,
                record.author,
                fields["type"],
                text,
                tags,
                area,
                fields.get("terms", ""),
                fields.get("reply_to"),
                record.created_at,
                int(removed),
            )
        )
        if not removed:
            self._fts_insert(seq, community_id, text, tags, area)
            self._count_unread(community_id, record.author, seq, +1)

    def _apply_edit(self, record: Record) -> None:
        self._flush_rows()
        fields = record.fields
        row = self.db.execute(
            "SELECT rowid, edit_at, edit_id, deleted, removed, area, community FROM posts"
            " WHERE rowid = (SELECT seq FROM records WHERE id = ?)",
            (fields["target"],),
        ).fetchone()
        if row is None:  # allowed edits target allowed posts, which are in `posts`
            raise AssertionError("an allowed edit whose post is missing")
        rowid, edit_at, edit_id, deleted, removed, area, community = row
        if edit_at is not None and (edit_at, edit_id) > position(record):
            return  # a newer edit is already in effect
        tags = _tags(fields)
        self.db.execute(
            "UPDATE posts SET text = ?, tags = ?, edit_at = ?, edit_id = ? WHERE rowid = ?",
            (fields["text"], tags, record.created_at, record.id, rowid),
        )
        if not deleted and not removed:
            self._fts_delete(rowid)
            self._fts_insert(rowid, community, fields["text"], tags, area)

    def _hide_post(self, record_id: bytes, community_id: bytes, column: str) -> None:
        """Mark a post deleted or removed; a moderator of one community cannot hide a
        post of another."""
        self._flush_rows()
        row = self.db.execute(
            "SELECT rowid, deleted, removed, author FROM posts"
            " WHERE rowid = (SELECT seq FROM records WHERE id = ?) AND community = ?",
            (record_id, community_id),
        ).fetchone()
        if row is None:
            return
        rowid, deleted, removed, author = row
        if not deleted and not removed:
            self._fts_delete(rowid)
            self._count_unread(community_id, author, rowid, -1)
        self.db.execute(f"UPDATE posts SET {column} = 1 WHERE rowid = ?", (rowid,))  # noqa: S608

    def _apply_delete(self, target: bytes, community_id: bytes) -> set[Trigger]:
        self._flush_rows()
        row = self.db.execute("SELECT kind FROM records WHERE id = ?", (target,)).fetchone()
        kind = row[0]
        if kind == "post":
            self._hide_post(target, community_id, "deleted")
        elif kind == "reaction":
            self.db.execute("UPDATE reactions SET deleted = 1 WHERE id = ?", (target,))
        elif kind == "referral":
            self.db.execute("UPDATE referrals SET deleted = 1 WHERE id = ?", (target,))
        elif kind == "invite":
            # Withdraws the key, whichever invite record published it last (as `fold`).
            envelope = self.db.execute(
                "SELECT envelope FROM records WHERE id = ?", (target,)
            ).fetchone()[0]
            invite_key = decode_stored(envelope).fields["invite_key"]
            self.db.execute(
                "UPDATE invites SET withdrawn = 1 WHERE community = ? AND invite_key = ?",
                (community_id, invite_key),
            )
            return {("invite", community_id, invite_key)}
        return set()

    def _apply_moderation(self, record: Record, community_id: bytes, point: Pos) -> set[Trigger]:
        fields = record.fields
        action = fields["action"]
        target = fields["target"]
        self.db.execute(
            "INSERT INTO moderation_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                community_id,
                record.author,
                action,
                target,
                fields.get("reason", ""),
                record.created_at,
            ),
        )
        if action == "remove":
            self.db.execute(
                "INSERT INTO removed VALUES (?, ?) ON CONFLICT DO NOTHING", (community_id, target)
            )
            self._removed_in(community_id).add(target)
            self._hide_post(target, community_id, "removed")
            return set()
        self._touch_member(community_id, target, point, banned=int(action == "ban"))
        return {("member", community_id, target)}

    def _apply_profile(self, record: Record) -> None:
        fields = record.fields
        row = self.db.execute(
            "SELECT rowid, created_at, record_id FROM profiles WHERE member = ?",
            (record.author,),
        ).fetchone()
        if row is not None and (row[1], row[2]) > position(record):
            return
        values = (
            record.id,
            fields["name"],
            fields.get("bio", ""),
            _tags(fields, "skills"),
            _tags(fields, "services"),
            record.created_at,
        )
        if row is None:
            rowid = self.db.execute(
                "INSERT INTO profiles (member, record_id, name, bio, skills, services,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.author, *values),
            ).lastrowid
        else:
            rowid = row[0]
            self._fts("DELETE FROM profiles_fts WHERE rowid = ?", (rowid,))
            self.db.execute(
                "UPDATE profiles SET record_id = ?, name = ?, bio = ?, skills = ?,"
                " services = ?, created_at = ? WHERE rowid = ?",
                (*values, rowid),
            )
        self._fts(
            "INSERT INTO profiles_fts (rowid, name, bio, skills) VALUES (?, ?, ?, ?)",
            (rowid, fields["name"], fields.get("bio", ""), values[3] + " " + values[4]),
        )
