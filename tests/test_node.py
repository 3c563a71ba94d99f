"""Real libp2p hosts on 127.0.0.1 with real stores: a post reaches another member by
gossip, a member who was away catches up by sync, and a hostile peer's forged or
malformed messages are neither stored nor forwarded."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from kithnet.core.envelope import sign_record
from kithnet.core.errors import RecordError
from kithnet.crypto.community import open_gossip
from kithnet.crypto.errors import CryptoError
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import decode as decode_invite
from kithnet.localstore.store import Store, now_ms
from kithnet.node.commands import Commands
from kithnet.node.node import SYNC_PROTOCOL, Node, pack_message
from kithnet.node.sync import SyncError, encode_frame
from kithnet.p2p.host import P2PError, Peer, RateLimiter, community_topic
from tests.test_store_ingest import FAST_KDF

Scenario = Callable[[Path], Awaitable[None]]


def run(scenario: Scenario) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder, trio.fail_after(60):
            await scenario(Path(folder))

    trio.run(main)


@asynccontextmanager
async def connected_pair(
    ann: Store, bob: Store, community: bytes
) -> AsyncIterator[tuple[Node, Node]]:
    """Two members' nodes following `community`, Bob connected to Ann."""
    async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bob_peer:
        ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
        await ann_node.follow(community)
        await bob_node.follow(community)
        await bob_peer.connect(ann_peer.addresses()[0])
        yield ann_node, bob_node


def new_store(folder: Path, name: str) -> Store:
    return Store.create(folder / name, "pass", name=name, kdf=FAST_KDF)


def test_a_post_reaches_a_member_and_an_absent_member_catches_up() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            history = [
                ann.publish(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": f"old {i}"}
                )
                for i in range(150)
            ]
            topic = community_topic(genesis.id)
            async with connected_pair(ann, bob, genesis.id) as (ann_node, bob_node):
                ann_peer, bob_peer = ann_node.peer, bob_node.peer

                # Bob was away for everything so far: sync (on connecting, or this one)
                # brings all of it: the posts, the genesis and Ann's profile.
                await bob_node.sync(ann_peer.peer_id, genesis.id)
                assert set(ann.sync_items(genesis.id)) <= set(bob.sync_items(genesis.id))
                assert bob.profile(ann.identity.public_key).name == "Ann"
                assert len(bob.feed(genesis.id, limit=200).posts) == len(history)

                # From now on gossip carries each post as it is written.
                await ann_peer.wait_for_topic_peer(topic, bob_peer.peer_id)
                post = await ann_node.post(
                    {"kind": "post", "community": genesis.id, "type": "question", "text": "Loft?"}
                )
                await bob_node.wait_for_record(post.id)
                assert bob.status_of(post.id) == ("allowed", "")
                assert bob.feed(genesis.id, limit=1).posts[0].text == "Loft?"

    run(scenario)


def test_forged_and_malformed_messages_are_dropped_and_not_forwarded() -> None:
    async def scenario(folder: Path) -> None:
        hostile = Identity.generate()
        with new_store(folder, "Bob") as bob, new_store(folder, "Cat") as cat:
            genesis = sign_record(
                hostile,
                {
                    "kind": "community",
                    "name": "Bait",
                    "visibility": "public",
                    "created_at": now_ms(),
                },
            )
            topic = community_topic(genesis.id)
            forged = genesis.envelope[:-1] + bytes([genesis.envelope[-1] ^ 1])
            async with (
                Peer.running(hostile) as bad,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(cat.identity) as cat_peer,
            ):
                bob_node, cat_node = Node(bob, bob_peer), Node(cat, cat_peer)
                await bob_node.follow(genesis.id)
                await cat_node.follow(genesis.id)
                received: list[bytes] = []

                async def keep(data: bytes, author: str) -> None:
                    received.append(data)

                await bad.subscribe(topic, lambda data: "accept", keep)
                # The hostile peer reaches Cat only through Bob.
                await bad.connect(bob_peer.addresses()[0])
                await cat_peer.connect(bob_peer.addresses()[0])
                await bad.wait_for_topic_peer(topic, bob_peer.peer_id)
                await bob_peer.wait_for_topic_peer(topic, cat_peer.peer_id)

                for junk in (forged, b"\x93not an envelope", pack_message([forged])):
                    await bad.publish(topic, junk)
                # A real record last: once Cat has it, the junk had its chance to arrive.
                await bad.publish(topic, pack_message([genesis.envelope]))
                await cat_node.wait_for_record(genesis.id)
                await bob_node.wait_for_record(genesis.id)

                for store in (bob, cat):  # of the hostile peer's, only the real record
                    assert store.status_of(genesis.id) == ("allowed", "")
                    authored = store.db.execute(
                        "SELECT count(*) FROM records WHERE author = ?", (hostile.public_key,)
                    ).fetchone()[0]
                    assert authored == 1
                assert bob_node.dropped["malformed"] >= 1
                assert bob_node.dropped["bad_signature"] >= 1
                assert set(cat_node.dropped) <= {"replayed"}  # nothing bad was forwarded to Cat

    run(scenario)


def test_a_burst_of_posts_all_arrive_by_gossip_alone() -> None:
    """py-libp2p drops gossip beyond 32 queued messages per peer; batching and pacing
    keep a member's burst from being lost (no sync in this test)."""

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            bob.ingest([genesis.envelope])
            topic = community_topic(genesis.id)
            async with connected_pair(ann, bob, genesis.id) as (ann_node, bob_node):
                ann_peer, bob_peer = ann_node.peer, bob_node.peer
                await ann_peer.wait_for_topic_peer(topic, bob_peer.peer_id)
                text = "a long post " + "x" * 1000
                posts = [
                    await ann_node.post(
                        {
                            "kind": "post",
                            "community": genesis.id,
                            "type": "post",
                            "text": f"{i} {text}",
                        }
                    )
                    for i in range(1500)
                ]
                for post in posts:
                    await bob_node.wait_for_record(post.id, timeout=30)
                assert len(bob.feed(genesis.id, limit=2000).posts) == len(posts)

    run(scenario)


def test_rate_limiter_allows_bursts_then_the_steady_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.allow("flood", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("honest", 0.0)  # each neighbour has its own bucket
    assert limiter.allow("flood", 0.1)  # 0.1 s at 10/s buys one more
    assert not limiter.allow("flood", 0.1)


def test_a_flooding_neighbour_is_throttled_while_honest_posts_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("kithnet.p2p.host.PEER_MESSAGES_PER_SECOND", 20.0)
    monkeypatch.setattr("kithnet.p2p.host.PEER_MESSAGE_BURST", 20.0)
    flooder_identity = Identity.generate()

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            bob.ingest([genesis.envelope])
            topic = community_topic(genesis.id)
            async with (
                connected_pair(ann, bob, genesis.id) as (ann_node, bob_node),
                Peer.running(flooder_identity) as flooder,
            ):
                await flooder.subscribe(topic, lambda data: "accept", _ignore)
                await flooder.connect(bob_node.peer.addresses()[0])
                await flooder.wait_for_topic_peer(topic, bob_node.peer.peer_id)
                await ann_node.peer.wait_for_topic_peer(topic, bob_node.peer.peer_id)
                # Valid records (profiles), far faster than the rate a neighbour may send.
                for number in range(400):
                    profile = sign_record(
                        flooder_identity,
                        {"kind": "profile", "name": f"Flood {number}", "created_at": now_ms()},
                    )
                    await flooder.publish(topic, pack_message([profile.envelope]))
                    await trio.sleep(0.002)  # ~500 a second, so its own queue drops none
                post = await ann_node.post(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": "still here"}
                )
                await bob_node.wait_for_record(post.id)
                assert bob_node.peer.dropped["rate_limited"] > 0, (
                    bob_node.peer.dropped,
                    bob_node.dropped,
                )
                assert bob.status_of(post.id) == ("allowed", "")

    run(scenario)


async def _ignore(data: bytes, author: str) -> None:
    return None


def test_a_hostile_peer_is_refused_scored_and_dropped_while_honest_posts_arrive() -> None:
    """Forged, malformed, oversized, unauthorised and replayed records, then a flood at
    about 1,000 messages a second: honest nodes store and forward none of it, the
    hostile peer is banned and disconnected, and an honest post still arrives."""

    async def scenario(folder: Path) -> None:
        hostile = Identity.generate()
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cat") as cat,
        ):
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            first = ann.publish(
                {"kind": "post", "community": genesis.id, "type": "post", "text": "hi"}
            )
            for store in (bob, cat):
                store.ingest([genesis.envelope, first.envelope])
            topic = community_topic(genesis.id)
            intruder = sign_record(
                hostile,
                {
                    "kind": "post",
                    "community": genesis.id,
                    "type": "post",
                    "text": "not a member",
                    "created_at": now_ms(),
                },
            )
            forged = first.envelope[:-1] + bytes([first.envelope[-1] ^ 1])
            async with (
                connected_pair(ann, bob, genesis.id) as (ann_node, bob_node),
                Peer.running(cat.identity) as cat_peer,
                Peer.running(hostile) as bad,
            ):
                cat_node = Node(cat, cat_peer)
                await cat_node.follow(genesis.id)
                await bad.subscribe(topic, lambda data: "accept", _ignore)
                bob_peer = bob_node.peer
                await cat_peer.connect(bob_peer.addresses()[0])
                await bad.connect(bob_peer.addresses()[0])
                await bad.wait_for_topic_peer(topic, bob_peer.peer_id)
                await bob_peer.wait_for_topic_peer(topic, cat_peer.peer_id)

                # Paced, so that each arrives whole: py-libp2p can garble a sender's own
                # frames when it publishes back to back (the flood below may show that).
                for junk in (
                    pack_message([forged]),
                    b"\x93not an envelope",
                    pack_message([b"\x94\x01" + b"x" * 70_000]),
                    pack_message([intruder.envelope]),
                    pack_message([first.envelope, first.envelope]),
                ):
                    await bad.publish(topic, junk)
                    await trio.sleep(0.05)
                with trio.move_on_after(3):
                    for number in range(3000):  # ~1,000 a second
                        await bad.publish(topic, b"flood" + number.to_bytes(4, "big"))
                        await trio.sleep(0.001)
                        if bad.connected_peers() == []:
                            break

                post = await ann_node.post(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": "ok"}
                )
                await cat_node.wait_for_record(post.id)
                await bob_node.wait_for_record(post.id)
                assert bob_peer.is_banned(bad.peer_id)
                assert bad.peer_id not in bob_peer.connected_peers()
                assert bob_node.dropped["bad_signature"] >= 1, bob_node.dropped
                assert bob_node.dropped["malformed"] >= 1
                assert bob_node.dropped["waiting"] == 1  # the intruder's post
                assert bob_node.dropped["replayed"] == 1
                assert set(cat_node.dropped) <= {"replayed"}  # nothing bad was forwarded to Cat
                # Nothing of the hostile peer's reached Ann or Cat. Bob keeps the
                # intruder's post hidden, waiting for a join that never comes
                # (bounded; see MAX_PENDING), and shows only Ann's posts.
                for store, kept in ((ann, 0), (cat, 0), (bob, 1)):
                    authored = store.db.execute(
                        "SELECT count(*) FROM records WHERE author = ?", (hostile.public_key,)
                    ).fetchone()[0]
                    assert authored == kept
                assert (bob.status_of(intruder.id) or ("",))[0] == "pending"
                assert [p.text for p in bob.feed(genesis.id).posts] == ["ok", "hi"]
                assert cat.status_of(intruder.id) is None
                assert ann.status_of(intruder.id) is None
                # A banned peer cannot come back until its ban ends: Bob hangs up.
                with contextlib.suppress(P2PError):
                    await bad.connect(bob_peer.addresses()[0])
                with trio.fail_after(10):
                    while bad.peer_id in bob_peer.connected_peers():
                        await trio.sleep(0.05)
                assert bad.peer_id not in bob_node.community_peers(genesis.id)

    run(scenario)


def test_an_error_inside_a_running_peer_reaches_the_caller() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="must see this"):
            async with Peer.running(Identity.generate()):
                raise ValueError("the caller must see this")

    trio.run(main)


def test_posts_made_at_once_share_a_commit_and_a_bad_one_fails_alone() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            async with Peer.running(ann.identity) as peer:
                node = Node(ann, peer)
                await node.follow(genesis.id)
                stored: list[bytes] = []
                refused: list[Exception] = []

                async def write(text: str) -> None:
                    fields = {"kind": "post", "community": genesis.id, "type": "post"}
                    try:
                        stored.append((await node.post({**fields, "text": text})).id)
                    except RecordError as exc:
                        refused.append(exc)

                async with trio.open_nursery() as nursery:
                    for number in range(20):
                        nursery.start_soon(write, f"post {number}")
                    nursery.start_soon(write, "x" * 20_000)  # over the 16,000-character limit
                assert len(stored) == 20
                assert node.commits < 5  # not one per post
                assert [type(e).__name__ for e in refused] == ["ValidationError"]
                assert len(ann.feed(genesis.id).posts) == 20
                assert all(ann.status_of(i) == ("allowed", "") for i in stored)

    run(scenario)


def test_members_reach_each_other_over_quic() -> None:
    async def scenario(folder: Path) -> None:
        quic = ["/ip4/127.0.0.1/udp/0/quic-v1"]
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            old = ann.publish(
                {"kind": "post", "community": genesis.id, "type": "post", "text": "before"}
            )
            async with (
                Peer.running(ann.identity, quic) as ann_peer,
                Peer.running(bob.identity, quic) as bob_peer,
            ):
                assert all("/quic-v1/" in a for a in ann_peer.addresses())
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                await ann_node.follow(genesis.id)
                await bob_node.follow(genesis.id)
                await bob_peer.connect(ann_peer.addresses()[0])
                await bob_node.wait_for_record(old.id)  # caught up on connecting
                await ann_peer.wait_for_topic_peer(community_topic(genesis.id), bob_peer.peer_id)
                new = await ann_node.post(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": "after"}
                )
                await bob_node.wait_for_record(new.id)  # by gossip
                assert [p.text for p in bob.feed(genesis.id).posts] == ["after", "before"]

    run(scenario)


def test_a_peer_abusing_sync_is_refused_and_the_node_keeps_serving() -> None:
    """A stranger asks for the whole community again and again without reading, then
    resets the stream; another opens many syncs and goes quiet. The node stays up,
    refuses what is over the limits, and members still catch up with it."""

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            posts = [
                ann.publish(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": f"{n} " * 300}
                )
                for n in range(200)
            ]
            ids = [post.id for post in posts]
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(Identity.generate()) as bad,
            ):
                ann_node = Node(ann, ann_peer)
                await ann_node.follow(genesis.id)
                await bad.connect(ann_peer.addresses()[0])
                stream = await bad.open_stream(ann_peer.peer_id, SYNC_PROTOCOL)
                frames = [encode_frame(["open", 1, genesis.id, b"\x61"])]
                frames += [encode_frame(["want", ids]) for _ in range(70)]  # over the 64 allowed
                with contextlib.suppress(Exception):
                    await stream.write(b"".join(frames))
                idle = [await bad.open_stream(ann_peer.peer_id, SYNC_PROTOCOL) for _ in range(3)]
                with contextlib.suppress(Exception):
                    await stream.reset()
                with trio.fail_after(10):
                    while not ann_node.dropped["bad_sync"]:
                        await trio.sleep(0.05)
                # Honest members still catch up with Ann.
                async with Peer.running(bob.identity) as bob_peer:
                    bob_node = Node(bob, bob_peer)
                    await bob_node.follow(genesis.id)
                    await bob_peer.connect(ann_peer.addresses()[0])
                    await bob_node.sync(ann_peer.peer_id, genesis.id)
                    assert len(bob.feed(genesis.id, limit=500).posts) == len(posts)
                for quiet in idle:
                    with contextlib.suppress(Exception):
                        await quiet.close()

    run(scenario)


def test_garbage_on_the_gossip_stream_does_not_stop_the_node() -> None:
    """py-libp2p would let an unparsable pubsub frame stop the whole host."""

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            bob.ingest([genesis.envelope])
            async with (
                connected_pair(ann, bob, genesis.id) as (ann_node, bob_node),
                Peer.running(Identity.generate()) as bad,
            ):
                bob_peer = bob_node.peer
                await bad.connect(bob_peer.addresses()[0])
                stream = await bad.open_stream(bob_peer.peer_id, "/meshsub/1.1.0")
                garbage = b"\xff" * 40
                await stream.write(bytes([len(garbage)]) + garbage)
                with trio.fail_after(10):
                    while not bob_peer.dropped["bad_rpc"]:
                        await trio.sleep(0.05)
                topic = community_topic(genesis.id)
                await ann_node.peer.wait_for_topic_peer(topic, bob_peer.peer_id)
                post = await ann_node.post(
                    {"kind": "post", "community": genesis.id, "type": "post", "text": "alive?"}
                )
                await bob_node.wait_for_record(post.id)

    run(scenario)


def test_a_private_community_is_unreadable_and_unlinkable_to_outsiders() -> None:
    """Ann makes a private community and lets Bob in with an invite: her node hands him
    the key. Eve, connected to both, sees only a topic named from the key, gets only
    ciphertext on it, and cannot sync the community by its id."""

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(Identity.generate()) as eve,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                ann_commands = Commands(ann_node)
                made = await ann_commands.community_create("Night Shift", private=True)
                community = bytes.fromhex(made["id"])
                invite = await ann_commands.invite_create("Night Shift", uses=1)
                joined = await Commands(bob_node).join(invite["code"])
                assert joined["status"] == "joined"
                assert bob.community_key(community) == ann.community_key(community)

                seen: list[bytes] = []

                async def keep(data: bytes, author: str) -> None:
                    seen.append(data)

                await eve.connect(ann_peer.addresses()[0])
                with trio.fail_after(10):
                    while not eve.pubsub.peer_topics:
                        await trio.sleep(0.05)
                topics = list(eve.pubsub.peer_topics)
                assert not any(community.hex() in t for t in topics)
                [private] = [t for t in topics if t.startswith("/kithnet/private/1/")]
                await eve.subscribe(private, lambda data: "accept", keep)
                await ann_peer.wait_for_topic_peer(private, eve.peer_id)
                await ann_peer.wait_for_topic_peer(private, bob_peer.peer_id)

                post = await ann_commands.post("Night Shift", "Door code changes Friday")
                await bob_node.wait_for_record(bytes.fromhex(post["id"]))
                assert [p.text for p in bob.feed(community).posts] == ["Door code changes Friday"]
                with trio.fail_after(10):
                    while not seen:
                        await trio.sleep(0.05)
                assert all(b"Door code" not in data for data in seen)
                with pytest.raises(CryptoError):
                    open_gossip(bytes(32), seen[0])

                stream = await eve.open_stream(ann_peer.peer_id, SYNC_PROTOCOL)
                await stream.write(encode_frame(["open", 1, community, b"\x61"]))
                reply = await stream.read(65536)
                assert b"unknown_community" in reply

    run(scenario)


def test_only_a_fresh_join_on_a_live_invite_by_its_own_author_gets_the_key() -> None:
    """An invite code is a bearer secret that outlives its use: a join dated back to
    slip under an expired or used-up code, or someone else's join replayed, gets nothing;
    asking twice does not make the owner publish the key twice."""

    async def scenario(folder: Path) -> None:
        eve_identity = Identity.generate()
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(eve_identity) as eve_peer,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                ann_commands = Commands(ann_node)
                community = bytes.fromhex(
                    (await ann_commands.community_create("Shift", private=True))["id"]
                )
                used = decode_invite((await ann_commands.invite_create("Shift", uses=1))["code"])
                short = decode_invite(
                    (await ann_commands.invite_create("Shift", expires="1s"))["code"]
                )
                assert (await Commands(bob_node).join(used.encode()))["status"] == "joined"
                bob_record = bob.own_record(community, "join", invite_key=used.invite_key)
                assert bob_record is not None

                def key_updates() -> int:
                    rows = ann.db.execute(
                        "SELECT count(*) FROM records WHERE kind = 'key_update'"
                    ).fetchone()
                    return int(rows[0])

                before = key_updates()
                await bob_node.ask_to_join(ann_peer.peer_id, bob_record)  # again
                assert key_updates() == before

                eve_node = Node(new_store(folder, "Eve"), eve_peer)
                await eve_peer.connect(ann_peer.addresses()[0])
                with pytest.raises(SyncError, match="refused"):
                    await eve_node.ask_to_join(ann_peer.peer_id, bob_record)  # replayed
                for invite, created_at in (
                    (used, bob_record.created_at - 1),  # before Bob's: would push him out
                    (short, short.expires_at - 1),  # dated back under the expiry
                ):
                    await trio.sleep(max(0, (short.expires_at - now_ms()) / 1000 + 0.01))
                    join = sign_record(
                        eve_identity,
                        {
                            "kind": "join",
                            "community": community,
                            "invite_key": invite.invite_key,
                            "proof": invite.prove_join(eve_identity.public_key),
                            "created_at": created_at,
                        },
                    )
                    with pytest.raises(SyncError, match="refused"):
                        await eve_node.ask_to_join(ann_peer.peer_id, join)
                assert eve_node.store.community_key(community) is None
                assert ann.status_of(bob_record.id) == ("allowed", "")
                assert key_updates() == before
                eve_node.store.close()

    run(scenario)
