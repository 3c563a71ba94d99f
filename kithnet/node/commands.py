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
from kithnet.core.fields import normalise_tag
from kithnet.crypto import secretbox
from kithnet.crypto.community import key_id
from kithnet.crypto.identity import fingerprint
from kithnet.crypto.identity import peer_id as peer_id_of
from kithnet.crypto.invite import MAX_ADDRESSES, InviteCode, InviteCodeError
from kithnet.crypto.invite import decode as decode_invite
from kithnet.crypto.sealed import seal
from kithnet.localstore import views
from kithnet.localstore.messages import Message
from kithnet.localstore.store import now_ms
from kithnet.node.answers import my_trust, rank_answers
from kithnet.node.blob_commands import BlobCommands, attachment_view
from kithnet.node.directory import entry_view
from kithnet.node.node import Node
from kithnet.node.notice_commands import NoticeCommands
from kithnet.node.settings_commands import SettingsCommands
from kithnet.node.sync import SyncError
from kithnet.p2p.host import P2PError
from kithnet.p2p.relay import connection_kinds

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
        "terms": post.terms,
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


class Commands(BlobCommands, NoticeCommands, SettingsCommands):
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
            "passwd": self.passwd,
            "backup": self.backup,
            "settings": self.settings,
            "vouch": self.vouch,
            "references": self.references,
            "trust": self.trust,
            "ask": self.ask,
            "refer": self.refer,
            "referrals": self.referrals,
            "profile.set": self.profile_set,
            "profile": self.profile,
            "community.roles": self.community_roles,
            "community.ban": self.community_ban,
            "community.leave": self.community_leave,
            "community.invites": self.community_invites,
            "community.invites.withdraw": self.community_invites,
            "community.log": self.community_log,
            "community.remove": self.community_remove,
            "react": self.react,
            "thread": self.thread,
            "feed.page": self.feed_page,
            "edit": self.edit,
            "delete": self.delete,
            "revoke": self.revoke,
            "hide": self.hide,
            "mute": self.mute,
            "community.announce": self.community_announce,
            "directory": self.directory,
            "directory.refresh": self.directory,
            "blobs": self.blobs,
            "attachment.save": self.attachment_save,
            "attachment.data": self.attachment_data,
            "community.read": self.community_read,
            "dm": self.dm,
            "inbox": self.inbox,
            "search": self.search,
            "notifications": self.notifications,
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

    def record(self, text: str, *, kinds: Iterable[str] = ()) -> Record:
        """A stored record named by its id or a unique prefix of 8+ hex digits."""
        wanted = text.strip().lower()
        try:
            prefix = bytes.fromhex(wanted[: len(wanted) // 2 * 2])
        except ValueError:
            prefix = b""
        if len(prefix) < 4:
            raise CommandError(f"{text!r} is not a record id (64 hex digits, or the first 8+)")
        found = [i for i in self.store.find_records(prefix, limit=50) if i.hex().startswith(wanted)]
        if not found:
            raise CommandError(f"no record {text!r} is known here")
        if len(found) > 1:
            raise CommandError(f"{text!r} could be several records: give more of the id")
        record = self.store.record(found[0])
        assert record is not None
        kinds = tuple(kinds)
        if kinds and record.kind not in kinds:
            raise CommandError(f"{text!r} is a {record.kind}, not a {' or '.join(kinds)}")
        return record

    async def _publish_about(self, fields: dict[str, Any], target: Record) -> dict[str, Any]:
        """Publish a record about `target` where `target` travels: its community, or
        with a community-less reference, every community this member follows."""
        if target.community is not None:
            fields["community"] = target.community
            record, reached = await self._publish(fields, target.community)
        else:
            record = await self.node.post(fields)
            if self.temporary:
                await self.node.flush()
            reached = len(set().union(*map(self.node.community_peers, self.node.following)))
        return {"id": record.id.hex(), "target": target.id.hex(), "members_online": reached}

    def _own(self, record: Record, what: str) -> None:
        if record.author != self.store.identity.public_key:
            raise CommandError(f"only the author of a {record.kind} can {what} it")

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
                    "key_id": key_id(key),
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
        key_epoch = None
        notes: list[str] = []
        if not unban and target.visibility == "private":
            if await self.node.follow(target.id):
                # The remaining members move to a new key the banned member cannot open.
                # A node started for this command catches members up under the old
                # key first: they need the new key before they can follow it.
                updates = await self.node.rekey(target.id, switch=not self.temporary)
                key_epoch = updates[0].fields["epoch"]
                if self.temporary:
                    await self.node.flush()
                    for peer_id in sorted(self.node.community_peers(target.id)):
                        await self.node.sync_logged(peer_id, target.id, COMMAND_SYNC_TIMEOUT)
                    await self.node.check_key(target.id)
            else:
                notes.append("this node does not hold the community's key, so it could not rekey")
            notes += await self._close_invites_of(target.id, subject)
        elif unban and target.visibility == "private" and await self.node.follow(target.id):
            await self.node.reseal(target.id, now=True)  # the key in force, to the member
        return {
            "id": record.id.hex(),
            "key_epoch": key_epoch,
            "notes": notes,
            "action": fields["action"],
            "member": subject.hex(),
            "community_name": target.name,
            "members_online": reached,
        }

    async def _close_invites_of(self, community: bytes, member: bytes) -> list[str]:
        """After a ban in a private community: withdraw the invite the banned member
        joined with if this member issued it and it is still open (else say so), so
        the code cannot let them in again under a new identity."""
        notes = []
        now = now_ms()
        used = self.store.invite_keys_used_by(community, member)
        for invite in self.store.invites(community):
            if invite.invite_key not in used or invite.withdrawn or now >= invite.expires_at:
                continue
            if invite.max_uses is not None and invite.uses >= invite.max_uses:
                continue
            if invite.issuer == self.store.identity.public_key:
                await self._publish(
                    {"kind": "delete", "community": community, "target": invite.id}, community
                )
                notes.append(f"withdrew invite {invite.id.hex()[:12]}, which they joined with")
            else:
                notes.append(
                    f"invite {invite.id.hex()[:12]}, which they joined with, is still open: "
                    f"{invite.issuer_name or 'its issuer'} can withdraw it"
                )
        return notes

    async def community_leave(self, community: str) -> dict[str, Any]:
        target = self.resolve(community)
        record, reached = await self._publish({"kind": "leave", "community": target.id}, target.id)
        return {"id": record.id.hex(), "community_name": target.name, "members_online": reached}

    async def community_invites(
        self, community: str, withdraw: str | None = None
    ) -> dict[str, Any]:
        """A community's invites with their uses; the issuer of one can withdraw it, and
        members' nodes then refuse joins with its code."""
        target = self.resolve(community)
        if withdraw:
            invite = self.record(withdraw, kinds=("invite",))
            self._own(invite, "withdraw")
            if invite.community != target.id:
                raise CommandError("that invite is for another community")
            await self._publish(
                {"kind": "delete", "community": target.id, "target": invite.id}, target.id
            )
        now = now_ms()
        return {
            "community": target.id.hex(),
            "name": target.name,
            "invites": [
                {
                    "id": i.id.hex(),
                    "issuer": i.issuer.hex(),
                    "issuer_name": i.issuer_name,
                    "created_at": i.created_at,
                    "expires_at": i.expires_at,
                    "uses": i.uses,
                    "max_uses": i.max_uses,
                    "mine": i.issuer == self.store.identity.public_key,
                    "state": "withdrawn"
                    if i.withdrawn
                    else "expired"
                    if now >= i.expires_at
                    else "used up"
                    if i.max_uses is not None and i.uses >= i.max_uses
                    else "open",
                }
                for i in self.store.invites(target.id)
            ],
        }

    async def community_log(self, community: str) -> dict[str, Any]:
        """The moderation log: every removal, ban and unban in effect, newest first."""
        target = self.resolve(community)
        names = self.store.names()
        return {
            "community": target.id.hex(),
            "name": target.name,
            "entries": [
                {
                    "id": e.id.hex(),
                    "moderator": e.moderator.hex(),
                    "moderator_name": e.moderator_name,
                    "action": e.action,
                    "target": e.target.hex(),
                    "target_name": names.get(e.target, ""),
                    "reason": e.reason,
                    "created_at": e.created_at,
                }
                for e in self.store.moderation_log(target.id)
            ],
        }

    async def community_remove(self, record: str, reason: str = "") -> dict[str, Any]:
        """A moderator removes a record (a post, a reaction, a referral...) from a
        community; every member's node hides it."""
        target = self.record(record)
        if target.community is None:
            raise CommandError("only records in a community can be removed by a moderator")
        community = self.store.community(target.community)
        roles = community.roles if community else ()
        if not roles:
            raise CommandError("only owners and moderators of the community can remove records")
        fields: dict[str, Any] = {"kind": "moderation", "action": "remove", "target": target.id}
        if reason:
            fields["reason"] = reason
        result = await self._publish_about(fields, target)
        result["community_name"] = community.name if community else ""
        return result

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

    async def community_read(self, community: str) -> dict[str, Any]:
        """Mark everything in a community as read (the member opened it)."""
        target = self.resolve(community, member=False)
        self.store.mark_read(target.id)
        return {"community": target.id.hex(), "unread": 0}

    async def community_announce(
        self, community: str, uses: int | None = None, expires: str = "30d"
    ) -> dict[str, Any]:
        """List a public community this member owns in the directory (kithnet/node/directory.py)."""
        return await self.node.directory.announce(self, community, uses, expires)

    async def directory(
        self, text: str = "", tag: str = "", refresh: bool = False, limit: int = 50
    ) -> dict[str, Any]:
        """Search the directory of public communities (after asking other nodes for
        theirs, with `refresh`)."""
        if not 1 <= limit <= 500:
            raise CommandError("--limit must be between 1 and 500")
        wanted = normalise_tag(tag) if tag else ""
        if tag and not wanted:
            raise CommandError(f"{tag!r} is not a tag: use letters and digits")
        refreshed = await self.node.directory.refresh() if refresh else None
        now = now_ms()
        entries = self.store.directory(text, wanted, limit=limit)
        return {
            "refreshed": refreshed,
            "total": self.store.directory_count(),
            "entries": [entry_view(entry, now) for entry in entries],
        }

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
                "answered: they may be offline, or out of reach from this network. Your "
                "request to join is saved: try joining with the same code again later"
                + (f" ({refusal})" if refusal else "")
            )
        if not await self.node.follow(community):
            if info.visibility == "private":
                raise CommandError(
                    f"{invite.community_name!r} is private and no owner or moderator let you "
                    f"in yet ({refusal or 'none of them answered'}). Your request is saved: "
                    "join with the same code again when the person who invited you is online"
                )
            raise CommandError(
                f"none of the members' nodes named in the invite to {invite.community_name!r} "
                "answered: they may be offline, or out of reach from this network. Your "
                "request to join is saved: try joining with the same code again later"
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
            raise CommandError(
                f"the community refused this invite: {reason}. Ask the person who invited "
                "you for a new code"
            )
        # A node started for this command alone stops with it; a running one keeps trying.
        later = (
            "run `kithnet serve`, or join with the same code again later"
            if self.temporary
            else "or join with the same code again later"
        )
        if not synced and not member:
            if self.node.peer.connected_peers():
                raise CommandError(
                    f"the members' nodes reached do not carry {invite.community_name!r}. "
                    f"Your request to join is saved and goes out when your node meets a "
                    f"member ({later})"
                )
            raise CommandError(
                f"none of the members' nodes named in the invite to {invite.community_name!r} "
                "answered. Your request to join is saved and goes out when your node next "
                f"reaches one of them ({later})"
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
        text: str = "",
        kind: str = "post",
        skills: list[str] | None = None,
        reply_to: str | None = None,
        attachments: list[str] | None = None,
        area: str = "",
        terms: str = "",
    ) -> dict[str, Any]:
        target = self.resolve(community)
        if (area or terms) and kind != "offer":
            raise CommandError("--area and --terms go with --kind offer")
        if not text and not attachments:
            raise CommandError("a post needs text or an attached file (--attach FILE)")
        fields: dict[str, Any] = {"kind": "post", "community": target.id, "type": kind}
        if text:
            fields["text"] = text
        if skills:
            fields["tags"] = skills
        fields.update({k: v for k, v in (("area", area), ("terms", terms)) if v})
        if reply_to:
            try:
                parent = bytes.fromhex(reply_to)
            except ValueError:
                raise CommandError("--reply-to takes a post id (64 hex digits)") from None
            if self.store.status_of(parent) is None:
                raise CommandError(f"no post {reply_to[:12]}… is known here")
            fields["reply_to"] = parent
        added: list[bytes] = []  # blobs stored for this post alone
        if attachments:
            fields["attachments"] = self.store_attachments(attachments, added)
        # Until the post is stored, nothing names its files: keep them from being freed.
        named = [a["hash"] for a in fields.get("attachments", [])]
        self.store.pin_blobs(named)
        with self.forgetting_unposted(added):
            try:
                record, reached = await self._publish(fields, target.id)
            finally:
                self.store.unpin_blobs(named)
        await self.wait_for_fetches(fields.get("attachments", []), reached)
        return {
            "id": record.id.hex(),
            "community": target.id.hex(),
            "community_name": target.name,
            "type": kind,
            "members_online": reached,
            "attachments": [
                attachment_view(a) for a in self.store.attachments([record.id])[record.id]
            ],
        }

    async def feed_page(
        self, community: str, before: list[Any] | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """A page of a community's feed, newest first, before the cursor `before`
        ([created_at, id hex] of the last post of the page before); `next` is the cursor
        of the page after, or None at the end (the app's feed pages through it)."""
        target = self.resolve(community, member=False)
        if not 1 <= limit <= 500:
            raise CommandError("a page holds 1 to 500 posts")
        cursor = None
        if before is not None:
            try:
                cursor = views.Cursor(int(before[0]), bytes.fromhex(before[1]))
            except (TypeError, ValueError, IndexError):
                raise CommandError("a feed cursor is [created_at, id]") from None
        page = self.store.feed(target.id, before=cursor, limit=limit)
        attachments = self.store.attachments([p.id for p in page.posts])
        me = self.store.identity.public_key
        return {
            "community": target.id.hex(),
            "posts": [
                {
                    **_post_view(p),
                    "mine": p.author == me,
                    "attachments": [attachment_view(a) for a in attachments.get(p.id, [])],
                }
                for p in page.posts
            ],
            "next": [page.next.created_at, page.next.id.hex()] if page.next else None,
        }

    async def thread(self, post: str) -> dict[str, Any]:
        """A post and its visible replies, depth first, oldest first at each level."""
        root = self.record(post, kinds=("post",))
        shown = self.store.thread(root.id)
        if not shown:
            raise CommandError("that post was deleted or removed")
        attachments = self.store.attachments([p.id for p in shown])
        me = self.store.identity.public_key
        return {
            "posts": [
                {
                    **_post_view(p),
                    "depth": p.depth,
                    "mine": p.author == me,
                    # The reactions this member gave (the app offers to take them back).
                    "my_reactions": [e for e in p.reactions if self.store.my_reaction(p.id, e)],
                    "attachments": [attachment_view(a) for a in attachments.get(p.id, [])],
                }
                for p in shown
            ]
        }

    async def react(self, post: str, emoji: str, undo: bool = False) -> dict[str, Any]:
        """React to a post with an emoji, or withdraw this member's reaction."""
        target = self.record(post, kinds=("post",))
        mine = self.store.my_reaction(target.id, emoji)
        if undo:
            if mine is None:
                raise CommandError(f"you have not reacted {emoji} to that post")
            return await self._publish_about({"kind": "delete", "target": mine}, target)
        if mine is not None:
            raise CommandError(f"you have already reacted {emoji} to that post")
        return await self._publish_about(
            {"kind": "reaction", "target": target.id, "emoji": emoji}, target
        )

    async def edit(self, post: str, text: str, skills: list[str] | None = None) -> dict[str, Any]:
        """Replace the text (and tags) of this member's own post."""
        target = self.record(post, kinds=("post",))
        self._own(target, "edit")
        fields: dict[str, Any] = {"kind": "edit", "target": target.id, "text": text}
        tags = skills if skills is not None else self.store.post_tags(target.id)
        if tags:
            fields["tags"] = list(tags)
        return await self._publish_about(fields, target)

    async def delete(self, record: str) -> dict[str, Any]:
        """Retract this member's own post, reaction, invite or referral."""
        target = self.record(record, kinds=("post", "reaction", "invite", "referral"))
        self._own(target, "delete")
        return await self._publish_about({"kind": "delete", "target": target.id}, target)

    async def feed(self, community: str, limit: int = 20) -> dict[str, Any]:
        target = self.resolve(community, member=False)
        if not 1 <= limit <= 1000:
            raise CommandError("--limit must be between 1 and 1000")
        page = self.store.feed(target.id, limit=limit)
        attached = self.store.attachments([post.id for post in page.posts])
        return {
            "community": target.id.hex(),
            "name": target.name,
            "posts": [
                {**_post_view(post), "attachments": [attachment_view(a) for a in attached[post.id]]}
                for post in page.posts
            ],
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

    async def profile(self, member: str | None = None, offers: int = 10) -> dict[str, Any]:
        """What a member (this member, if none is named) shows others: name, bio, skills,
        services and fingerprint, the communities this member shares with them, and
        their newest offers there."""
        if not 0 <= offers <= 100:
            raise CommandError("--offers must be between 0 and 100")
        me = self.store.identity.public_key
        subject = me if member is None else self.member(member)
        found = self.store.profile(subject)
        shared = [c for c in self.store.communities() if self.store.is_member(c.id, subject)]
        names = {c.id: c.name for c in shared}
        return {
            "member": subject.hex(),
            "me": subject == me,
            "you": me.hex(),  # the viewer: their references on this profile can be revoked
            "known": found.known,
            "name": found.name,
            "bio": found.bio,
            "skills": list(found.skills),
            "services": list(found.services),
            "fingerprint": fingerprint(subject),
            "mark": self.store.marks().get(subject, ""),
            "communities": [c.name for c in shared],
            "offers": [
                {**_post_view(p), "community_name": names.get(p.community, "")}
                for p in self.store.offers_by(subject, [c.id for c in shared], limit=offers)
            ],
        }

    # References and trust ---------------------------------------------------------------

    def _my_trust(
        self,
    ) -> tuple[trust_model.Graph, list[bytes], dict[bytes, trust_model.Trusted]]:
        return my_trust(self.store)

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

    async def revoke(self, reference: str) -> dict[str, Any]:
        """Withdraw a reference this member wrote: it stops counting for trust and shows
        as revoked wherever it is seen."""
        target = self.record(reference, kinds=("reference",))
        self._own(target, "revoke")
        return await self._publish_about({"kind": "reference_revoke", "target": target.id}, target)

    async def hide(self, reference: str) -> dict[str, Any]:
        """The subject of a reference hides it from their profile (it stays signed and
        verifiable, and its author can still revoke it)."""
        target = self.record(reference, kinds=("reference",))
        if target.fields["subject"] != self.store.identity.public_key:
            raise CommandError("only the member a reference is about can hide it")
        return await self._publish_about({"kind": "reference_hide", "target": target.id}, target)

    async def mute(
        self, member: str | None = None, block: bool = False, undo: bool = False
    ) -> dict[str, Any]:
        """Mute (hide their posts from your feeds) or block (also ignore their references
        and messages) a member, for yourself alone; with no member, list them."""
        if member is not None:
            subject = self._someone_else(member, "mute or block")
            marks = self.store.marks()
            if marks.get(subject) == "trust" and not undo:
                raise CommandError(
                    f"you trust {member} yourself: `kithnet trust {member} --remove` first"
                )
            if undo:
                if marks.get(subject) in ("mute", "block"):
                    self.store.mark(subject, None)
            else:
                self.store.mark(subject, "block" if block else "mute")
        names = self.store.names()
        return {
            "silenced": [
                {"member": m.hex(), "name": names.get(m, ""), "level": mark}
                for m, mark in sorted(self.store.marks().items())
                if mark != "trust"
            ]
        }

    def _someone_else(self, member: str, what: str) -> bytes:
        subject = self.member(member)
        if subject == self.store.identity.public_key:
            raise CommandError(f"you cannot {what} yourself")
        return subject

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

    async def trust(
        self, member: str, skill: str | None = None, add: bool = False, remove: bool = False
    ) -> dict[str, Any]:
        """How much this member trusts `member`, from their own references outward, and
        (with a skill) how `member` ranks for it and why; `add` makes `member` one of the
        seeds of their trust without a reference, `remove` undoes that."""
        if add or remove:
            subject = self._someone_else(member, "mark as trusted")
            current = self.store.marks().get(subject)
            if add and current in ("mute", "block"):
                raise CommandError(f"you {current}d {member}: `kithnet mute {member} --undo` first")
            if add:
                self.store.mark(subject, "trust")
            elif current == "trust":
                self.store.mark(subject, None)
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

        providers, communities = rank_answers(self.store, skills)
        return {
            "question": record.id.hex(),
            "community_name": target.name,
            "members_online": reached,
            "providers": providers,
            "communities": communities,
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
        blocked = sorted(m for m, mark in self.store.marks().items() if mark == "block")
        if member is None:
            return {
                "unread": messages.unread_count(hidden=blocked),
                "conversations": [
                    {
                        "member": c.peer.hex(),
                        "name": c.name,
                        "unread": c.unread,
                        "messages": c.count,
                        "last": _message_view(c.last),
                    }
                    for c in messages.conversations(limit=limit, hidden=blocked)
                ],
            }
        other = self.member(member)
        if other in blocked:
            raise CommandError(
                f"you blocked {member}: `kithnet mute {member} --undo` to see their messages"
            )
        shown = messages.conversation(other, limit=limit)
        return {
            "member": other.hex(),
            "name": self.store.names().get(other, ""),
            "unread": messages.mark_read(other, [m.id for m in shown]),
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
                    "relayed": connection_kinds(self.node.peer, peer_id) == {"relayed"},
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
                    "catching_up": self.catch_up_view(c.id),
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
            "relay": self.relay_view(),
            "catching_up": _catching_up(communities),
        }


def _catching_up(communities: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The catch-up in progress over all communities, for a progress bar: the names of
    the communities still syncing, records received and wanted; None when none is."""
    syncing = [c for c in communities if c["syncing"]]
    if not syncing:
        return None
    running = [c["catching_up"] for c in syncing if c["catching_up"] is not None]
    return {
        "communities": [c["name"] for c in syncing],
        "received": sum(r["received"] for r in running),
        "wanted": sum(r["wanted"] for r in running),
        "reconciling": not running or any(r["reconciling"] for r in running),
    }
