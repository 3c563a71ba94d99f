"""End-to-end throughput and idle latency between two members on 127.0.0.1: records of
1 KiB posted as fast as the author's node takes them, delivered by gossip and stored by
the other (issue 4 aims above 1,000 records per second; a single post on an idle network
in under 10 ms median).

    .venv/bin/python bench/bench_throughput.py [--records N] [--idle-posts M]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF
from kithnet.crypto.identity import Identity
from kithnet.localstore.store import Store
from kithnet.node.node import Node
from kithnet.p2p.host import Peer, community_topic

THROUGHPUT_LIMIT = 1_000
IDLE_LIMIT_MS = 10.0
TEXT = "Insulation, solar and heat pumps: " + "x" * 990


async def run(records: int, idle_posts: int) -> tuple[float, int, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        ann = Store.create(Path(folder) / "ann", "b", identity=Identity.generate(), kdf=FAST_KDF)
        bob = Store.create(Path(folder) / "bob", "b", identity=Identity.generate(), kdf=FAST_KDF)
        genesis = ann.publish({"kind": "community", "name": "Load", "visibility": "public"})
        bob.ingest([genesis.envelope])
        async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bob_peer:
            ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
            await ann_node.follow(genesis.id)
            await bob_node.follow(genesis.id)
            await bob_peer.connect(ann_peer.addresses()[0])
            await ann_peer.wait_for_topic_peer(community_topic(genesis.id), bob_peer.peer_id)
            await trio.sleep(1.5)  # let the mesh form

            latencies = []
            for number in range(idle_posts):
                start = time.perf_counter()
                post = await ann_node.post(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": f"{number}"}
                )
                await bob_node.wait_for_record(post.id)
                latencies.append((time.perf_counter() - start) * 1000)
                await trio.sleep(0.05)

            before = bob.record_count()
            start = time.perf_counter()
            last = None
            for number in range(records):
                last = await ann_node.post(
                    {
                        "kind": "post",
                        "community": genesis.id,
                        "type": "post",
                        "text": f"{number} {TEXT}",
                    }
                )
            assert last is not None
            with trio.move_on_after(120):
                await bob_node.wait_for_record(last.id, timeout=120)
            spent = time.perf_counter() - start
            delivered = bob.record_count() - before
        ann.close()
        bob.close()
    return spent, delivered, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--idle-posts", type=int, default=50)
    args = parser.parse_args()
    spent, delivered, latencies = trio.run(run, args.records, args.idle_posts)
    rate = delivered / spent
    p50 = statistics.median(latencies)
    print(
        f"sustained: {delivered:,} of {args.records:,} posts of ~1 KiB delivered and stored in"
        f" {spent:.2f} s = {rate:,.0f}/s"
        f" (limit {THROUGHPUT_LIMIT:,}/s: {rate / THROUGHPUT_LIMIT:.2f})"
    )
    print(
        f"idle: one post end to end, median {p50:.1f} ms over {len(latencies)}"
        f" (limit {IDLE_LIMIT_MS:.0f} ms: {p50 / IDLE_LIMIT_MS:.2f}); max {max(latencies):.1f} ms"
    )
    print("(both nodes share this process, so one core's worth of Python between them)")


if __name__ == "__main__":
    main()
