"""The demo `make run` opens: a fresh member ("You") in a living neighbourhood of three
local peers, each a real `kithnet serve` on 127.0.0.1 with its own data directory in a
temporary folder. Everything in it is real signed records: two communities, a few dozen
posts, questions and offers, references between the peers, and You already joined to
Hackney Neighbours, whose peers your node dials as it starts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from nacl.pwhash import argon2id

from kithnet.crypto.invite import InviteCode
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.store import Store, now_ms

DEMO_PASSPHRASE = "kithnet demo passphrase"  # noqa: S105 (the demo's throwaway stores)
# The demo's stores unlock at once: its data is thrown away when it ends.
DEMO_KDF = KdfParams.new(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
PEERS = (
    ("Bob", "Keeps the allotments tidy; knows every tradesperson in E8", ["gardening"]),
    ("Cat", "Insulation and solar installer, 12 years", ["insulation", "solar"]),
    ("Dan", "Electrician; fits solar panels and batteries", ["solar", "electrics"]),
)
NEIGHBOUR_POSTS = [
    ("Bob", "post", "Street party on Saturday: bring a chair and a dish", []),
    ("Dan", "question", "Has anyone had their loft boarded? Worth it?", ["insulation"]),
    ("Cat", "post", "Spare seedlings by the community garden gate, help yourselves", []),
    ("Bob", "question", "Does anybody know a good chimney sweep?", ["chimney"]),
    ("Dan", "post", "Found: a set of keys on Mare Street, ask me", []),
    ("Cat", "post", "The library repair café is back on Thursdays", []),
    ("Bob", "post", "Bins go out on Tuesday this week (bank holiday)", []),
    ("Dan", "question", "Anyone recommend a plumber for a leaking radiator?", ["plumbing"]),
    ("Cat", "post", "Thanks to whoever fixed the bench in the square", []),
    ("Bob", "post", "Tool library: the ladder is back, book it with me", []),
    ("Dan", "post", "Power cut last night? Mine came back at 11", []),
    ("Cat", "question", "Which energy supplier do you use for solar export?", ["solar"]),
    ("Bob", "post", "Choir rehearsal moved to the church hall", []),
    ("Dan", "post", "Free: two bags of compost", ["gardening"]),
    ("Cat", "post", "Loft insulation grant deadline is the end of the month", ["insulation"]),
]
INSTALLER_POSTS = [
    ("Cat", "offer", "Loft insulation, solar panels and batteries across East London",
     ["insulation", "solar"]),
    ("Dan", "offer", "Solar panel fitting and electrical certificates", ["solar", "electrics"]),
    ("Cat", "post", "Price of mineral wool up again: order early", ["insulation"]),
    ("Dan", "question", "Anyone fitted the new hybrid inverters yet?", ["solar"]),
    ("Bob", "question", "Who can do a cavity wall survey in Hackney?", ["insulation"]),
]  # fmt: skip
REFERENCES = [
    ("Bob", "Cat", "insulation", "Insulated our loft in a day, tidy work", "hired"),
    ("Dan", "Cat", "insulation", "We work together on retrofits", "worked_with"),
    ("Bob", "Dan", "solar", "Fitted our panels and explained everything", "hired"),
    ("Cat", "Dan", "electrics", "My go-to electrician", "worked_with"),
    ("Cat", "Bob", "gardening", "Runs the allotments", "knows_personally"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(folder: Path) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """Make the demo's stores in `folder`: You's data directory, and each peer's
    (data directory, listen address)."""
    stores = {
        name: Store.create(folder / name.lower(), DEMO_PASSPHRASE, name=name, kdf=DEMO_KDF)
        for name in ("You", *(p[0] for p in PEERS))
    }
    try:
        records = []
        for name, bio, skills in PEERS:
            records.append(
                stores[name].publish(
                    {"kind": "profile", "name": name, "bio": bio, "skills": skills}
                )
            )
        bob = stores["Bob"]
        hackney = bob.publish(
            {
                "kind": "community",
                "name": "Hackney Neighbours",
                "visibility": "public",
                "description": "Neighbours around Mare Street and London Fields",
                "tags": ["hackney", "neighbours"],
            }
        )
        installers = stores["Cat"].publish(
            {
                "kind": "community",
                "name": "Solar & Insulation Installers",
                "visibility": "public",
                "description": "Tradespeople who insulate and fit solar in East London",
                "tags": ["insulation", "solar"],
            }
        )
        records += [hackney, installers]
        later = now_ms() + 10**10
        joins = (
            (hackney, bob, ("Cat", "Dan", "You")),
            (installers, stores["Cat"], ("Bob", "Dan")),
        )
        for community, owner, joiners in joins:
            name = community.fields["name"]
            code = InviteCode.create(owner.identity, community.id, name, [], later)
            records.append(
                owner.publish(
                    {
                        "kind": "invite",
                        "community": community.id,
                        "invite_key": code.invite_key,
                        "expires_at": later,
                    }
                )
            )
            for joiner in joiners:
                key = stores[joiner].identity.public_key
                records.append(
                    stores[joiner].publish(
                        {
                            "kind": "join",
                            "community": community.id,
                            "invite_key": code.invite_key,
                            "proof": code.prove_join(key),
                        }
                    )
                )
        start = now_ms() - 3 * 24 * 3600 * 1000
        for community, posts in ((hackney, NEIGHBOUR_POSTS), (installers, INSTALLER_POSTS)):
            for i, (author, kind, text, tags) in enumerate(posts):
                fields = {"kind": "post", "community": community.id, "type": kind, "text": text,
                          "created_at": start + i * 3_600_000}  # fmt: skip
                if tags:
                    fields["tags"] = tags
                if kind == "offer":
                    fields["area"] = "East London"
                records.append(stores[author].publish(fields))
        for author, subject, skill, text, relationship in REFERENCES:
            records.append(
                stores[author].publish(
                    {
                        "kind": "reference",
                        "community": installers.id,
                        "subject": stores[subject].identity.public_key,
                        "skill": skill,
                        "text": text,
                        "relationship": relationship,
                    }
                )
            )
        envelopes = [r.envelope for r in records]
        peers = {}
        for store in stores.values():
            store.ingest(envelopes)
            store.mark_all_read()
        for name in (p[0] for p in PEERS):
            address = f"/ip4/127.0.0.1/tcp/{free_port()}"
            peers[name] = (folder / name.lower(), address)
            stores["You"].remember_peer(
                stores[name].peer_id, [f"{address}/p2p/{stores[name].peer_id}"], "invite"
            )
        return folder / "you", peers
    finally:
        for store in stores.values():
            store.close()


@contextlib.contextmanager
def running_peers(peers: dict[str, tuple[Path, str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start each peer's `kithnet serve`; stop them all at the end."""
    env = {**os.environ, "KITHNET_PASSPHRASE": DEMO_PASSPHRASE}
    processes = []
    try:
        for data_dir, address in peers.values():
            processes.append(
                subprocess.Popen(  # noqa: S603 (this Python, running kithnet)
                    [
                        sys.executable,
                        "-m",
                        "kithnet",
                        "serve",
                        "--data-dir",
                        str(data_dir),
                        "--listen",
                        address,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        deadline = time.monotonic() + 30
        for data_dir, _ in peers.values():
            while not (data_dir / "kithnet.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.1)  # bounded: each peer's control socket appears when it runs
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
