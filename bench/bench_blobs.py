"""Blob transfer between two members' nodes on 127.0.0.1 (`/kithnet/blob/1`): a file of
10 MiB attached on one node, fetched by the other (hashed as it arrives and written in
64 KiB chunks into the encrypted store). Both nodes run in this process, sharing one
core's worth of Python, so the rate is a floor for two machines.

    .venv/bin/python bench/bench_blobs.py [--mib 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF
from kithnet.crypto.invite import InviteCode
from kithnet.localstore.store import Store, now_ms
from kithnet.node.node import Node
from kithnet.p2p.host import Peer

MIB = 1024 * 1024


def member_pair(folder: Path) -> tuple[Store, Store, bytes]:
    ann = Store.create(folder / "ann", "pass", name="Ann", kdf=FAST_KDF)
    bob = Store.create(folder / "bob", "pass", name="Bob", kdf=FAST_KDF)
    genesis = ann.publish({"kind": "community", "name": "Bench", "visibility": "public"})
    code = InviteCode.create(ann.identity, genesis.id, "Bench", [], now_ms() + 3_600_000)
    invite = ann.publish(
        {
            "kind": "invite",
            "community": genesis.id,
            "invite_key": code.invite_key,
            "expires_at": code.expires_at,
        }
    )
    bob.ingest([genesis.envelope, invite.envelope])
    join = bob.publish(
        {
            "kind": "join",
            "community": genesis.id,
            "invite_key": code.invite_key,
            "proof": code.prove_join(bob.identity.public_key),
        }
    )
    ann.ingest([join.envelope])
    return ann, bob, genesis.id


async def bench(mib: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ann, bob, community = member_pair(Path(folder))
        ann.set_blob_limits(max_size=64 * MIB)
        adds, fetches = [], []
        async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bob_peer:
            ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
            await ann_node.follow(community)  # a node serves blobs for what it follows
            await bob_peer.connect(ann_peer.addresses()[0])
            for _ in range(rounds):
                path = Path(folder) / "file.bin"
                path.write_bytes(os.urandom(mib * MIB))
                started = time.perf_counter()
                blob, size = ann.add_blob_file(path, "application/octet-stream")
                adds.append(time.perf_counter() - started)
                post = ann.publish(
                    {
                        "kind": "post",
                        "community": community,
                        "type": "post",
                        "attachments": [{"hash": blob, "size": size, "mime": "x/y"}],
                    }
                )
                # Bob holds the post but follows nothing, so only this fetch runs.
                bob.ingest([post.envelope])
                started = time.perf_counter()
                await bob_node.blobs.fetch_from(ann_peer.peer_id, blob, "x/y")
                fetches.append(time.perf_counter() - started)
                assert bob.has_blob(blob)
            assert ann_node.blobs.counts["served"] == rounds
        ann.close()
        bob.close()
    print(f"blob of {mib} MiB, {rounds} rounds, two nodes in one process, loopback:")
    add, fetch = statistics.median(adds), statistics.median(fetches)
    print(f"  attach (hash + store from a file): {add:.2f} s median, {mib / add:.1f} MiB/s")
    print(
        f"  fetch (serve + receive + hash + store): {fetch:.2f} s median, {mib / fetch:.1f} MiB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(bench, args.mib, args.rounds)


if __name__ == "__main__":
    main()
