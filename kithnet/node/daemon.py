"""`kithnet serve`: a node in the foreground, for an always-on machine that keeps its
communities reachable. It follows every community the member belongs to, connects to the
members it is told about, syncs each shared community with every connected member now and
then, logs peers and sync to stderr, and stops cleanly on SIGINT or SIGTERM.

First step of issue 4: the control socket, discovery from invites and the DHT, and
relays come next.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence

import trio

from kithnet.localstore.store import Store
from kithnet.node.node import Node
from kithnet.node.sync import SyncError
from kithnet.p2p.host import P2PError, Peer

log = logging.getLogger("kithnet.serve")


async def _sync_round(node: Node, communities: Sequence[bytes]) -> None:
    for peer_id in node.peer.connected_peers():
        for community in communities:
            try:
                client = await node.sync(peer_id, community, timeout=120)
            except (SyncError, P2PError) as exc:
                log.info("sync of %s with %s failed: %s", community.hex()[:12], peer_id, exc)
                continue
            log.info(
                "synced %s with %s: %d received, %d sent",
                community.hex()[:12],
                peer_id,
                client.received,
                client.sent,
            )


async def serve(
    store: Store,
    listen: Sequence[str],
    peers: Sequence[str],
    *,
    resync_interval: float = 60,
) -> None:
    """Run until SIGINT or SIGTERM (or cancellation)."""
    communities = [c.id for c in store.communities()]
    async with Peer.running(store.identity, listen) as peer:
        node = Node(store, peer)
        for community in communities:
            await node.follow(community)
        for address in peer.addresses():
            log.info("listening on %s", address)
        log.info("following %d communities", len(communities))
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for received in signals:
                        log.info("stopping on %s", signal.Signals(received).name)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                for address in peers:
                    try:
                        peer_id = await peer.connect(address)
                        log.info("connected to %s", peer_id)
                    except P2PError as exc:
                        log.warning("%s", exc)
                while True:
                    await _sync_round(node, communities)
                    await trio.sleep(resync_interval)
    log.info("stopped")
