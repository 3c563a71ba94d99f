"""The public directory with real libp2p hosts and real stores: an owner's announcement
reaches a node that shares only a connection, which finds it by tag and by text, asks
and joins with its invite, without following the community before; forged listings are
refused, counted and cost their forwarder; a fetch fills an empty directory, from a
node found in the DHT too; `serve` announces again when the invite stops working."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from kithnet.core.directory import ListingError, pack_listing, unpack_listing
from kithnet.core.envelope import Record, sign_record
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import decode as decode_invite
from kithnet.localstore.store import Store, now_ms
from kithnet.node.commands import CommandError, Commands
from kithnet.node.directory import DIRECTORY_PROTOCOL
from kithnet.node.node import Node
from kithnet.node.sync import FrameReader, SyncError, encode_frame
from kithnet.p2p.dht import DIRECTORY_PROVIDER_ID, CommunityDht
from kithnet.p2p.host import DIRECTORY_TOPIC, Peer
from tests.members import Member, wait_until
from tests.test_node import new_store, run


async def _ignore(data: bytes, author: str) -> None:
    return None


async def wait_listed(store: Store, community: bytes, within: float = 10) -> None:
    with trio.fail_after(within):
        while not store.in_directory(community):
            await trio.sleep(0.02)


def signed(identity: Identity, fields: dict[str, Any]) -> Record:
    return sign_record(identity, {**fields, "created_at": now_ms()})


def listing_of(*records: Record) -> bytes:
    return pack_listing([r.envelope for r in records])


def public_community(identity: Identity, name: str, tags: list[str]) -> tuple[Record, Record]:
    """A genesis and its owner's announcement, made outside any store."""
    genesis = signed(
        identity, {"kind": "community", "name": name, "visibility": "public", "tags": tags}
    )
    announcement = signed(
        identity,
        {
            "kind": "announcement",
            "community": genesis.id,
            "name": name,
            "visibility": "public",
            "tags": tags,
        },
    )
    return genesis, announcement


@given(st.binary(max_size=300) | st.lists(st.binary(max_size=40), max_size=12).map(pack_listing))
def test_any_bytes_are_a_listing_or_a_listing_error(data: bytes) -> None:
    try:
        envelopes = unpack_listing(data)
    except ListingError as exc:
        reason = exc.reason
    else:
        reason = "listing"
        assert 2 <= len(envelopes) <= 10
    assert reason in ("bad_listing", "listing")


def test_a_stranger_finds_an_announced_community_asks_and_joins_with_its_invite() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                ann_cmd, bob_cmd = Commands(ann_node), Commands(bob_node)
                lofts = await ann_cmd.community_create(
                    "Loft Insulators",
                    description="Warm homes in Hackney: sheep wool and cellulose",
                    tags=["insulation", "hackney"],
                )
                garden = await bob_cmd.community_create("Gardeners", tags=["gardening"])
                lofts_id, garden_id = bytes.fromhex(lofts["id"]), bytes.fromhex(garden["id"])
                await bp.connect(ann_peer.addresses()[0])  # they share no community

                announced = await ann_cmd.community_announce("Loft Insulators", uses=5)
                assert announced["directory_peers"] == 1
                assert announced["members"] == 1
                await wait_listed(bob, lofts_id)

                [entry] = (await bob_cmd.directory(tag="Insulation"))["entries"]
                assert entry["name"] == "Loft Insulators"
                assert entry["tags"] == ["insulation", "hackney"]
                assert entry["members"] == 1
                assert entry["invite"] == announced["invite"]
                assert not entry["invite_expired"]
                assert not entry["joined"]
                by_text = (await bob_cmd.directory(text="sheep WOOL hackney"))["entries"]
                assert [e["id"] for e in by_text] == [lofts["id"]]
                assert (await bob_cmd.directory(text="plumbing"))["entries"] == []
                assert (await bob_cmd.directory(tag="plumbing"))["entries"] == []

                # Bob holds the community's genesis now, but is not in it: he does not
                # follow it, list it, count it or serve it in sync.
                assert bob.followed_communities() == [garden_id]
                assert [c["name"] for c in await bob_cmd.community_list()] == ["Gardeners"]
                assert lofts_id not in bob_node.following
                with pytest.raises(SyncError, match="unknown_community"):
                    await ann_node.sync(bp.peer_id, lofts_id)

                # Asking finds it, with its invite.
                asked = await bob_cmd.ask("Who can insulate my loft?", ["insulation"])
                [found] = asked["communities"]
                assert (found["name"], found["joined"]) == ("Loft Insulators", False)
                assert found["invite"] == announced["invite"]

                # The directory's invite lets him in.
                joined = await bob_cmd.join(entry["invite"])
                assert joined["status"] == "joined"
                assert sorted(c.name for c in bob.communities()) == [
                    "Gardeners",
                    "Loft Insulators",
                ]
                assert (await bob_cmd.directory(tag="insulation"))["entries"][0]["joined"]
                with pytest.raises(CommandError, match="only an owner"):
                    await bob_cmd.community_announce("Loft Insulators")

    run(scenario)


def test_forged_listings_are_refused_counted_and_cost_their_forwarder() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
            lofts_genesis = ann.status_of(lofts.id)
            assert lofts_genesis == ("allowed", "")
            eve = Identity.generate()
            # Not an owner: Eve announces Ann's community, alone or with a grant she
            # signed herself.
            by_stranger = signed(
                eve,
                {
                    "kind": "announcement",
                    "community": lofts.id,
                    "name": "Lofts (cheap!)",
                    "visibility": "public",
                },
            )
            self_grant = signed(
                eve,
                {
                    "kind": "role_grant",
                    "community": lofts.id,
                    "subject": eve.public_key,
                    "role": "owner",
                },
            )
            # A private community is never listed.
            hidden = signed(eve, {"kind": "community", "name": "Den", "visibility": "private"})
            hidden_ad = signed(
                eve,
                {
                    "kind": "announcement",
                    "community": hidden.id,
                    "name": "Den",
                    "visibility": "public",
                },
            )
            # A bad signature.
            genesis, ad = public_community(eve, "Eve's Club", ["club"])
            forged = bytearray(ad.envelope)
            forged[-1] ^= 1
            honest_genesis, honest_ad = public_community(eve, "Eve's Garden", ["gardening"])
            # A good announcement padded with a grant its author had no right to make.
            mallory = Identity.generate()
            padding = signed(
                mallory,
                {
                    "kind": "role_grant",
                    "community": genesis.id,
                    "subject": mallory.public_key,
                    "role": "owner",
                },
            )
            # A listing naming a stranger (Bob) moderator of a community, to make his node
            # take it for one of his.
            spam_genesis, spam_ad = public_community(mallory, "Spam", ["spam"])
            bob_made_moderator = signed(
                mallory,
                {
                    "kind": "role_grant",
                    "community": spam_genesis.id,
                    "subject": bob.identity.public_key,
                    "role": "moderator",
                },
            )
            bad = [
                listing_of(spam_ad, spam_genesis, bob_made_moderator),
                listing_of(by_stranger, lofts),
                listing_of(by_stranger, lofts, self_grant),
                listing_of(hidden_ad, hidden),
                pack_listing([bytes(forged), genesis.envelope]),
                b"\x93not a listing",
                listing_of(lofts, by_stranger),  # the genesis first: not a listing
                listing_of(ad, genesis, padding),
            ]
            async with (
                Peer.running(bob.identity) as bob_peer,
                Peer.running(eve) as eve_peer,
            ):
                bob_node = Node(bob, bob_peer)
                await eve_peer.subscribe(DIRECTORY_TOPIC, lambda data: "accept", _ignore)
                await eve_peer.connect(bob_peer.addresses()[0])
                await eve_peer.wait_for_topic_peer(DIRECTORY_TOPIC, bob_peer.peer_id)
                for data in [*bad, listing_of(honest_ad, honest_genesis)]:
                    await eve_peer.publish(DIRECTORY_TOPIC, data)
                await wait_listed(bob, honest_genesis.id)
                with trio.fail_after(10):
                    while sum(bob_node.dropped.values()) < len(bad):
                        await trio.sleep(0.02)
                # Grants that are not an owner chain from the creator to the announcer
                # are refused by their shape, before anything is judged.
                assert bob_node.dropped["not_authorised"] == 1  # the private community
                assert bob_node.dropped["bad_signature"] == 1
                assert bob_node.dropped["bad_listing"] == 6
                assert spam_genesis.id not in bob.followed_communities()
                assert [c.name for c in bob.communities()] == []
                # Nothing of the forgeries was kept; the honest listing was.
                forgeries = (
                    by_stranger, self_grant, hidden, hidden_ad, lofts, genesis, padding,
                    spam_genesis, bob_made_moderator,
                )  # fmt: skip
                for record in forgeries:
                    assert not bob.has_record(record.id)
                assert [e.name for e in bob.directory()] == ["Eve's Garden"]
                score = bob_peer.scores.score(eve_peer.peer_id, trio.current_time())
                assert score <= -50

    run(scenario)


async def _serve_listings(listings: list[Any]) -> Any:
    """A stream handler answering a directory request with `listings`, as a hostile
    node would."""

    async def handler(stream: Any) -> None:
        reader = FrameReader()
        while not reader.feed(await stream.read(65536)):
            pass
        await stream.write(encode_frame(["entries", listings]))
        await stream.write(encode_frame(["done"]))
        await stream.close()

    return handler


def test_a_fetch_fills_an_empty_directory_grant_chains_included_and_bad_entries_cost() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Dan") as dan:
            zed = Identity.generate()
            async with AsyncExitStack() as stack:
                ann_peer = await stack.enter_async_context(Peer.running(ann.identity))
                dan_peer = await stack.enter_async_context(Peer.running(dan.identity))
                eve = Identity.generate()
                eve_peer = await stack.enter_async_context(Peer.running(eve))
                ann_node, dan_node = Node(ann, ann_peer), Node(dan, dan_peer)
                ann_cmd = Commands(ann_node)
                lofts = await ann_cmd.community_create("Lofts", tags=["insulation"])
                roofs = await ann_cmd.community_create("Roofers", tags=["roofing"])
                await ann_cmd.community_announce("Lofts")
                # Roofers is announced by Zed, whom Ann made an owner: a stranger needs
                # the grant to believe it.
                roofs_id = bytes.fromhex(roofs["id"])
                grant = ann.publish(
                    {
                        "kind": "role_grant",
                        "community": roofs_id,
                        "subject": zed.public_key,
                        "role": "owner",
                    }
                )
                zed_ad = sign_record(  # after the grant, even within the same millisecond
                    zed,
                    {
                        "kind": "announcement",
                        "community": roofs_id,
                        "name": "Roofers",
                        "visibility": "public",
                        "tags": ["roofing"],
                        "members": 2,
                        "created_at": grant.created_at + 1,
                    },
                )
                assert ann.ingest([zed_ad.envelope])[0].status == "stored"
                listing = ann.listing(roofs_id)
                assert listing is not None
                assert len(listing) == 3  # with Ann's grant

                await dan_peer.connect(ann_peer.addresses()[0])
                assert dan.directory_count() == 0
                # (Lofts may also come by gossip: GossipSub offers a newcomer the
                # messages of its last few seconds.)
                assert await dan_node.directory.fetch(ann_peer.peer_id) >= 1
                assert dan_node.directory.received == 2
                assert [e.name for e in dan.directory(tag="roofing")] == ["Roofers"]
                assert [e.name for e in dan.directory("lofts")] == ["Lofts"]
                assert bytes.fromhex(lofts["id"]) not in dan.followed_communities()
                assert await dan_node.directory.fetch(ann_peer.peer_id) == 0  # nothing new

                # A node answering with a forged listing and junk among a good one.
                genesis, ad = public_community(eve, "Eve's Garden", ["gardening"])
                forged = signed(
                    eve,
                    {
                        "kind": "announcement",
                        "community": roofs_id,
                        "name": "Roofers",
                        "visibility": "public",
                    },
                )
                roofs_genesis = listing[1]
                eve_peer.set_stream_handler(
                    DIRECTORY_PROTOCOL,
                    await _serve_listings(
                        [
                            [forged.envelope, roofs_genesis],
                            "junk",
                            [ad.envelope, genesis.envelope],
                        ]
                    ),
                )
                await dan_peer.connect(eve_peer.addresses()[0])
                assert await dan_node.directory.fetch(eve_peer.peer_id) == 1
                assert dan_node.directory.received == 3
                # Eve is not an owner of the roofers: no grant leads to her.
                assert dan_node.dropped["bad_listing"] == 2
                assert not dan.has_record(forged.id)
                assert dan.directory_count() == 3
                assert dan_peer.scores.score(eve_peer.peer_id, trio.current_time()) <= -15

    run(scenario)


def test_a_node_with_no_directory_finds_a_provider_in_the_dht() -> None:
    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Dan") as dan,
        ):
            async with AsyncExitStack() as stack:
                nodes = []
                for store in (ann, bob, dan):
                    peer = await stack.enter_async_context(Peer.running(store.identity))
                    dht = await stack.enter_async_context(CommunityDht.running(peer))
                    node = Node(store, peer)
                    node.directory.dht = dht
                    nodes.append((node, dht))
                (ann_node, ann_dht), (bob_node, _), (dan_node, _) = nodes
                ann_cmd = Commands(ann_node)
                lofts = await ann_cmd.community_create("Lofts", tags=["insulation"])
                # Announced while Ann's node was offline: no gossip carries it.
                ann.publish(
                    {
                        "kind": "announcement",
                        "community": bytes.fromhex(lofts["id"]),
                        "name": "Lofts",
                        "visibility": "public",
                        "tags": ["insulation"],
                    }
                )
                # Bob knows Ann; Dan knows only Bob, whose directory is empty.
                await bob_node.peer.connect(ann_node.peer.addresses()[0])
                await dan_node.peer.connect(bob_node.peer.addresses()[0])
                assert ann_node.directory.provider_ids() == [DIRECTORY_PROVIDER_ID]
                assert bob_node.directory.provider_ids() == []
                with trio.fail_after(20):
                    while not await ann_dht.provide(DIRECTORY_PROVIDER_ID):
                        await trio.sleep(0.2)
                    refreshed = await dan_node.directory.refresh()
                    while not dan.directory_count():
                        await trio.sleep(0.2)
                        refreshed = await dan_node.directory.refresh()
                assert refreshed["found_by_dht"] >= 1
                assert refreshed["new"] == 1
                assert bob.directory_count() == 0
                assert ann_node.peer.peer_id in dan_node.peer.connected_peers()
                assert [e.community.hex() for e in dan.directory(tag="insulation")] == [lofts["id"]]

    run(scenario)


def test_an_owner_announces_again_when_the_invite_stops_working() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann:
            async with Peer.running(ann.identity) as peer:
                node = Node(ann, peer)
                commands = Commands(node)
                await commands.community_create("Lofts", tags=["insulation"])
                den = await commands.community_create("Den", private=True)
                with pytest.raises(CommandError, match="private"):
                    await commands.community_announce("Den")
                with pytest.raises(CommandError, match="not a duration"):
                    await commands.community_announce("Lofts", expires="soon")
                first = await commands.community_announce("Lofts", expires="2w")
                assert await node.directory.reannounce_due(commands) == []  # fresh
                # Ann withdraws the invite: the listing no longer lets anyone in.
                code = decode_invite(first["invite"])
                lofts_id = code.community
                invite = ann.own_record(lofts_id, "invite", invite_key=code.invite_key)
                assert invite is not None
                ann.publish({"kind": "delete", "community": lofts_id, "target": invite.id})
                assert await node.directory.reannounce_due(commands) == [lofts_id]
                entry = ann.directory_entry(lofts_id)
                assert entry is not None
                assert entry.invite not in ("", first["invite"])
                assert entry.record_id.hex() != first["id"]
                assert await node.directory.reannounce_due(commands) == []
                assert bytes.fromhex(den["id"]) not in {e.community for e in ann.directory()}

    run(scenario)


def test_announcing_finding_and_joining_by_the_command_line(tmp_path: Path) -> None:
    ann, bob, cat = (Member(tmp_path, name) for name in ("Ann", "Bob", "Cat"))
    try:
        ann.start()
        ann.cli_json(
            "community",
            "create",
            "Loft Insulators",
            "--tag",
            "insulation",
            "--description",
            "Sheep wool and cellulose in Hackney",
        )
        bob.start("--peer", f"{ann.listen}/p2p/{ann.peer_id}")
        bob.cli_json("community", "create", "Gardeners", "--tag", "gardening")
        announced = ann.cli_json("community", "announce", "Loft Insulators", "--uses", "10")
        assert announced["invite"].startswith("kith1")

        wait_until(
            lambda: bob.command("directory", tag="insulation")["entries"],
            "Bob to receive the listing",
        )
        shown = bob.cli("directory", "sheep", "wool")
        assert shown.returncode == 0, shown.stderr
        assert "Loft Insulators  [insulation]  ~1 members, announced just now" in shown.stdout
        assert f"join: kithnet join {announced['invite']}" in shown.stdout
        assert bob.cli_json("join", announced["invite"])["status"] == "joined"

        # Cat's node is new: it knows only Bob, and asks for the directory.
        cat.start("--peer", f"{bob.listen}/p2p/{bob.peer_id}")
        found = cat.command("directory.refresh", tag="insulation", refresh=True)
        assert found["refreshed"]["answered"] >= 1
        assert [e["name"] for e in found["entries"]] == ["Loft Insulators"]
        assert not found["entries"][0]["joined"]
        for member in (ann, bob, cat):
            member.stop()
    finally:
        for member in (ann, bob, cat):
            member.kill()


def test_old_or_too_frequent_announcements_are_not_kept_and_a_full_directory_drops_the_stalest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An owner repeating announcements, or one dated back, leaves nothing behind but
    the newest; a directory at its bound makes room by forgetting the community
    announced longest ago, with its records."""

    async def scenario(folder: Path) -> None:
        monkeypatch.setattr("kithnet.node.directory.MAX_DIRECTORY", 2)
        eve = Identity.generate()
        hour = 3600 * 1000

        def announcement(genesis: Record, ms: int) -> Record:
            return sign_record(
                eve,
                {
                    "kind": "announcement",
                    "community": genesis.id,
                    "name": genesis.fields["name"],
                    "visibility": "public",
                    "created_at": ms,
                },
            )

        start = now_ms() - 10 * hour
        gardens = [
            sign_record(
                eve,
                {
                    "kind": "community",
                    "name": f"Garden {i}",
                    "visibility": "public",
                    "created_at": start,
                },
            )
            for i in range(3)
        ]
        with new_store(folder, "Bob") as bob:
            async with Peer.running(bob.identity) as bob_peer:
                take = Node(bob, bob_peer).directory.take
                first = announcement(gardens[0], start + hour)
                assert take([first.envelope, gardens[0].envelope]) == "accept"
                older = announcement(gardens[0], start + 1)
                soon = announcement(gardens[0], start + hour + 5 * 60 * 1000)
                for stale in (older, soon):
                    assert take([stale.envelope, gardens[0].envelope]) == "ignore"
                    assert not bob.has_record(stale.id)
                later = announcement(gardens[0], start + 2 * hour)
                assert take([later.envelope, gardens[0].envelope]) == "accept"
                assert not bob.has_record(first.id)  # the replaced announcement goes
                assert bob.has_record(later.id)

                second = announcement(gardens[1], start + 3 * hour)
                assert take([second.envelope, gardens[1].envelope]) == "accept"
                # Full: a listing older than every one held is not taken...
                oldest = announcement(gardens[2], start + hour)
                assert take([oldest.envelope, gardens[2].envelope]) == "ignore"
                # ... a newer one takes the place of the stalest, whose records go.
                newest = announcement(gardens[2], start + 4 * hour)
                assert take([newest.envelope, gardens[2].envelope]) == "accept"
                assert sorted(e.name for e in bob.directory()) == ["Garden 1", "Garden 2"]
                assert not bob.has_record(gardens[0].id)
                assert not bob.has_record(later.id)

    run(scenario)
