"""End-to-end throughput and idle latency between two members on 127.0.0.1: records of
1 KiB posted as fast as the author's node takes them, delivered by gossip and stored by
the other (issue 4 aims above 1,000 records per second; a single post on an idle network
in under 10 ms median).

    .venv/bin/python bench/bench_throughput.py [--records N] [--idle-posts M] [--processes 2]

--processes 2 (the default) runs the receiving member's node in a child process with its
own store and trio loop, as two members' machines would; it tells this process over a
pipe when it has stored a record and how many it holds. --processes 1 runs both nodes
in this process, sharing one core's worth of Python.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF
from bench.harness import (
    Channel,
    child_process,
    parent_channel,
    running_peer,
    wait_for_mesh,
)
from kithnet.core.envelope import Record, decode
from kithnet.crypto.identity import Identity
from kithnet.localstore.store import Store
from kithnet.node.node import Node
from kithnet.p2p.host import community_topic

THROUGHPUT_LIMIT = 1_000
IDLE_LIMIT_MS = 10.0
TEXT = "Insulation, solar and heat pumps: " + "x" * 990
IDLE_WAIT_S = 10.0  # an idle post not stored by then counts as lost
QUIET_S = 5.0  # under load: give up once nothing has arrived for this long
LOAD_LIMIT_S = 120.0  # and in any case after this long
CHILD_LIMIT_S = 600.0


async def wait_stored(node: Node, record_id: bytes, quiet: float, limit: float) -> bool:
    """Wait until `node` holds `record_id`; False once nothing has arrived for `quiet`
    seconds, or after `limit` seconds."""
    deadline = trio.current_time() + limit
    seen = node.store.record_count()
    while (left := deadline - trio.current_time()) > 0:
        try:
            await node.wait_for_record(record_id, timeout=min(quiet, left))
            return True
        except trio.TooSlowError:
            count = node.store.record_count()
            if count == seen:
                return False
            seen = count
    return node.store.has_record(record_id)


class Receiver(Protocol):
    """The receiving member, as the author's side of the benchmark sees it."""

    async def stored(self, record_id: bytes, quiet: float, limit: float) -> tuple[bool, int]:
        """Wait until the receiver has stored `record_id` (see `wait_stored`); returns
        whether it has and how many records it holds."""
        ...


class LocalReceiver:
    """A node in this process."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def stored(self, record_id: bytes, quiet: float, limit: float) -> tuple[bool, int]:
        held = await wait_stored(self.node, record_id, quiet, limit)
        return held, self.node.store.record_count()


class ChildReceiver:
    """A node in a child process, asked over its stdin, answering on its stdout."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def stored(self, record_id: bytes, quiet: float, limit: float) -> tuple[bool, int]:
        await self.channel.send(wait=record_id.hex(), quiet=quiet, limit=limit)
        reply = await self.channel.receive(limit + 30)
        return reply["stored"], reply["count"]


async def receiver_child(genesis: str, address: str) -> None:
    """The receiving member: follows the community, connects to the author at
    `address`, then answers the parent's `wait` requests until the parent closes stdin."""
    parent = parent_channel()
    envelope = bytes.fromhex(genesis)
    community = decode(envelope).id
    with tempfile.TemporaryDirectory() as folder, trio.fail_after(CHILD_LIMIT_S):
        store = Store.create(Path(folder) / "bob", "b", identity=Identity.generate(), kdf=FAST_KDF)
        store.ingest([envelope])
        async with running_peer(store.identity) as peer:
            node = Node(store, peer)
            await node.follow(community)
            author = await peer.connect(address)
            await peer.wait_for_topic_peer(community_topic(community), author)
            await parent.send(peer=peer.peer_id)
            while True:
                try:
                    message = await parent.receive(CHILD_LIMIT_S)
                except EOFError:
                    break
                record_id = bytes.fromhex(message["wait"])
                held = await wait_stored(node, record_id, message["quiet"], message["limit"])
                await parent.send(stored=held, count=store.record_count())
        store.close()


async def measure(
    author: Node,
    community: bytes,
    receiver: Receiver,
    records: int,
    idle_posts: int,
    writers: int,
) -> tuple[float, int, list[float], int]:
    """Idle single posts, then `records` posted back to back: (seconds until the last
    was stored, how many were stored, idle latencies in ms, idle posts lost)."""
    latencies, lost = [], 0
    count = 0
    for number in range(idle_posts):
        start = time.perf_counter()
        record = await author.post(
            {"kind": "post", "community": community, "type": "post", "text": f"{number}"}
        )
        held, count = await receiver.stored(record.id, IDLE_WAIT_S, IDLE_WAIT_S)
        if held:
            latencies.append((time.perf_counter() - start) * 1000)
        else:
            lost += 1
        await trio.sleep(0.05)  # keep the network idle between posts
    if not idle_posts:  # how many the receiver holds: the genesis is there already
        _, count = await receiver.stored(community, QUIET_S, QUIET_S)

    start = time.perf_counter()
    posted: list[Record] = []

    async def writer(first: int) -> None:
        for number in range(first, records, writers):
            text = f"{number} {TEXT}"
            posted.append(
                await author.post(
                    {"kind": "post", "community": community, "type": "post", "text": text}
                )
            )

    async with trio.open_nursery() as nursery:
        for first in range(writers):
            nursery.start_soon(writer, first)
    last = posted[-1]  # the last one queued for gossip
    _, after = await receiver.stored(last.id, QUIET_S, LOAD_LIMIT_S)
    return time.perf_counter() - start, after - count, latencies, lost


async def run(
    records: int, idle_posts: int, processes: int, writers: int
) -> tuple[float, int, list[float], int]:
    with tempfile.TemporaryDirectory() as folder:
        ann = Store.create(Path(folder) / "ann", "b", identity=Identity.generate(), kdf=FAST_KDF)
        genesis = ann.publish({"kind": "community", "name": "Load", "visibility": "public"})
        topic = community_topic(genesis.id)
        async with AsyncExitStack() as stack:
            ann_peer = await stack.enter_async_context(running_peer(ann.identity))
            ann_node = Node(ann, ann_peer)
            await ann_node.follow(genesis.id)
            receiver: Receiver
            if processes == 1:
                bob = Store.create(
                    Path(folder) / "bob", "b", identity=Identity.generate(), kdf=FAST_KDF
                )
                stack.callback(bob.close)
                bob.ingest([genesis.envelope])
                bob_peer = await stack.enter_async_context(running_peer(bob.identity))
                bob_node = Node(bob, bob_peer)
                await bob_node.follow(genesis.id)
                await bob_peer.connect(ann_peer.addresses()[0])
                bob_id, receiver = bob_peer.peer_id, LocalReceiver(bob_node)
            else:
                arguments = [
                    str(Path(__file__).resolve()),
                    "--child",
                    genesis.envelope.hex(),
                    ann_peer.addresses()[0],
                ]
                channel = await stack.enter_async_context(child_process(arguments))
                bob_id = (await channel.receive(60))["peer"]
                receiver = ChildReceiver(channel)
            await ann_peer.wait_for_topic_peer(topic, bob_id)
            await wait_for_mesh(ann_peer, topic, bob_id)  # before that, a post reaches no one
            result = await measure(ann_node, genesis.id, receiver, records, idle_posts, writers)
        ann.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--idle-posts", type=int, default=50)
    parser.add_argument("--processes", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--writers",
        type=int,
        default=1,
        help="tasks posting at once (the node commits their posts together)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        trio.run(receiver_child, *args.child)
        return
    spent, delivered, latencies, lost = trio.run(
        run, args.records, args.idle_posts, args.processes, args.writers
    )
    rate = delivered / spent
    who = "one writer" if args.writers == 1 else f"{args.writers} writers at once"
    print(
        f"sustained ({who}): {delivered:,} of {args.records:,} posts of ~1 KiB delivered"
        " and stored in"
        f" {spent:.2f} s = {rate:,.0f}/s"
        f" (limit {THROUGHPUT_LIMIT:,}/s: {rate / THROUGHPUT_LIMIT:.2f})"
    )
    if latencies:
        p50 = statistics.median(latencies)
        print(
            f"idle: one post end to end, median {p50:.1f} ms over {len(latencies)}"
            f" (limit {IDLE_LIMIT_MS:.0f} ms: {p50 / IDLE_LIMIT_MS:.2f});"
            f" max {max(latencies):.1f} ms" + (f"; {lost} lost" if lost else "")
        )
    if args.processes == 1:
        print("(both nodes share this process, so one core's worth of Python between them)")
    else:
        print(
            "(the receiver in a child process with its own store and trio loop; end to end"
            " includes its confirmation over a pipe)"
        )


if __name__ == "__main__":
    main()
