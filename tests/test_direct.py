"""Direct messages between real nodes on 127.0.0.1 with real stores: delivered straight
to a connected member; held, sealed, by a member who shares a community when the
recipient is away and handed over when they come back; and whatever a hostile peer
sends over /kithnet/dm/1 is refused and counted without harming the node."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import trio

from kithnet.core.direct import DirectMessageError, open_message, sign_message
from kithnet.core.envelope import decode, sign_record
from kithnet.crypto.identity import Identity, peer_id, public_key_of_peer
from kithnet.crypto.invite import InviteCode
from kithnet.crypto.sealed import seal
from kithnet.localstore.store import Store, now_ms
from kithnet.node.direct import DM_PROTOCOL
from kithnet.node.node import Node
from kithnet.node.sync import encode_frame
from kithnet.p2p.host import Peer, RateLimiter
from tests.members import PASSPHRASE, Member, wait_until
from tests.test_node import new_store, run

SECRET = "meet me at the allotment at six, the code is 4471"


def shared_community(owner: Store, *others: Store, name: str = "Lofts") -> bytes:
    """A community `owner` made and `others` joined, known to all of them."""
    genesis = owner.publish({"kind": "community", "name": name, "visibility": "public"})
    expires = now_ms() + 3_600_000
    code = InviteCode.create(owner.identity, genesis.id, name, [], expires_at=expires)
    owner.publish(
        {
            "kind": "invite",
            "community": genesis.id,
            "invite_key": code.invite_key,
            "expires_at": expires,
        }
    )
    for store in others:
        store.publish(
            {
                "kind": "join",
                "community": genesis.id,
                "invite_key": code.invite_key,
                "proof": code.prove_join(store.identity.public_key),
            }
        )
    everything = [e for store in (owner, *others) for batch in store.envelopes() for e in batch]
    for store in (owner, *others):
        store.ingest(everything)
        assert store.is_member(genesis.id, store.identity.public_key)
    return genesis.id


def plaintext_in(store: Store, table: str, text: str) -> bool:
    """Whether `text` appears in any column of any row of `table`."""
    rows = store.db.execute(f"SELECT * FROM {table}").fetchall()
    needle = text.encode()
    return any(needle in (v if isinstance(v, bytes) else str(v).encode()) for r in rows for v in r)


# The message itself ---------------------------------------------------------------------


def test_only_the_recipient_opens_a_message_and_a_box_cannot_be_rewrapped() -> None:
    ann, bob, cat = Identity.generate(), Identity.generate(), Identity.generate()
    record = sign_message(ann, bob.public_key, SECRET, now_ms())
    assert SECRET.encode() not in record.envelope
    message = open_message(bob, record)
    assert (message.sender, message.text) == (ann.public_key, SECRET)
    with pytest.raises(DirectMessageError) as refused:
        open_message(cat, record)
    assert refused.value.reason == "wrong_recipient"
    # Cat, holding Ann's message for Bob, lifts the box into a record of her own to pass
    # Ann's words off as hers: the box names its sender, so Bob refuses it.
    lifted = sign_record(
        cat,
        {
            "kind": "dm",
            "recipient": bob.public_key,
            "box": record.fields["box"],
            "created_at": now_ms(),
        },
    )
    with pytest.raises(DirectMessageError) as refused:
        open_message(bob, lifted)
    assert refused.value.reason == "wrong_sender"
    # A box sealed to Cat, in a record addressed to Bob, names Cat inside.
    inner = msgpack.packb(
        {"text": "hi", "sender": ann.public_key, "recipient": cat.public_key},
        use_bin_type=True,
    )
    misaddressed = sign_record(
        ann,
        {
            "kind": "dm",
            "recipient": bob.public_key,
            "box": seal(bob.public_key, inner),
            "created_at": now_ms(),
        },
    )
    with pytest.raises(DirectMessageError) as wrong:
        open_message(bob, misaddressed)
    assert wrong.value.reason == "wrong_recipient"
    with pytest.raises(ValueError, match="at most"):
        sign_message(ann, bob.public_key, "x" * 16_001, now_ms())


def test_a_peer_id_names_its_key_and_nothing_else() -> None:
    key = Identity.generate().public_key
    assert public_key_of_peer(peer_id(key)) == key
    for junk in (
        "",
        "0OIl",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        "12D3KooW" + "1" * 40,
    ):
        assert public_key_of_peer(junk) is None


def test_a_dm_never_enters_the_community_pipeline(tmp_path: Path) -> None:
    with new_store(tmp_path, "Bob") as bob:
        record = sign_message(Identity.generate(), bob.identity.public_key, SECRET, now_ms())
        [outcome] = bob.ingest([record.envelope])
        assert (outcome.status, outcome.reason) == ("rejected", "direct_only")
        assert bob.status_of(record.id) is None


# Between nodes --------------------------------------------------------------------------


def test_a_message_reaches_a_connected_member_directly() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            shared_community(ann, bob)
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                await ann_peer.connect(bp.addresses()[0])
                sent = await ann_node.direct.send(bob.identity.public_key, SECRET)
                assert (sent.status, sent.forwarders) == ("delivered", 0)
                await bob_node.direct.wait_for_message(sent.record.id)
            [conversation] = bob.messages.conversations()
            assert conversation.name == "Ann"
            assert (conversation.last.text, conversation.unread) == (SECRET, 1)
            assert bob.messages.mark_read(ann.identity.public_key) == 1
            assert bob.messages.conversations()[0].unread == 0
            [mine] = ann.messages.conversation(bob.identity.public_key)
            assert (mine.direction, mine.state, mine.text) == ("out", "delivered", SECRET)

    run(scenario)


def test_a_member_who_shares_a_community_holds_a_message_sealed_until_its_recipient_returns() -> (
    None
):
    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cat") as cat,
        ):
            shared_community(ann, bob, cat)
            cat_key = cat.identity.public_key
            async with Peer.running(bob.identity) as bob_peer:
                Node(bob, bob_peer)
                # Cat is away: Ann's node hands the message to Bob, and goes away too.
                async with Peer.running(ann.identity) as ann_peer:
                    ann_node = Node(ann, ann_peer)
                    await ann_peer.connect(bob_peer.addresses()[0])
                    sent = await ann_node.direct.send(cat_key, SECRET)
                    assert (sent.status, sent.forwarders) == ("forwarded", 1)
                assert bob.messages.held_for(cat_key, now_ms())
                # Bob holds ciphertext only: nothing he stores shows the text.
                for table in ("dm_relay", "records", "messages"):
                    assert not plaintext_in(bob, table, SECRET), table
                assert bob.messages.conversations() == []

                # Cat comes back and meets Bob (not Ann): Bob hands the message over.
                async with Peer.running(cat.identity) as cat_peer:
                    cat_node = Node(cat, cat_peer)
                    await cat_peer.connect(bob_peer.addresses()[0])
                    await cat_node.direct.wait_for_message(sent.record.id, timeout=20)
                    with trio.fail_after(10):
                        while bob.messages.held_count():
                            await trio.sleep(0.05)
            [conversation] = cat.messages.conversations()
            assert (conversation.name, conversation.last.text) == ("Ann", SECRET)
            assert ann.messages.message(sent.record.id).state == "forwarded"  # type: ignore[union-attr]

    run(scenario)


def test_a_member_connected_to_both_passes_a_message_on_at_once() -> None:
    """Cat's node cannot be dialled (it tells nobody its address) but is connected to
    Bob: what Ann hands Bob for Cat reaches Cat without waiting for a new connection."""

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cat") as cat,
        ):
            shared_community(ann, bob, cat)
            async with (
                Peer.running(bob.identity) as bob_peer,
                Peer.running(cat.identity) as cat_peer,
                Peer.running(ann.identity) as ann_peer,
            ):
                Node(bob, bob_peer)
                cat_node = Node(cat, cat_peer, announce=False)
                ann_node = Node(ann, ann_peer)
                await cat_peer.connect(bob_peer.addresses()[0])
                await ann_peer.connect(bob_peer.addresses()[0])
                sent = await ann_node.direct.send(cat.identity.public_key, SECRET)
                assert sent.status == "forwarded"
                await cat_node.direct.wait_for_message(sent.record.id)
                assert cat_peer.peer_id not in ann_peer.connected_peers()
            assert cat.messages.conversation(ann.identity.public_key)[0].text == SECRET

    run(scenario)


def test_hostile_dm_frames_are_refused_and_counted_and_the_node_carries_on() -> None:
    async def scenario(folder: Path) -> None:
        hostile = Identity.generate()
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cat") as cat,
        ):
            shared_community(ann, bob, cat)
            cat_key, bob_key = cat.identity.public_key, bob.identity.public_key
            good = sign_message(ann.identity, cat_key, SECRET, now_ms())
            forged = good.envelope[:-1] + bytes([good.envelope[-1] ^ 1])
            stranger = sign_message(hostile, cat_key, "buy my stuff", now_ms())
            not_for_bob = sign_record(
                hostile,
                {
                    "kind": "dm",
                    "recipient": bob_key,
                    "box": seal(cat_key, b"\x80"),
                    "created_at": now_ms(),
                },
            )
            profile = sign_record(hostile, {"kind": "profile", "name": "x", "created_at": now_ms()})
            # A box the kind allows but no message needs: nobody holds it for anyone.
            bulky = sign_record(
                ann.identity,
                {
                    "kind": "dm",
                    "recipient": cat_key,
                    "box": bytes(20_000),
                    "created_at": now_ms(),
                },
            )
            async with (
                Peer.running(bob.identity) as bob_peer,
                Peer.running(hostile) as bad,
                Peer.running(ann.identity) as ann_peer,
            ):
                bob_node = Node(bob, bob_peer)
                await bad.connect(bob_peer.addresses()[0])

                async def ask(*frames: bytes) -> list[object]:
                    """Send raw frames on one stream; the answers, until it ends."""
                    stream = await bad.open_stream(bob_peer.peer_id, DM_PROTOCOL)
                    answers: list[object] = []
                    buffer = b""
                    with trio.fail_after(10):
                        await stream.write(b"".join(frames))
                        for _ in frames:
                            try:
                                while (
                                    len(buffer) < 4
                                    or len(buffer) < 4 + struct.unpack(">I", buffer[:4])[0]
                                ):
                                    data = await stream.read(65536)
                                    if not data:
                                        return answers
                                    buffer += data
                            except Exception:  # reset by Bob
                                return answers
                            size = struct.unpack(">I", buffer[:4])[0]
                            answers.append(msgpack.unpackb(buffer[4 : 4 + size]))
                            buffer = buffer[4 + size :]
                    return answers

                assert await ask(
                    encode_frame(["dm", forged]),
                    encode_frame(["dm", stranger.envelope]),
                    encode_frame(["dm", not_for_bob.envelope]),
                    encode_frame(["dm", b"\xc1\xc1junk"]),
                    encode_frame(["dm", profile.envelope]),
                    encode_frame(["dm", bulky.envelope]),
                ) == [
                    ["refused", "bad_signature"],
                    ["refused", "no_shared_community"],
                    ["refused", "undecryptable"],
                    ["refused", "malformed"],
                    ["refused", "not_a_dm"],
                    ["refused", "oversize"],
                ]
                # Junk and oversized frames end the stream (after nothing is kept).
                assert await ask(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1") == []
                assert await ask(struct.pack(">I", 1 << 20) + b"x" * 1000) == []
                assert await ask(encode_frame(["hello", 1])) == []
                # A flood beyond the peer's rate is refused (and could be retried later).
                bob_node.direct._limiter = RateLimiter(rate=0.001, burst=2)
                answers = await ask(*[encode_frame(["dm", stranger.envelope])] * 4)
                assert answers[2:] == [["refused", "rate_limited"]] * 2

                dropped = bob_node.dropped
                for reason in ("bad_signature", "no_shared_community", "undecryptable"):
                    assert dropped[f"dm_{reason}"] >= 1, reason
                assert dropped["dm_malformed"] >= 3
                assert dropped["dm_oversize"] == 2  # the frame, and the bulky box
                assert dropped["dm_rate_limited"] == 2
                assert bob.messages.held_count() == 0
                assert bob.messages.conversations() == []
                assert not bob_peer.is_banned(ann_peer.peer_id)

                # An honest member still gets through, held and delivered alike.
                bob_node.direct._limiter = RateLimiter(rate=5, burst=300)
                ann_node = Node(ann, ann_peer)
                await ann_peer.connect(bob_peer.addresses()[0])
                to_bob = await ann_node.direct.send(bob_key, "hello Bob")
                assert to_bob.status == "delivered"
                assert (await ann_node.direct.deliver(bob_peer.peer_id, [good.envelope])) == [
                    ("held", "")
                ]
                assert bob.messages.held_count() == 1
                assert [m.text for m in bob.messages.conversation(ann.identity.public_key)] == [
                    "hello Bob"
                ]

    run(scenario)


def test_a_held_message_is_bounded_per_sender(tmp_path: Path) -> None:
    """A member flooding messages for others pushes out only their own oldest."""
    with (
        new_store(tmp_path, "Ann") as ann,
        new_store(tmp_path, "Bob") as bob,
        new_store(tmp_path, "Cat") as cat,
    ):
        shared_community(ann, bob, cat)
        cat_key = cat.identity.public_key
        bob_key = bob.identity.public_key
        first = sign_message(bob.identity, cat_key, "from Bob", now_ms())
        assert ann.messages.hold(first, now_ms())
        flood = [sign_message(cat.identity, bob_key, f"{i}", now_ms()) for i in range(120)]
        for record in flood:
            ann.messages.hold(record, now_ms())
        assert ann.messages.held_count() == 21  # Cat's newest 20 for Bob, and Bob's one
        assert ann.messages.is_held(first.id)
        assert not ann.messages.is_held(flood[0].id)
        assert decode(ann.messages.held_for(cat_key, now_ms())[0][1]).id == first.id
        # After 14 days a held message is no longer handed over, and goes at the next hold.
        later = now_ms() + 15 * 24 * 3600 * 1000
        assert ann.messages.held_for(cat_key, later) == []
        assert ann.messages.held_count() == 0  # and they are forgotten then


def test_many_flooders_for_one_recipient_push_out_their_own_not_an_honest_message(
    tmp_path: Path,
) -> None:
    """Eleven accounts each hold the most they may for Cat (20): over the 200 a holder
    keeps for one recipient, the oldest messages of those holding the most go, never
    Bob's single one."""
    with new_store(tmp_path, "Ann") as ann:
        cat_key = Identity.generate().public_key
        honest = sign_message(Identity.generate(), cat_key, "from Bob", now_ms())
        assert ann.messages.hold(honest, now_ms())
        for _ in range(11):
            flooder = Identity.generate()
            for i in range(25):
                ann.messages.hold(sign_message(flooder, cat_key, f"{i}", now_ms()), now_ms())
        assert ann.messages.held_count() == 200
        assert ann.messages.is_held(honest.id)


# With `kithnet serve` -------------------------------------------------------------------


@pytest.fixture
def members(tmp_path: Path) -> Iterator[tuple[Member, Member, Member]]:
    trio_ = (Member(tmp_path, "Ann"), Member(tmp_path, "Bob"), Member(tmp_path, "Cat"))
    try:
        yield trio_
    finally:
        for member in trio_:
            member.kill()


def test_a_message_written_with_no_node_running_waits_and_says_so(tmp_path: Path) -> None:
    ann, bob = Member(tmp_path, "Ann"), Member(tmp_path, "Bob")
    with Store.open(bob.data_dir, PASSPHRASE, readonly=True) as store:
        profiles = [e for batch in store.envelopes() for e in batch]
    with Store.open(ann.data_dir, PASSPHRASE) as store:
        store.ingest(profiles)  # Ann knows of Bob, but not where his node is

    sent = ann.cli("dm", "Bob", "Are you free on Tuesday?")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("saved for Bob: neither their node nor a member")
    [conversation] = ann.cli_json("inbox")["conversations"]
    assert conversation["name"] == "Bob"
    assert conversation["last"]["state"] == "waiting"
    shown = ann.cli("inbox", "Bob")
    assert "you (waiting to be sent)" in shown.stdout
    assert "Are you free on Tuesday?" in shown.stdout
    for args, words in (
        (("dm", "Bob", "  "), "a message needs some text"),
        (("dm", "Ann", "hello me"), "you cannot send a message to yourself"),
        (("inbox", "Dan"), "no member called 'Dan'"),
    ):
        refused = ann.cli(*args)
        assert refused.returncode == 1
        assert words in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_dm_and_inbox_from_the_command_line(members: tuple[Member, Member, Member]) -> None:
    ann, bob, cat = members
    for member in members:
        member.start()
    ann.cli_json("community", "create", "Allotments")
    invite = ann.cli_json("invite", "create", "allotments")
    for member in (bob, cat):
        assert member.cli_json("join", invite["code"])["status"] == "joined"

    # Both online: straight to Cat's node.
    sent = ann.cli_json("dm", "Cat", "Your seedlings are ready")
    assert (sent["status"], sent["name"]) == ("delivered", "Cat")
    listed = cat.cli_json("inbox")
    assert listed["unread"] == 1
    assert listed["conversations"][0]["name"] == "Ann"
    shown = cat.cli("inbox", "Ann")
    assert shown.returncode == 0, shown.stderr
    assert "Your seedlings are ready" in shown.stdout
    assert "(new)" in shown.stdout
    assert cat.cli_json("inbox")["unread"] == 0

    # Cat away: Bob holds the next one; then Ann's node stops, and a third is sent by a
    # node started for the command alone.
    cat.stop()
    second = ann.cli("dm", "Cat", "Collect them by Friday")
    assert second.returncode == 0, second.stderr
    assert "hold it, sealed" in second.stdout
    ann.stop()
    third = ann.cli_json("dm", "Cat", "Or Saturday")
    assert third["status"] == "forwarded", third

    # Cat comes back, meets Bob, and reads both.
    cat.start()
    wait_until(lambda: cat.command("inbox")["unread"] == 2, "Cat receives both from Bob")
    conversation = cat.cli_json("inbox", "Ann")
    assert [m["text"] for m in conversation["messages"]] == [
        "Your seedlings are ready",
        "Collect them by Friday",
        "Or Saturday",
    ]
    assert conversation["unread"] == 2

    refused = ann.cli("dm", "Nobody", "hello")
    assert refused.returncode == 1
    assert "no member called 'Nobody'" in refused.stderr


def test_a_holder_is_not_blamed_for_a_bad_box_and_a_blocked_sender_is_dropped() -> None:
    """Ann hands Bob, to hold for Cat, twelve messages whose boxes Cat cannot open, and
    one Cat would read. When Cat meets Bob, she refuses the twelve but Bob keeps his
    standing with her (he could not look inside); Ann's good message arrives. Cat then
    blocks Ann: Ann's next message is dropped unread and Ann is not told."""

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cat") as cat,
        ):
            shared_community(ann, bob, cat)
            cat_key = cat.identity.public_key
            junk = [
                sign_record(
                    ann.identity,
                    {
                        "kind": "dm",
                        "recipient": cat_key,
                        "box": seal(cat_key, b"\x80" * i),
                        "created_at": now_ms(),
                    },
                )
                for i in range(1, 13)
            ]
            good = sign_message(ann.identity, cat_key, SECRET, now_ms())
            async with Peer.running(bob.identity) as bob_peer:
                Node(bob, bob_peer)
                async with Peer.running(ann.identity) as ann_peer:
                    ann_node = Node(ann, ann_peer)
                    await ann_peer.connect(bob_peer.addresses()[0])
                    verdicts = await ann_node.direct.deliver(
                        bob_peer.peer_id, [r.envelope for r in [*junk, good]]
                    )
                    assert verdicts == [("held", "")] * 13
                async with Peer.running(cat.identity) as cat_peer:
                    cat_node = Node(cat, cat_peer)
                    await cat_peer.connect(bob_peer.addresses()[0])
                    await cat_node.direct.wait_for_message(good.id, timeout=20)
                    assert cat_node.dropped["dm_malformed"] == 12  # refused before the good one
                    assert not cat_peer.is_banned(bob_peer.peer_id)
                    assert cat_peer.scores.score(bob_peer.peer_id, trio.current_time()) == 0
                    assert [m.text for m in cat.messages.conversation(ann.identity.public_key)] == [
                        SECRET
                    ]

                    cat.mark(ann.identity.public_key, "block")
                    async with Peer.running(ann.identity) as ann_peer:
                        ann_node = Node(ann, ann_peer)
                        await ann_peer.connect(cat_peer.addresses()[0])
                        sent = await ann_node.direct.send(cat_key, "Let me in")
                        assert sent.status == "delivered"  # as far as Ann can tell
                    assert len(cat.messages.conversation(ann.identity.public_key)) == 1
                    assert cat_node.dropped["dm_blocked"] == 1

    run(scenario)
