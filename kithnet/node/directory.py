"""The public directory (docs/protocol.md, "The directory"): owners announce their public
communities, every node carries the listings on one GossipSub topic and hands its whole
directory to whoever asks over `/kithnet/directory/1`, and a member searches it locally.

A listing (kithnet.core.directory) carries the announcement with the genesis and owner
grants a stranger needs to judge it; a node checks it on those records alone before it
stores anything, so a forged, non-owner or private announcement costs its forwarder and
leaves nothing behind. Storing a listing's genesis does not make the node follow the
community: only the member's own membership and records do.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import trio

from kithnet.core.directory import (
    ListingError,
    check_listing,
    check_shape,
    pack_listing,
    unpack_listing,
)
from kithnet.crypto.invite import InviteCodeError
from kithnet.crypto.invite import decode as decode_invite
from kithnet.localstore.directory import MAX_DIRECTORY, DirectoryEntry
from kithnet.localstore.errors import StoreError
from kithnet.localstore.store import now_ms
from kithnet.node.sync import FrameReader, SyncError, encode_frame, read_one
from kithnet.p2p.dht import DIRECTORY_PROVIDER_ID, CommunityDht
from kithnet.p2p.host import DIRECTORY_TOPIC, INVALID_PENALTY, P2PError, RateLimiter, Verdict

if TYPE_CHECKING:
    from kithnet.node.commands import Commands
    from kithnet.node.node import Node

DIRECTORY_PROTOCOL = "/kithnet/directory/1"
DIRECTORY_VERSION = 1
MAX_FETCHED = 500  # listings one answer may carry
MAX_FETCH_BYTES = 8 * 1024 * 1024  # one whole answer
ENTRIES_FRAME_BYTES = 512 * 1024  # listings per `entries` frame, by size
FETCH_TIMEOUT = 30.0
FETCHES_PER_SECOND = 0.1  # directory requests one peer may make (bursts of FETCH_BURST)
FETCH_BURST = 3
MAX_REFRESH_PEERS = 16
MAX_CONNECT_FETCHES = 16  # nodes an empty directory asks as they connect
TOPIC_WAIT = 5.0  # how long an announcement waits for a neighbour on the directory topic
ANNOUNCE_EVERY_MS = 24 * 3600 * 1000
REANNOUNCE_GAP_MS = 10 * 60 * 1000  # a listing newer by less than this is not taken
REANNOUNCE_INVITE_GAP_MS = 60 * 1000  # ... unless it brings a new invite
DEFAULT_ANNOUNCE_LIFETIME = "30d"
READ_SIZE = 64 * 1024

log = logging.getLogger(__name__)


def _setting(community: bytes) -> str:
    """The setting that remembers how a member announced a community (re-announced by
    `kithnet serve`)."""
    return f"directory.announce.{community.hex()}"


class Directory:
    """A node's part in the directory: the topic, the stream protocol, announcing."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = node.store
        self.peer = node.peer
        self.dht: CommunityDht | None = None  # set by `kithnet serve`
        self.received = 0  # listings taken in (gossip and fetches)
        self._serving: Counter[str] = Counter()
        self._limiter = RateLimiter(FETCHES_PER_SECOND, FETCH_BURST)
        self._fetched: set[str] = set()  # peers asked on connecting
        self._fetching = trio.Lock()
        self.peer.set_stream_handler(DIRECTORY_PROTOCOL, self._serve)

    async def run(self) -> None:
        """Take part in the directory topic (every node does)."""
        await self.peer.subscribe(DIRECTORY_TOPIC, self.validate, _delivered)

    # Taking listings in ---------------------------------------------------------------

    def validate(self, data: bytes) -> Verdict:
        """The directory topic's validator: a listing that is malformed, forged, or whose
        announcement its own records do not allow is rejected (its forwarder loses
        score); one that brings nothing new, or that this node's fuller knowledge of the
        community refuses, is ignored."""
        try:
            envelopes = unpack_listing(data)
        except ListingError as exc:
            self.node.dropped[exc.reason] += 1
            return "reject"
        return self.take(envelopes)

    def take(self, envelopes: list[bytes]) -> Verdict:
        """Check a listing and store it (see `validate`)."""
        dropped = self.node.dropped
        batch = self.store.check_batch(envelopes)
        if batch.refused:
            dropped.update(batch.refused)
            return "ignore" if set(batch.refused) == {"clock_skew"} else "reject"
        try:
            announcement = check_listing([record for _, record in batch.records])
        except ListingError as exc:
            dropped[exc.reason] += 1
            return "reject"
        community = announcement.community
        assert community is not None  # an announcement names its community
        held = self.store.directory_entry(community)
        if held is not None:
            # Older than the one held, or too soon after it, is nothing new to pass on;
            # but a new invite (the old one used up or withdrawn) may follow within
            # REANNOUNCE_INVITE_GAP_MS.
            gap = (
                REANNOUNCE_INVITE_GAP_MS
                if announcement.fields.get("invite", "") != held.invite
                else REANNOUNCE_GAP_MS
            )
            if announcement.created_at < held.created_at + gap:
                dropped["directory_stale"] += 1
                return "ignore"
        make_room = None
        if held is None and self.store.directory_count() >= MAX_DIRECTORY:
            make_room = self.store.stalest_listing(announcement.created_at)
            if make_room is None:
                dropped["directory_full"] += 1
                return "ignore"
        try:
            outcomes = self.store.ingest_checked(batch)
        except StoreError as exc:
            log.warning("could not store a directory listing: %s", exc)
            dropped["store_error"] += 1
            return "ignore"
        status = outcomes[0].status
        if status == "stored":
            self.received += 1
            self.store.prune_listing(community)
            if make_room is not None:  # only once the new listing is in
                self.store.forget_listing(make_room)
            return "accept"
        # A replay, or a community this node knows more of (an owner since revoked).
        dropped["replayed" if status == "duplicate" else "directory_outdated"] += 1
        return "ignore"

    # The stream protocol --------------------------------------------------------------

    async def fetch(self, peer_id: str, timeout: float = FETCH_TIMEOUT) -> int:
        """Ask a connected node for its directory; returns how many listings were new.
        Bad listings are counted and cost the answering node score. Raises SyncError or
        P2PError if the exchange fails."""
        stream = await self.peer.open_stream(peer_id, DIRECTORY_PROTOCOL)
        reader = FrameReader()
        taken = bad = seen = total = 0
        try:
            with trio.fail_after(timeout):
                await stream.write(encode_frame(["list", DIRECTORY_VERSION]))
                done = False
                while not done:
                    data = await stream.read(READ_SIZE)
                    if not data:
                        raise SyncError(f"{peer_id} closed the directory before it ended")
                    total += len(data)
                    if total > MAX_FETCH_BYTES:
                        raise SyncError(f"{peer_id} sent a directory over the size limit")
                    for message in reader.feed(data):
                        if message[0] == "done":
                            done = True
                            break
                        if message[0] == "error":
                            raise SyncError(f"{peer_id} refused: {message[1:]}")
                        if message[0] != "entries" or len(message) != 2:
                            raise SyncError(f"{peer_id} sent a {message[0]!r} in a directory")
                        if not isinstance(message[1], list):
                            raise SyncError(f"{peer_id} sent entries that are not a list")
                        for entry in message[1]:
                            seen += 1
                            if seen > MAX_FETCHED:
                                raise SyncError(f"{peer_id} sent over {MAX_FETCHED} listings")
                            try:
                                verdict = self.take(check_shape(entry))
                            except ListingError as exc:
                                self.node.dropped[exc.reason] += 1
                                verdict = "reject"
                            bad += verdict == "reject"
                            taken += verdict == "accept"
        except trio.TooSlowError:
            raise SyncError(f"{peer_id} did not send its directory within {timeout} s") from None
        except (SyncError, P2PError):
            raise
        except Exception as exc:  # reset by the other side
            raise SyncError(f"the directory from {peer_id} broke off: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
            if bad:
                self.peer.penalise(peer_id, INVALID_PENALTY * bad)
        return taken

    async def _serve(self, stream: Any) -> None:
        asker = str(stream.muxed_conn.peer_id)
        if self._serving[asker] or not self._limiter.allow(asker, trio.current_time()):
            self.node.dropped["directory_limited"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._serving[asker] += 1
        try:
            with trio.fail_after(FETCH_TIMEOUT):
                request = await read_one(stream)
                if request[0] != "list" or len(request) < 2:
                    raise SyncError("a directory request is ['list', version]")
                if request[1] != DIRECTORY_VERSION:
                    await stream.write(encode_frame(["error", "version", DIRECTORY_VERSION]))
                    return
                frame: list[list[bytes]] = []
                size = 0
                for listing in self.store.listings(limit=MAX_FETCHED):
                    length = sum(len(e) for e in listing)
                    if frame and size + length > ENTRIES_FRAME_BYTES:
                        await stream.write(encode_frame(["entries", frame]))
                        frame, size = [], 0
                    frame.append(listing)
                    size += length
                if frame:
                    await stream.write(encode_frame(["entries", frame]))
                await stream.write(encode_frame(["done"]))
        except (SyncError, trio.TooSlowError) as exc:
            log.info("directory request from %s refused: %s", asker, exc)
            self.node.dropped["bad_directory_request"] += 1
        except Exception as exc:  # reset by the asker
            log.debug("directory request from %s ended: %s", asker, exc)
        finally:
            self._serving[asker] -= 1
            if not self._serving[asker]:
                del self._serving[asker]
            with contextlib.suppress(Exception):
                await stream.close()

    async def on_connect(self, peer_id: str) -> None:
        """A node whose directory is empty asks nodes it meets for theirs (each once,
        one at a time, and at most MAX_CONNECT_FETCHES in all)."""
        if (
            self.store.directory_count()
            or peer_id in self._fetched
            or len(self._fetched) >= MAX_CONNECT_FETCHES
            or self._fetching.locked()
        ):
            return
        self._fetched.add(peer_id)
        async with self._fetching:
            try:
                await self.fetch(peer_id)
            except (SyncError, P2PError) as exc:
                log.debug("no directory from %s: %s", peer_id, exc)

    async def refresh(self) -> dict[str, int]:
        """Ask the nodes of the DHT's directory providers and every connected node for
        their directory."""
        found_by_dht = 0
        if self.dht is not None:
            for address in await self.dht.find_members(DIRECTORY_PROVIDER_ID, limit=5):
                try:
                    await self.node.connect(address, source="dht")
                except P2PError as exc:
                    log.debug("%s", exc)
                    continue
                found_by_dht += 1
        asked = answered = new = 0
        for peer_id in sorted(self.peer.connected_peers())[:MAX_REFRESH_PEERS]:
            asked += 1
            try:
                new += await self.fetch(peer_id)
            except (SyncError, P2PError) as exc:
                log.info("no directory from %s: %s", peer_id, exc)
                continue
            answered += 1
        return {"asked": asked, "answered": answered, "new": new, "found_by_dht": found_by_dht}

    def provider_ids(self) -> list[bytes]:
        """What the DHT should announce for the directory: its key, once there is one."""
        return [DIRECTORY_PROVIDER_ID] if self.store.directory_count() else []

    # Announcing -----------------------------------------------------------------------

    async def publish(self, community: bytes) -> int:
        """Send a community's listing on the directory topic; returns how many
        neighbours take part in it (0: the listing travels by fetches only)."""
        listing = self.store.listing(community)
        if listing is None:
            return 0
        if self.peer.connected_peers():
            with trio.move_on_after(TOPIC_WAIT):
                while not self.peer.topic_peers(DIRECTORY_TOPIC):
                    await trio.sleep(0.05)
        await self.peer.publish(DIRECTORY_TOPIC, pack_listing(listing))
        return len(self.peer.topic_peers(DIRECTORY_TOPIC))

    def _usable_invite(self, entry: DirectoryEntry | None, margin: int = 0) -> str | None:
        """The invite code of the directory's entry if it still admits people for at
        least `margin` ms."""
        if entry is None or not entry.invite:
            return None
        try:
            code = decode_invite(entry.invite)
        except InviteCodeError:
            return None
        state = self.store.invite_state(entry.community, code.invite_key)
        if (
            state is None
            or state.withdrawn
            or state.expires_at <= now_ms() + margin
            or (state.max_uses is not None and state.uses >= state.max_uses)
        ):
            return None
        return entry.invite

    async def announce(
        self,
        commands: Commands,
        community: str,
        uses: int | None = None,
        expires: str = DEFAULT_ANNOUNCE_LIFETIME,
        *,
        reuse: bool = False,
    ) -> dict[str, Any]:
        """List a public community this member owns: a public invite (a fresh one, or
        with `reuse` the current one while it stays usable), an announcement with the
        member count, sent to the community and on the directory topic."""
        from kithnet.node.commands import CommandError, parse_duration

        target = commands.resolve(community)
        if target.visibility != "public":
            raise CommandError(
                f"{target.name} is private: only public communities are listed in the directory"
            )
        if "owner" not in target.roles:
            raise CommandError(
                f"only an owner of {target.name} can list it in the directory; "
                "ask one of its owners"
            )
        if uses is not None and not 1 <= uses <= 1_000_000:
            raise CommandError("--uses must be between 1 and 1,000,000")
        parse_duration(expires)  # a bad duration is refused before anything is made
        current = self.store.directory_entry(target.id) if reuse else None
        code = self._usable_invite(current, ANNOUNCE_EVERY_MS)
        if code is None:
            invite = await commands.invite_create(target.id.hex(), uses=uses, expires=expires)
            code = invite["code"]
        members = len(self.store.members(target.id))
        fields: dict[str, Any] = {
            "kind": "announcement",
            "community": target.id,
            "name": target.name,
            "visibility": "public",
            "invite": code,
            "members": members,
        }
        if target.description:
            fields["description"] = target.description
        if target.tags:
            fields["tags"] = list(target.tags)
        record = await self.node.post(fields)
        self.store.set_setting(_setting(target.id), {"uses": uses, "expires": expires})
        reached = await self.publish(target.id)
        if commands.temporary:
            await self.node.flush()
        return {
            "id": record.id.hex(),
            "community": target.id.hex(),
            "name": target.name,
            "tags": list(target.tags),
            "members": members,
            "invite": code,
            "invite_expires_at": decode_invite(code).expires_at,
            "directory_peers": reached,
        }

    async def reannounce_due(self, commands: Commands) -> list[bytes]:
        """Announce again each community this member announced and still owns whose
        newest announcement is a day old or whose invite no longer admits anyone;
        returns the communities announced."""
        from kithnet.node.commands import CommandError

        done = []
        for info in self.store.communities():
            params = self.store.setting(_setting(info.id))
            if params is None or "owner" not in info.roles or info.visibility != "public":
                continue
            current = self.store.directory_entry(info.id)
            fresh = current is not None and now_ms() - current.created_at < ANNOUNCE_EVERY_MS
            if fresh and self._usable_invite(current) is not None:
                continue
            try:
                await self.announce(
                    commands,
                    info.id.hex(),
                    params.get("uses"),
                    params.get("expires", DEFAULT_ANNOUNCE_LIFETIME),
                    reuse=True,
                )
            except (CommandError, StoreError, P2PError) as exc:
                log.warning("could not announce %s again: %s", info.name, exc)
                continue
            log.info("announced %s in the directory", info.name)
            done.append(info.id)
        return done


async def _delivered(data: bytes, author: str) -> None:
    """Listings are stored by the validator; nothing more to do on delivery."""


def entry_view(entry: DirectoryEntry, now: int) -> dict[str, Any]:
    """A directory entry as commands return it."""
    expires_at = None
    if entry.invite:
        try:
            expires_at = decode_invite(entry.invite).expires_at
        except InviteCodeError:
            expires_at = None
    return {
        "id": entry.community.hex(),
        "name": entry.name,
        "description": entry.description,
        "tags": list(entry.tags),
        "members": entry.members,
        "announced_at": entry.created_at,
        "age_s": max(0, (now - entry.created_at) // 1000),
        "invite": entry.invite if expires_at is not None else "",
        "invite_expires_at": expires_at,
        "invite_expired": expires_at is None or expires_at <= now,
        "joined": entry.joined,
    }
