"""The member's commands for finding things and hearing about them: full-text search
over posts and people (`search`), and what to tell the member about since they last
looked (`notifications`: replies, referrals, references about them, messages). Mixed
into `Commands`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kithnet.localstore import notices

if TYPE_CHECKING:
    from kithnet.localstore import views
    from kithnet.localstore.store import Store

SNIPPET = 160  # characters of a post shown in a search result or a notification
MAX_RESULTS = 200


def _error(message: str) -> Exception:
    from kithnet.node.commands import CommandError

    return CommandError(message)


def snippet(text: str, words: list[str], width: int = SNIPPET) -> str:
    """`text` on one line, cut to `width` characters around the first of `words`."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lowered = flat.lower()
    hits = [lowered.find(w.lower()) for w in words if w and w.lower() in lowered]
    start = max(0, min(hits, default=0) - width // 3)
    end = min(len(flat), start + width)
    start = max(0, end - width)
    return ("…" if start else "") + flat[start:end].strip() + ("…" if end < len(flat) else "")


def _cursor_from(value: Any) -> notices.NoticeCursor:
    try:
        return notices.NoticeCursor(
            int(value["seq"]),
            int(value["message_at"]),
            tuple(bytes.fromhex(i) for i in value.get("message_ids", [])),
            tuple(int(seq) for seq in value.get("pending", [])),
        )
    except (TypeError, KeyError, ValueError, AttributeError):
        raise _error(
            "a notifications cursor is what `notifications` answered as `cursor`"
        ) from None


def _cursor_view(cursor: notices.NoticeCursor) -> dict[str, Any]:
    return {
        "seq": cursor.seq,
        "message_at": cursor.message_at,
        "message_ids": [i.hex() for i in cursor.message_ids],
        "pending": list(cursor.pending),
    }


class NoticeCommands:
    store: Store

    resolve: Callable[..., views.Community]  # Commands.resolve: a community by name or id

    async def search(
        self, text: str, community: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """Posts (in the member's communities, or in `community`) and people matching
        every word of `text`, best first. Whatever is typed is searched for as words:
        quotes, AND, brackets or * are not search syntax here."""
        if not 1 <= limit <= MAX_RESULTS:
            raise _error(f"--limit must be between 1 and {MAX_RESULTS}")
        words = re.findall(r"\w+", text)
        joined = {c.id: c.name for c in self.store.communities()}
        where = self.resolve(community).id if community else None
        posts = []
        if words:
            # Posts of communities the member left or only follows are stored too:
            # the search is over the member's own communities only, so that a page is
            # full whenever they hold enough matches (the app asks for more only then).
            found = self.store.search(
                text, community=where, limit=limit, communities=None if where else list(joined)
            )
            for post in found:
                if post.community not in joined:
                    continue
                root = notices.thread_root(self.store.db, post.id) if post.reply_to else post.id
                posts.append(
                    {
                        "id": post.id.hex(),
                        "community": post.community.hex(),
                        "community_name": joined[post.community],
                        "author": post.author.hex(),
                        "author_name": post.author_name,
                        "text": snippet(post.text, words),
                        "kind": post.type,
                        "created_at": post.created_at,
                        "reply_to": post.reply_to.hex() if post.reply_to else None,
                        "thread": root.hex(),
                    }
                )
                if len(posts) == limit:
                    break
        people = [
            {
                "member": p.member.hex(),
                "name": p.name,
                "skills": list(p.skills),
                "bio": snippet(p.bio, words),
            }
            for p in (self.store.search_profiles(text, limit=limit) if words else [])
        ]
        return {"text": text, "posts": posts, "people": people}

    async def notifications(
        self, after: dict[str, Any] | None = None, limit: int = 50, save: bool = True
    ) -> dict[str, Any]:
        """What arrived since `after` (or since the last look this node remembers)
        that the member should hear about: replies to their posts, referrals answering
        their questions, references about them and messages to them, oldest first; at
        most `limit` of each kind, and `more` if others are left for the next look.
        The first look ever starts from now. With `save`, the node remembers the
        answer's `cursor`, so the next look without `after` starts there."""
        if not 1 <= limit <= MAX_RESULTS:
            raise _error(f"--limit must be between 1 and {MAX_RESULTS}")
        stored = self.store.setting(notices.CURSOR_SETTING) if after is None else after
        if stored is None:  # the first look: start from now
            found: list[notices.Notice] = []
            more = False
            cursor = notices.now_cursor(self.store.db)
        else:
            start = _cursor_from(stored)
            found, more, cursor = notices.since(
                self.store.db, self.store.identity.public_key, start, limit=limit
            )
        if save:
            self.store.set_setting(notices.CURSOR_SETTING, _cursor_view(cursor))
        return {
            "items": [self._notice_view(n) for n in found],
            "more": more,
            "cursor": _cursor_view(cursor),
        }

    def _notice_view(self, notice: notices.Notice) -> dict[str, Any]:
        who = notice.who_name or notice.who.hex()[:12]
        where = f" in {notice.community_name}" if notice.community_name else ""
        extra = notice.extra
        if notice.kind == "reply":
            title = f"{who} replied to your post{where}"
            text = snippet(notice.text, [])
        elif notice.kind == "referral":
            target = extra["to_community_name"] or extra["to_member_name"] or "someone"
            title = f"{who} answered your question{where}"
            text = f"They point you to {target}" + (f": {notice.text}" if notice.text else "")
        elif notice.kind == "reference":
            title = f"{who} vouched for you ({extra['skill']})"
            text = snippet(notice.text, [])
        else:
            title = f"Message from {who}"
            text = snippet(notice.text, [])
        thread = None
        if notice.about is not None and notice.kind == "reply":
            thread = notices.thread_root(self.store.db, notice.about).hex()
        elif notice.about is not None:
            thread = notice.about.hex()
        return {
            "kind": notice.kind,
            "id": notice.id.hex(),
            "title": title,
            "text": text,
            "who": notice.who.hex(),
            "who_name": notice.who_name,
            "community": notice.community.hex() if notice.community else None,
            "community_name": notice.community_name,
            "about": notice.about.hex() if notice.about else None,
            "thread": thread,
            "subject": self.store.identity.public_key.hex() if notice.kind == "reference" else None,
            "created_at": notice.created_at,
            **({"invite": extra["invite"]} if extra.get("invite") else {}),
            **({"to_community": extra["to_community"].hex()} if extra.get("to_community") else {}),
        }
