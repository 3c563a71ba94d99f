"""Catch-up sync between two real stores, over length-prefixed frames in memory: both end
with the community's whole set, in few round trips, and a peer cannot use sync to read
another community's records or to break the conversation with garbage."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kithnet.core.envelope import Record, sign_record
from kithnet.crypto.identity import Identity
from kithnet.localstore.store import Store
from kithnet.node.sync import (
    FrameReader,
    Message,
    SyncClient,
    SyncError,
    SyncServer,
    encode_frame,
)
from tests.strategies import NOW_MS
from tests.test_store_ingest import FAST_KDF

OWNER = Identity.from_seed(bytes([21]) * 32)


def community(name: str, posts: int) -> list[Record]:
    genesis = sign_record(
        OWNER,
        {"kind": "community", "name": name, "visibility": "public", "created_at": NOW_MS},
    )
    made = [genesis]
    for i in range(posts):
        made.append(
            sign_record(
                OWNER,
                {
                    "kind": "post",
                    "community": genesis.id,
                    "type": "post",
                    "text": f"{name} news {i}",
                    "created_at": NOW_MS + 1 + i // 4,
                },
            )
        )
    return made


@pytest.fixture
def stores() -> Iterator[tuple[Store, Store]]:
    with tempfile.TemporaryDirectory() as folder:
        a = Store.create(Path(folder) / "a", "pass", kdf=FAST_KDF)
        b = Store.create(Path(folder) / "b", "pass", kdf=FAST_KDF)
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def converse(client: SyncClient, server: SyncServer) -> int:
    """Run a sync to its end through encoded frames; returns the bytes on the wire."""
    to_server, to_client = FrameReader(), FrameReader()
    outbox: list[Message] = client.start()
    wire = 0
    for _ in range(1000):
        if not outbox:
            break
        frames = b"".join(encode_frame(m) for m in outbox)
        wire += len(frames)
        replies: list[Message] = []
        for message in to_server.feed(frames):
            replies += server.handle(message)
        frames = b"".join(encode_frame(m) for m in replies)
        wire += len(frames)
        outbox = []
        for message in to_client.feed(frames):
            outbox += client.handle(message)
    assert client.done, "the sync did not finish"
    return wire


def ids(store: Store, genesis: Record) -> set[bytes]:
    return {item[1] for item in store.sync_items(genesis.id)}


def test_two_members_end_with_the_whole_community(stores: tuple[Store, Store]) -> None:
    a, b = stores
    records = community("Lofts", 3000)
    rng = random.Random(1)
    missing_on_b = set(range(2700, 3001))  # B was away for the newest 300 posts
    missing_on_a = set(rng.sample(range(1, 2700), 5))  # and A lost a few here and there
    a.ingest([r.envelope for i, r in enumerate(records) if i not in missing_on_a], now=NOW_MS)
    b.ingest([r.envelope for i, r in enumerate(records) if i not in missing_on_b], now=NOW_MS)
    client, server = SyncClient(b, records[0].id), SyncServer(a)
    wire = converse(client, server)
    everything = {r.id for r in records}
    assert ids(a, records[0]) == everything
    assert ids(b, records[0]) == everything
    assert client.received == len(missing_on_b)
    assert client.sent == len(missing_on_a)
    assert server.done
    assert client.round_trips <= 4
    moved = sum(len(records[i].envelope) for i in missing_on_b | missing_on_a)
    assert wire < 1.15 * moved + 20_000  # a few ids and fingerprints, not the whole set
    newest = sorted(records[1:], key=lambda r: (r.created_at, r.id), reverse=True)[:3]
    assert [p.id for p in b.feed(records[0].id, limit=3).posts] == [r.id for r in newest]


def test_a_new_member_gets_everything_and_an_equal_pair_exchanges_no_records(
    stores: tuple[Store, Store],
) -> None:
    a, b = stores
    records = community("Roofs", 100)
    a.ingest([r.envelope for r in records], now=NOW_MS)
    client = SyncClient(b, records[0].id)
    converse(client, SyncServer(a))
    assert client.received == len(records)
    again = SyncClient(b, records[0].id)
    converse(again, SyncServer(a))
    assert (again.received, again.sent, again.round_trips) == (0, 0, 1)


def test_sync_never_hands_out_another_communitys_records(stores: tuple[Store, Store]) -> None:
    a, _ = stores
    lofts, secret = community("Lofts", 5), community("Secret", 5)
    a.ingest([r.envelope for r in lofts + secret], now=NOW_MS)
    server = SyncServer(a)
    server.handle(["open", 1, lofts[0].id, b"\x61"])
    answer = server.handle(["want", [r.id for r in secret]])
    assert answer == []
    answer = server.handle(["want", [lofts[2].id, secret[2].id]])
    assert answer == [["records", [lofts[2].envelope]]]


@pytest.mark.parametrize(
    "message",
    [
        ["want", [b"x"]],  # before open
        ["open", 1, b"short", b"\x61"],
        ["open", 1, bytes(32), b"\x61\xff"],
        ["hello"],
    ],
)
def test_a_broken_conversation_is_refused_in_words(
    stores: tuple[Store, Store], message: Message
) -> None:
    a, _ = stores
    with pytest.raises(SyncError):
        SyncServer(a).handle(message)


def test_frames_that_are_too_big_or_not_messages_are_refused() -> None:
    with pytest.raises(SyncError, match="over the"):
        FrameReader().feed(b"\xff\xff\xff\xff")
    with pytest.raises(SyncError, match="not a message"):
        FrameReader().feed(b"\x00\x00\x00\x01\x01")
    reader = FrameReader()
    frame = encode_frame(["done"])
    assert reader.feed(frame[:3]) == []
    assert reader.feed(frame[3:]) == [["done"]]


def test_small_frames_still_end_with_everything_sent_once(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Negentropy messages cut to 4 KiB, ranges come back more than once; the
    records the server pushes for them still arrive exactly once and the sync ends."""
    monkeypatch.setattr("kithnet.node.sync.NEGENTROPY_FRAME_LIMIT", 4096)
    a, b = stores
    records = community("Sheds", 2000)
    a.ingest([r.envelope for r in records], now=NOW_MS)
    b.ingest([r.envelope for r in records[:1400]], now=NOW_MS)
    client, server = SyncClient(b, records[0].id), SyncServer(a)
    converse(client, server)
    assert client.received == server.sent == 601
    assert b.record_count() == a.record_count()
    assert client.round_trips > 1


@pytest.mark.parametrize(("posts", "away"), [(500, 50), (2_000, 200), (10_000, 1_000)])
def test_the_newest_missing_records_all_arrive_once_whatever_the_set_size(
    stores: tuple[Store, Store], posts: int, away: int
) -> None:
    """Ranges the client only fingerprinted can come back as the server's id lists; the
    client then asks for what it lacks there (10,000 posts once left 26 undelivered)."""
    a, b = stores
    records = community("Sizes", posts)
    a.ingest([r.envelope for r in records], now=NOW_MS)
    b.ingest([r.envelope for r in records[: len(records) - away]], now=NOW_MS)
    client, server = SyncClient(b, records[0].id), SyncServer(a)
    converse(client, server)
    assert ids(b, records[0]) == {r.id for r in records}
    assert client.received == away  # each missing record once
    assert client.sent == 0
