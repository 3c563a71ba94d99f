"""Running a node: `kithnet serve` in the foreground, or a node started for one command.

`serve` follows every community the member takes part in, dials the members its peer
book knows (and any given with --peer), catches up with each member on connecting and
every `resync_interval` seconds, announces its communities in the DHT and looks there for
members of a community none of whose members it reaches, answers commands on the control
socket, logs peers and sync to stderr, and stops cleanly on SIGINT or SIGTERM: everything
it stored is already durable, since the store commits each batch before it returns.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import multiaddr
import trio

from kithnet.localstore.store import Store
from kithnet.node.commands import Commands
from kithnet.node.control import serving
from kithnet.node.node import TARGET_PEERS, Node
from kithnet.p2p.dht import CommunityDht
from kithnet.p2p.host import P2PError, Peer
from kithnet.p2p.relay import RelayClient, RelayService

log = logging.getLogger("kithnet.serve")
T = TypeVar("T")

DEFAULT_LISTEN = ("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1")
TEMPORARY_LISTEN = ("/ip4/127.0.0.1/tcp/0",)


@contextlib.asynccontextmanager
async def running_node(
    store: Store, listen: Sequence[str], *, announce: bool = True, mdns: bool = False
) -> AsyncIterator[Node]:
    """A node following every community the member takes part in."""
    for address in listen:
        try:
            multiaddr.Multiaddr(address)
        except Exception as exc:  # multiaddr raises several unrelated types
            raise P2PError(f"cannot listen on {address!r}: not a multiaddr ({exc})") from None
    try:
        async with Peer.running(store.identity, listen, mdns=mdns) as peer:
            if not peer.addresses():
                raise P2PError(
                    f"could not listen on {', '.join(listen)} (in use by another program?)"
                )
            node = Node(store, peer, announce=announce)
            for community in store.followed_communities():
                if store.community(community) is not None:  # else: a join not yet answered
                    await node.follow(community)
            yield node
    except OSError as exc:
        raise P2PError(f"cannot listen on {', '.join(listen)}: {exc.strerror or exc}") from exc


async def serve(
    store: Store,
    listen: Sequence[str],
    peers: Sequence[str],
    *,
    resync_interval: float = 60,
    mdns: bool = False,
    remember_listen: bool = False,
    relay: bool = False,
    relay_via: Sequence[str] = (),
    on_signals: bool = True,
    ready: Callable[[Node, Commands], None] | None = None,
) -> None:
    """Run until SIGINT or SIGTERM (`on_signals`: only in a main thread) or
    cancellation. `remember_listen`: the next `serve` without --listen listens on
    `listen` too. `relay`: act as a circuit relay for members behind NAT. `relay_via`:
    reserve a slot on these relays and announce the circuit addresses, for a node others
    cannot dial directly. `ready` is called once the node runs (the desktop app's
    bridge takes the node and its commands from it)."""
    async with (
        running_node(store, listen, mdns=mdns) as node,
        RelayClient.running(node.peer) as relay_client,
        contextlib.AsyncExitStack() as services,
    ):
        peer = node.peer
        node.relay_client = relay_client
        if relay:
            node.relay_service = await services.enter_async_context(RelayService.running(peer))
            log.info("relaying for members behind NAT")
        for address in relay_via:
            try:
                circuits = await relay_client.reserve(address)
            except P2PError as exc:
                log.warning("no relay reservation: %s", exc)
                continue
            node.relayed_addresses += circuits
            for circuit in circuits:
                log.info("reachable through a relay at %s", circuit)
        store.set_setting("announce", node.announced())
        if remember_listen:
            store.set_setting("listen", list(listen))
        peer.on_connect(_log_connect)
        peer.on_disconnect(_log_disconnect)
        for address in peer.addresses():
            log.info("listening on %s", address)
        log.info("following %d communities", len(node.following))
        commands = Commands(node)
        with (
            trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            if on_signals
            else contextlib.nullcontext(_no_signals())
        ) as signals:
            async with (
                CommunityDht.running(peer) as dht,
                serving(store.data_dir, commands.dispatch) as path,
                trio.open_nursery() as nursery,
            ):
                log.info("control socket %s", path)
                node.directory.dht = dht
                peer.on_connect(node.directory.on_connect)
                nursery.start_soon(
                    dht.keep_providing, lambda: [*_wire_ids(node), *node.directory.provider_ids()]
                )

                async def stop_on_signal() -> None:
                    async for received in signals:
                        log.info("stopping on %s", signal.Signals(received).name)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                if ready is not None:
                    ready(node, commands)
                for address in peers:
                    try:
                        await node.connect(address)
                    except P2PError as exc:
                        log.warning("%s", exc)
                await node.dial_known()
                if not store.directory_count():  # a new node: find a directory to start from
                    await node.directory.refresh()
                await node.directory.reannounce_due(commands)
                while True:
                    await trio.sleep(resync_interval)
                    if len(peer.connected_peers()) < TARGET_PEERS:
                        await node.dial_known()
                    await _find_lost_communities(node, dht)
                    await node.sync_all()
                    await node.directory.reannounce_due(commands)
    log.info("stopped")


async def _no_signals() -> AsyncIterator[int]:
    """A signal receiver that never receives (a node run by the desktop app stops by
    cancellation)."""
    await trio.sleep_forever()
    yield 0  # pragma: no cover


async def _find_lost_communities(node: Node, dht: CommunityDht) -> None:
    """For each community no connected peer takes part in (its bootstrap members are
    gone, say), ask the DHT for members who announced it and dial them."""
    for community in sorted(node.following):
        wire = node.wire_id(community)  # a private community is looked up by its handle
        if wire is None or node.community_peers(community):
            continue
        for address in await dht.find_members(wire, limit=5):
            try:
                await node.connect(address, source="dht")
            except P2PError as exc:
                log.debug("%s", exc)
                continue
            log.info("found a member of %s through the DHT", community.hex()[:12])
            break


def _wire_ids(node: Node) -> list[bytes]:
    """What the DHT announces: public communities' ids, private ones' handles."""
    return [w for w in (node.wire_id(c) for c in sorted(node.following)) if w is not None]


async def _log_connect(peer_id: str) -> None:
    log.info("connected to %s", peer_id)


async def _log_disconnect(peer_id: str) -> None:
    log.info("disconnected from %s", peer_id)


async def run_command(
    store: Store, command: Callable[[Commands], Awaitable[T]], *, network: bool
) -> T:
    """Run one command on a node started for it alone (no node is running). A command
    that needs the network dials the members the peer book knows first."""
    async with running_node(store, TEMPORARY_LISTEN, announce=False) as node:
        commands = Commands(node, temporary=True)
        if network:
            await node.dial_known(timeout=10)
        return await command(commands)


def dispatch_locally(store: Store, name: str, args: dict[str, Any], *, network: bool) -> Any:
    """Run a control command without a running node (blocking)."""
    return trio.run(lambda: run_command(store, lambda c: c.dispatch(name, args), network=network))
