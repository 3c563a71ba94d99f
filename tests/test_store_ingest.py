"""The ingest pipeline: stored, duplicate or rejected for each envelope; records that
arrive before what they depend on take effect later; and arrival order, however the
records are shuffled and batched, never changes what the store ends up showing."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.pwhash import argon2id

from kithnet.core.authority import fold
from kithnet.core.envelope import Record, sign_record
from kithnet.core.errors import REASONS
from kithnet.crypto.identity import Identity
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.store import Store
from tests.histories import CAROL, DAVE, RICH_HISTORY
from tests.strategies import NOW_MS

FAST_KDF = KdfParams.new(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
ME = Identity.from_seed(bytes([9]) * 32)


def new_store(folder: Path) -> Store:
    return Store.create(folder / "data", "correct horse", identity=ME, kdf=FAST_KDF)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = new_store(tmp_path)
    yield opened
    opened.close()


# Columns that record arrival (seq, rowid, received_at) differ by design; everything a
# member can see must not.
_SNAPSHOT = {
    "records": "id, status, reason, waiting_for",
    "communities": "*",
    "members": "*",
    "roles": "*",
    "invites": "*",
    "posts": "id, community, author, type, text, tags, area, terms, reply_to, created_at,"
    " edit_at, edit_id, deleted, removed",
    "reactions": "*",
    "removed": "*",
    "moderation_log": "*",
    "refs": "*",
    "referrals": "*",
    "directory": "*",
    "profiles": "member, record_id, name, bio, skills, services, created_at",
    "judge_marks": "*",
}


def snapshot(store: Store) -> dict[str, Any]:
    db = store.db
    out: dict[str, Any] = {
        table: sorted(db.execute(f"SELECT {columns} FROM {table}").fetchall())
        for table, columns in _SNAPSHOT.items()
    }
    out["posts_fts"] = sorted(
        db.execute(
            "SELECT p.id FROM posts_fts JOIN posts AS p ON p.rowid = posts_fts.rowid"
            " WHERE posts_fts MATCH 'insulation OR loft OR thanks OR buy OR ban'"
        ).fetchall()
    )
    out["profiles_fts"] = sorted(
        db.execute(
            "SELECT p.member FROM profiles_fts JOIN profiles AS p ON p.rowid = profiles_fts.rowid"
            " WHERE profiles_fts MATCH 'carol OR insulation'"
        ).fetchall()
    )
    return out


def ingest_in_batches(store: Store, records: list[Record], cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted(set(cuts)), len(records)]:
        if cut > start:
            store.ingest([r.envelope for r in records[start:cut]], now=NOW_MS)
            start = cut


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    """What the store holds when the history arrives in order, one record at a time."""
    with tempfile.TemporaryDirectory() as folder, new_store(Path(folder)) as store:
        ordered = sorted(RICH_HISTORY, key=lambda r: (r.created_at, r.id))
        for record in ordered:
            store.ingest([record.envelope], now=NOW_MS)
        result = snapshot(store)
    return result


def test_in_order_arrival_reaches_the_reference_models_decisions(
    expected: dict[str, Any],
) -> None:
    _, decisions = fold(RICH_HISTORY)
    want = sorted(
        (r.id, decisions[r.id].verdict.value, decisions[r.id].reason, decisions[r.id].waiting_for)
        for r in RICH_HISTORY
    )
    assert expected["records"] == want  # the store was made without a profile record


@settings(max_examples=40)
@given(st.randoms(use_true_random=False), st.lists(st.integers(0, len(RICH_HISTORY)), max_size=6))
def test_arrival_order_and_batching_never_change_the_final_state(
    expected: dict[str, Any], rng: random.Random, cuts: list[int]
) -> None:
    arrivals = list(RICH_HISTORY)
    rng.shuffle(arrivals)
    with tempfile.TemporaryDirectory() as folder, new_store(Path(folder)) as store:
        ingest_in_batches(store, arrivals, cuts)
        got = snapshot(store)
    assert got == expected


def test_the_final_state_is_what_members_expect(expected: dict[str, Any], store: Store) -> None:
    store.ingest([r.envelope for r in reversed(RICH_HISTORY)], now=NOW_MS)
    by_text = {r.fields.get("text"): r for r in RICH_HISTORY}
    offer = by_text["Loft insulation"]
    community = offer.community
    assert community is not None
    thread = store.thread(offer.id)
    assert [p.text for p in thread] == ["Loft, wall and roof insulation", "Thanks Carol"]
    assert thread[0].edited
    assert thread[0].reactions == {"👍": 1}  # Dave deleted his
    feed = [p.text for p in store.feed(community).posts]
    assert "buy my stuff" not in feed  # removed by a moderator
    assert "after the ban" not in feed  # dated after Dave's ban
    assert [m.name for m in store.members(community) if m.member == DAVE.public_key]
    carol = store.profile(CAROL.public_key)
    assert carol.name == "Carol B."
    assert {(r.skill, r.hidden, r.revoked, r.verified) for r in carol.references} == {
        ("insulation", True, False, True),
        ("roofing", False, True, True),
    }
    assert [p.text for p in store.search("roof insul")] == ["Loft, wall and roof insulation"]
    assert store.search("stuff") == []  # removed posts are not found
    statuses = {store.status_of(r.id) for r in RICH_HISTORY}
    assert ("denied", "the invite had been used up") in statuses


def test_each_envelope_gets_an_outcome(store: Store) -> None:
    genesis = sign_record(
        ME, {"kind": "community", "name": "Roofers", "visibility": "public", "created_at": NOW_MS}
    )
    post = sign_record(
        ME,
        {
            "kind": "post",
            "community": genesis.id,
            "type": "post",
            "text": "hello",
            "created_at": NOW_MS + 1,
        },
    )
    stranger = sign_record(
        CAROL,
        {
            "kind": "post",
            "community": genesis.id,
            "type": "post",
            "text": "let me in",
            "created_at": NOW_MS + 2,
        },
    )
    forged = post.envelope[:-1] + bytes([post.envelope[-1] ^ 1])
    outcomes = store.ingest(
        [post.envelope, genesis.envelope, genesis.envelope, b"\x00junk", forged, stranger.envelope],
        now=NOW_MS,
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("stored", ""),  # its genesis came in the same batch
        ("stored", ""),
        ("duplicate", ""),
        ("rejected", "malformed"),
        ("rejected", "bad_signature"),
        ("pending", "pending"),  # kept until Carol's join arrives
    ]
    assert "join" in outcomes[-1].message
    assert store.ingest([post.envelope], now=NOW_MS)[0].status == "duplicate"
    assert store.counters() == {"refused.malformed": 1, "refused.bad_signature": 1}
    assert [p.text for p in store.feed(genesis.id).posts] == ["hello"]


def test_a_reply_before_its_parent_joins_the_thread_when_the_parent_arrives(
    store: Store,
) -> None:
    genesis = store.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
    parent = sign_record(
        ME,
        {
            "kind": "post",
            "community": genesis.id,
            "type": "question",
            "text": "Anyone?",
            "created_at": NOW_MS,
        },
    )
    reply = sign_record(
        ME,
        {
            "kind": "post",
            "community": genesis.id,
            "type": "post",
            "text": "Me!",
            "reply_to": parent.id,
            "created_at": NOW_MS + 1,
        },
    )
    store.ingest([reply.envelope], now=NOW_MS)
    assert store.thread(parent.id) == []
    store.ingest([parent.envelope], now=NOW_MS)
    assert [p.text for p in store.thread(parent.id)] == ["Anyone?", "Me!"]
    assert store.feed(genesis.id).posts[0].replies == 1


def test_feed_pages_follow_each_other_without_gaps_or_repeats(store: Store) -> None:
    genesis = store.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
    posts = [
        sign_record(
            ME,
            {
                "kind": "post",
                "community": genesis.id,
                "type": "post",
                "text": f"post {i}",
                "created_at": NOW_MS + i // 3,  # several posts share a millisecond
            },
        )
        for i in range(120)
    ]
    store.ingest([p.envelope for p in posts], now=NOW_MS)
    seen: list[bytes] = []
    page = store.feed(genesis.id, limit=50)
    while True:
        seen += [p.id for p in page.posts]
        if page.next is None:
            break
        page = store.feed(genesis.id, before=page.next, limit=50)
    want = [p.id for p in sorted(posts, key=lambda r: (r.created_at, r.id), reverse=True)]
    assert seen == want


def test_unread_counts_follow_arrivals_and_reads(store: Store) -> None:
    genesis = sign_record(
        CAROL, {"kind": "community", "name": "Lofts", "visibility": "public", "created_at": NOW_MS}
    )
    posts = [
        sign_record(
            CAROL,
            {
                "kind": "post",
                "community": genesis.id,
                "type": "post",
                "text": f"news {i}",
                "created_at": NOW_MS + 1 + i,
            },
        )
        for i in range(5)
    ]
    store.ingest([genesis.envelope, *[p.envelope for p in posts[:3]]], now=NOW_MS)
    assert store.unread_counts() == {genesis.id: 3}
    store.mark_read(genesis.id)
    assert store.unread_counts() == {genesis.id: 0}
    store.ingest([p.envelope for p in posts[3:]], now=NOW_MS)
    assert store.unread_counts() == {genesis.id: 2}


def test_a_flood_of_waiting_records_is_bounded(store: Store) -> None:
    """Records that wait for a genesis nobody sends cannot fill the disk."""
    store.max_pending = 5
    orphans = [
        sign_record(
            CAROL,
            {
                "kind": "post",
                "community": bytes([7]) * 32,
                "type": "post",
                "text": f"waiting {i}",
                "created_at": NOW_MS + i,
            },
        )
        for i in range(8)
    ]
    outcomes = store.ingest([r.envelope for r in orphans], now=NOW_MS)
    assert [o.status for o in outcomes] == ["pending"] * 5 + ["rejected"] * 3
    assert {o.reason for o in outcomes[5:]} == {"pending_full"}
    assert store.record_count() == 5
    assert store.counters() == {"refused.pending_full": 3}
    # A record that takes effect at once is still taken.
    assert store.publish({"kind": "profile", "name": "Me"}).id
    assert store.profile().name == "Me"


@settings(max_examples=60)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([r.envelope for r in RICH_HISTORY]).map(
                lambda e: e[:-3] + b"\x00\x00\x00"
            ),
            st.sampled_from([r.envelope for r in RICH_HISTORY]).map(lambda e: e[: len(e) // 2]),
        ),
        max_size=8,
    )
)
def test_malformed_bytes_from_peers_are_dropped_and_counted(
    filled: tuple[Store, dict[str, Any]], junk: list[bytes]
) -> None:
    store, before = filled
    outcomes = store.ingest(junk, now=NOW_MS)
    assert [o.status for o in outcomes] == ["rejected"] * len(junk)
    assert all(o.reason in REASONS and o.message for o in outcomes)
    assert snapshot(store) == before  # nothing stored is lost or changed
    assert store.integrity_check() == "ok"


@pytest.fixture(scope="module")
def filled() -> Iterator[tuple[Store, dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as folder, new_store(Path(folder)) as store:
        store.ingest([r.envelope for r in RICH_HISTORY], now=NOW_MS)
        yield store, snapshot(store)


def counted_unread(store: Store) -> dict[bytes, int]:
    """Unread posts counted the slow way, from their definition."""
    rows = store.db.execute(
        "SELECT c.id, (SELECT count(*) FROM posts AS p WHERE p.community = c.id"
        " AND p.deleted = 0 AND p.removed = 0 AND p.author != ?"
        " AND p.rowid > coalesce((SELECT read_seq FROM reads WHERE community = c.id), 0))"
        " FROM communities AS c",
        (store.identity.public_key,),
    ).fetchall()
    return dict(rows)


@settings(max_examples=25)
@given(st.integers(0, 2**32))
def test_unread_counters_always_equal_a_recount(seed: int) -> None:
    """Counts kept as posts arrive, are hidden, re-judged and read equal a recount."""
    rng = random.Random(seed)
    arrivals = list(RICH_HISTORY)
    rng.shuffle(arrivals)
    with tempfile.TemporaryDirectory() as folder, new_store(Path(folder)) as store:
        start = 0
        while start < len(arrivals):
            size = rng.choice([1, 2, 5, 9])
            store.ingest([r.envelope for r in arrivals[start : start + size]], now=NOW_MS)
            start += size
            known = list(store.unread_counts())
            if known and rng.random() < 0.3:
                store.mark_read(rng.choice(known))
            assert store.unread_counts() == counted_unread(store)


def test_search_within_a_community_and_among_the_newest_matches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    lofts = store.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
    roofs = store.publish({"kind": "community", "name": "Roofs", "visibility": "public"})
    for i in range(6):
        for community in (lofts, roofs):
            store.publish(
                {
                    "kind": "post",
                    "community": community.id,
                    "type": "offer",
                    "text": f"solar panels fitted, job {i}",
                    "tags": ["solar-pv"],
                    "created_at": NOW_MS + i,
                },
                now=NOW_MS,
            )
    in_lofts = store.search("solar", community=lofts.id)
    assert len(in_lofts) == 6
    assert {p.community for p in in_lofts} == {lofts.id}
    assert len(store.search("solar panels")) == 12
    assert store.search("solar-pv") != []  # tags are searched too
    assert store.search(lofts.id.hex()) == []  # the scope column is not searched by words
    monkeypatch.setattr("kithnet.localstore.views.RANK_WINDOW", 4)
    newest = store.search("solar", community=roofs.id)
    assert sorted(p.text[-5:] for p in newest) == ["job 2", "job 3", "job 4", "job 5"]
