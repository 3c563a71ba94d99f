"""The demo `make run` opens: a fresh member ("You") in a living neighbourhood of three
local peers, each a real `kithnet serve` on 127.0.0.1 with its own data directory in a
temporary folder. Everything in it is real signed records: two communities (both listed
in the public directory), a few dozen posts, questions and offers with replies,
reactions, an edit and a picture (which only its author holds at first, so You's node
fetches it), references between the peers, and You already joined to Hackney Neighbours,
with its newest posts unread, whose peers your node dials as it starts."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.pwhash import argon2id

from kithnet.core.envelope import Record
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
HACKNEY = "Hackney Neighbours"
INSTALLERS = "Solar & Insulation Installers"


@dataclass(frozen=True, slots=True)
class DemoPost:
    """One post of the demo, oldest first in its community. `reply_to` is the text of
    the post it answers (in the same community); `reactions` are (member, emoji);
    `edited` is the text the author changed it to; `picture` attaches DEMO_PICTURE."""

    author: str
    type: str
    text: str
    tags: tuple[str, ...] = ()
    reply_to: str = ""
    area: str = ""
    terms: str = ""
    reactions: tuple[tuple[str, str], ...] = ()
    edited: str = ""
    picture: bool = False


P = DemoPost
POSTS: dict[str, list[DemoPost]] = {
    HACKNEY: [
        P("Bob", "post", "Street party on Saturday: bring a chair and a dish",
          reactions=(("Cat", "🎉"), ("Dan", "👍"))),
        P("Dan", "question", "Has anyone had their loft boarded? Worth it?", ("insulation",)),
        P("Cat", "post", "Yes, if you keep 270 mm of insulation under the boards: raise them "
          "on loft legs", reply_to="Has anyone had their loft boarded? Worth it?"),
        P("Cat", "post", "Spare seedlings by the community garden gate, help yourselves"),
        P("Bob", "question", "Does anybody know a good chimney sweep?", ("chimney",)),
        P("Dan", "post", "Try the sweep on Well Street, very tidy and no soot left behind",
          reply_to="Does anybody know a good chimney sweep?"),
        P("Dan", "post", "Found: a set of keys on Mare Street, ask me"),
        P("Bob", "post", "Those are mine! Thank you, I'll knock tonight",
          reply_to="Found: a set of keys on Mare Street, ask me", reactions=(("Dan", "🙏"),)),
        P("Cat", "post", "The library repair café is back on Thursdays"),
        P("Bob", "post", "Bins go out on Tuesday this week (bank holiday)"),
        P("Dan", "question", "Anyone recommend a plumber for a leaking radiator?", ("plumbing",)),
        P("Cat", "post", "Thanks to whoever fixed the bench in the square",
          reactions=(("Bob", "❤️"), ("Dan", "❤️"))),
        P("Bob", "post", "Tool library: the ladder is back, book it with me"),
        P("Dan", "post", "Power cut last night? Mine came back at 11"),
        P("Bob", "offer", "Allotment help on Sunday mornings: digging, pruning, advice",
          ("gardening",), area="London Fields", terms="Free: bring your own gloves"),
        P("Cat", "question", "Which energy supplier do you use for solar export?", ("solar",)),
        P("Bob", "post", "Choir rehearsal moved to the church hall"),
        P("Dan", "offer", "Small electrical jobs and safety checks for neighbours",
          ("electrics",), area="Hackney", terms="Mates' rates: just cover the parts"),
        P("Dan", "post", "Free: two bags of compost", ("gardening",)),
        P("Cat", "post", "Loft insulation grant deadline is the end of the month",
          ("insulation",), reactions=(("Bob", "👍"),)),
        P("Bob", "post", "Lost cat: grey tabby, answers to Pepper, last seen on Wilton Way"),
        P("Cat", "post", "Saw a grey tabby on the wall behind the bakery this morning",
          reply_to="Lost cat: grey tabby, answers to Pepper, last seen on Wilton Way"),
        P("Bob", "post", "That was her: Pepper is home. Thank you Cat!",
          reply_to="Saw a grey tabby on the wall behind the bakery this morning",
          reactions=(("Cat", "❤️"), ("Dan", "🎉"))),
        P("Cat", "offer", "Free draught-proofing check for your windows and doors",
          ("insulation",), area="Hackney"),
        P("Dan", "question", "Who has a ladder tall enough for a second-floor gutter?",
          ("tools",)),
        P("Bob", "post", "The tool library's ladder reaches 7 m: book it with me",
          reply_to="Who has a ladder tall enough for a second-floor gutter?"),
        P("Bob", "post", "Minutes of the residents' meeting are up in the library"),
        P("Dan", "post", "Fruit and veg stall on Broadway Market has cheap apples today",
          edited="Fruit and veg stall on Broadway Market has cheap apples and pears today "
          "(until 4pm)"),
        P("Cat", "question", "Any tips for keeping slugs off the lettuces?", ("gardening",)),
        P("Bob", "post", "Copper tape round the pots, and a saucer of beer",
          reply_to="Any tips for keeping slugs off the lettuces?"),
        P("Dan", "post", "Kids' football in the park, Sunday 10am, all welcome"),
        P("Cat", "post", "The seedlings are up! Tomatoes and beans, by the garden gate",
          ("gardening",), picture=True, reactions=(("Bob", "🌱"), ("Dan", "❤️"))),
        P("Bob", "post", "Welcome to our newest neighbour: say hello!",
          reactions=(("Cat", "👋"), ("Dan", "👋"))),
    ],
    INSTALLERS: [
        P("Cat", "offer", "Loft insulation, solar panels and batteries across East London",
          ("insulation", "solar"), area="East London"),
        P("Dan", "offer", "Solar panel fitting and electrical certificates",
          ("solar", "electrics"), area="East London"),
        P("Cat", "post", "Price of mineral wool up again: order early", ("insulation",)),
        P("Dan", "question", "Anyone fitted the new hybrid inverters yet?", ("solar",)),
        P("Cat", "post", "Two so far: quiet, and easy to set up from a phone",
          reply_to="Anyone fitted the new hybrid inverters yet?"),
        P("Bob", "question", "Who can do a cavity wall survey in Hackney?", ("insulation",)),
        P("Cat", "post", "I can, next week: send me a message",
          reply_to="Who can do a cavity wall survey in Hackney?"),
        P("Cat", "post", "Job done in Clapton: 300 mm loft roll and a new insulated hatch",
          ("insulation",), reactions=(("Dan", "👍"),)),
        P("Dan", "offer", "Battery storage with any solar install this month",
          ("solar", "electrics"), area="East London", terms="Free survey"),
        P("Bob", "question", "Is external wall insulation worth it on a Victorian terrace?",
          ("insulation",)),
        P("Dan", "post", "Not on the front (planning rules): insulate the back walls inside",
          reply_to="Is external wall insulation worth it on a Victorian terrace?"),
        P("Cat", "post", "Reminder: always check for damp before insulating a loft",
          ("insulation",)),
    ],
}  # fmt: skip
REFERENCES = [
    ("Bob", "Cat", "insulation", "Insulated our loft in a day, tidy work", "hired"),
    ("Dan", "Cat", "insulation", "We work together on retrofits", "worked_with"),
    ("Bob", "Dan", "solar", "Fitted our panels and explained everything", "hired"),
    ("Cat", "Dan", "electrics", "My go-to electrician", "worked_with"),
    ("Cat", "Bob", "gardening", "Runs the allotments", "knows_personally"),
    ("Dan", "Bob", "gardening", "Turned our jungle of a garden round in a weekend", "hired"),
    ("Bob", "Dan", "electrics", "Rewired our kitchen on time and on budget", "hired"),
]
UNREAD = 3  # the newest posts of Hackney Neighbours arrive as You's unread ones


def admit(owner: Store, joiner: Store, community: Record) -> list[Record]:
    """The records that make `joiner` a member of `community`, as each side holds them
    after: `owner`'s invite, and `joiner`'s join with it (each store ingests the other's)."""
    later = now_ms() + 10**10
    code = InviteCode.create(owner.identity, community.id, community.fields["name"], [], later)
    invite = owner.publish(
        {
            "kind": "invite",
            "community": community.id,
            "invite_key": code.invite_key,
            "expires_at": later,
        }
    )
    join = joiner.publish(
        {
            "kind": "join",
            "community": community.id,
            "invite_key": code.invite_key,
            "proof": code.prove_join(joiner.identity.public_key),
        }
    )
    joiner.ingest([community.envelope, invite.envelope])
    owner.ingest([join.envelope])
    return [invite, join]


def busy(folder: Path, posts: int) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """A catch-up to watch (benchmarks and tests): Bob holds a community, "Busy", of
    `posts` posts, which You joined without receiving any of them. Returns You's data
    directory and Bob's (data directory, listen address), for `running_peers`."""
    bob = Store.create(folder / "bob", DEMO_PASSPHRASE, name="Bob", kdf=DEMO_KDF)
    you = Store.create(folder / "you", DEMO_PASSPHRASE, name="You", kdf=DEMO_KDF)
    with bob, you:
        genesis = bob.publish({"kind": "community", "name": "Busy", "visibility": "public"})
        admit(bob, you, genesis)
        start = now_ms() - 10**8
        for first in range(0, posts, 1000):
            bob.publish_many(
                [
                    {
                        "kind": "post",
                        "community": genesis.id,
                        "type": "post",
                        "text": f"Post {i}: " + "x" * 200,
                        "created_at": start + i,
                    }
                    for i in range(first, min(first + 1000, posts))
                ]
            )
        address = f"/ip4/127.0.0.1/tcp/{free_port()}"
        you.remember_peer(bob.peer_id, [f"{address}/p2p/{bob.peer_id}"], "invite")
    return folder / "you", {"Bob": (folder / "bob", address)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """A truecolour PNG (no Qt: the node layer draws the demo's picture itself)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def seedlings_picture(width: int = 240, height: int = 150) -> bytes:
    """The demo's picture: a row of seedlings in pots against the sky."""
    ground = height * 2 // 3
    plants = [(width * (2 * k + 1) // 10, ground - 34 - 9 * (k % 2)) for k in range(5)]

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        for cx, top in plants:
            leaf_y = (y - top - 6) / 6
            for side in (-1, 1):
                if ((x - cx - side * 9) / 9) ** 2 + leaf_y**2 < 1:
                    return (92, 168, 70) if side < 0 else (74, 150, 58)
            if abs(x - cx) <= 1 and top + 6 <= y < ground - 14:
                return (58, 128, 52)
            slant = (y - (ground - 16)) // 3
            if ground - 16 <= y < ground + 6 and abs(x - cx) <= 12 - slant:
                return (188, 96, 58) if y > ground - 13 else (160, 78, 46)
        if y < ground:
            shade = y * 60 // ground
            return (150 + shade, 196 + shade // 2, 236)
        return (104 - (x * 7 + y * 13) % 9, 72, 48)

    return _png(width, height, pixel)


def _publish_posts(
    stores: dict[str, Store], community: bytes, posts: list[DemoPost]
) -> list[Record]:
    """Each author's posts, with their replies, reactions and edits, in their stores."""
    hour = 3_600_000
    at = now_ms() - 3 * 24 * hour
    made: dict[str, Record] = {}
    records = []
    for post in posts:
        at += 2 * hour // 3 if post.reply_to else 3 * hour // 2
        author = stores[post.author]
        fields: dict[str, Any] = {
            "kind": "post",
            "community": community,
            "type": post.type,
            "text": post.text,
            "created_at": at,
        }
        optional = (
            ("tags", list(post.tags)),
            ("area", post.area),
            ("terms", post.terms),
            ("reply_to", made[post.reply_to].id if post.reply_to else None),
        )
        fields.update({name: value for name, value in optional if value})
        if post.picture:
            # Only the author holds the picture at first, and serves it to members.
            picture = seedlings_picture()
            blob = author.add_blob(picture, "image/png")
            attachment = {"hash": blob, "size": len(picture), "mime": "image/png"}
            fields["attachments"] = [{**attachment, "name": "seedlings.png"}]
        record = made[post.text] = author.publish(fields)
        records.append(record)
        for member, emoji in post.reactions:
            reaction = {"kind": "reaction", "community": community, "target": record.id}
            records.append(stores[member].publish({**reaction, "emoji": emoji}))
        if post.edited:
            edit = {"kind": "edit", "community": community, "target": record.id}
            records.append(author.publish({**edit, "text": post.edited, "created_at": at + 1}))
    return records


def _invite(community: bytes, code: InviteCode, expires_at: int) -> dict[str, Any]:
    return {
        "kind": "invite",
        "community": community,
        "invite_key": code.invite_key,
        "expires_at": expires_at,
    }


def prepare(folder: Path) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """Make the demo's stores in `folder`: You's data directory, and each peer's
    (data directory, listen address)."""
    stores = {
        name: Store.create(folder / name.lower(), DEMO_PASSPHRASE, name=name, kdf=DEMO_KDF)
        for name in ("You", *(p[0] for p in PEERS))
    }
    peers = {
        name: (folder / name.lower(), f"/ip4/127.0.0.1/tcp/{free_port()}") for name, *_ in PEERS
    }
    reach = {name: f"{address}/p2p/{stores[name].peer_id}" for name, (_, address) in peers.items()}
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
                "name": HACKNEY,
                "visibility": "public",
                "description": "Neighbours around Mare Street and London Fields",
                "tags": ["hackney", "neighbours"],
            }
        )
        installers = stores["Cat"].publish(
            {
                "kind": "community",
                "name": INSTALLERS,
                "visibility": "public",
                "description": "Tradespeople who insulate and fit solar in East London",
                "tags": ["insulation", "solar"],
            }
        )
        records += [hackney, installers]
        later = now_ms() + 10**10
        joins = (
            ("Bob", hackney, ("Cat", "Dan", "You")),
            ("Cat", installers, ("Bob", "Dan")),
        )
        for owner_name, community, joiners in joins:
            owner = stores[owner_name]
            name = community.fields["name"]
            code = InviteCode.create(owner.identity, community.id, name, [], later)
            records.append(owner.publish(_invite(community.id, code, later)))
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
            # Listed in the public directory, with an invite that reaches the owner's node.
            public = InviteCode.create(
                owner.identity, community.id, name, [reach[owner_name]], later
            )
            records.append(owner.publish(_invite(community.id, public, later)))
            records.append(
                owner.publish(
                    {
                        "kind": "announcement",
                        "community": community.id,
                        "name": name,
                        "visibility": "public",
                        "description": community.fields["description"],
                        "tags": community.fields["tags"],
                        "invite": public.encode(),
                        "members": 1 + len(joiners),
                    }
                )
            )
        # Three days of posts, an hour and a half apart; a reply comes 40 minutes later.
        unread = []
        for community, posts in ((hackney, POSTS[HACKNEY]), (installers, POSTS[INSTALLERS])):
            made = _publish_posts(stores, community.id, posts)
            records += made
            if community is hackney:
                top = {p.text for p in posts if not p.reply_to}
                unread = [
                    r.envelope for r in made if r.kind == "post" and r.fields.get("text") in top
                ]
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
        # You read everything but the newest few posts of Hackney Neighbours.
        newest = set(unread[-UNREAD:])
        for member, store in stores.items():
            store.ingest([e for e in envelopes if member != "You" or e not in newest])
            store.mark_all_read()
        stores["You"].ingest(unread[-UNREAD:])
        for name in peers:
            stores["You"].remember_peer(stores[name].peer_id, [reach[name]], "invite")
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
