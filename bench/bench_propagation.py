"""Propagation: N members, each a real libp2p host with a real store, in a random mesh on
127.0.0.1 (all in one process, so all share one core's worth of Python); one member posts;
the time until every member's store holds the post. Issue 4 aims at p99 under 1 s for 30
nodes.

    .venv/bin/python bench/bench_propagation.py [--nodes 10 30] [--posts 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF
from kithnet.crypto.identity import Identity
from kithnet.localstore.store import Store
from kithnet.node.node import Node
from kithnet.p2p.host import Peer, community_topic

LIMIT_P99_S = 1.0


async def run(count: int, posts: int, degree: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        stores = [
            Store.create(
                Path(folder) / f"m{i}", "bench", identity=Identity.generate(), kdf=FAST_KDF
            )
            for i in range(count)
        ]
        genesis = stores[0].publish({"kind": "community", "name": "Mesh", "visibility": "public"})
        for store in stores[1:]:
            store.ingest([genesis.envelope])
        topic = community_topic(genesis.id)
        async with AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(Peer.running(s.identity)) for s in stores]
            nodes = [Node(s, p) for s, p in zip(stores, peers, strict=True)]
            for node in nodes:
                await node.follow(genesis.id)
            # A random connected mesh: a ring plus random chords.
            edges = {(i, (i + 1) % count) for i in range(count)}
            while len(edges) < count * degree // 2:
                a, b = rng.sample(range(count), 2)
                edges.add((min(a, b), max(a, b)))
            for a, b in edges:
                await peers[a].connect(peers[b].addresses()[0])
            for a, b in edges:
                await peers[a].wait_for_topic_peer(topic, peers[b].peer_id)
                await peers[b].wait_for_topic_peer(topic, peers[a].peer_id)
            await trio.sleep(2)  # a few heartbeats, so that the meshes settle
            times = []
            for number in range(posts):
                author = nodes[0]
                start = time.perf_counter()
                record = await author.post(
                    {
                        "kind": "post",
                        "community": genesis.id,
                        "type": "post",
                        "text": f"post {number}",
                    }
                )
                for node in nodes[1:]:
                    await node.wait_for_record(record.id, timeout=30)
                times.append(time.perf_counter() - start)
                await trio.sleep(0.1)
        for store in stores:
            store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--degree", type=int, default=4, help="average connections per node")
    args = parser.parse_args()
    for count in args.nodes:
        times = trio.run(run, count, args.posts, args.degree, 1)
        ordered = sorted(times)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(
            f"{count} nodes, {args.posts} posts: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
            f" (p99 / {LIMIT_P99_S:.0f} s limit = {p99 / LIMIT_P99_S:.2f})"
        )


if __name__ == "__main__":
    main()
