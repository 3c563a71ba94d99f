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
from kithnet.node.blobs import BLOB_PROTOCOL, BlobError, _frame, _read_frame
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
                for number, mode in enumerate(("wrong_bytes", "one_too_many", "wrong_size")):
                    await hostile_server(bad, mode, data)
                    with pytest.raises(BlobError):
                        await bob_node.blobs.fetch_from(bad.peer_id, blob, len(data), "image/png")
                    assert not bob.has_blob(blob)
                    assert bob.blob_limits().used == 0  # nothing half-kept either
                    counted = {"wrong_bytes": "mismatch", "one_too_many": "oversent"}
                    assert bob_node.blobs.counts[counted.get(mode, mode)] == 1
                    assert bob_peer.scores.score(bad.peer_id, trio.current_time()) < -number * 5
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
            lofts = community(ann, bob, visibility=visibility)
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
            # Eve holds the public post (anyone may carry it) but never joined.
            eve.ingest([post.envelope])
            bob.ingest([post.envelope])
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(eve.identity) as eve_peer,
            ):
                ann_node, bob_node, eve_node = (
                    Node(ann, ann_peer),
                    Node(bob, bob_peer),
                    Node(eve, eve_peer),
                )
                await ann_node.follow(lofts)
                for peer in (bob_peer, eve_peer):
                    await peer.connect(ann_peer.addresses()[0])
                with pytest.raises(BlobError, match="refused"):
                    await eve_node.blobs.fetch_from(ann_peer.peer_id, blob, len(data), "text/plain")
                assert not eve.has_blob(blob)
                assert ann_node.blobs.counts["refused"] == 1
                # A member is refused a blob no post names...
                with pytest.raises(BlobError, match="refused"):
                    await bob_node.blobs.fetch_from(ann_peer.peer_id, secret, 16, "text/plain")
                # ...and given the one a post names.
                await bob_node.blobs.fetch_from(ann_peer.peer_id, blob, len(data), "text/plain")
                assert held(bob, blob) == data
                assert ann_node.blobs.counts["served"] == 1

    run(scenario)


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
                await bp.connect(ann_peer.addresses()[0])
                answered = 0
                for _ in range(20):  # far faster than 2 a second
                    try:
                        # A reset at once fails the opening itself (py-libp2p's multiselect).
                        stream = await bp.open_stream(ann_peer.peer_id, BLOB_PROTOCOL)
                        await stream.write(_frame(["get", blob]))
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
