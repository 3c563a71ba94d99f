"""The running node: wires a member's store to their libp2p host.

- Gossip: a message's records are decoded, verified, judged and stored before the message
  is forwarded; a forged, malformed or unauthorised one is refused (its forwarder loses
  score) and a replay is dropped without blame.
- Records this member writes are stored (durably) and then gossiped with flow control.
- On every new connection the two nodes swap the addresses of members they know (peer
  exchange, `/kithnet/peers/1`) and catch up every community they share (`/kithnet/sync/1`);
  so what a member wrote while offline goes out when it reconnects.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import trio

from kithnet.core.envelope import Record
from kithnet.crypto import secretbox
from kithnet.crypto.community import handle as community_handle
from kithnet.crypto.community import key_id as community_key_id
from kithnet.crypto.community import open_gossip, seal_gossip
from kithnet.crypto.errors import CryptoError
from kithnet.crypto.identity import peer_id as peer_id_of
from kithnet.crypto.identity import public_key_of_peer
from kithnet.crypto.sealed import seal
from kithnet.localstore.errors import StoreError
from kithnet.localstore.store import Store, now_ms
from kithnet.node.answers import my_trust
from kithnet.node.blobs import BlobService
from kithnet.node.direct import DirectMessages
from kithnet.node.directory import Directory
from kithnet.node.sync import (
    FrameReader,
    SyncClient,
    SyncError,
    SyncServer,
    encode_frame,
    read_one,
)
from kithnet.p2p.host import (
    INVALID_PENALTY,
    P2PError,
    Peer,
    RateLimiter,
    Verdict,
    community_topic,
    private_topic,
)

SYNC_PROTOCOL = "/kithnet/sync/1"
PEERS_PROTOCOL = "/kithnet/peers/1"
JOIN_PROTOCOL = "/kithnet/join/1"
MAX_ENVELOPES_PER_MESSAGE = 64
OUTBOX_SIZE = 1024  # records waiting to be gossiped; `post` waits when it is full
PUBLISH_INTERVAL = 0.02  # at most 50 gossip messages a second, of up to 64 records each
READ_SIZE = 64 * 1024
MAX_EXCHANGED_PEERS = 32  # addresses one peer exchange answers with
MAX_WELCOME_RECORDS = 10_000  # records a newcomer takes from a welcome
JOIN_CLOCK_SLACK_MS = 10 * 60 * 1000  # a join handed in must be dated about now
JOINS_PER_SECOND = 0.2  # join requests one peer may make (in bursts of JOIN_BURST)
JOIN_BURST = 3
TARGET_PEERS = 8  # below this many connections, dial what peer exchange taught us
SUBSCRIPTION_WAIT = 3.0  # how long a new peer has to tell us its communities
SYNC_TIMEOUT = 300.0  # a whole catch-up, either side
READ_IDLE = 30.0  # a sync peer silent this long is given up on
MAX_SYNCS_PER_PEER = 4  # sync streams one peer may have open with us at once
TRUST_WARM_DELAY = 1.0  # after records arrive, wait this long before updating trust
TRUST_WARM_GAP = 5.0  # and update it at most this often
KEYS_PER_UPDATE = 400  # sealed keys in one key_update record (the kind's limit)
RESEAL_GAP = 30.0  # seconds between two reseals of one community
# Records that may change who holds a private community's key, or which key is in force.
_KEY_KINDS = frozenset({"key_update", "join", "moderation", "role_grant", "role_revoke"})

log = logging.getLogger(__name__)


def pack_message(envelopes: list[bytes]) -> bytes:
    """A gossip message: a msgpack array of record envelopes (several under load)."""
    packed: bytes = msgpack.packb(envelopes, use_bin_type=True)
    return packed


def unpack_message(data: bytes) -> list[bytes] | None:
    """The envelopes of a gossip message, or None if it is not one."""
    try:
        envelopes = msgpack.unpackb(
            data, raw=False, max_array_len=MAX_ENVELOPES_PER_MESSAGE, max_bin_len=1 << 17
        )
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not isinstance(envelopes, list) or not envelopes:
        return None
    if not all(isinstance(e, bytes) for e in envelopes):
        return None
    return envelopes


@dataclass(slots=True)
class SyncProgress:
    """The latest catch-up of one community with one peer (for `kithnet status`)."""

    peer: str
    community: bytes
    started: int  # ms since the epoch
    finished: int | None = None
    received: int = 0
    sent: int = 0
    error: str = ""
    client: SyncClient | None = None  # while it runs: how far it is (`status`)


class Node:
    """A member's store and host, working together."""

    def __init__(self, store: Store, peer: Peer, *, announce: bool = True) -> None:
        self.store = store
        self.peer = peer
        self.announce = announce  # tell peers our addresses (not for a short-lived node)
        self.following: set[bytes] = set()
        self.relayed_addresses: list[str] = []  # /p2p-circuit addresses, if behind a relay
        self.relay_service: Any = None  # a RelayService while this node relays for others
        self.relay_client: Any = None  # the RelayClient: its reservations on relays
        self._keys: dict[bytes, bytes] = {}  # private community -> the key in force
        self._rekey_locks: dict[bytes, trio.Lock] = {}
        self._key_checks: set[bytes] = set()  # private communities with a check queued
        self._resealed: dict[bytes, float] = {}  # private community -> when last resealed
        self._by_handle: dict[bytes, bytes] = {}  # private community handle -> community
        self._topic_keys: dict[str, bytes] = {}  # private topic -> the key its data uses
        self.dropped: Counter[str] = Counter()
        self.syncs: dict[tuple[str, bytes], SyncProgress] = {}  # the latest, per peer
        self.received_by_sync: Counter[bytes] = Counter()  # records, per community
        self._sync_locks: dict[bytes, trio.Lock] = {}
        self._serving: Counter[str] = Counter()  # sync streams open, per asking peer
        self._joining: Counter[str] = Counter()  # join requests open, per asking peer
        self._join_limiter = RateLimiter(JOINS_PER_SECOND, JOIN_BURST)
        self.sent_by_sync: Counter[bytes] = Counter()
        self._arrival = trio.Event()
        self._outbox, self._outgoing = trio.open_memory_channel[tuple[str, bytes]](OUTBOX_SIZE)
        self._dialling: set[str] = set()
        self._unsent = 0  # records queued for gossip and not yet published
        self._to_commit: list[tuple[Mapping[str, Any], list[Record | Exception], trio.Event]] = []
        self._committing = False
        self.commits = 0  # transactions that stored this member's own posts
        self._all_sent = trio.Event()
        peer.set_stream_handler(SYNC_PROTOCOL, self._serve_sync)
        peer.set_stream_handler(PEERS_PROTOCOL, self._serve_peers)
        peer.set_stream_handler(JOIN_PROTOCOL, self._serve_join)
        peer.on_connect(self._on_connect)
        peer.start_soon(self._publisher)
        peer.start_soon(self._keep_trust_warm)
        self.directory = Directory(self)  # the public directory: its topic and protocol
        peer.start_soon(self.directory.run)
        self.blobs = BlobService(self)  # pictures and files that posts name
        self.direct = DirectMessages(self)  # /kithnet/dm/1 (kithnet/node/direct.py)

    async def _keep_trust_warm(self) -> None:
        """Recompute this member's trust soon after references arrive, so that asking
        finds it ready: over 100,000 references it takes a few hundred milliseconds,
        which a question should not wait for. At most once every TRUST_WARM_GAP s."""
        warmed = -1
        while True:
            await self._arrival.wait()
            # Arrivals during the pauses below are caught by looking again after them.
            while self.store.graph_generation != warmed:
                await trio.sleep(TRUST_WARM_DELAY)  # let a burst of arrivals finish
                warmed = self.store.graph_generation
                try:
                    my_trust(self.store)
                except Exception as exc:  # a damaged or full store: the next ask says so
                    log.warning("could not update trust: %s", exc)
                await trio.sleep(TRUST_WARM_GAP)

    # Gossip ---------------------------------------------------------------------------

    def _validate(self, data: bytes) -> Verdict:
        """Runs before a message is delivered or forwarded. Every record in it must
        decode, verify and validate, and none may be refused by authority, or the whole
        message is rejected (and counted); a message holding nothing new is a replay, and
        one holding nothing that takes effect now is waiting: both are ignored. Accepted
        records are stored here, before anyone else sees them."""
        envelopes = unpack_message(data)
        if envelopes is None:
            self.dropped["malformed"] += 1
            return "reject"
        batch = self.store.check_batch(envelopes)
        if batch.refused:
            self.dropped.update(batch.refused)
            # A record dated ahead of our clock may be honest (our clock may be behind).
            return "ignore" if set(batch.refused) == {"clock_skew"} else "reject"
        try:
            outcomes = self.store.ingest_checked(batch)
        except StoreError as exc:  # a full disk, say: keep nothing, pass nothing on
            log.warning("could not store gossiped records: %s", exc)
            self.dropped["store_error"] += 1
            return "ignore"
        refused = [o for o in outcomes if o.status == "rejected"]
        if refused:
            self.dropped.update(o.reason for o in refused)
            return "reject"
        if all(o.status == "duplicate" for o in outcomes):
            self.dropped["replayed"] += 1
            return "ignore"
        if not any(o.status == "stored" for o in outcomes):
            # Waiting for what it depends on (a post by someone who never joined, say):
            # kept, bounded and hidden, but not passed on; sync brings it if it is real.
            self.dropped["waiting"] += 1
            return "ignore"
        for _, record in batch.records:
            if record.kind in _KEY_KINDS and record.community in self._keys:
                self._check_key_soon(record.community)
        self._arrival.set()
        self._arrival = trio.Event()
        return "accept"

    async def _on_message(self, data: bytes, author: str) -> None:
        """Delivery after validation: the records are already stored."""

    async def follow(self, community: bytes) -> bool:
        """Take part in a community's gossip (once). A private community needs its key:
        without it this returns False and the node waits for it."""
        if community in self.following:
            return True
        info = self.store.community(community)
        if info is not None and info.visibility == "private":
            if self.store.community_key(community) is None:
                return False
            self.following.add(community)
            await self.check_key(community)
            return True
        self.following.add(community)
        await self.peer.subscribe(community_topic(community), self._validate, self._on_message)
        return True

    async def _listen_under(self, community: bytes, key: bytes) -> None:
        """Answer a private community under `key` too: its handle names the community
        in sync, and its topic is subscribed, each message opened with that key. Keys
        before the one in force stay, so members who have not moved yet still reach us
        and we them."""
        wire = community_handle(key)
        self._by_handle[wire] = community
        topic = private_topic(wire)
        if topic in self._topic_keys:
            return
        self._topic_keys[topic] = key

        def validate(data: bytes) -> Verdict:
            try:
                plain = open_gossip(key, data)
            except CryptoError:
                self.dropped["undecryptable"] += 1
                return "reject"
            return self._validate(plain)

        await self.peer.subscribe(topic, validate, self._on_message)

    async def check_key(self, community: bytes) -> bool:
        """Send a private community's records under the key in force (the newest sealed
        to this member, see Store.community_keys), listening under every key it holds;
        True if the key in force changed (after a ban, say)."""
        keys = self.store.community_keys(community)
        if not keys:
            return False
        for _epoch, key in keys:
            await self._listen_under(community, key)
        current = keys[-1][1]
        if self._keys.get(community) == current:
            return False
        if community in self._keys:
            log.info("community %s moved to a new key", community.hex()[:12])
        self._keys[community] = current
        return True

    def _check_key_soon(self, community: bytes) -> None:
        """check_key and reseal in the background, once for arrivals close together."""
        if community in self._key_checks:
            return
        self._key_checks.add(community)

        async def check() -> None:
            try:
                await trio.sleep(0)  # let the rest of the batch be stored first
                await self.check_key(community)
                last = self._resealed.get(community)
                if last is not None:  # reseal at most every RESEAL_GAP: wait for it
                    await trio.sleep(max(0.0, last + RESEAL_GAP - trio.current_time()))
                self._key_checks.discard(community)  # what arrives from now on: again
                await self.reseal(community, now=True)
            except Exception as exc:  # a full disk, a host going down: try again later
                log.warning("could not update the community's key: %s", exc)
            finally:
                self._key_checks.discard(community)

        self.peer.start_soon(check)

    def _key_holders(self, community: bytes) -> list[bytes]:
        """Who should hold a private community's key: owners, moderators and members
        who joined, none of them banned."""
        return sorted(
            m.member
            for m in self.store.members(community)
            if not m.banned and (m.roles or self.store.is_member(community, m.member))
        )

    async def _seal_key(
        self, community: bytes, epoch: int, key: bytes, members: Sequence[bytes]
    ) -> list[Record]:
        sealed = [{"member": m, "box": seal(m, key)} for m in members]
        records = []
        for start in range(0, len(sealed), KEYS_PER_UPDATE):
            records.append(
                await self.post(
                    {
                        "kind": "key_update",
                        "community": community,
                        "epoch": epoch,
                        "keys": sealed[start : start + KEYS_PER_UPDATE],
                        "key_id": community_key_id(key),
                    }
                )
            )
        return records

    async def rekey(self, community: bytes, *, switch: bool = True) -> list[Record]:
        """Give a private community a new content key, sealed to each remaining member
        (after a ban). The `key_update` records go out under the old key, which every
        remaining member holds; this node then sends under the new one at once
        (`switch`), or when the caller calls check_key. A banned member cannot open
        the new key. One rekey of a community at a time."""
        async with self._rekey_locks.setdefault(community, trio.Lock()):
            if community not in self._keys:
                raise ValueError("not a private community whose key this member holds")
            me = self.store.identity.public_key
            members = sorted(set(self._key_holders(community)) | {me})
            epoch = self.store.community_key_epoch(community) + 1
            key = secretbox.new_key()
            records = await self._seal_key(community, epoch, key, members)
            self.store.set_community_key(community, epoch, key)
            if switch:
                await self.check_key(community)
            return records

    async def reseal(self, community: bytes, *, now: bool = False) -> list[Record]:
        """An owner's or moderator's node seals the key in force to members who should
        hold it and whose newest sealed key is another (or none): joins judged after a
        rekey, members unbanned, newcomers welcomed under an older key, a member a
        lagging moderator sealed an old key to. At most once every RESEAL_GAP seconds
        per community unless `now` (a rekey or an unban just happened)."""
        info = self.store.community(community)
        if info is None or not info.roles or community not in self._keys:
            return []
        last = self._resealed.get(community)
        if not now and last is not None and trio.current_time() - last < RESEAL_GAP:
            return []
        async with self._rekey_locks.setdefault(community, trio.Lock()):
            self._resealed[community] = trio.current_time()
            found = self.store.key_in_force(community)
            if found is None:
                return []
            epoch, _created_at, _record, key = found
            have = self.store.key_holders(community, community_key_id(key))
            missing = [m for m in self._key_holders(community) if m not in have]
            if not missing:
                return []
            log.info("sealing the key of %s to %d members", community.hex()[:12], len(missing))
            return await self._seal_key(community, epoch, key, missing)

    def topic_of(self, community: bytes) -> str | None:
        """A community's gossip topic: from its id if public, from its key if private
        (None while the key is not held)."""
        if community in self._keys:
            return private_topic(community_handle(self._keys[community]))
        info = self.store.community(community)
        if info is not None and info.visibility == "private":
            return None
        return community_topic(community)

    def wire_id(self, community: bytes) -> bytes | None:
        """How sync, peer exchange and the DHT name a community: its id if public, its
        handle if private (None while the key is not held)."""
        if community in self._keys:
            return community_handle(self._keys[community])
        info = self.store.community(community)
        if info is not None and info.visibility == "private":
            return None
        return community

    def _resolve(self, wire: bytes) -> bytes | None:
        """The followed community a wire id names, or None."""
        if wire in self._by_handle:
            return self._by_handle[wire]
        if wire in self.following and wire not in self._keys:
            return wire
        return None

    def _serves_to(self, asker: str, wire: bytes) -> bytes | None:
        """The community a sync request names, if this node serves it to `asker`. A
        private one only to its current members (joined or holding a role, not banned),
        under any of its handles: a handle is no secret (it names a gossip topic every
        neighbour sees), so knowing it proves nothing. A newcomer whose join has not
        reached this node yet is refused until it has."""
        community = self._resolve(wire)
        if community is None or community not in self._keys:
            return community
        member = public_key_of_peer(asker)
        if member is None or not self._holds_place(community, member):
            self.dropped["not_a_member"] += 1
            return None
        return community

    def _holds_place(self, community: bytes, member: bytes) -> bool:
        for entry in self.store.members(community):
            if entry.member == member:
                return not entry.banned and (
                    bool(entry.roles) or self.store.is_member(community, member)
                )
        return False

    async def post(self, fields: Mapping[str, Any]) -> Record:
        """Store a record as this member (durable when this returns), then queue it for
        gossip; waits while the queue is full rather than drop anything.

        Group commit: posts made while another is being committed share the next
        transaction, so many writers cost one fsync per batch, not one each."""
        done = trio.Event()
        slot: list[Record | Exception] = []
        self._to_commit.append((fields, slot, done))
        if not self._committing:
            self._committing = True
            try:
                with trio.CancelScope(shield=True):  # others wait on this commit
                    await trio.sleep(0)  # let posts made at the same moment join it
                while self._to_commit:
                    batch, self._to_commit = self._to_commit, []
                    self.commits += 1
                    try:
                        results: list[Any] = self.store.publish_many([f for f, _, _ in batch])
                    except Exception as exc:  # a full disk, say: every post in it fails
                        results = [exc] * len(batch)
                    for (_, waiting, event), result in zip(batch, results, strict=True):
                        waiting.append(result)
                        event.set()
            finally:
                self._committing = False
        await done.wait()
        [result] = slot
        if isinstance(result, Exception):
            raise result
        await self.send(result)
        return result

    async def send(self, record: Record) -> None:
        """Queue a stored record of this member's for gossip: in its community, or (a
        profile, say) in every community this member follows."""
        community = record.id if record.kind == "community" else record.community
        for target in [community] if community is not None else sorted(self.following):
            topic = self.topic_of(target)
            if topic is None:  # a private community whose key is not here yet: sync
                continue
            self._unsent += 1
            await self._outbox.send((topic, record.envelope))

    async def flush(self, timeout: float = 30) -> None:
        """Return once everything queued so far has been handed to gossip."""
        with trio.move_on_after(timeout):
            while self._unsent:
                await self._all_sent.wait()

    async def _publisher(self) -> None:
        """Gossip queued records: a record alone at once when the network is idle; under
        load, what queues meanwhile in messages of up to 64 records, no more often than
        every PUBLISH_INTERVAL. py-libp2p drops messages beyond 32 queued per peer, so
        pacing keeps a burst from being lost; sync repairs what gossip still misses."""
        async for topic, envelope in self._outgoing:
            batches: dict[str, list[bytes]] = {topic: [envelope]}
            deadline = trio.current_time() + PUBLISH_INTERVAL
            while sum(len(b) for b in batches.values()) < MAX_ENVELOPES_PER_MESSAGE:
                try:
                    more_topic, more = self._outgoing.receive_nowait()
                except trio.WouldBlock:
                    if len(batches[topic]) == 1 and len(batches) == 1:
                        break  # idle: send the single record now
                    with trio.move_on_at(deadline):
                        more_topic, more = await self._outgoing.receive()
                        batches.setdefault(more_topic, []).append(more)
                        continue
                    break
                batches.setdefault(more_topic, []).append(more)
            published = 0
            for batch_topic, envelopes in batches.items():
                for start in range(0, len(envelopes), MAX_ENVELOPES_PER_MESSAGE):
                    if published:  # several communities at once: pace every message
                        await trio.sleep(PUBLISH_INTERVAL)
                    chunk = envelopes[start : start + MAX_ENVELOPES_PER_MESSAGE]
                    data = pack_message(chunk)
                    key = self._topic_keys.get(batch_topic)
                    if key is not None:  # a private community's records travel encrypted
                        data = seal_gossip(key, data)
                    await self.peer.publish(batch_topic, data)
                    published += 1
                self._unsent -= len(envelopes)
            if not self._unsent:
                self._all_sent.set()
                self._all_sent = trio.Event()
            await trio.sleep_until(deadline)

    async def wait_for_record(self, record_id: bytes, timeout: float = 10) -> None:
        """Return once the store holds `record_id`; raises trio.TooSlowError after
        `timeout` seconds."""
        with trio.fail_after(timeout):
            while not self.store.has_record(record_id):
                await self._arrival.wait()

    async def wait_for_arrival(self) -> None:
        """Return when records next arrive from peers (by gossip or sync)."""
        await self._arrival.wait()

    def announced(self) -> list[str]:
        """Where other members can reach this node: its listen addresses, then circuit
        addresses through relays it holds a reservation on (none for a node that runs
        for one command only)."""
        if not self.announce:
            return []
        return list(dict.fromkeys([*self.peer.addresses(), *self.relayed_addresses]))

    def community_peers(self, community: bytes) -> set[str]:
        """Connected peers that take part in a community's gossip."""
        topic = self.topic_of(community)
        return self.peer.topic_peers(topic) if topic is not None else set()

    # Connections ----------------------------------------------------------------------

    async def _on_connect(self, peer_id: str) -> None:
        """A new connection: catch up what we share, then learn and share addresses."""
        self.store.peer_connected(peer_id)
        shared = await self._shared_communities(peer_id)
        if shared:  # its subscriptions are here: the blob fetcher can ask it now
            self.blobs.kick()
        for community in shared:
            await self.sync_logged(peer_id, community)
        # After the catch-up, so that a newcomer knows who the members are.
        await self.exchange_peers(peer_id)

    async def _shared_communities(self, peer_id: str) -> list[bytes]:
        """The communities we follow that `peer_id` takes part in, once its
        subscriptions arrive (GossipSub sends them on connecting)."""
        deadline = trio.current_time() + SUBSCRIPTION_WAIT
        while True:
            shared = [c for c in sorted(self.following) if peer_id in self.community_peers(c)]
            if shared or trio.current_time() >= deadline:
                return shared
            await trio.sleep(0.05)

    async def connect(self, address: str, source: str = "manual") -> str:
        """Connect to a member's node at `address` and remember where it was."""
        peer_id = await self.peer.connect(address)
        self.store.remember_peer(peer_id, [address], source)
        self.store.peer_connected(peer_id)
        return peer_id

    async def dial_known(self, *, limit: int = TARGET_PEERS, timeout: float = 10) -> int:
        """Dial peers from the peer book (most promising first) until `limit` are
        connected; returns how many connections are up afterwards."""
        connected = set(self.peer.connected_peers())
        candidates = [
            (peer_id, addresses)
            for peer_id, addresses in self.store.known_peers(limit=4 * limit)
            if peer_id not in connected and peer_id not in self._dialling
        ]
        wanted = max(0, limit - len(connected))
        if not wanted or not candidates:
            return len(connected)
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for peer_id, addresses in candidates[: 2 * wanted]:
                    nursery.start_soon(self._dial, peer_id, addresses, timeout)
        return len(self.peer.connected_peers())

    async def _top_up(self) -> None:
        await self.dial_known()

    async def _dial(self, peer_id: str, addresses: list[str], timeout: float) -> None:
        if self.peer.is_banned(peer_id):
            return
        self._dialling.add(peer_id)
        try:
            for address in addresses:
                try:
                    await self.peer.connect(address, timeout=timeout)
                except P2PError as exc:
                    log.debug("could not dial %s: %s", address, exc)
                    continue
                return
            self.store.peer_failed(peer_id)
        finally:
            self._dialling.discard(peer_id)

    # Peer exchange --------------------------------------------------------------------

    async def exchange_peers(self, peer_id: str, timeout: float = 10) -> int:
        """Tell `peer_id` where we listen and learn the members it knows in the
        communities we follow; dial some if we have few connections. Returns how many
        addresses were learnt."""
        wires = [w for w in (self.wire_id(c) for c in sorted(self.following)) if w is not None]
        request = ["hello", self.announced(), wires]
        try:
            with trio.fail_after(timeout):
                stream = await self.peer.open_stream(peer_id, PEERS_PROTOCOL)
                try:
                    await stream.write(encode_frame(request))
                    reply = await read_one(stream)
                finally:
                    await stream.close()
        except (P2PError, SyncError, trio.TooSlowError) as exc:
            log.debug("peer exchange with %s failed: %s", peer_id, exc)
            return 0
        except Exception as exc:  # the stream was reset under us
            log.debug("peer exchange with %s failed: %s", peer_id, exc)
            return 0
        # Only nodes of members of the communities we follow, by the ids their keys give:
        # a peer cannot fill our peer book with strangers or made-up ids.
        members = self.store.member_peer_ids(sorted(self.following))
        learnt = 0
        for entry in _peer_entries(reply):
            if entry[0] != self.peer.peer_id and entry[0] in members:
                self.store.remember_peer(entry[0], entry[1], "exchange")
                learnt += 1
        if learnt and len(self.peer.connected_peers()) < TARGET_PEERS:
            self.peer.start_soon(self._top_up)
        return learnt

    async def _serve_peers(self, stream: Any) -> None:
        asker = str(stream.muxed_conn.peer_id)
        try:
            with trio.fail_after(10):
                request = await read_one(stream)
                if request[0] != "hello" or len(request) != 3:
                    raise SyncError("a peer exchange opens with hello")
                _, addresses, communities = request
                if isinstance(addresses, list) and all(isinstance(a, str) for a in addresses):
                    self.store.remember_peer(asker, addresses[:8], "connected")
                    self.store.peer_connected(asker)
                entries: dict[str, list[str]] = {}
                if isinstance(communities, list):
                    asked = {c for c in communities[:1000] if isinstance(c, bytes)}
                    resolved = {self._resolve(c) for c in asked} - {None}
                    for community in sorted(c for c in resolved if c is not None):
                        for peer_id, known in self.store.peers_of(community):
                            if peer_id != asker:
                                entries.setdefault(peer_id, known)
                        if len(entries) >= MAX_EXCHANGED_PEERS:
                            break
                chosen = list(entries.items())[:MAX_EXCHANGED_PEERS]
                await stream.write(encode_frame(["peers", [[p, a] for p, a in chosen]]))
        except (SyncError, trio.TooSlowError) as exc:
            log.info("peer exchange from %s refused: %s", asker, exc)
            self.dropped["bad_peer_exchange"] += 1
        except Exception:  # the asker reset the stream
            return
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    # Joining a private community -------------------------------------------------------

    async def ask_to_join(self, peer_id: str, join: Record, timeout: float = 20) -> list[bytes]:
        """Hand a `join` to the member whose invite it uses. For a private community it
        answers, once the join is allowed, with the records a newcomer needs to judge
        it and a `key_update` sealing the community key to the newcomer; for a public
        one with nothing (sync does the rest). Raises SyncError if refused."""
        try:
            with trio.fail_after(timeout):
                stream = await self.peer.open_stream(peer_id, JOIN_PROTOCOL)
                try:
                    await stream.write(encode_frame(["join", join.envelope]))
                    reply = await read_one(stream)
                finally:
                    with contextlib.suppress(Exception):
                        await stream.close()
        except trio.TooSlowError:
            raise SyncError(f"{peer_id} did not answer the join within {timeout} s") from None
        except (P2PError, SyncError):
            raise
        except Exception as exc:
            raise SyncError(f"the join with {peer_id} broke off: {exc}") from exc
        if reply[0] == "welcome" and len(reply) == 2 and isinstance(reply[1], list):
            records = [e for e in reply[1][:MAX_WELCOME_RECORDS] if isinstance(e, bytes)]
            self.store.ingest(records)
            return records
        if reply[0] == "public":
            return []
        reason = reply[1] if len(reply) > 1 and isinstance(reply[1], str) else "no reason"
        raise SyncError(f"the member refused the join: {reason}")

    async def _serve_join(self, stream: Any) -> None:
        asker = str(stream.muxed_conn.peer_id)
        if self._joining[asker] >= 1 or not self._join_limiter.allow(asker, trio.current_time()):
            self.dropped["join_limited"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._joining[asker] += 1
        try:
            with trio.fail_after(10):
                request = await read_one(stream)
                if request[0] != "join" or len(request) != 2 or not isinstance(request[1], bytes):
                    raise SyncError("a join request carries one join record")
                reply = await self._admit(request[1], asker)
                await stream.write(encode_frame(reply))
        except (SyncError, trio.TooSlowError) as exc:
            log.info("join from %s refused: %s", asker, exc)
            self.dropped["bad_join"] += 1
        except Exception as exc:  # reset by the asker
            log.debug("join from %s ended: %s", asker, exc)
        finally:
            self._joining[asker] -= 1
            if not self._joining[asker]:
                del self._joining[asker]
            with contextlib.suppress(Exception):
                await stream.close()

    async def _admit(self, envelope: bytes, asker: str) -> list[Any]:
        """Judge a newcomer's join to a private community this node can let people into
        (as an owner or moderator) and, if it is good now, seal the key to them. Every
        refusal reads the same, so a stranger learns nothing about who is in what."""
        refused = ["refused", "this node cannot let you in"]
        batch = self.store.check_batch([envelope])
        if batch.refused or not batch.records:
            raise SyncError("the join record is not valid")
        record = batch.records[0][1]
        community = record.community
        if record.kind != "join" or community is None:
            return refused
        if community in self.following and community not in self._keys:
            return ["public"]
        key = self._keys.get(community)
        info = self.store.community(community)
        if key is None or info is None or not info.roles:
            return refused
        if peer_id_of(record.author) != asker:
            return refused  # someone else's join, replayed
        already = self.store.status_of(record.id)
        if already is not None and already[0] == "allowed":
            # Asked again (the answer was lost, say): the same welcome, if still a member.
            if not self.store.is_member(community, record.author):
                return refused
            return await self._welcome(community, key, record)
        invite = self.store.invite_state(community, record.fields["invite_key"])
        now = now_ms()
        if (
            invite is None
            or invite.withdrawn
            or now >= invite.expires_at
            or abs(now - record.created_at) > JOIN_CLOCK_SLACK_MS
            or (invite.max_uses is not None and invite.uses >= invite.max_uses)
            or record.created_at < invite.last_join_at  # would displace an earlier join
        ):
            return ["refused", "the invite is expired, withdrawn or used up"]
        if self.store.status_of(record.id) is None:
            self.store.ingest_checked(batch)
        status, reason = self.store.status_of(record.id) or ("pending", "")
        if status != "allowed":
            return ["refused", reason or status]
        return await self._welcome(community, key, record)

    async def _welcome(self, community: bytes, key: bytes, record: Record) -> list[Any]:
        welcome = self.store.welcome_envelopes(community, record.fields["invite_key"])
        keys = self.store.community_keys(community)
        epoch, key = keys[-1] if keys else (0, key)  # the key in force, with its epoch
        sealed = self.store.key_sealed_to(community, record.author, community_key_id(key))
        if sealed is None:
            [sealed] = await self._seal_key(community, epoch, key, [record.author])
        return ["welcome", [record.envelope, sealed.envelope, *welcome]]

    # Catch-up sync --------------------------------------------------------------------

    async def sync(
        self,
        peer_id: str,
        community: bytes,
        timeout: float = SYNC_TIMEOUT,
        progress: SyncProgress | None = None,
    ) -> SyncClient:
        """Reconcile a community with a member and exchange what each lacks; raises
        SyncError if the member breaks the protocol or it takes over `timeout` s.
        `progress` is given the running client, so `status` can say how far it is."""
        # One catch-up of a community at a time: after a sync with one member, the next
        # finds only what that one lacked, instead of both sending everything.
        async with self._sync_locks.setdefault(community, trio.Lock()):
            return await self._sync(peer_id, community, timeout, progress)

    async def _sync(
        self, peer_id: str, community: bytes, timeout: float, progress: SyncProgress | None
    ) -> SyncClient:
        stream = await self.peer.open_stream(peer_id, SYNC_PROTOCOL)
        wire = self.wire_id(community)
        if wire is None:
            raise SyncError("this private community's key is not here yet")
        client = SyncClient(self.store, community, wire)
        if progress is not None:
            progress.client = client
        reader = FrameReader()
        try:
            with trio.fail_after(timeout):
                await self._converse(stream, client, reader)
        except trio.TooSlowError:
            raise SyncError(f"the sync with {peer_id} stalled or took over {timeout} s") from None
        except SyncError:
            raise
        except Exception as exc:  # reset by the other side, or the connection went away
            raise SyncError(
                f"the sync with {peer_id} broke off: {type(exc).__name__} {exc}"
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
            if client.refused:
                self.peer.penalise(peer_id, INVALID_PENALTY * client.refused)
        self.received_by_sync[community] += client.received
        self.sent_by_sync[community] += client.sent
        if client.received:
            self._arrival.set()
            self._arrival = trio.Event()
            if community in self._keys:
                await self.check_key(community)
                self._check_key_soon(community)  # and reseal, in the background
        return client

    async def sync_logged(
        self, peer_id: str, community: bytes, timeout: float = SYNC_TIMEOUT
    ) -> SyncProgress:
        """`sync`, recorded for `status` and logged; never raises for network trouble."""
        progress = SyncProgress(peer_id, community, now_ms())
        self.syncs[(peer_id, community)] = progress
        try:
            client = await self.sync(peer_id, community, timeout, progress)
        except (SyncError, P2PError) as exc:
            progress.error = str(exc)
            log.info("sync of %s with %s failed: %s", community.hex()[:12], peer_id, exc)
        except Exception as exc:  # the stream was reset: the peer went away
            progress.error = f"the connection broke: {exc}"
            log.info("sync of %s with %s broke: %s", community.hex()[:12], peer_id, exc)
        else:
            progress.received, progress.sent = client.received, client.sent
            log.info(
                "synced %s with %s: %d received, %d sent",
                community.hex()[:12],
                peer_id,
                client.received,
                client.sent,
            )
        progress.finished = now_ms()
        progress.client = None
        return progress

    async def sync_all(self) -> None:
        """Catch up every followed community with every connected peer in it."""
        for community in sorted(self.following):
            for peer_id in sorted(self.community_peers(community)):
                await self.sync_logged(peer_id, community)

    async def _converse(self, stream: Any, client: SyncClient, reader: FrameReader) -> None:
        opening = b"".join(encode_frame(m) for m in client.start())
        client.bytes_out += len(opening)
        await stream.write(opening)
        while not client.done:
            with trio.fail_after(READ_IDLE):
                data = await stream.read(READ_SIZE)
            if not data:
                raise SyncError("the member closed the sync before it ended")
            client.bytes_in += len(data)
            replies = []
            before = client.received
            for message in reader.feed(data):
                replies += client.handle(message)
            if client.received > before:
                # A long catch-up shows as it goes (the app's feed fills while it runs),
                # not only once it has ended.
                self._arrival.set()
                self._arrival = trio.Event()
            if replies:
                frames = b"".join(encode_frame(m) for m in replies)
                client.bytes_out += len(frames)
                await stream.write(frames)

    async def _serve_sync(self, stream: Any) -> None:
        asker = str(stream.muxed_conn.peer_id)
        if self._serving[asker] >= MAX_SYNCS_PER_PEER:
            self.dropped["too_many_syncs"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._serving[asker] += 1
        server = SyncServer(self.store, serves=lambda wire: self._serves_to(asker, wire))
        reader = FrameReader()
        try:
            with trio.fail_after(SYNC_TIMEOUT):
                while not server.done:
                    with trio.fail_after(READ_IDLE):
                        data = await stream.read(READ_SIZE)
                    if not data:
                        return
                    replies = []
                    for message in reader.feed(data):
                        replies += server.handle(message)
                    if replies:
                        await stream.write(b"".join(encode_frame(m) for m in replies))
        except SyncError as exc:
            log.info("sync with %s refused: %s", asker, exc)
            self.dropped["bad_sync"] += 1
            self.peer.penalise(asker, INVALID_PENALTY)
        except trio.TooSlowError:
            log.info("sync with %s stalled; closed", asker)
            self.dropped["stalled_sync"] += 1
        except Exception as exc:  # the stream was reset, or the store could not take it
            log.info("sync with %s ended: %s", asker, exc)
        finally:
            self._serving[asker] -= 1
            if not self._serving[asker]:
                del self._serving[asker]
            if server.refused:
                self.peer.penalise(asker, INVALID_PENALTY * server.refused)
            if server.community is not None:
                self.received_by_sync[server.community] += server.received
                self.sent_by_sync[server.community] += server.sent
            if server.received:
                self._arrival.set()
                self._arrival = trio.Event()
                if server.community in self._keys:
                    self._check_key_soon(server.community)
            with contextlib.suppress(Exception):
                await stream.close()


def _peer_entries(reply: Any) -> list[tuple[str, list[str]]]:
    """The well-formed entries of a peer exchange reply; the rest is ignored."""
    if reply[0] != "peers" or len(reply) != 2 or not isinstance(reply[1], list):
        return []
    entries = []
    for entry in reply[1][:MAX_EXCHANGED_PEERS]:
        if (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], list)
            and all(isinstance(a, str) and len(a) < 300 for a in entry[1])
        ):
            entries.append((entry[0], entry[1][:8]))
    return entries
