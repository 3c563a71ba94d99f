"""What the member's commands do, whether a running node carries them out (through the
control socket) or a node started for one command's duration. Each command takes and
returns JSON-able values, so the command line, the control socket and tests share them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from kithnet.core import trust as trust_model
from kithnet.core.envelope import Record
from kithnet.crypto import secretbox
from kithnet.crypto.identity import peer_id as peer_id_of
from kithnet.crypto.invite import MAX_ADDRESSES, InviteCode, InviteCodeError
from kithnet.crypto.invite import decode as decode_invite
from kithnet.crypto.sealed import seal
from kithnet.localstore import views
from kithnet.localstore.messages import Message
from kithnet.localstore.store import now_ms
from kithnet.node.node import Node
from kithnet.node.sync import SyncError
from kithnet.p2p.host import P2PError

DEFAULT_INVITE_LIFETIME = "7d"
MAX_INVITE_LIFETIME_MS = 366 * 24 * 3600 * 1000
REACH_TIMEOUT = 10.0  # how long a command waits for members' nodes to answer
COMMAND_SYNC_TIMEOUT = 60.0  # a command waits at most this long for one catch-up
REUSE_JOIN_MS = 5 * 60 * 1000  # a join asked again within this is re-sent, not re-signed
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class CommandError(Exception):
    """A command cannot be done as asked; the message says why and what to do."""

    expected = True  # the control socket does not log these as faults


def parse_duration(text: str) -> int:
    """'30m', '12h', '7d', '2w' → milliseconds."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise CommandError(f"{text!r} is not a duration: write e.g. 30m, 12h, 7d or 2w")
    milliseconds = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if milliseconds > MAX_INVITE_LIFETIME_MS:
        raise CommandError("an invite can last at most a year")
    return milliseconds


def _post_view(post: views.Post) -> dict[str, Any]:
    return {
        "id": post.id.hex(),
        "author": post.author.hex(),
        "author_name": post.author_name,
        "type": post.type,
        "text": post.text,
        "tags": list(post.tags),
        "area": post.area,
        "reply_to": post.reply_to.hex() if post.reply_to else None,
        "created_at": post.created_at,
        "edited": post.edited,
        "replies": post.replies,
        "reactions": post.reactions,
    }


def _message_view(message: Message) -> dict[str, Any]:
    return {
        "id": message.id.hex(),
        "direction": message.direction,
        "text": message.text,
        "created_at": message.created_at,
        "state": message.state,
        "forwarders": message.forwarders,
    }


class Commands:
    """The member's commands over a store and a node (running or temporary)."""

    def __init__(self, node: Node, *, temporary: bool = False) -> None:
        self.node = node
        self.store = node.store
        self.temporary = temporary  # a node started for this command alone
        self.started = time.monotonic()
        self._table: dict[str, Callable[..., Awaitable[Any]]] = {
            "community.create": self.community_create,
            "community.list": self.community_list,
            "invite.create": self.invite_create,
            "join": self.join,
            "post": self.post,
            "feed": self.feed,
            "peers": self.peers,
            "status": self.status,
            "vouch": self.vouch,
            "references": self.references,
            "trust": self.trust,
            "ask": self.ask,
            "refer": self.refer,
            "referrals": self.referrals,
            "profile.set": self.profile_set,
            "community.roles": self.community_roles,
            "community.ban": self.community_ban,
            "community.leave": self.community_leave,
            "dm": self.dm,
            "inbox": self.inbox,
        }

    async def dispatch(self, command: str, args: dict[str, Any]) -> Any:
        handler = self._table.get(command)
        if handler is None:
            raise CommandError(f"this node does not know the command {command!r}")
        try:
            return await handler(**args)
        except TypeError as exc:
            raise CommandError(f"bad arguments for {command}: {exc}") from exc

    # Helpers --------------------------------------------------------------------------

    def resolve(self, text: str, *, member: bool = True) -> views.Community:
        """A community named by its id (or a unique prefix of 6+ hex digits) or by its
        name; `member`: only communities this member belongs to."""
        known = self.store.communities()
        if not member:
            extra = [self.store.community(c) for c in self.store.followed_communities()]
            known += [c for c in extra if c is not None and c not in known]
        wanted = text.strip().lower()
        by_id = [c for c in known if len(wanted) >= 6 and c.id.hex().startswith(wanted)]
        by_name = [c for c in known if c.name.lower() == wanted]
        by_start = [c for c in known if wanted and c.name.lower().startswith(wanted)]
        found = by_id or by_name or by_start
        if len(found) == 1:
            return found[0]
        if not found:
            raise CommandError(
                f"you are in no community called {text!r}; `kithnet community list` shows yours"
            )
        choices = ", ".join(f"{c.name} ({c.id.hex()[:12]})" for c in found)
        raise CommandError(f"{text!r} could be several communities: {choices}; give the id")

    async def _reach(self, community: bytes) -> int:
        """Make sure the node is connected to members of `community` if any answer;
        returns how many take part in its gossip."""
        await self.node.follow(community)
        if not self.node.community_peers(community):
            for peer_id, addresses in self.store.peers_of(community):
                if peer_id not in self.node.peer.connected_peers():
                    self.store.remember_peer(peer_id, addresses, "exchange")
            await self.node.dial_known(timeout=REACH_TIMEOUT)
        with trio.move_on_after(REACH_TIMEOUT if self.temporary else 0):
            while not self.node.community_peers(community):
                if not self.node.peer.connected_peers():
                    break
                await trio.sleep(0.05)
        return len(self.node.community_peers(community))

    async def _publish(self, fields: dict[str, Any], community: bytes) -> tuple[Record, int]:
        """Store a record and send it to the community's members now if any is online
        (a temporary node also syncs, so nothing depends on gossip alone)."""
        reached = await self._reach(community)
        record = await self.node.post(fields)
        if self.temporary and reached:
            await self.node.flush()
            for peer_id in sorted(self.node.community_peers(community)):
                await self.node.sync_logged(peer_id, community, COMMAND_SYNC_TIMEOUT)
        return record, reached

    # Communities ----------------------------------------------------------------------

    async def community_create(
        self,
        name: str,
        description: str = "",
        tags: list[str] | None = None,
        private: bool = False,
    ) -> dict[str, Any]:
        visibility = "private" if private else "public"
        fields: dict[str, Any] = {"kind": "community", "name": name, "visibility": visibility}
        if description:
            fields["description"] = description
        if tags:
            fields["tags"] = tags
        record = await self.node.post(fields)
        if private:
            # The content key, sealed to its creator in a record too, so that a backup
            # holds it; newcomers get it sealed to them when an owner lets them in.
            key = secretbox.new_key()
            me = self.store.identity.public_key
            self.store.set_community_key(record.id, 0, key)
            self.store.publish(
                {
                    "kind": "key_update",
                    "community": record.id,
                    "epoch": 0,
                    "keys": [{"member": me, "box": seal(me, key)}],
                }
            )
        await self.node.follow(record.id)
        return {
            "id": record.id.hex(),
            "name": name,
            "visibility": visibility,
            "description": description,
            "tags": tags or [],
        }

    async def community_roles(
        self,
        community: str,
        grant: str | None = None,
        revoke: str | None = None,
        role: str = "moderator",
    ) -> dict[str, Any]:
        """The members and their roles; an owner can grant or revoke one first."""
        target = self.resolve(community)
        if grant or revoke:
            if role not in ("owner", "moderator"):
                raise CommandError("a role is owner or moderator")
            subject = self.member(str(grant or revoke))
            kind = "role_grant" if grant else "role_revoke"
            await self._publish(
                {"kind": kind, "community": target.id, "subject": subject, "role": role},
                target.id,
            )
        members = self.store.members(target.id)
        return {
            "community": target.id.hex(),
            "name": target.name,
            "members": [
                {
                    "member": m.member.hex(),
                    "name": m.name,
                    "roles": list(m.roles),
                    "banned": m.banned,
                    "online": self.store.peer_id_of(m.member)
                    in self.node.community_peers(target.id),
                }
                for m in members
            ],
        }

    async def community_ban(
        self, community: str, member: str, reason: str = "", unban: bool = False
    ) -> dict[str, Any]:
        """A moderator bans (or unbans) a member; every member's node applies it."""
        target = self.resolve(community)
        subject = self.member(member)
        fields: dict[str, Any] = {
            "kind": "moderation",
            "community": target.id,
            "action": "unban" if unban else "ban",
            "target": subject,
        }
        if reason:
            fields["reason"] = reason
        record, reached = await self._publish(fields, target.id)
        return {
            "id": record.id.hex(),
            "action": fields["action"],
            "member": subject.hex(),
            "community_name": target.name,
            "members_online": reached,
        }

    async def community_leave(self, community: str) -> dict[str, Any]:
        target = self.resolve(community)
        record, reached = await self._publish({"kind": "leave", "community": target.id}, target.id)
        return {"id": record.id.hex(), "community_name": target.name, "members_online": reached}

    async def community_list(self) -> list[dict[str, Any]]:
        unread = self.store.unread_counts()
        return [
            {
                "id": c.id.hex(),
                "name": c.name,
                "visibility": c.visibility,
                "tags": list(c.tags),
                "roles": list(c.roles),
                "members": len(self.store.members(c.id)),
                "unread": unread.get(c.id, 0),
                "peers_online": len(self.node.community_peers(c.id)),
            }
            for c in self.store.communities()
        ]

    # Invites --------------------------------------------------------------------------

    async def invite_create(
        self, community: str, uses: int | None = None, expires: str = DEFAULT_INVITE_LIFETIME
    ) -> dict[str, Any]:
        target = self.resolve(community)
        if uses is not None and not 1 <= uses <= 1_000_000:
            raise CommandError("--uses must be between 1 and 1,000,000")
        expires_at = now_ms() + parse_duration(expires)
        addresses = self._invite_addresses(target.id)
        code = InviteCode.create(self.store.identity, target.id, target.name, addresses, expires_at)
        fields: dict[str, Any] = {
            "kind": "invite",
            "community": target.id,
            "invite_key": code.invite_key,
            "expires_at": expires_at,
        }
        if uses is not None:
            fields["max_uses"] = uses
        _, reached = await self._publish(fields, target.id)
        return {
            "code": code.encode(),
            "community": target.id.hex(),
            "community_name": target.name,
            "expires_at": expires_at,
            "uses": uses,
            "addresses": addresses,
            "members_online": reached,
        }

    def _invite_addresses(self, community: bytes) -> list[str]:
        """Where a newcomer can find the community: this node's addresses if others can
        reach it, then other members' nodes; at most MAX_ADDRESSES."""
        own = self.node.announced() or list(self.store.setting("announce") or [])
        chosen = list(own)
        for _peer, addresses in self.store.peers_of(community):
            chosen += addresses[:1]
        return list(dict.fromkeys(chosen))[:MAX_ADDRESSES]

    async def join(self, code: str) -> dict[str, Any]:
        try:
            invite = decode_invite(code)
            invite.check_fresh(now_ms())
        except InviteCodeError as exc:
            raise CommandError(str(exc)) from exc
        me = self.store.identity.public_key
        community = invite.community
        if any(c.id == community for c in self.store.communities()):
            return {
                "community": community.hex(),
                "name": invite.community_name,
                "status": "already a member",
            }
        for address in invite.addresses:
            peer = address.rsplit("/p2p/", 1)[-1]
            self.store.remember_peer(peer, [address], "invite")
        async with trio.open_nursery() as nursery:
            for address in invite.addresses:
                nursery.start_soon(self._try_connect, address)
        # Asking again (the first time nobody answered) re-sends the same join.
        record = self.store.own_record(community, "join", invite_key=invite.invite_key)
        if record is not None and now_ms() - record.created_at > REUSE_JOIN_MS:
            record = None  # too old for an inviter to take by hand: sign a fresh one
        if record is None:
            record = self.store.publish(
                {
                    "kind": "join",
                    "community": community,
                    "invite_key": invite.invite_key,
                    "proof": invite.prove_join(me),
                }
            )
        # The inviter's node lets us in: for a private community it answers with the
        # community key sealed to us, without which nothing of it can be read.
        refusal = ""
        inviters = [a.rsplit("/p2p/", 1)[-1] for a in invite.addresses]
        for peer_id in dict.fromkeys(inviters):
            if peer_id not in self.node.peer.connected_peers():
                continue
            try:
                welcome = await self.node.ask_to_join(peer_id, record)
            except (SyncError, P2PError) as exc:
                refusal = str(exc)
                continue
            if not welcome:  # a public community: catch up by its id, then take part
                await self.node.sync_logged(peer_id, community, COMMAND_SYNC_TIMEOUT)
            elif self.store.community_key(community) is None:
                refusal = "a member answered, but without a key for you"
                continue
            break
        info = self.store.community(community)
        if info is None:  # public or private is not even known: follow nothing yet
            raise CommandError(
                f"none of the members' nodes named in the invite to {invite.community_name!r} "
                "answered. Your request to join is saved: try `kithnet join` again later"
                + (f" ({refusal})" if refusal else "")
            )
        if not await self.node.follow(community):
            if info.visibility == "private":
                raise CommandError(
                    f"{invite.community_name!r} is private and no owner or moderator let you "
                    f"in yet ({refusal or 'none of them answered'}). Your request is saved; "
                    "try `kithnet join` again when the person who invited you is online"
                )
            raise CommandError(
                f"none of the members' nodes named in the invite to {invite.community_name!r} "
                "answered. Your request to join is saved: try `kithnet join` again later"
            )
        await self._reach(community)
        with trio.move_on_after(REACH_TIMEOUT):
            while not self.node.community_peers(community):
                if not self.node.peer.connected_peers():
                    break
                await trio.sleep(0.05)
        synced = 0
        for peer_id in sorted(self.node.community_peers(community)):
            progress = await self.node.sync_logged(peer_id, community, COMMAND_SYNC_TIMEOUT)
            synced += not progress.error
        await self.node.send(record)
        if self.temporary:
            await self.node.flush()
        status, reason = self.store.status_of(record.id) or ("pending", "")
        member = any(c.id == community for c in self.store.communities())
        if status == "denied" and not member:
            raise CommandError(f"the community refused this invite: {reason}")
        if not synced and not member:
            if self.node.peer.connected_peers():
                raise CommandError(
                    f"the members' nodes reached do not carry {invite.community_name!r}. "
                    "Your request to join is saved and goes out when your node meets a "
                    "member (run `kithnet serve`, or try `kithnet join` again later)"
                )
            raise CommandError(
                f"none of the members' nodes named in the invite to {invite.community_name!r} "
                "answered. Your request to join is saved and goes out when your node next "
                "reaches one of them (run `kithnet serve`, or try `kithnet join` again later)"
            )
        return {
            "community": community.hex(),
            "name": invite.community_name,
            "status": "joined" if member else "waiting",
            "detail": "" if member else reason,
            "records": len(self.store.sync_items(community)),
            "members_online": len(self.node.community_peers(community)),
        }

    async def _try_connect(self, address: str) -> None:
        try:
            await self.node.connect(address, source="invite")
        except P2PError:
            return

    # Posts ----------------------------------------------------------------------------

    async def post(
        self,
        community: str,
        text: str,
        kind: str = "post",
        skills: list[str] | None = None,
        reply_to: str | None = None,
    ) -> dict[str, Any]:
        target = self.resolve(community)
        fields: dict[str, Any] = {
            "kind": "post",
            "community": target.id,
            "type": kind,
            "text": text,
        }
        if skills:
            fields["tags"] = skills
        if reply_to:
            try:
                parent = bytes.fromhex(reply_to)
            except ValueError:
                raise CommandError("--reply-to takes a post id (64 hex digits)") from None
            if self.store.status_of(parent) is None:
                raise CommandError(f"no post {reply_to[:12]}… is known here")
            fields["reply_to"] = parent
        record, reached = await self._publish(fields, target.id)
        return {
            "id": record.id.hex(),
            "community": target.id.hex(),
            "community_name": target.name,
            "type": kind,
            "members_online": reached,
        }

    async def feed(self, community: str, limit: int = 20) -> dict[str, Any]:
        target = self.resolve(community, member=False)
        if not 1 <= limit <= 1000:
            raise CommandError("--limit must be between 1 and 1000")
        page = self.store.feed(target.id, limit=limit)
        return {
            "community": target.id.hex(),
            "name": target.name,
            "posts": [_post_view(post) for post in page.posts],
        }

    async def profile_set(
        self,
        name: str | None = None,
        bio: str | None = None,
        skills: list[str] | None = None,
        services: list[str] | None = None,
    ) -> dict[str, Any]:
        """Change what others see of this member; what is not given stays as it was."""
        current = self.store.profile()
        fields: dict[str, Any] = {
            "kind": "profile",
            "name": current.name if name is None else name,
            "bio": current.bio if bio is None else bio,
            "skills": list(current.skills if skills is None else skills),
            "services": list(current.services if services is None else services),
        }
        fields = {k: v for k, v in fields.items() if v or k == "name"}
        reached = set()
        for community in sorted(self.node.following):
            reached |= self.node.community_peers(community)
        record = await self.node.post(fields)
        if self.temporary:
            await self.node.flush()
        return {
            "id": record.id.hex(),
            "name": fields["name"],
            "bio": fields.get("bio", ""),
            "skills": fields.get("skills", []),
            "services": fields.get("services", []),
            "members_online": len(reached),
        }

    # References and trust ---------------------------------------------------------------

    def _my_trust(
        self,
    ) -> tuple[list[trust_model.Vouch], list[bytes], dict[bytes, trust_model.Trusted]]:
        """The references in effect, this member's seeds (whom they vouched for) and the
        trust that flows from them."""
        me = self.store.identity.public_key
        vouches = [trust_model.Vouch(a, s, k) for a, s, k in self.store.vouches()]
        seeds = sorted({v.subject for v in vouches if v.author == me})
        return vouches, seeds, trust_model.propagate(seeds, vouches)

    def member(self, text: str) -> bytes:
        """A member named by their name, public key (hex) or peer id."""
        found = self.store.find_members(text)
        if len(found) == 1:
            return found[0]
        if not found:
            raise CommandError(f"no member called {text!r} is known here")
        raise CommandError(f"several members are called {text!r}: give the public key")

    async def vouch(
        self,
        member: str,
        skill: str,
        text: str,
        relationship: str = "worked_with",
        community: str | None = None,
    ) -> dict[str, Any]:
        subject = self.member(member)
        if subject == self.store.identity.public_key:
            raise CommandError("you cannot vouch for yourself")
        shared = [
            c
            for c in self.store.communities()
            if any(m.member == subject for m in self.store.members(c.id))
        ]
        target = self.resolve(community) if community else (shared[0] if shared else None)
        if target is None:
            raise CommandError(
                "you share no community with this member: give --community for where the "
                "reference should travel"
            )
        fields = {
            "kind": "reference",
            "community": target.id,
            "subject": subject,
            "skill": skill,
            "text": text,
            "relationship": relationship,
        }
        record, reached = await self._publish(fields, target.id)
        return {
            "id": record.id.hex(),
            "subject": subject.hex(),
            "skill": skill,
            "community_name": target.name,
            "members_online": reached,
        }

    async def references(self, member: str) -> dict[str, Any]:
        subject = self.member(member)
        profile = self.store.profile(subject)
        return {
            "member": subject.hex(),
            "name": profile.name,
            "skills": list(profile.skills),
            "services": list(profile.services),
            "references": [
                {
                    "id": r.id.hex(),
                    "author": r.author.hex(),
                    "author_name": r.author_name,
                    "skill": r.skill,
                    "text": r.text,
                    "relationship": r.relationship,
                    "community_name": r.community_name,
                    "verified": r.verified,
                    "revoked": r.revoked,
                    "hidden": r.hidden,
                }
                for r in profile.references
            ],
        }

    async def trust(self, member: str, skill: str | None = None) -> dict[str, Any]:
        """How much this member trusts `member`, from their own references outward, and
        (with a skill) how `member` ranks for it and why."""
        subject = self.member(member)
        me = self.store.identity.public_key
        vouches, seeds, trust = self._my_trust()
        names = self.store.names()
        entry = trust.get(subject)
        result: dict[str, Any] = {
            "member": subject.hex(),
            "name": names.get(subject, ""),
            "trust": round(entry.trust, 4) if entry else 0.0,
            "path": [names.get(m, m.hex()[:12]) for m in trust_model.chain(subject, trust)],
        }
        if skill:
            ranked = trust_model.rank_providers(skill, vouches, trust, asker=me)
            place = next((i for i, p in enumerate(ranked) if p.member == subject), None)
            if place is None:
                result.update(skill=skill, rank=None, explanation="no references for it")
            else:
                provider = ranked[place]
                result.update(
                    skill=skill,
                    rank=place + 1,
                    of=len(ranked),
                    score=round(provider.score, 4),
                    explanation=trust_model.explain(provider, trust, names, vouched=seeds),
                )
        return result

    async def ask(
        self, text: str, skills: list[str], community: str | None = None
    ) -> dict[str, Any]:
        """Post a question and answer it at once from what this node knows: providers of
        the skills (ranked by the trust of those who vouched for them, then by number of
        references) and communities whose tags match, each with its reason."""
        if not skills:
            raise CommandError("name at least one skill with --skill")
        joined = self.store.communities()
        wanted = set(skills)

        def matching(tags: Iterable[str]) -> list[str]:
            return sorted(wanted & set(tags))

        target = (
            self.resolve(community)
            if community
            else max(joined, key=lambda c: len(matching(c.tags)), default=None)
        )
        if target is None:
            raise CommandError("you are in no community to ask in: join one first")
        fields = {
            "kind": "post",
            "community": target.id,
            "type": "question",
            "text": text,
            "tags": skills,
        }
        record, reached = await self._publish(fields, target.id)

        me = self.store.identity.public_key
        vouches, seeds, trust = self._my_trust()
        names = self.store.names()
        totals: dict[bytes, dict[str, Any]] = {}
        for skill in skills:
            ranked = trust_model.rank_providers(
                skill, vouches, trust, offering=self.store.offering(skill), asker=me
            )
            for provider in ranked:
                entry = totals.setdefault(
                    provider.member,
                    {
                        "member": provider.member.hex(),
                        "name": names.get(provider.member, ""),
                        "score": 0.0,
                        "references": 0,
                        "reasons": [],
                    },
                )
                entry["score"] += provider.score
                entry["references"] += provider.references
                why = trust_model.explain(provider, trust, names, vouched=seeds)
                entry["reasons"].append(f"{skill}: {why}")
        providers = sorted(
            totals.values(), key=lambda e: (-e["score"], -e["references"], e["member"])
        )
        for entry in providers:
            entry["score"] = round(entry["score"], 4)
        communities: list[dict[str, Any]] = []
        for c in joined:
            tags = matching(c.tags)
            if tags:
                communities.append(
                    {
                        "id": c.id.hex(),
                        "name": c.name,
                        "matches": len(tags),
                        "joined": True,
                        "reason": f"you are in it; its tags: {', '.join(tags)}",
                    }
                )
        joined_ids = {c.id for c in joined}
        for cid, name, _description, tags_all, invite in self.store.directory_entries():
            tags = matching(tags_all)
            if tags and cid not in joined_ids:
                communities.append(
                    {
                        "id": cid.hex(),
                        "name": name,
                        "matches": len(tags),
                        "joined": False,
                        "invite": invite,
                        "reason": f"in the directory; its tags: {', '.join(tags)}",
                    }
                )
        communities.sort(key=lambda c: (-int(c["matches"]), not c["joined"], str(c["name"])))
        return {
            "question": record.id.hex(),
            "community_name": target.name,
            "members_online": reached,
            "providers": providers[:20],
            "communities": communities[:20],
        }

    def _question(self, question: str) -> tuple[bytes, bytes]:
        """A question post's id and community, from its id (64 hex digits)."""
        try:
            qid = bytes.fromhex(question)
        except ValueError:
            qid = b""
        row = self.store.post_type(qid) if len(qid) == 32 else None
        if row is None:
            raise CommandError(f"no question {question[:12]}… is known here")
        if row[1] != "question":
            raise CommandError("that post is not a question")
        return qid, row[0]

    async def refer(
        self,
        question: str,
        community: str | None = None,
        member: str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Answer a question by pointing it to a community (with an invite to it) or to
        a member."""
        if (community is None) == (member is None):
            raise CommandError("refer to a community or to a member, one of the two")
        qid, where = self._question(question)
        fields: dict[str, Any] = {"kind": "referral", "community": where, "question": qid}
        if note:
            fields["note"] = note
        if community is not None:
            target = self.resolve(community)
            if target.visibility == "private":
                raise CommandError("a private community cannot be referred to publicly")
            invite = await self.invite_create(target.id.hex(), expires="30d")
            fields.update(to_community=target.id, invite=invite["code"])
            to = target.name
        else:
            person = self.member(str(member))
            fields["to_member"] = person
            to = self.store.names().get(person, person.hex()[:12])
        record, reached = await self._publish(fields, where)
        return {"id": record.id.hex(), "to": to, "members_online": reached}

    async def referrals(self, question: str) -> dict[str, Any]:
        """The referrals a question received, ranked by how much the asker trusts
        whoever made them."""
        qid, _ = self._question(question)
        _, _, trust = self._my_trust()
        names = self.store.names()
        out = []
        for referral in self.store.referrals(qid):
            author = referral["author"]
            entry = trust.get(author)
            path = [names.get(m, m.hex()[:12]) for m in trust_model.chain(author, trust)]
            target = referral["to_member"]
            if referral["invite"] and not referral["community_name"]:
                try:  # a community we do not know yet: its invite names it
                    referral["community_name"] = decode_invite(referral["invite"]).community_name
                except InviteCodeError:
                    referral["invite"] = ""  # a broken code is no use to the asker
            out.append(
                {
                    "id": referral["id"].hex(),
                    "by": names.get(author, author.hex()[:12]),
                    "trust": round(entry.trust, 4) if entry else 0.0,
                    "through": path,
                    "to_community": (referral["to_community"] or b"").hex(),
                    "community_name": referral["community_name"],
                    "invite": referral["invite"],
                    "to_member": target.hex() if target else "",
                    "member_name": names.get(target, "") if target else "",
                    "note": referral["note"],
                }
            )
        out.sort(key=lambda r: (-float(r["trust"]), str(r["id"])))
        return {"question": qid.hex(), "referrals": out}

    # Direct messages ------------------------------------------------------------------

    async def dm(self, member: str, text: str) -> dict[str, Any]:
        """Send a member an end-to-end encrypted message: directly if their node can be
        reached, else through members who share a community with them."""
        recipient = self.member(member)
        if recipient == self.store.identity.public_key:
            raise CommandError("you cannot send a message to yourself")
        try:
            sent = await self.node.direct.send(recipient, text)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return {
            "id": sent.record.id.hex(),
            "member": recipient.hex(),
            "name": self.store.names().get(recipient, ""),
            "status": sent.status,
            "forwarders": sent.forwarders,
        }

    async def inbox(self, member: str | None = None, limit: int = 50) -> dict[str, Any]:
        """Conversations, newest first; with a member, that conversation (which is then
        marked read)."""
        if not 1 <= limit <= 1000:
            raise CommandError("--limit must be between 1 and 1000")
        messages = self.store.messages
        if member is None:
            return {
                "unread": messages.unread(),
                "conversations": [
                    {
                        "member": c.peer.hex(),
                        "name": c.name,
                        "unread": c.unread,
                        "messages": c.count,
                        "last": _message_view(c.last),
                    }
                    for c in messages.conversations()[:limit]
                ],
            }
        other = self.member(member)
        shown = messages.conversation(other, limit=limit)
        return {
            "member": other.hex(),
            "name": self.store.names().get(other, ""),
            "unread": messages.mark_read(other),
            "messages": [_message_view(m) for m in shown],
        }

    # Network --------------------------------------------------------------------------

    def _names(self) -> dict[str, tuple[str, str]]:
        """peer id → (member key hex, name) for members of our communities."""
        found: dict[str, tuple[str, str]] = {}
        for community in self.store.communities():
            for member in self.store.members(community.id):
                found[peer_id_of(member.member)] = (member.member.hex(), member.name)
        return found

    async def peers(self) -> dict[str, Any]:
        names = self._names()
        topics = {c.id: (c.name, self.node.community_peers(c.id)) for c in self.store.communities()}
        known = dict(self.store.known_peers(limit=1000))
        connected = []
        for peer_id in sorted(self.node.peer.connected_peers()):
            member, name = names.get(peer_id, ("", ""))
            connected.append(
                {
                    "peer_id": peer_id,
                    "member": member,
                    "name": name,
                    "addresses": known.get(peer_id, []),
                    "communities": sorted(n for n, peers in topics.values() if peer_id in peers),
                }
            )
        return {"running": not self.temporary, "connected": connected, "known": len(known)}

    async def status(self) -> dict[str, Any]:
        communities = []
        for c in self.store.communities():
            syncs = [p for (_, cid), p in self.node.syncs.items() if cid == c.id]
            communities.append(
                {
                    "id": c.id.hex(),
                    "name": c.name,
                    "peers": len(self.node.community_peers(c.id)),
                    "records": len(self.store.sync_items(c.id)),
                    "syncing": sum(1 for p in syncs if p.finished is None),
                    "last_sync": max((p.finished or 0 for p in syncs), default=0) or None,
                    "received_by_sync": self.node.received_by_sync[c.id],
                    "sent_by_sync": self.node.sent_by_sync[c.id],
                }
            )
        dropped = dict(self.node.dropped + self.node.peer.dropped)
        return {
            "running": not self.temporary,
            "peer_id": self.node.peer.peer_id,
            "listen": self.node.peer.addresses(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "peers": len(self.node.peer.connected_peers()),
            "banned": self.node.peer.scores.banned(trio.current_time()),
            "records": self.store.record_count(),
            "communities": communities,
            "dropped": dropped,
        }
