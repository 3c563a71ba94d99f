"""The member's libp2p host: their Ed25519 key as peer identity, TCP with Noise and
Yamux, one connection per peer, GossipSub v1.1 with one topic per community and a
message id derived from the content (docs/protocol.md, "Gossip"). Knows no storage: the
node hands it a validator and a handler for each topic.

First step of issue 4: gossip and streams between members on known addresses. Peer
discovery (invites' bootstrap addresses, peer exchange, the DHT), per-peer rate limits,
relays and the daemon come next.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from kithnet.crypto.identity import Identity

TOPIC_PREFIX = "/kithnet/community/1/"
MESHSUB = TProtocol("/meshsub/1.1.0")
DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)

Validator = Callable[[bytes], bool]
Handler = Callable[[bytes, str], Awaitable[None]]
StreamHandler = Callable[[Any], Awaitable[None]]


# Per forwarding peer: what an honest member's node sends even in a burst (up to 64 records
# per message), far below what a flooder sends. Replaces py-libp2p's per-topic limit, which
# also drops a member's own honest bursts.
PEER_MESSAGES_PER_SECOND = 100.0
PEER_MESSAGE_BURST = 200.0


class RateLimiter:
    """A token bucket per peer: `rate` messages a second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, time)

    def allow(self, peer: str, now: float) -> bool:
        tokens, then = self._buckets.get(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - 1, now)
        return True


class _ThrottledPubsub(Pubsub):
    """Pubsub that drops a forwarding neighbour's messages beyond its rate before they
    are looked at. (A refusal by a topic validator would be cached by message id, and the
    same record would then be refused from honest neighbours too.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limiter = RateLimiter(PEER_MESSAGES_PER_SECOND, PEER_MESSAGE_BURST)
        self.dropped: Counter[str] = Counter()

    async def push_msg(self, msg_forwarder: ID, msg: Any) -> None:
        if msg_forwarder != self.my_id and not self.limiter.allow(
            str(msg_forwarder), trio.current_time()
        ):
            self.dropped["rate_limited"] += 1
            return
        await super().push_msg(msg_forwarder, msg)


class P2PError(Exception):
    """A network operation failed; the message says which and why."""


def community_topic(community_id: bytes) -> str:
    """The GossipSub topic of a public community."""
    return TOPIC_PREFIX + community_id.hex()


def message_id(message: Any) -> bytes:
    """GossipSub message id: SHA-256 of the message data, so that every implementation
    computes the same id for the same records, whoever relays them."""
    return hashlib.sha256(message.data).digest()


def _key_pair(identity: Identity) -> KeyPair:
    private = Ed25519PrivateKey(identity.signing_key)
    return KeyPair(private, private.get_public_key())


class Peer:
    """A running libp2p host with pubsub; create it with `Peer.running(...)`."""

    def __init__(self, host: Any, pubsub: _ThrottledPubsub, nursery: trio.Nursery) -> None:
        self.host = host
        self.pubsub = pubsub
        self._nursery = nursery
        self.limiter = pubsub.limiter
        self.dropped = pubsub.dropped  # messages refused before validation, by reason

    @classmethod
    @asynccontextmanager
    async def running(
        cls, identity: Identity, listen: Sequence[str] = DEFAULT_LISTEN
    ) -> AsyncIterator[Peer]:
        host = new_host(
            key_pair=_key_pair(identity),
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(max_connections_per_peer=1),
            enable_mDNS=False,
        )
        router = GossipSub(
            protocols=[MESHSUB],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=1,
            # Its per-publisher limit drops a member's own honest bursts; Kithnet
            # limits peers itself.
            spam_protection_enabled=False,
        )
        pubsub = _ThrottledPubsub(host, router, msg_id_constructor=message_id, strict_signing=True)
        addresses = [multiaddr.Multiaddr(address) for address in listen]
        async with (
            host.run(addresses),
            trio.open_nursery() as nursery,
            background_trio_service(pubsub),
            background_trio_service(router),
        ):
            await pubsub.wait_until_ready()
            try:
                yield cls(host, pubsub, nursery)
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await host.close()  # closes every connection, not only the listeners

    def start_soon(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run `task` for as long as the host runs."""
        self._nursery.start_soon(task)

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())

    def addresses(self) -> list[str]:
        """Where other members can reach this host, each ending in /p2p/<peer id>."""
        return [str(address) for address in self.host.get_addrs()]

    async def connect(self, address: str) -> str:
        """Connect to a member at a full multiaddr; returns their peer id."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        except Exception as exc:  # multiaddr raises several unrelated types
            raise P2PError(f"{address!r} is not a member's address: {exc}") from exc
        try:
            await self.host.connect(info)
        except Exception as exc:
            raise P2PError(f"could not reach {address}: {exc}") from exc
        return str(info.peer_id)

    async def subscribe(self, topic: str, validator: Validator, handler: Handler) -> None:
        """Take part in `topic`. `validator` runs on every message before it is
        delivered or forwarded (a refused message is neither); `handler` then gets
        its data and the peer id of its author."""

        def validate(_peer: ID, message: Any) -> bool:
            return validator(message.data)

        self.pubsub.set_topic_validator(topic, validate, False)
        subscription = await self.pubsub.subscribe(topic)

        async def deliver() -> None:
            while True:
                message = await subscription.get()
                await handler(message.data, str(ID(message.from_id)))

        self._nursery.start_soon(deliver)

    async def publish(self, topic: str, data: bytes) -> None:
        await self.pubsub.publish(topic, data)

    def connected_peers(self) -> list[str]:
        return [str(peer) for peer in self.host.get_connected_peers()]

    def topic_peers(self, topic: str) -> set[str]:
        return {str(peer) for peer in self.pubsub.peer_topics.get(topic, ())}

    async def wait_for_topic_peer(self, topic: str, peer_id: str, timeout: float = 10) -> None:
        """Return once `peer_id` is known to take part in `topic` (a publish before
        that would not reach it); raises P2PError after `timeout` seconds."""
        with trio.move_on_after(timeout):
            while peer_id not in self.topic_peers(topic):
                await trio.sleep(0.01)
            return
        raise P2PError(f"{peer_id} did not join {topic} within {timeout} s")

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        self.host.set_stream_handler(TProtocol(protocol), handler)

    async def open_stream(self, peer_id: str, protocol: str) -> Any:
        try:
            return await self.host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])
        except Exception as exc:
            raise P2PError(f"could not open {protocol} to {peer_id}: {exc}") from exc
