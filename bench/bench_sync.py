"""Catch-up sync over a real libp2p stream on 127.0.0.1 between two real stores: a member
who was away is missing the newest records of a community (issue 4: 10,000 of 100,000
in under 5 s, wire overhead under 15 % of the missing records' bytes, round trips growing
with the log of the set).

    .venv/bin/python bench/bench_sync.py [--records N] [--missing M]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF, NOW_MS, community_setup, make_posts
from kithnet.crypto.identity import Identity
from kithnet.localstore.store import Store
from kithnet.node.node import Node
from kithnet.p2p.host import Peer

TIME_LIMIT_S = 5.0
OVERHEAD_LIMIT = 0.15


async def measure(server: Store, client: Store, community: bytes) -> tuple[float, int, int, int]:
    async with (
        Peer.running(server.identity) as server_peer,
        Peer.running(client.identity) as client_peer,
    ):
        await Node(server, server_peer).follow(community)  # a server serves what it follows
        node = Node(client, client_peer)
        await client_peer.connect(server_peer.addresses()[0])
        start = time.perf_counter()
        result = await node.sync(server_peer.peer_id, community)
        spent = time.perf_counter() - start
    return spent, result.bytes_in + result.bytes_out, result.round_trips, result.received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--missing", type=int, default=10_000)
    args = parser.parse_args()
    owner = Identity.from_seed(bytes([1]) * 32)
    authors = [Identity.from_seed(bytes([10 + i]) * 32) for i in range(20)]
    setup = community_setup(owner, authors, "Catch-up")
    community = setup[0].id
    posts = make_posts(args.records - len(setup), authors, community)
    everything = [r.envelope for r in setup] + posts
    kept = everything[: len(everything) - args.missing]  # away for the newest ones
    missing_bytes = sum(len(e) for e in everything[len(kept) :])
    print(
        f"{len(everything):,} records; the member lacks the newest {args.missing:,}"
        f" ({missing_bytes:,} bytes of envelopes)"
    )
    with tempfile.TemporaryDirectory() as folder:
        server = Store.create(Path(folder) / "server", "bench", kdf=FAST_KDF)
        client = Store.create(Path(folder) / "client", "bench", kdf=FAST_KDF)
        for start in range(0, len(everything), 1000):
            server.ingest(everything[start : start + 1000], now=NOW_MS)
        for start in range(0, len(kept), 1000):
            client.ingest(kept[start : start + 1000], now=NOW_MS)
        spent, wire, rounds, received = trio.run(measure, server, client, community)
        assert received == args.missing, received
        assert set(server.sync_items(community)) <= set(client.sync_items(community))
        server.close()
        client.close()
    overhead = wire / missing_bytes - 1
    print(f"complete in {spent:.2f} s (limit {TIME_LIMIT_S} s: {spent / TIME_LIMIT_S:.2f} of it)")
    print(
        f"wire {wire:,} bytes: overhead {overhead:.1%} of the missing records' bytes"
        f" (limit {OVERHEAD_LIMIT:.0%}: {overhead / OVERHEAD_LIMIT:.2f} of it)"
    )
    print(
        f"{rounds} Negentropy round trips; log16 of the set is {math.log(len(everything), 16):.1f}"
    )


if __name__ == "__main__":
    main()
