"""Memory per running node and per joined community: the resident memory (VmRSS, and its
peak VmHWM, from /proc/self/status) of fresh processes on 127.0.0.1, mDNS off. The issue
names no limit for memory, so this prints figures only.

    .venv/bin/python bench/bench_memory.py [--communities 1 10 50] [--nodes 1 5 10]

- baseline: a process that has imported kithnet and libp2p and runs no node;
- one member's node (Store + Peer + Node) in a child process, connected to one other
  member (this process) and following 1, 10, 50 communities, each with its genesis, an
  invite, the member's join and --posts posts; the two exchange a post in each, so
  that gossip state exists; the slope is the cost of each further community;
- several nodes in one child process (1, 5, 10), following one community, each dialling
  the next (peer exchange may then add connections), passing a post from each end of
  the chain to the other; the slope is the cost of each further node.

Each figure is read after SETTLE_S seconds (two gossip heartbeats) and a gc.collect().
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgpack
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF, community_setup, make_posts
from bench.harness import (
    child_process,
    memory_mib,
    parent_channel,
    running_peer,
    wait_for_mesh,
    wait_for_parent_to_close,
)
from kithnet.crypto.identity import Identity
from kithnet.localstore.store import Store
from kithnet.node.node import Node
from kithnet.p2p.host import community_topic

SCRIPT = str(Path(__file__).resolve())
SETTLE_S = 2.0  # two heartbeats of gossip before memory is read
CHILD_LIMIT_S = 120.0  # a child gives up after this long
STEP_TIMEOUT_S = 60.0
# Posts exchanged per round trip. A burst of one post in each of 50 communities loses
# some: the node's publisher sends one message per community in a single pass, and
# py-libp2p drops what is beyond 32 queued for one peer.
EXCHANGE_CHUNK = 10


def community_data(
    owner: Identity, member: Identity, count: int, posts: int
) -> list[tuple[bytes, list[bytes]]]:
    """`count` public communities of `owner`, each with an invite, `member`'s join and
    `posts` posts by the owner: (genesis id, envelopes) for each."""
    made = []
    for number in range(count):
        setup = community_setup(owner, [member], f"Street {number}")
        genesis = setup[0].id
        made.append((genesis, [r.envelope for r in setup] + make_posts(posts, [owner], genesis)))
    return made


def ingest_all(store: Store, data: list[tuple[bytes, list[bytes]]]) -> None:
    for _, envelopes in data:
        outcomes = store.ingest(envelopes)
        refused = [o for o in outcomes if o.status not in ("stored", "duplicate")]
        assert not refused, refused[0]


def post_fields(community: bytes, text: str) -> dict[str, Any]:
    return {"kind": "post", "community": community, "type": "post", "text": text}


def settled_memory() -> dict[str, float]:
    gc.collect()
    return memory_mib()


# Children ----------------------------------------------------------------------------


def baseline_child() -> None:
    print(json.dumps(settled_memory()), flush=True)


async def community_child(data_path: str, seed: str, address: str) -> None:
    """One member's node: takes in the communities in `data_path`, follows them all,
    connects to the member at `address`; then, in rounds, waits for the parent's posts
    and posts one in each community the parent names; then reports its memory."""
    parent = parent_channel()
    identity = Identity.from_seed(bytes.fromhex(seed))
    data = [(bytes(c), list(e)) for c, e in msgpack.unpackb(Path(data_path).read_bytes())]
    communities = [community for community, _ in data]
    with tempfile.TemporaryDirectory() as folder, trio.fail_after(CHILD_LIMIT_S):
        store = Store.create(Path(folder) / "member", "bench", identity=identity, kdf=FAST_KDF)
        ingest_all(store, data)
        del data
        async with running_peer(identity) as peer:
            node = Node(store, peer)
            for community in communities:
                await node.follow(community)
            other = await peer.connect(address)
            for community in communities:
                await peer.wait_for_topic_peer(community_topic(community), other)
                await wait_for_mesh(peer, community_topic(community), other)
            await parent.send(peer=peer.peer_id)
            while "posts" in (message := await parent.receive(STEP_TIMEOUT_S)):
                for record_id in message["posts"]:
                    await node.wait_for_record(bytes.fromhex(record_id), timeout=30)
                mine = []
                for number in range(*message["reply_in"]):
                    text = f"Hello from the member {number}"
                    mine.append((await node.post(post_fields(communities[number], text))).id.hex())
                await parent.send(posts=mine)
            await trio.sleep(SETTLE_S)
            await parent.send(**settled_memory())
            await wait_for_parent_to_close(parent, STEP_TIMEOUT_S)
        store.close()


async def nodes_child(count: int, posts: int) -> None:
    """`count` nodes in this process, in a chain, following one community."""
    identities = [Identity.generate() for _ in range(count)]
    setup = community_setup(identities[0], identities[1:], "Chain")
    genesis = setup[0].id
    envelopes = [r.envelope for r in setup] + make_posts(posts, identities[:1], genesis)
    topic = community_topic(genesis)
    with tempfile.TemporaryDirectory() as folder, trio.fail_after(CHILD_LIMIT_S):
        stores = [
            Store.create(Path(folder) / f"m{i}", "bench", identity=who, kdf=FAST_KDF)
            for i, who in enumerate(identities)
        ]
        for store in stores:
            ingest_all(store, [(genesis, envelopes)])
        async with AsyncExitStack() as stack:
            peers = [await stack.enter_async_context(running_peer(who)) for who in identities]
            nodes = [Node(store, peer) for store, peer in zip(stores, peers, strict=True)]
            for node in nodes:
                await node.follow(genesis)
            for left, right in itertools.pairwise(peers):
                await left.connect(right.addresses()[0])
            for left, right in itertools.pairwise(peers):
                await wait_for_mesh(left, topic, right.peer_id)
                await wait_for_mesh(right, topic, left.peer_id)
            for end, author in enumerate((nodes[0], nodes[-1])):
                record = await author.post(post_fields(genesis, f"Along the chain from end {end}"))
                for node in nodes:
                    await node.wait_for_record(record.id, timeout=30)
            await trio.sleep(SETTLE_S)
            connections = sum(len(peer.connected_peers()) for peer in peers) // 2
            print(json.dumps({**settled_memory(), "connections": connections}), flush=True)
            # While the nodes close one by one, the others' peer exchange still dials
            # the closed ones, and libp2p logs each failure: noise after the figures.
            logging.getLogger("libp2p.transport.tcp").setLevel(logging.CRITICAL)
        for store in stores:
            store.close()


# Parent ------------------------------------------------------------------------------


def run_child(*arguments: str) -> dict[str, float]:
    """Run a child that prints its memory as its last line of JSON."""
    done = subprocess.run(
        [sys.executable, SCRIPT, "--child", *arguments],
        stdout=subprocess.PIPE,
        text=True,
        timeout=CHILD_LIMIT_S + 30,
        check=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, float] = json.loads(lines[-1])
    return result


async def one_node_following(count: int, posts: int) -> dict[str, float]:
    """A member's node in a child process, following `count` communities of the member
    run here; both exchange a post in each."""
    owner, member = Identity.generate(), Identity.generate()
    data = community_data(owner, member, count, posts)
    with tempfile.TemporaryDirectory() as folder:
        data_path = Path(folder) / "communities.msgpack"
        data_path.write_bytes(msgpack.packb(data, use_bin_type=True))
        store = Store.create(Path(folder) / "owner", "bench", identity=owner, kdf=FAST_KDF)
        ingest_all(store, data)
        communities = [community for community, _ in data]
        async with running_peer(owner) as peer:
            node = Node(store, peer)
            for community in communities:
                await node.follow(community)
            arguments = [SCRIPT, "--child", "community", str(data_path), member.seed.hex()]
            async with child_process([*arguments, peer.addresses()[0]]) as child:
                ready = await child.receive(STEP_TIMEOUT_S)
                for community in communities:
                    await wait_for_mesh(peer, community_topic(community), ready["peer"])
                for start in range(0, count, EXCHANGE_CHUNK):
                    end = min(count, start + EXCHANGE_CHUNK)
                    mine = []
                    for number in range(start, end):
                        text = f"Hello from the owner {number}"
                        record = await node.post(post_fields(communities[number], text))
                        mine.append(record.id.hex())
                    await child.send(posts=mine, reply_in=[start, end])
                    theirs = await child.receive(STEP_TIMEOUT_S)
                    for record_id in theirs["posts"]:
                        await node.wait_for_record(bytes.fromhex(record_id), timeout=30)
                await child.send(measure=True)
                result = await child.receive(STEP_TIMEOUT_S)
        store.close()
    return result


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares MiB per unit of x."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def row(label: str, figures: dict[str, float]) -> None:
    print(f"{label:<58} {figures['VmRSS']:>8.1f} {figures['VmHWM']:>9.1f}")


def per_unit(unit: str, points: list[tuple[int, float]]) -> None:
    steps = ", ".join(
        f"{a}->{b}: {(rb - ra) / (b - a):.2f}" for (a, ra), (b, rb) in itertools.pairwise(points)
    )
    print(f"  => {slope(points):.2f} MiB of RSS per extra {unit} (least squares; steps {steps})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--communities", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--posts", type=int, default=100, help="posts in each community")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        if mode == "baseline":
            baseline_child()
        elif mode == "community":
            trio.run(community_child, *rest)
        elif mode == "nodes":
            trio.run(nodes_child, int(rest[0]), int(rest[1]))
        return

    start = time.perf_counter()
    print("Memory of fresh processes on 127.0.0.1, mDNS off, in MiB (VmRSS after")
    print(f"{SETTLE_S:.0f} s of gossip and a gc.collect(); VmHWM = peak resident)")
    print(f"each community: genesis, invite, a join and {args.posts} posts")
    print(f"{'':<58} {'RSS':>8} {'peak':>9}")
    row("baseline: kithnet + libp2p imported, no node", run_child("baseline"))

    points = []
    for count in args.communities:
        figures = trio.run(one_node_following, count, args.posts)
        points.append((count, figures["VmRSS"]))
        noun = "community" if count == 1 else "communities"
        row(f"1 node, its peer in another process, {count} {noun}", figures)
    if len(points) > 1:
        per_unit("joined community", points)

    points = []
    for count in args.nodes:
        figures = run_child("nodes", str(count), str(args.posts))
        points.append((count, figures["VmRSS"]))
        connections = int(figures["connections"])
        row(f"{count} node(s) in one process, 1 community, {connections} connections", figures)
    if len(points) > 1:
        per_unit("node in the same process", points)
    print(f"no limit named in the issue: figures only ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
