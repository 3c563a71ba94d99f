"""Pictures and files on posts, between real libp2p hosts on 127.0.0.1 with real stores:
a file attached on one node arrives whole at another by itself; wrong bytes, a byte too
many or a wrong size are caught and nothing is kept; a stranger is refused; and the
member's limits decide what is fetched, as the feed shows."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from kithnet.localstore.blobs import BlobTooBig, blob_hash, parse_size
from kithnet.localstore.errors import StoreError
from kithnet.localstore.store import Store, now_ms
from kithnet.node.blobs import BLOB_PROTOCOL, REFUSAL, BlobError, _frame, _read_frame
from kithnet.node.commands import CommandError, Commands
from kithnet.node.node import Node
from kithnet.p2p.host import Peer, community_topic
from tests.test_store_ingest import FAST_KDF

MIB = 1024 * 1024
Scenario = Callable[[Path], Awaitable[None]]


def run(scenario: Scenario, timeout: float = 60) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder, trio.fail_after(timeout):
            await scenario(Path(folder))

    trio.run(main)


def new_store(folder: Path, name: str) -> Store:
    return Store.create(folder / name, "pass", name=name, kdf=FAST_KDF)


def community(owner: Store, *members: Store, visibility: str = "public") -> bytes:
    """A community of `owner`'s that `members` joined, known to all of them."""
    genesis = owner.publish({"kind": "community", "name": "Lofts", "visibility": visibility})
    code = InviteCode.create(owner.identity, genesis.id, "Lofts", [], now_ms() + 3_600_000)
    invite = owner.publish(
        {
            "kind": "invite",
            "community": genesis.id,
            "invite_key": code.invite_key,
            "expires_at": code.expires_at,
        }
    )
    envelopes = [genesis.envelope, invite.envelope]
    for member in members:
        member.ingest(envelopes)
        join = member.publish(
            {
                "kind": "join",
                "community": genesis.id,
                "invite_key": code.invite_key,
                "proof": code.prove_join(member.identity.public_key),
            }
        )
        envelopes.append(join.envelope)
    for store in (owner, *members):
        store.ingest(envelopes)
        assert store.is_member(genesis.id, store.identity.public_key) or store is owner
    return genesis.id


def picture(folder: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = folder / name
    path.write_bytes(data)
    return path, data


def held(store: Store, blob: bytes) -> bytes:
    return b"".join(store.blob_chunks(blob))


async def until(check: Callable[[], Any], pause: float = 0.05) -> None:
    """Poll `check` until it holds (the caller bounds the time with trio.fail_after)."""
    while not check():
        await trio.sleep(pause)


async def raw_get(asker: Peer, server: Peer, blob: bytes, wire: bytes) -> list[Any]:
    """Ask `server` for a blob for a community (by its wire id) as any peer could: the
    answer's header."""
    stream = await asker.open_stream(server.peer_id, BLOB_PROTOCOL)
    try:
        await stream.write(_frame(["get", blob, wire]))
        header, _ = await _read_frame(stream)
    finally:
        await stream.close()
    return header


def test_a_3_mib_picture_posted_by_ann_arrives_whole_at_bob(tmp_path: Path) -> None:
    path, data = picture(tmp_path, "loft.jpg", 3 * MIB + 123)

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = community(ann, bob)
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                for node in (ann_node, bob_node):
                    await node.follow(lofts)
                await bp.connect(ann_peer.addresses()[0])
                await ann_peer.wait_for_topic_peer(community_topic(lofts), bp.peer_id)
                posted = await Commands(ann_node).post("Lofts", "my loft", attachments=[str(path)])
                [attachment] = posted["attachments"]
                assert attachment["name"] == "loft.jpg"
                assert attachment["mime"] == "image/jpeg"
                assert attachment["size"] == len(data)
                assert attachment["state"] == "here"
                blob = bytes.fromhex(attachment["hash"])
                assert blob == blob_hash(data)

                # Bob's node fetches it by itself once the post arrives.
                with trio.fail_after(30):
                    await until(lambda: bob.has_blob(blob))
                assert held(bob, blob) == data
                bob_commands = Commands(bob_node)
                [shown] = (await bob_commands.feed("Lofts"))["posts"]
                assert shown["attachments"][0]["state"] == "here"
                assert (await bob_commands.blobs())["count"] == 1

                # And saves it to a file.
                out = folder / "saved.jpg"
                saved = await bob_commands.attachment_save(posted["id"], str(out))
                assert out.read_bytes() == data
                assert saved["fetched"] is False
                with pytest.raises(CommandError, match="already exists"):
                    await bob_commands.attachment_save(posted["id"], str(out))

    run(scenario)


async def hostile_server(peer: Peer, mode: str, data: bytes) -> None:
    """Serve `data` the wrong way: other bytes, one byte too many, or another size."""

    async def serve(stream: Any) -> None:
        await _read_frame(stream)
        if mode == "wrong_bytes":
            await stream.write(_frame(["blob", len(data)]) + os.urandom(len(data)))
        elif mode == "one_too_many":
            await stream.write(_frame(["blob", len(data)]) + data + b"!")
        elif mode == "wrong_size":
            await stream.write(_frame(["blob", len(data) * 2]) + data + data)
        await trio.sleep(5)
        await stream.close()

    peer.set_stream_handler(BLOB_PROTOCOL, serve)


def test_a_peer_serving_wrong_bytes_is_caught_and_nothing_is_kept() -> None:
    data = os.urandom(200_000)

    async def scenario(folder: Path) -> None:
        mallory = Identity.generate()
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = community(ann, bob)
            blob = ann.add_blob(data, "image/png")
            post = ann.publish(
                {
                    "kind": "post",
                    "community": lofts,
                    "type": "post",
                    "attachments": [{"hash": blob, "size": len(data), "mime": "image/png"}],
                }
            )
            bob.ingest([post.envelope])
            async with Peer.running(bob.identity) as bob_peer, Peer.running(mallory) as bad:
                bob_node = Node(bob, bob_peer)
                await bob_node.follow(lofts)
                await bob_peer.connect(bad.addresses()[0])
                for number, mode in enumerate(("wrong_bytes", "one_too_many")):
                    await hostile_server(bad, mode, data)
                    with pytest.raises(BlobError):
                        await bob_node.blobs.fetch_from(bad.peer_id, blob, "image/png")
                    assert not bob.has_blob(blob)
                    assert bob.blob_limits().used == 0  # nothing half-kept either
                    counted = {"wrong_bytes": "mismatch", "one_too_many": "oversent"}
                    assert bob_node.blobs.counts[counted[mode]] == 1
                    assert bob_peer.scores.score(bad.peer_id, trio.current_time()) < -number * 5
                # A size no post claims is not taken (nor blamed: a post can be wrong).
                score = bob_peer.scores.score(bad.peer_id, trio.current_time())
                await hostile_server(bad, "wrong_size", data)
                with pytest.raises(BlobError, match="a size no post here claims"):
                    await bob_node.blobs.fetch_from(bad.peer_id, blob, "image/png")
                assert not bob.has_blob(blob)
                assert bob.blob_limits().used == 0
                assert bob_node.blobs.counts["unclaimed_size"] == 1
                assert bob_peer.scores.score(bad.peer_id, trio.current_time()) >= score
                [shown] = (await Commands(bob_node).feed("Lofts"))["posts"]
                assert shown["attachments"][0]["state"] == "missing"

    run(scenario)


@pytest.mark.parametrize("visibility", ["public", "private"])
def test_a_stranger_is_refused_a_members_blob_and_a_member_gets_it(visibility: str) -> None:
    data = os.urandom(70_000)

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Eve") as eve,
        ):
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(eve.identity) as eve_peer,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                Node(eve, eve_peer)
                lofts = await lofts_of(ann_node, bob_node, visibility)
                blob = ann.add_blob(data, "text/plain")
                secret = ann.add_blob(b"named by no post", "text/plain")
                post = ann.publish(
                    {
                        "kind": "post",
                        "community": lofts,
                        "type": "post",
                        "text": "notes",
                        "attachments": [{"hash": blob, "size": len(data), "mime": "text/plain"}],
                    }
                )
                # Eve holds the post (anyone may carry a record) but never joined.
                eve.ingest([post.envelope])
                bob.ingest([post.envelope])
                for peer in (bob_peer, eve_peer):
                    await peer.connect(ann_peer.addresses()[0])
                wire = ann_node.wire_id(lofts)
                assert wire is not None
                assert await raw_get(eve_peer, ann_peer, blob, wire) == ["refused", REFUSAL]
                assert not eve.has_blob(blob)
                assert ann_node.blobs.counts["refused"] == 1
                # A member is refused a blob no post names...
                assert await raw_get(bob_peer, ann_peer, secret, wire) == ["refused", REFUSAL]
                # ...and given the one a post names.
                await bob_node.blobs.fetch_from(ann_peer.peer_id, blob, "text/plain")
                assert held(bob, blob) == data
                assert ann_node.blobs.counts["served"] == 1

    run(scenario)


async def lofts_of(ann_node: Node, bob_node: Node, visibility: str) -> bytes:
    """Ann's community Lofts, which Bob joined, followed by both nodes: a private one
    made and joined as members do (Ann's node hands Bob the key)."""
    if visibility == "public":
        lofts = community(ann_node.store, bob_node.store)
        for node in (ann_node, bob_node):
            await node.follow(lofts)
        return lofts
    ann_commands = Commands(ann_node)
    made = await ann_commands.community_create("Lofts", private=True)
    invite = await ann_commands.invite_create("Lofts", uses=1)
    assert (await Commands(bob_node).join(invite["code"]))["status"] == "joined"
    return bytes.fromhex(made["id"])


def test_limits_decide_what_is_fetched_and_the_feed_says_so(tmp_path: Path) -> None:
    big_path, big = picture(tmp_path, "plan.pdf", 2 * MIB)
    small_path, small = picture(tmp_path, "note.txt", 100_000)

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = community(ann, bob)
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                ann_commands, bob_commands = Commands(ann_node), Commands(bob_node)
                limits = await bob_commands.blobs(max_size="1MB")
                assert limits["max_size"] == MIB
                for node in (ann_node, bob_node):
                    await node.follow(lofts)
                await bp.connect(ann_peer.addresses()[0])
                await ann_peer.wait_for_topic_peer(community_topic(lofts), bp.peer_id)
                big_post = await ann_commands.post("Lofts", "plans", attachments=[str(big_path)])
                small_post = await ann_commands.post("Lofts", attachments=[str(small_path)])
                big_blob = bytes.fromhex(big_post["attachments"][0]["hash"])
                small_blob = bytes.fromhex(small_post["attachments"][0]["hash"])
                with trio.fail_after(30):
                    await until(lambda: bob.has_blob(small_blob))
                    await until(lambda: not bob_node.blobs.fetching())
                assert not bob.has_blob(big_blob)
                assert not ann_node.blobs.served[big_blob]
                posts = {p["id"]: p for p in (await bob_commands.feed("Lofts"))["posts"]}
                assert posts[big_post["id"]]["attachments"][0]["state"] == "too big"
                assert posts[small_post["id"]]["attachments"][0]["state"] == "here"
                assert posts[small_post["id"]]["text"] == ""

                # Asked for by name, it comes whatever the limit for one file.
                out = folder / "plan.pdf"
                saved = await bob_commands.attachment_save(big_post["id"], str(out))
                assert saved["fetched"] is True
                assert out.read_bytes() == big
                # Bob's room for files is now too small for anything more.
                shown = await bob_commands.blobs(max_total="2MB", max_size="20MB")
                assert shown["used"] == len(big) + len(small)
                assert shown["max_size"] == 20 * MIB
                third_path, _ = picture(folder, "third.bin", 300_000)
                third = await ann_commands.post("Lofts", "more", attachments=[str(third_path)])
                with trio.fail_after(10):
                    await bob_node.wait_for_record(bytes.fromhex(third["id"]))
                posts = {p["id"]: p for p in (await bob_commands.feed("Lofts"))["posts"]}
                assert posts[third["id"]]["attachments"][0]["state"] == "no room"

                # Ann's own limits refuse a file before anything is posted.
                await ann_commands.blobs(max_size="1MB")
                other, _ = picture(folder, "plan2.pdf", 2 * MIB)
                with pytest.raises(CommandError, match=r"plan2\.pdf cannot be attached.*1\.0 MiB"):
                    await ann_commands.post("Lofts", "again", attachments=[str(other)])
                with pytest.raises(CommandError, match="text or an attached file"):
                    await ann_commands.post("Lofts")
                # A post that is not made leaves none of its files behind.
                before = ann.blob_limits().used
                fresh, _ = picture(folder, "fresh.txt", 1000)
                gone = str(folder / "gone.txt")
                with pytest.raises(CommandError, match=r"gone\.txt: no such file"):
                    await ann_commands.post("Lofts", "two", attachments=[str(fresh), gone])
                assert ann.blob_limits().used == before

    run(scenario)


def test_a_blob_is_kept_only_whole_and_checked() -> None:
    with tempfile.TemporaryDirectory() as folder, new_store(Path(folder), "Ann") as ann:
        data = os.urandom(300_000)
        blob = blob_hash(data)
        writer = ann.begin_blob(blob, len(data), "image/png")
        writer.write(data[:100_000])
        assert not ann.has_blob(blob)
        assert ann.blob_limits().used == len(data)  # reserved while it comes
        with pytest.raises(StoreError):
            writer.finish()  # short
        assert ann.blob_limits().used == 0
        writer = ann.begin_blob(blob, len(data), "image/png")
        writer.write(data)
        writer.finish()
        assert held(ann, blob) == data
        assert [len(c) for c in ann.blob_chunks(blob)] == [65536] * 4 + [300_000 - 4 * 65536]
        # A half-received blob left by a stop is forgotten at the next start.
        other = os.urandom(10)
        ann.begin_blob(blob_hash(other), 10, "x/y").write(other[:5])
        assert ann.discard_incomplete_blobs() == 1
        with pytest.raises(BlobTooBig, match=r"64\.0 MiB"):
            ann.begin_blob(os.urandom(32), 65 * MIB, "x/y", explicit=True)
        assert parse_size("20MB") == 20 * MIB
        assert parse_size("2 GiB") == 2 * 1024 * MIB
        assert parse_size("512k") == 512 * 1024
        assert parse_size("1000") == 1000
        with pytest.raises(StoreError, match="not a size"):
            parse_size("lots")


def test_a_member_asking_too_fast_is_cut_off_and_the_rest_are_served() -> None:
    data = os.urandom(1000)

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = community(ann, bob)
            blob = ann.add_blob(data, "text/plain")
            ann.publish(
                {
                    "kind": "post",
                    "community": lofts,
                    "type": "post",
                    "attachments": [{"hash": blob, "size": len(data), "mime": "text/plain"}],
                }
            )
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node = Node(ann, ann_peer)
                await ann_node.follow(lofts)
                await bp.connect(ann_peer.addresses()[0])
                answered = 0
                for _ in range(20):  # far faster than 2 a second
                    try:
                        # A reset at once fails the opening itself (py-libp2p's multiselect).
                        stream = await bp.open_stream(ann_peer.peer_id, BLOB_PROTOCOL)
                        await stream.write(_frame(["get", blob, lofts]))
                        header, _ = await _read_frame(stream)
                        await stream.close()
                    except Exception:  # reset: over the rate
                        continue
                    assert header == ["blob", len(data)]
                    answered += 1
                assert 10 <= answered < 20
                assert ann_node.blobs.counts["limited"] == 20 - answered
                assert ann_node.blobs.counts["served"] == answered
                assert ann_node.dropped["blob_limited"] == 20 - answered

    run(scenario)


def test_a_peer_id_gives_back_the_key_it_was_made_from() -> None:
    from kithnet.crypto.identity import peer_id, public_key_of

    for _ in range(50):
        key = Identity.generate().public_key
        assert public_key_of(peer_id(key)) == key
    for wrong in ("", "0OIl", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "1" * 60):
        assert public_key_of(wrong) is None


def attach_post(store: Store, community_id: bytes, blob: bytes, size: int, text: str = "") -> Any:
    """`store`'s post in a community naming a blob (held or not) with a size claim."""
    fields: dict[str, Any] = {
        "kind": "post",
        "community": community_id,
        "type": "post",
        "attachments": [{"hash": blob, "size": size, "mime": "image/png"}],
    }
    if text:
        fields["text"] = text
    return store.publish(fields)


def test_a_private_blob_is_not_served_where_someone_else_names_its_hash() -> None:
    """Ann's picture in private Night Shift (with Bob) is refused to Mallory, who shares
    only public Lofts with Ann and names its hash there; Bob gets it for Night Shift and
    shares it only there; deleted, or once Bob is banned, it is refused to him too."""
    secret = os.urandom(5000)

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Mal") as mal,
        ):
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(mal.identity) as mal_peer,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                mal_node = Node(mal, mal_peer)
                shift = await lofts_of(ann_node, bob_node, "private")
                lofts = community(ann, mal)
                for node in (ann_node, mal_node):
                    await node.follow(lofts)
                blob = ann.add_blob(secret, "image/png")
                mine = attach_post(ann, shift, blob, len(secret))
                # Mallory learnt the hash and names it in a post of his in Lofts.
                copied = attach_post(mal, lofts, blob, len(secret), "look")
                assert ann.ingest([copied.envelope])[0].status == "stored"
                await mal_peer.connect(ann_peer.addresses()[0])
                await ann_peer.wait_for_topic_peer(community_topic(lofts), mal_peer.peer_id)
                with pytest.raises(BlobError, match="refused"):
                    await mal_node.blobs.fetch_from(ann_peer.peer_id, blob, "image/png")
                assert await raw_get(mal_peer, ann_peer, blob, lofts) == ["refused", REFUSAL]
                assert not mal.has_blob(blob)
                assert not ann_node.blobs.counts["served"]

                # Bob, a member, gets it for Night Shift by himself, and notes that.
                bob.ingest([mine.envelope, copied.envelope])
                bob_node.blobs.kick()
                with trio.fail_after(15):
                    await until(lambda: bob.has_blob(blob))
                assert held(bob, blob) == secret
                assert bob.blob_origins(blob) == [shift]
                assert not bob.may_serve_blob(blob, mal.identity.public_key, lofts)

                # Deleted, the post no longer makes it servable; nor to a banned member.
                bob_key = bob.identity.public_key
                assert ann.may_serve_blob(blob, bob_key, shift)
                ann.publish(
                    {"kind": "moderation", "community": shift, "action": "ban", "target": bob_key}
                )
                assert not ann.may_serve_blob(blob, bob_key, shift)
                handle = ann_node.wire_id(shift) or b""
                assert await raw_get(bob_peer, ann_peer, blob, handle) == ["refused", REFUSAL]
                ann.publish({"kind": "delete", "community": shift, "target": mine.id})
                assert not any(
                    ann.may_serve_blob(blob, m.member, shift) for m in ann.members(shift)
                )

    run(scenario)


def test_a_wrong_size_claim_blames_nobody_and_the_real_blob_still_arrives() -> None:
    """Mallory reposts each of Ann's pictures claiming one byte more: Bob's node still
    fetches every one from Ann, who loses no score."""

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Mal") as mal,
        ):
            lofts = community(ann, bob, mal)
            envelopes, hashes = [], []
            for number in range(3):
                data = os.urandom(10_000 + number)
                blob = ann.add_blob(data, "image/png")
                hashes.append(blob)
                envelopes.append(attach_post(ann, lofts, blob, len(data)).envelope)
                envelopes.append(attach_post(mal, lofts, blob, len(data) + 1, "mine").envelope)
            for store in (ann, bob):
                store.ingest(envelopes)
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                for node in (ann_node, bob_node):
                    await node.follow(lofts)
                await bp.connect(ann_peer.addresses()[0])
                with trio.fail_after(15):
                    await until(lambda: all(bob.has_blob(blob) for blob in hashes))
                assert bp.scores.score(ann_peer.peer_id, trio.current_time()) >= 0
                assert not [k for k in bob_node.dropped if k.startswith("blob_")]

    run(scenario)


def test_blobs_no_post_names_are_freed_and_a_failed_post_keeps_none(tmp_path: Path) -> None:
    """A post refused for its text keeps none of its files and says why in one line;
    Ann deletes her post: both nodes free their copies soon after; a post deleted while
    the node was stopped has its file freed when it starts."""
    path, data = picture(tmp_path, "loft.jpg", 300_000)

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = community(ann, bob)
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                ann_commands = Commands(ann_node)
                with pytest.raises(CommandError, match=r"the post cannot be made: .*text"):
                    await ann_commands.post("Lofts", "x" * 20_000, attachments=[str(path)])
                assert (ann.blob_limits().used, ann.blob_limits().count) == (0, 0)

                for node in (ann_node, bob_node):
                    await node.follow(lofts)
                await bp.connect(ann_peer.addresses()[0])
                await ann_peer.wait_for_topic_peer(community_topic(lofts), bp.peer_id)
                posted = await ann_commands.post("Lofts", "loft", attachments=[str(path)])
                blob = bytes.fromhex(posted["attachments"][0]["hash"])
                with trio.fail_after(15):
                    await until(lambda: bob.has_blob(blob))
                await ann_commands.delete(posted["id"])
                with trio.fail_after(15):
                    await until(lambda: not bob.has_blob(blob) and not ann.has_blob(blob))
                assert (await Commands(bob_node).blobs())["used"] == 0
                assert bob_node.blobs.counts["freed"] == 1
                assert ann.blob_limits().used == 0
            # A post deleted while no node ran: its file is freed when the node starts.
            other = ann.add_blob(data[:1000], "image/png")
            post = attach_post(ann, lofts, other, 1000)
            ann.publish({"kind": "delete", "community": lofts, "target": post.id})
            assert ann.has_blob(other)
            async with Peer.running(ann.identity) as ann_peer:
                Node(ann, ann_peer)
                assert not ann.has_blob(other)
                assert ann.blob_limits().used == 0

    run(scenario)


def test_blobs_nobody_can_give_do_not_starve_the_others_and_failures_are_retried() -> None:
    """Bob's newest 120 posts name files nobody online holds; the older picture Ann holds
    still arrives. One Ann did not hold when asked arrives, without reconnecting, once
    she has it and Bob's node tries again."""
    data, later = os.urandom(20_000), os.urandom(30_000)

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cat") as cat,
        ):
            lofts = community(ann, bob)
            blob = ann.add_blob(data, "image/png")
            envelopes = [attach_post(ann, lofts, blob, len(data)).envelope]
            envelopes.append(attach_post(ann, lofts, blob_hash(later), len(later)).envelope)
            ann.ingest(envelopes)
            bob.ingest(envelopes)
            # Cat, never online, names 120 files in another community of Bob's.
            attic = community(cat, bob)
            bob.ingest([attach_post(cat, attic, os.urandom(32), 1000).envelope for _ in range(120)])
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                bob_node.blobs.first_retry = 1.0
                for node in (ann_node, bob_node):
                    await node.follow(lofts)
                await bp.connect(ann_peer.addresses()[0])
                with trio.fail_after(15):
                    await until(lambda: bob.has_blob(blob))
                    await until(lambda: bob_node.blobs.counts["refused_to_us"] > 0)
                ann.add_blob(later, "image/png")
                with trio.fail_after(15):
                    await until(lambda: bob.has_blob(blob_hash(later)))
                assert held(bob, blob_hash(later)) == later

    run(scenario)


def test_silent_peers_do_not_hold_the_serving_slots() -> None:
    """Four peers open two blob streams each and say nothing: Bob is still served."""
    data = os.urandom(50_000)

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            lofts = community(ann, bob)
            blob = ann.add_blob(data, "image/png")
            bob.ingest([attach_post(ann, lofts, blob, len(data)).envelope])
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                trio.open_nursery() as nursery,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                await ann_node.follow(lofts)
                silent = []
                for _ in range(4):
                    peer = await nursery.start(_running_peer)
                    await peer.connect(ann_peer.addresses()[0])
                    for _ in range(2):
                        silent.append(await peer.open_stream(ann_peer.peer_id, BLOB_PROTOCOL))
                with trio.fail_after(5):
                    await until(lambda: ann_node.blobs._reading == 8)
                await bob_peer.connect(ann_peer.addresses()[0])
                await bob_node.blobs.fetch_from(ann_peer.peer_id, blob, "image/png", lofts)
                assert held(bob, blob) == data
                nursery.cancel_scope.cancel()

    run(scenario)


async def _running_peer(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with Peer.running(Identity.generate()) as peer:
        task_status.started(peer)
        await trio.sleep_forever()


def test_saving_an_attachment_checks_the_path_the_file_and_the_bytes(tmp_path: Path) -> None:
    """A relative path is refused; someone else's .part file is left alone; a damaged
    stored copy is not saved as if whole, and is forgotten so that it can be fetched
    again."""
    path, _ = picture(tmp_path, "loft.jpg", 200_000)

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann:
            community(ann)
            async with Peer.running(ann.identity) as ann_peer:
                commands = Commands(Node(ann, ann_peer))
                posted = await commands.post("Lofts", "loft", attachments=[str(path)])
                with pytest.raises(CommandError, match="full path"):
                    await commands.post("Lofts", "again", attachments=["loft.jpg"])
                with pytest.raises(CommandError, match="full path"):
                    await commands.attachment_save(posted["id"], "copy.jpg")
                theirs = folder / ".copy.jpg.part"
                theirs.write_bytes(b"someone else's")
                with pytest.raises(CommandError, match="in the way"):
                    await commands.attachment_save(posted["id"], str(folder / "copy.jpg"))
                assert theirs.read_bytes() == b"someone else's"
                assert not (folder / "copy.jpg").exists()

                blob = bytes.fromhex(posted["attachments"][0]["hash"])
                ann.db.execute("DELETE FROM blob_chunks WHERE hash = ? AND idx = 3", (blob,))
                with pytest.raises(CommandError, match="damaged"):
                    await commands.attachment_save(posted["id"], str(folder / "other.jpg"))
                assert not (folder / "other.jpg").exists()
                assert not (folder / ".other.jpg.part").exists()
                assert not ann.has_blob(blob)

    run(scenario)


def test_attaching_a_file_being_fetched_leaves_the_fetch_whole(tmp_path: Path) -> None:
    """While Bob's node receives a picture, Bob attaches the same file: refused in one
    line, and the picture still arrives whole."""
    path, data = picture(tmp_path, "loft.jpg", 300_000)
    with new_store(tmp_path, "Bob") as bob:
        writer = bob.begin_blob(blob_hash(data), len(data), "image/jpeg")
        writer.write(data[:100_000])
        with pytest.raises(StoreError, match="being received"):
            bob.add_blob_file(path, "image/jpeg")
        writer.write(data[100_000:])
        writer.finish()
        assert held(bob, blob_hash(data)) == data
        assert bob.add_blob_file(path, "image/jpeg") == (blob_hash(data), len(data))
        assert bob.blob_limits().count == 1
