"""Finding members of a community through a Kademlia DHT (issue 4, peer discovery).

Each member announces a provider record under a key derived from the community id, so a
member whose bootstrap peers are gone can ask any peer it still reaches for other
members' addresses. Every member runs the DHT in server mode: the network is made of
members only. A provider record proves nothing about membership: whoever connects to an
address found here must still check that the peer belongs to the community.

Built on py-libp2p's KadDHT (routing table, FIND_NODE lookups, the server side), but
announcing and looking up are our own: its `provide` announces `host.get_addrs()`, which
is /ip4/0.0.0.0/... for a host listening on every interface, and its `find_providers`
answers from the local store alone whenever that holds anything (so a member who
announced a community finds only itself, and an earlier answer is served for 48 hours).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import multiaddr
import trio
from libp2p.abc import INotifee
from libp2p.kad_dht.common import BUCKET_SIZE, PROTOCOL_ID
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.kad_dht.utils import sort_peer_ids_by_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError, env_to_send_in_RPC
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from kithnet.p2p.host import P2PError, Peer

log = logging.getLogger(__name__)

PROVIDER_KEY_DOMAIN = b"kithnet/community-provider/1\x00"
# Nodes holding a directory announce themselves as providers of this pseudo-community;
# a community id is 32 bytes, so its provider key never meets a community's.
DIRECTORY_PROVIDER_ID = b"kithnet/directory/1"
_SHA2_256_MULTIHASH = b"\x12\x20"  # code and length: keys are well-formed multihashes

DEFAULT_FIND_TIMEOUT = 10.0
DEFAULT_PROVIDE_TIMEOUT = 30.0
# Provider records live 48 hours on the peers that hold them, but the peers closest to a
# key change as members come and go: announcing hourly keeps the record where lookups go.
REPROVIDE_INTERVAL = 3600.0
# A KadDHT server takes 10 ADD_PROVIDER per 10 s from one peer and refuses the rest; the
# closest peers are mostly the same for every key, so announcements are spaced.
PROVIDE_SPACING = 1.2
QUERY_TIMEOUT = 5.0  # one round trip to one peer
QUERY_CONCURRENCY = 10  # Kademlia's alpha
IDENTIFY_WAIT = 5.0  # how long a new connection may take to say whether it runs the DHT
SELF_LOOKUP_SPACING = 60.0  # at most one join lookup a minute, however many peers connect
_UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::"})  # noqa: S104  (listen-only, never dialable)


def provider_key(community_id: bytes) -> bytes:
    """The DHT key under which members of `community_id` announce themselves: a SHA-256
    multihash over a domain string and the id, so it never equals a key of another use."""
    digest = hashlib.sha256(PROVIDER_KEY_DOMAIN + community_id).digest()
    return _SHA2_256_MULTIHASH + digest


def _check_community(community_id: bytes) -> None:
    if not isinstance(community_id, bytes) or not community_id:
        raise P2PError(f"a community id is non-empty bytes, not {community_id!r}")


def _full_addresses(info: PeerInfo) -> list[str]:
    """`info`'s dialable addresses, each ending in /p2p/<its peer id>. An address that
    names another peer as its end (forged or garbled) or a wildcard host is dropped."""
    peer_id = str(info.peer_id)
    suffix = multiaddr.Multiaddr(f"/p2p/{peer_id}")
    result: list[str] = []
    for address in info.addrs:
        try:
            named = address.get_peer_id()
            if named is None:
                address = address.encapsulate(suffix)
            elif named != peer_id:
                continue
            names = {protocol.name for protocol in address.protocols()}
            if any(
                address.value_for_protocol(family) in _UNSPECIFIED_HOSTS
                for family in ("ip4", "ip6")
                if family in names
            ):
                continue
        except Exception as exc:  # multiaddr raises several unrelated types
            log.debug("skipping a provider address of %s: %s", peer_id, exc)
            continue
        text = str(address)
        if text not in result:
            result.append(text)
    return result


class _ConnectionNotifee(INotifee):
    """Hands each newly connected peer to the DHT, which decides whether it belongs in
    the routing table. Must never block: the swarm awaits its notifees."""

    def __init__(self, send: trio.MemorySendChannel[ID]) -> None:
        self._send = send

    async def connected(self, network: Any, conn: Any) -> None:
        # A burst of connections or a closed DHT: the next lookup still finds the peer.
        with contextlib.suppress(
            trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError
        ):
            self._send.send_nowait(conn.muxed_conn.peer_id)

    async def disconnected(self, network: Any, conn: Any) -> None:
        return None

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None


class CommunityDht:
    """A member's Kademlia DHT node; create it with `CommunityDht.running(peer)`."""

    def __init__(self, peer: Peer, kad: KadDHT) -> None:
        self.peer = peer
        self.kad = kad
        self._running = True
        self._stopped = trio.Event()
        self._joined = trio.Event()  # set when a peer is added, reset by the join lookup

    @classmethod
    @asynccontextmanager
    async def running(cls, peer: Peer) -> AsyncIterator[CommunityDht]:
        """Run the DHT on `peer`'s host until the block exits (before the host closes).
        Peers already connected and every later connection are offered to the routing
        table."""
        kad = KadDHT(peer.host, DHTMode.SERVER)
        dht = cls(peer, kad)
        send, receive = trio.open_memory_channel[ID](256)
        notifee = _ConnectionNotifee(send)
        network = peer.host.get_network()
        async with background_trio_service(kad), trio.open_nursery() as nursery:
            network.register_notifee(notifee)
            for peer_id in peer.host.get_connected_peers():
                send.send_nowait(peer_id)
            nursery.start_soon(dht._admit_connected_peers, receive, nursery)
            nursery.start_soon(dht._join_lookups)
            try:
                yield dht
            finally:
                dht._running = False
                dht._stopped.set()
                network.remove_notifee(notifee)
                send.close()
                peer.host.remove_stream_handler(PROTOCOL_ID)
                nursery.cancel_scope.cancel()

    def _check_running(self) -> None:
        if not self._running:
            raise P2PError("the DHT has stopped: use it inside `CommunityDht.running(...)`")

    async def _admit_connected_peers(
        self, receive: trio.MemoryReceiveChannel[ID], nursery: trio.Nursery
    ) -> None:
        async for peer_id in receive:
            nursery.start_soon(self._admit, peer_id)

    async def _admit(self, peer_id: ID) -> None:
        """Add a connected peer to the routing table once identify has said which
        protocols it speaks: KadDHT then refuses a peer that does not serve the DHT,
        while before identify it would take any peer."""
        peerstore = self.peer.host.get_peerstore()
        with trio.move_on_after(IDENTIFY_WAIT):
            while True:
                with contextlib.suppress(PeerStoreError):  # until identify records it
                    if peerstore.get_protocols(peer_id):
                        break
                await trio.sleep(0.05)
        if await self.kad.add_peer(peer_id):
            self._joined.set()

    async def _join_lookups(self) -> None:
        """Look up our own id after peers join the routing table, as a Kademlia node
        joining does: it fills our table with the peers near us and tells them of us."""
        while True:
            await self._joined.wait()
            self._joined = trio.Event()
            try:
                with trio.move_on_after(DEFAULT_FIND_TIMEOUT):
                    await self.kad.peer_routing.find_closest_peers_network(
                        self.peer.host.get_id().to_bytes()
                    )
            except Exception as exc:
                log.info("DHT join lookup failed: %s", exc)
            await trio.sleep(SELF_LOOKUP_SPACING)

    def routing_table_size(self) -> int:
        return int(self.kad.get_routing_table_size())

    # Announcing -----------------------------------------------------------------------

    async def provide(self, community_id: bytes, timeout: float = DEFAULT_PROVIDE_TIMEOUT) -> bool:
        """Announce that this member holds `community_id`, with `peer.addresses()`, to
        the peers closest to its key. Returns whether at least one peer confirmed it
        stored the record; a network failure is logged, not raised (announce later)."""
        _check_community(community_id)
        self._check_running()
        key = provider_key(community_id)
        own_id = self.peer.host.get_id()
        addresses = [multiaddr.Multiaddr(address) for address in self.peer.addresses()]
        # Answer for ourselves too, as KadDHT does: a lookup that reaches us finds us.
        self.kad.provider_store.add_provider(key, PeerInfo(own_id, addresses))
        confirmed = 0

        async def announce_to(peer_id: ID, limiter: trio.CapacityLimiter) -> None:
            nonlocal confirmed
            async with limiter:
                with trio.move_on_after(QUERY_TIMEOUT):
                    if await self._add_provider(peer_id, key, addresses):
                        confirmed += 1

        try:
            with trio.move_on_after(timeout):
                closest = await self.kad.peer_routing.find_closest_peers_network(key)
                limiter = trio.CapacityLimiter(QUERY_CONCURRENCY)
                async with trio.open_nursery() as nursery:
                    for peer_id in closest:
                        if peer_id != own_id:
                            nursery.start_soon(announce_to, peer_id, limiter)
        except Exception as exc:
            log.info("announcing community %s failed: %s", community_id.hex(), exc)
        if not confirmed:
            log.info("no peer took the announcement of community %s", community_id.hex())
        return confirmed > 0

    async def _add_provider(
        self, peer_id: ID, key: bytes, addresses: list[multiaddr.Multiaddr]
    ) -> bool:
        """Send one ADD_PROVIDER and wait for the echo a py-libp2p server sends once it
        has stored the record (it resets the stream when it refuses, e.g. over its
        rate)."""
        host = self.peer.host
        try:
            stream = await host.new_stream(peer_id, [PROTOCOL_ID])
        except Exception as exc:
            log.debug("no DHT stream to %s: %s", peer_id, exc)
            return False
        try:
            envelope, _created = env_to_send_in_RPC(host)
            message = Message()
            message.type = Message.MessageType.ADD_PROVIDER
            message.key = key
            message.senderRecord = envelope
            provider = message.providerPeers.add()
            provider.id = host.get_id().to_bytes()
            provider.addrs.extend(address.to_bytes() for address in addresses)
            provider.signedRecord = envelope
            await stream.write(encode_varint_prefixed(message.SerializeToString()))
            echo = Message()
            echo.ParseFromString(await read_varint_prefixed_bytes_limited(stream, 1024))
            return bool(echo.type == Message.MessageType.ADD_PROVIDER and echo.key == key)
        except Exception as exc:
            log.debug("%s did not take a provider record: %s", peer_id, exc)
            return False
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    def stop_providing(self, community_id: bytes) -> None:
        """Stop answering for `community_id`. Records already held by other peers
        cannot be withdrawn: they expire within 48 hours."""
        _check_community(community_id)
        providers = self.kad.provider_store.providers.get(provider_key(community_id), {})
        providers.pop(str(self.peer.host.get_id()), None)

    async def keep_providing(
        self,
        communities: Callable[[], Iterable[bytes]],
        interval: float = REPROVIDE_INTERVAL,
    ) -> None:
        """Announce every community `communities()` returns now and every `interval`
        seconds, until cancelled or until the DHT stops. Run it with `peer.start_soon`."""
        if interval <= 0:
            raise P2PError(f"a re-announce interval is positive, not {interval!r}")
        while self._running:
            for index, community_id in enumerate(list(communities())):
                if index:
                    with trio.move_on_after(PROVIDE_SPACING):
                        await self._stopped.wait()
                if not self._running:
                    return
                await self.provide(community_id)
            with trio.move_on_after(interval):
                await self._stopped.wait()

    # Looking up -----------------------------------------------------------------------

    async def find_members(
        self,
        community_id: bytes,
        limit: int = 20,
        timeout: float = DEFAULT_FIND_TIMEOUT,
    ) -> list[str]:
        """Addresses (ending in /p2p/<peer id>) of up to `limit` other members who
        announced `community_id`, several per member when it has several. Returns what
        was found when `timeout` seconds are up; a network failure gives [] and a log
        line, never an exception."""
        _check_community(community_id)
        if limit < 1:
            raise P2PError(f"a member limit is at least 1, not {limit!r}")
        if timeout <= 0:
            raise P2PError(f"a timeout is positive, not {timeout!r}")
        self._check_running()
        found: dict[ID, list[str]] = {}
        try:
            with trio.move_on_after(timeout):
                await self._look_up(provider_key(community_id), found, limit)
        except Exception as exc:
            log.info("looking up members of %s failed: %s", community_id.hex(), exc)
        return [address for addresses in found.values() for address in addresses]

    async def _look_up(self, key: bytes, found: dict[ID, list[str]], limit: int) -> None:
        """Fill `found` from the records others left with us, then from the peers we
        already know nearest to `key`, then from the closest peers a network lookup
        finds: each step only if the ones before found too few."""
        own_id = self.peer.host.get_id()

        def take(providers: Iterable[PeerInfo]) -> None:
            for info in providers:
                if info.peer_id == own_id or (info.peer_id not in found and len(found) >= limit):
                    continue
                addresses = _full_addresses(info)
                if addresses:
                    merged = found.setdefault(info.peer_id, [])
                    merged.extend(a for a in addresses if a not in merged)

        take(self.kad.provider_store.get_providers(key))
        if len(found) >= limit:
            return
        asked: set[ID] = {own_id}
        known = self.kad.routing_table.find_local_closest_peers(key, BUCKET_SIZE)
        known += [p for p in self.peer.host.get_connected_peers() if p not in known]
        await self._ask(sort_peer_ids_by_distance(key, known)[:BUCKET_SIZE], key, asked, take)
        if len(found) >= limit:
            return
        closest = await self.kad.peer_routing.find_closest_peers_network(key)
        # A peer that did not answer the lookup is not connected now: asking it again
        # would only wait for another timeout.
        connected = set(self.peer.host.get_connected_peers())
        await self._ask([p for p in closest if p in connected], key, asked, take)

    async def _ask(
        self,
        peers: Iterable[ID],
        key: bytes,
        asked: set[ID],
        take: Callable[[Iterable[PeerInfo]], None],
    ) -> None:
        """Ask each of `peers` not yet asked for the providers of `key`, a few at once."""
        limiter = trio.CapacityLimiter(QUERY_CONCURRENCY)
        store = self.kad.provider_store

        async def ask_one(peer_id: ID) -> None:
            async with limiter:
                with trio.move_on_after(QUERY_TIMEOUT):
                    # Never raises: logs and answers ([], []) on any failure.
                    providers, _closer = await store._get_providers_from_peer_with_closers(
                        peer_id, key
                    )
                    take(providers)

        async with trio.open_nursery() as nursery:
            for peer_id in peers:
                if peer_id not in asked:
                    asked.add(peer_id)
                    nursery.start_soon(ask_one, peer_id)
