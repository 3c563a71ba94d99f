"""The queries the screens need, over the derived tables, as plain dataclasses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kithnet.core.envelope import decode
from kithnet.core.errors import RecordError


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a feed page ended: the next page starts strictly before it."""

    created_at: int
    id: bytes


@dataclass(frozen=True, slots=True)
class Post:
    id: bytes
    community: bytes
    author: bytes
    author_name: str
    type: str
    text: str
    tags: tuple[str, ...]
    area: str
    terms: str
    reply_to: bytes | None
    created_at: int
    edited: bool
    replies: int = 0
    reactions: dict[str, int] = field(default_factory=dict)
    depth: int = 0


@dataclass(frozen=True, slots=True)
class FeedPage:
    posts: list[Post]
    next: Cursor | None


@dataclass(frozen=True, slots=True)
class Reference:
    id: bytes
    author: bytes
    author_name: str
    subject: bytes
    skill: str
    text: str
    relationship: str
    community: bytes | None
    community_name: str
    created_at: int
    revoked: bool
    hidden: bool
    verified: bool


@dataclass(frozen=True, slots=True)
class Profile:
    member: bytes
    name: str
    bio: str
    skills: tuple[str, ...]
    services: tuple[str, ...]
    references: list[Reference]
    known: bool  # False when no profile record of the member has arrived


@dataclass(frozen=True, slots=True)
class Community:
    id: bytes
    name: str
    description: str
    tags: tuple[str, ...]
    visibility: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InviteState:
    expires_at: int
    max_uses: int | None
    uses: int
    withdrawn: bool
    last_join_at: int  # created_at of its newest allowed join; 0 if none


@dataclass(frozen=True, slots=True)
class Member:
    member: bytes
    name: str
    roles: tuple[str, ...]
    banned: bool


@dataclass(frozen=True, slots=True)
class ModerationEntry:
    id: bytes
    moderator: bytes
    moderator_name: str
    action: str
    target: bytes
    reason: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Invite:
    id: bytes  # the invite record
    issuer: bytes
    issuer_name: str
    invite_key: bytes
    created_at: int
    expires_at: int
    max_uses: int | None
    uses: int
    withdrawn: bool


# Posts by members this member muted or blocked stay stored but out of sight.
_NOT_SILENCED = " AND p.author NOT IN (SELECT member FROM marks WHERE mark != 'trust')"

_POST_COLUMNS = (
    "p.id, p.community, p.author, coalesce(pr.name, ''), p.type, p.text, p.tags, p.area,"
    " p.terms, p.reply_to, p.created_at, p.edit_at IS NOT NULL,"
    " (SELECT count(*) FROM posts AS r WHERE r.reply_to = p.id AND r.community = p.community"
    "  AND r.deleted = 0 AND r.removed = 0)"
)
_POST_FROM = "posts AS p LEFT JOIN profiles AS pr ON pr.member = p.author"
_FEED_FROM = "posts AS p INDEXED BY posts_feed LEFT JOIN profiles AS pr ON pr.member = p.author"


def _split(tags: str) -> tuple[str, ...]:
    return tuple(tags.split()) if tags else ()


def _reactions(db: Any, post_id: bytes, community: bytes) -> dict[str, int]:
    """Reactions from the post's own community (a stranger's elsewhere do not count)."""
    rows = db.execute(
        "SELECT emoji, count(*) FROM reactions AS x WHERE target = ? AND community = ?"
        " AND deleted = 0 AND author NOT IN"
        " (SELECT member FROM marks WHERE mark != 'trust')"
        " AND NOT EXISTS (SELECT 1 FROM removed WHERE community = x.community"
        " AND record_id = x.id)"
        " GROUP BY emoji ORDER BY count(*) DESC, emoji",
        (post_id, community),
    ).fetchall()
    return dict(rows)


def _post(db: Any, row: Any, depth: int = 0) -> Post:
    return Post(
        id=row[0],
        community=row[1],
        author=row[2],
        author_name=row[3],
        type=row[4],
        text=row[5],
        tags=_split(row[6]),
        area=row[7],
        terms=row[8],
        reply_to=row[9],
        created_at=row[10],
        edited=bool(row[11]),
        replies=row[12],
        reactions=_reactions(db, row[0], row[1]),
        depth=depth,
    )


def feed(db: Any, community: bytes, *, before: Cursor | None, limit: int) -> FeedPage:
    """A page of a community's top-level posts, newest first (keyset pagination)."""
    if before is None:
        rows = db.execute(
            f"SELECT {_POST_COLUMNS} FROM {_FEED_FROM}"  # noqa: S608
            " WHERE p.community = ? AND p.reply_to IS NULL AND p.deleted = 0"
            f" AND p.removed = 0{_NOT_SILENCED} ORDER BY p.created_at DESC, p.id DESC LIMIT ?",
            (community, limit),
        ).fetchall()
    else:
        rows = db.execute(
            f"SELECT {_POST_COLUMNS} FROM {_FEED_FROM}"  # noqa: S608
            " WHERE p.community = ? AND p.reply_to IS NULL AND p.deleted = 0"
            f" AND p.removed = 0{_NOT_SILENCED} AND (p.created_at, p.id) < (?, ?)"
            " ORDER BY p.created_at DESC, p.id DESC LIMIT ?",
            (community, before.created_at, before.id, limit),
        ).fetchall()
    posts = [_post(db, row) for row in rows]
    next_page = Cursor(posts[-1].created_at, posts[-1].id) if len(posts) == limit else None
    return FeedPage(posts, next_page)


def thread(db: Any, root: bytes) -> list[Post]:
    """A post and every visible reply under it, depth first, oldest first at each level."""
    row = db.execute(
        f"SELECT {_POST_COLUMNS} FROM {_POST_FROM}"  # noqa: S608
        " WHERE p.rowid = (SELECT seq FROM records WHERE id = ?)",
        (root,),
    ).fetchone()
    if row is None:
        return []
    out = [_post(db, row)]
    hidden = db.execute(
        "SELECT deleted OR removed FROM posts WHERE rowid = (SELECT seq FROM records WHERE id = ?)",
        (root,),
    ).fetchone()
    if hidden[0]:
        out = []

    community = row[1]

    def walk(parent: bytes, depth: int) -> None:
        replies = db.execute(
            f"SELECT {_POST_COLUMNS} FROM {_POST_FROM}"  # noqa: S608
            " WHERE p.reply_to = ? AND p.community = ? AND p.deleted = 0 AND p.removed = 0"
            f"{_NOT_SILENCED} ORDER BY p.created_at, p.id",
            (parent, community),
        ).fetchall()
        for reply in replies:
            out.append(_post(db, reply, depth))
            if depth < 64:
                walk(reply[0], depth + 1)

    walk(root, 1)
    return out


# Search ranks by relevance (BM25) among the newest matches only: ranking all 75,000
# posts that say "plumber" takes 90 ms, the newest 2,000 under 20 ms, and in a social
# feed a relevant old post rarely beats a relevant recent one.
RANK_WINDOW = 2000


def _fts_terms(text: str) -> str | None:
    """Each word of `text` as a quoted term; the last also matches as a prefix."""
    words = re.findall(r"\w+", text)
    if not words:
        return None
    terms = [f'"{word}"' for word in words]
    terms[-1] += "*"
    return " ".join(terms)


def search_posts(
    db: Any,
    text: str,
    *,
    community: bytes | None,
    limit: int,
    communities: Sequence[bytes] | None = None,
) -> list[Post]:
    """Visible posts, questions and offers matching every word, best match first; in
    `community`, or in `communities` if given (an empty list matches nothing)."""
    terms = _fts_terms(text)
    if terms is None:
        return []
    match = f"{{text tags area}} : ({terms})"
    if community is not None:
        match = f'scope : "{community.hex()}" AND {match}'
    elif communities is not None:
        if not communities:
            return []
        scopes = " OR ".join(f'"{c.hex()}"' for c in communities)
        match = f"scope : ({scopes}) AND {match}"
    bound = db.execute(
        "SELECT rowid FROM posts_fts WHERE posts_fts MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
        (match, RANK_WINDOW - 1),
    ).fetchone()
    rows = db.execute(
        f"SELECT {_POST_COLUMNS} FROM posts_fts AS f JOIN posts AS p ON p.rowid = f.rowid"  # noqa: S608
        " LEFT JOIN profiles AS pr ON pr.member = p.author"
        f" WHERE posts_fts MATCH ? AND f.rowid >= ?{_NOT_SILENCED} ORDER BY f.rank LIMIT ?",
        (match, bound[0] if bound else 0, limit),
    ).fetchall()
    return [_post(db, row) for row in rows]


def references_about(db: Any, member: bytes) -> list[Reference]:
    rows = db.execute(
        "SELECT r.id, r.author, coalesce(pr.name, ''), r.subject, r.skill, r.text,"
        " r.relationship, r.community, coalesce(c.name, ''), r.created_at,"
        " EXISTS (SELECT 1 FROM records AS x WHERE x.target = r.id"
        "  AND x.kind = 'reference_revoke' AND x.status = 'allowed'),"
        " EXISTS (SELECT 1 FROM records AS x WHERE x.target = r.id"
        "  AND x.kind = 'reference_hide' AND x.status = 'allowed'),"
        " rec.envelope"
        " FROM refs AS r JOIN records AS rec ON rec.id = r.id"
        " LEFT JOIN profiles AS pr ON pr.member = r.author"
        " LEFT JOIN communities AS c ON c.id = r.community"
        " WHERE r.subject = ? ORDER BY r.skill, r.created_at",
        (member,),
    ).fetchall()
    out = []
    for row in rows:
        try:
            verified = decode(row[12]).id == row[0]  # the signature, checked again now
        except RecordError:
            verified = False
        out.append(
            Reference(
                id=row[0],
                author=row[1],
                author_name=row[2],
                subject=row[3],
                skill=row[4],
                text=row[5],
                relationship=row[6],
                community=row[7],
                community_name=row[8],
                created_at=row[9],
                revoked=bool(row[10]),
                hidden=bool(row[11]),
                verified=verified,
            )
        )
    return out


def profile(db: Any, member: bytes) -> Profile:
    row = db.execute(
        "SELECT name, bio, skills, services FROM profiles WHERE member = ?", (member,)
    ).fetchone()
    references = references_about(db, member)
    if row is None:
        return Profile(member, "", "", (), (), references, known=False)
    return Profile(member, row[0], row[1], _split(row[2]), _split(row[3]), references, True)


def offers_by(db: Any, member: bytes, communities: list[bytes], *, limit: int) -> list[Post]:
    """A member's visible offers in `communities` (those shared with the viewer), newest
    first."""
    if not communities:
        return []
    marks = ", ".join("?" for _ in communities)
    rows = db.execute(
        f"SELECT {_POST_COLUMNS} FROM posts AS p INDEXED BY posts_offers"  # noqa: S608
        " LEFT JOIN profiles AS pr ON pr.member = p.author"
        " WHERE p.author = ? AND p.type = 'offer' AND p.deleted = 0 AND p.removed = 0"
        f" AND p.community IN ({marks}) ORDER BY p.created_at DESC, p.id DESC LIMIT ?",
        (member, *communities, limit),
    ).fetchall()
    return [_post(db, row) for row in rows]


def search_profiles(db: Any, text: str, *, limit: int) -> list[Profile]:
    query = _fts_terms(text)
    if query is None:
        return []
    rows = db.execute(
        "SELECT p.member FROM profiles_fts AS f JOIN profiles AS p ON p.rowid = f.rowid"
        " WHERE profiles_fts MATCH ? ORDER BY f.rank LIMIT ?",
        (query, limit),
    ).fetchall()
    return [profile(db, row[0]) for row in rows]


# A community's columns, with this member's (?1) roles in it.
_COMMUNITY_COLUMNS = (
    "c.id, c.name, c.description, c.tags, c.visibility,"
    " (SELECT group_concat(role, ' ') FROM roles AS r WHERE r.community = c.id"
    "  AND r.member = ?1)"
)


def _community(row: Any) -> Community:
    return Community(row[0], row[1], row[2], _split(row[3]), row[4], _split(row[5] or ""))


def communities(db: Any, me: bytes) -> list[Community]:
    """The communities this member belongs to, by name."""
    rows = db.execute(
        f"SELECT {_COMMUNITY_COLUMNS} FROM communities AS c"  # noqa: S608
        " WHERE EXISTS (SELECT 1 FROM members AS m"
        "  WHERE m.community = c.id AND m.member = ?1 AND m.joined = 1)"
        # A role counts only in a community this member made or joined: anyone can make
        # a community naming a stranger its moderator, and list it in the directory.
        " OR (EXISTS (SELECT 1 FROM roles AS r WHERE r.community = c.id AND r.member = ?1)"
        "  AND (c.creator = ?1 OR EXISTS (SELECT 1 FROM records AS x WHERE x.community = c.id"
        "  AND x.author = ?1 AND x.kind = 'join')))"
        " ORDER BY c.name COLLATE NOCASE, c.id",
        (me,),
    ).fetchall()
    return [_community(row) for row in rows]


def community(db: Any, community_id: bytes, me: bytes) -> Community | None:
    """A community whose genesis this store holds, whether or not this member is in it."""
    row = db.execute(
        f"SELECT {_COMMUNITY_COLUMNS} FROM communities AS c WHERE c.id = ?2",  # noqa: S608
        (me, community_id),
    ).fetchone()
    return None if row is None else _community(row)


def unread_counts(db: Any) -> dict[bytes, int]:
    """For each community, the visible posts by others that arrived since this member
    last read it (a counter the judge keeps, so this never counts)."""
    rows = db.execute(
        "SELECT c.id, coalesce(r.unread, 0) FROM communities AS c"
        " LEFT JOIN reads AS r ON r.community = c.id"
    ).fetchall()
    return dict(rows)


def members(db: Any, community: bytes) -> list[Member]:
    rows = db.execute(
        "SELECT m.member, coalesce(p.name, ''),"
        " (SELECT group_concat(role, ' ') FROM roles AS r WHERE r.community = m.community"
        "  AND r.member = m.member), m.banned"
        " FROM members AS m LEFT JOIN profiles AS p ON p.member = m.member"
        " WHERE m.community = ? AND (m.joined = 1 OR EXISTS (SELECT 1 FROM roles AS r"
        "  WHERE r.community = m.community AND r.member = m.member))"
        " ORDER BY coalesce(p.name, '') COLLATE NOCASE, m.member",
        (community,),
    ).fetchall()
    return [Member(row[0], row[1], _split(row[2] or ""), bool(row[3])) for row in rows]


def moderation_log(db: Any, community: bytes) -> list[ModerationEntry]:
    rows = db.execute(
        "SELECT l.id, l.moderator, coalesce(p.name, ''), l.action, l.target, l.reason,"
        " l.created_at FROM moderation_log AS l"
        " LEFT JOIN profiles AS p ON p.member = l.moderator"
        " WHERE l.community = ? ORDER BY l.created_at DESC, l.id DESC",
        (community,),
    ).fetchall()
    return [ModerationEntry(*row) for row in rows]


def invites(db: Any, community: bytes) -> list[Invite]:
    """A community's invites, newest first, with their uses and whether withdrawn."""
    rows = db.execute(
        "SELECT i.record_id, r.author, coalesce(p.name, ''), i.invite_key, r.created_at,"
        " i.expires_at, i.max_uses, i.uses, i.withdrawn FROM invites AS i"
        " JOIN records AS r ON r.id = i.record_id"
        " LEFT JOIN profiles AS p ON p.member = r.author"
        " WHERE i.community = ? ORDER BY r.created_at DESC, i.record_id DESC",
        (community,),
    ).fetchall()
    return [Invite(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8])) for r in rows]
