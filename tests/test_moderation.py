"""Moderation and a member's own controls, with real hosts and stores: a banned member of
a private community cannot read what is posted after the ban; invites are listed and
withdrawn; removals and bans show in the moderation log; authors edit, delete and revoke;
the subject hides a reference; a member mutes or blocks someone for themselves."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import trio

from kithnet.core.envelope import Record, sign_record
from kithnet.crypto.community import handle as community_handle
from kithnet.crypto.errors import CryptoError
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from kithnet.crypto.sealed import seal, unseal
from kithnet.localstore.errors import StoreError
from kithnet.localstore.store import Store, now_ms
from kithnet.node.answers import my_trust
from kithnet.node.commands import CommandError, Commands
from kithnet.node.node import SYNC_PROTOCOL, Node
from kithnet.node.sync import SyncError, encode_frame
from kithnet.p2p.host import P2PError, Peer
from tests.members import Member
from tests.test_node import new_store, run


async def _wait(condition: object, what: str, timeout: float = 10) -> None:
    """Bounded polling for a store-side condition (no event exists for it)."""
    with trio.fail_after(timeout):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.05)


def test_a_banned_member_cannot_read_what_is_posted_after_the_ban() -> None:
    """Ann, Bob and Cal share a private community. Ann bans Cal: the remaining members
    move to a new key sealed to each of them. Bob's next post reaches Ann, and Cal, still
    connected and syncing, never gets it and cannot open the new key."""

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cal") as cal,
        ):
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(cal.identity) as cal_peer,
            ):
                ann_node, bob_node, cal_node = (
                    Node(ann, ann_peer),
                    Node(bob, bob_peer),
                    Node(cal, cal_peer),
                )
                ann_commands = Commands(ann_node)
                made = await ann_commands.community_create("Night Shift", private=True)
                community = bytes.fromhex(made["id"])
                for node in (bob_node, cal_node):
                    code = (await ann_commands.invite_create("Night Shift", uses=1))["code"]
                    assert (await Commands(node).join(code))["status"] == "joined"
                await cal_peer.connect(bob_peer.addresses()[0])
                before = await Commands(bob_node).post("Night Shift", "Before the ban")
                await cal_node.wait_for_record(bytes.fromhex(before["id"]))
                old_key = cal.community_key(community)

                banned = await ann_commands.community_ban(
                    "Night Shift", cal.identity.public_key.hex(), reason="leaks"
                )
                assert banned["key_epoch"] == 1
                await _wait(lambda: bob.community_key_epoch(community) == 1, "Bob's new key")
                assert bob.community_key(community) == ann.community_key(community) != old_key

                after = await Commands(bob_node).post("Night Shift", "After the ban")
                after_id = bytes.fromhex(after["id"])
                await ann_node.wait_for_record(after_id)
                assert "After the ban" in [p.text for p in ann.feed(community).posts]

                # Cal asks both for the community under the key he knows: refused.
                for peer_id in (ann_peer.peer_id, bob_peer.peer_id):
                    with pytest.raises((SyncError, P2PError)):
                        await cal_node.sync(peer_id, community, timeout=10)
                assert not cal.has_record(after_id)
                assert cal.community_key(community) == old_key
                assert cal.community_key_epoch(community) == 0
                # The new key reached his store sealed to others only.
                sealed = [
                    entry["box"]
                    for record in (ann.record(i) for i in ann.find_records(b"", limit=10_000))
                    if record is not None and record.kind == "key_update"
                    if record.fields["epoch"] == 1
                    for entry in record.fields["keys"]
                ]
                assert len(sealed) == 2  # Ann and Bob
                for box in sealed:
                    with pytest.raises(CryptoError):
                        unseal(cal.identity, box)
                assert ann.moderation_log(community)[0].action == "ban"
                assert ann.status_of(after_id) == ("allowed", "")

    run(scenario)


def test_invites_are_listed_and_withdrawn_and_a_withdrawn_code_lets_nobody_in() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_commands = Commands(Node(ann, ann_peer))
                await ann_commands.community_create("Allotments", tags=["gardening"])
                code = (await ann_commands.invite_create("Allotments", uses=2))["code"]
                listed = await ann_commands.community_invites("Allotments")
                [invite] = listed["invites"]
                assert (invite["state"], invite["uses"], invite["max_uses"]) == ("open", 0, 2)

                withdrawn = await ann_commands.community_invites(
                    "Allotments", withdraw=invite["id"][:10]
                )
                assert withdrawn["invites"][0]["state"] == "withdrawn"
                with pytest.raises(CommandError, match="the invite was withdrawn"):
                    await Commands(Node(bob, bp)).join(code)
                assert [c.name for c in bob.communities()] == []

    run(scenario)


def test_moderators_remove_and_ban_and_every_member_sees_the_log() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                ann_commands, bob_commands = Commands(ann_node), Commands(bob_node)
                made = await ann_commands.community_create("Street")
                community = bytes.fromhex(made["id"])
                code = (await ann_commands.invite_create("Street"))["code"]
                await bob_commands.join(code)
                spam = await bob_commands.post("Street", "Cheap watches")
                await ann_node.wait_for_record(bytes.fromhex(spam["id"]))

                with pytest.raises(CommandError, match="owners and moderators"):
                    await bob_commands.community_remove(spam["id"])
                removed = await ann_commands.community_remove(spam["id"][:12], reason="spam")
                await bob_node.wait_for_record(bytes.fromhex(removed["id"]))
                assert [p.text for p in bob.feed(community).posts] == []

                ban = await ann_commands.community_ban(
                    "Street", bob.identity.public_key.hex(), reason="spam again"
                )
                assert ban["key_epoch"] is None  # a public community has no key
                await bob_node.wait_for_record(bytes.fromhex(ban["id"]))
                log = await bob_commands.community_log("Street")
                assert [(e["action"], e["reason"]) for e in log["entries"]] == [
                    ("ban", "spam again"),
                    ("remove", "spam"),
                ]
                assert log["entries"][0]["target_name"] == "Bob"
                with pytest.raises(StoreError, match="banned"):
                    await bob_commands.post("Street", "Let me back")
                assert [p.text for p in ann.feed(community).posts] == []

    run(scenario)


def test_authors_react_edit_delete_and_revoke_and_the_subject_hides() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with Peer.running(ann.identity) as ann_peer, Peer.running(bob.identity) as bp:
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bp)
                ann_commands, bob_commands = Commands(ann_node), Commands(bob_node)
                community = bytes.fromhex((await ann_commands.community_create("Makers"))["id"])
                await bob_commands.join((await ann_commands.invite_create("Makers"))["code"])
                offer = await bob_commands.post(
                    "Makers", "Welding, small jobs", kind="offer", skills=["welding"]
                )
                await ann_node.wait_for_record(bytes.fromhex(offer["id"]))

                with pytest.raises(CommandError, match="only the author"):
                    await ann_commands.edit(offer["id"], "Ann was here")
                reaction = await ann_commands.react(offer["id"], "👍")
                edited = await bob_commands.edit(offer["id"], "Welding and brazing")
                await ann_node.wait_for_record(bytes.fromhex(edited["id"]))
                await bob_node.wait_for_record(bytes.fromhex(reaction["id"]))
                [shown] = bob.feed(community).posts
                assert (shown.text, shown.edited, shown.reactions) == (
                    "Welding and brazing",
                    True,
                    {"👍": 1},
                )
                undone = await ann_commands.react(offer["id"], "👍", undo=True)
                await bob_node.wait_for_record(bytes.fromhex(undone["id"]))
                assert bob.feed(community).posts[0].reactions == {}

                vouch = await ann_commands.vouch("Bob", "welding", "Fixed my gate", "hired")
                await bob_node.wait_for_record(bytes.fromhex(vouch["id"]))
                with pytest.raises(CommandError, match="only the member"):
                    await ann_commands.hide(vouch["id"])
                hidden = await bob_commands.hide(vouch["id"])
                await ann_node.wait_for_record(bytes.fromhex(hidden["id"]))
                [ref] = (await ann_commands.references("Bob"))["references"]
                assert (ref["hidden"], ref["verified"], ref["revoked"]) == (True, True, False)
                assert (await ann_commands.trust("Bob"))["trust"] > 0

                with pytest.raises(CommandError, match="only the author"):
                    await bob_commands.revoke(vouch["id"])
                revoked = await ann_commands.revoke(vouch["id"])
                await bob_node.wait_for_record(bytes.fromhex(revoked["id"]))
                [ref] = (await bob_commands.references("Bob"))["references"]
                assert ref["revoked"] is True
                assert (await ann_commands.trust("Bob"))["trust"] == 0

                deleted = await bob_commands.delete(offer["id"])
                await ann_node.wait_for_record(bytes.fromhex(deleted["id"]))
                assert ann.feed(community).posts == []
                with pytest.raises(CommandError, match="is not a record id"):
                    await bob_commands.delete("zz")

    run(scenario)


def test_a_muted_member_disappears_from_my_feed_and_a_blocked_one_from_my_trust() -> None:
    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cal") as cal,
        ):
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(cal.identity) as cal_peer,
            ):
                ann_node = Node(ann, ann_peer)
                ann_commands = Commands(ann_node)
                bob_commands, cal_commands = (
                    Commands(Node(bob, bob_peer)),
                    Commands(Node(cal, cal_peer)),
                )
                community = bytes.fromhex((await ann_commands.community_create("Lane"))["id"])
                for commands in (bob_commands, cal_commands):
                    await commands.join((await ann_commands.invite_create("Lane"))["code"])
                loud = await bob_commands.post("Lane", "BUY MY STUFF", kind="offer", skills=["x"])
                await cal_commands.vouch("Bob", "plumbing", "Good plumber", "hired")
                cal_post = await cal_commands.post("Lane", "Lost cat")
                await ann_node.wait_for_record(bytes.fromhex(cal_post["id"]))
                await ann_node.wait_for_record(bytes.fromhex(loud["id"]))
                await ann_commands.vouch("Cal", "plumbing", "Neighbour", "knows_personally")
                assert (await ann_commands.trust("Bob"))["trust"] > 0

                listed = await ann_commands.mute("Bob")
                assert [e["level"] for e in listed["silenced"]] == ["mute"]
                assert [p.text for p in ann.feed(community).posts] == ["Lost cat"]
                assert ann.search("stuff") == []
                assert (await ann_commands.trust("Bob"))["trust"] > 0  # muted, not blocked

                await ann_commands.mute("Cal", block=True)
                assert (await ann_commands.trust("Bob"))["trust"] == 0  # Cal's vouch is out
                assert ann.feed(community).posts == []
                await ann_commands.mute("Bob", undo=True)
                await ann_commands.mute("Cal", undo=True)
                assert len(ann.feed(community).posts) == 2
                assert (await ann_commands.mute())["silenced"] == []
                with pytest.raises(CommandError, match="yourself"):
                    await ann_commands.mute("Ann")

                # Trusting Bob directly makes him a seed, without a reference.
                await ann_commands.mute("Cal", block=True)
                assert (await ann_commands.trust("Bob"))["trust"] == 0
                marked = await ann_commands.trust("Bob", add=True)
                assert (marked["trust"], marked["path"]) == (1.0, ["Bob"])
                ranked = await ann_commands.trust("Cal", skill="plumbing")
                assert ranked["trust"] == 0  # blocked: Cal is no seed, and nobody else vouched
                assert (await ann_commands.trust("Bob", remove=True))["trust"] == 0

    run(scenario)


def test_the_new_commands_by_the_command_line_with_no_node_running(tmp_path: Path) -> None:
    """As typed, each command starts a node for its own duration and answers one line
    (or JSON); a mistake is one line on stderr and exit status 1."""
    ann = Member(tmp_path, "Ann")
    ann.cli_json("community", "create", "Allotments")
    post = ann.cli_json("post", "Allotments", "Spare seedlings")["id"]
    assert ann.cli("react", post[:10], "🌱").returncode == 0
    assert ann.cli("edit", post[:10], "Spare tomato seedlings").stdout.startswith("edited ")
    [shown] = ann.cli_json("feed", "Allotments")["posts"]
    assert (shown["text"], shown["reactions"]) == ("Spare tomato seedlings", {"🌱": 1})
    code = ann.cli_json("invite", "create", "Allotments", "--uses", "3")["code"]
    assert code.startswith("kith1")
    [invite] = ann.cli_json("community", "invites", "Allotments")["invites"]
    listed = ann.cli("community", "invites", "Allotments", "--withdraw", invite["id"][:12])
    assert "withdrawn" in listed.stdout
    offer = ann.cli_json(
        "post", "Allotments", "Rotavating", "--kind", "offer", "--skill", "gardening",
        "--area", "Hackney", "--terms", "£20 an hour",
    )["id"]  # fmt: skip
    reply = ann.cli_json("post", "Allotments", "Weekends too", "--reply-to", offer)["id"]
    shown_thread = ann.cli_json("thread", offer[:10])["posts"]
    assert [(p["id"], p["depth"]) for p in shown_thread] == [(offer, 0), (reply, 1)]
    assert (shown_thread[0]["area"], shown_thread[0]["terms"]) == ("Hackney", "£20 an hour")
    assert "area: Hackney; terms: £20 an hour" in ann.cli("feed", "Allotments").stdout
    assert ann.cli("delete", offer[:10]).returncode == 0
    assert ann.cli("delete", post[:10]).returncode == 0
    assert ann.cli_json("feed", "Allotments")["posts"] == []
    assert "nothing has been moderated" in ann.cli("community", "log", "Allotments").stdout
    assert "muted or blocked nobody" in ann.cli("mute").stdout
    wrong = ann.cli("revoke", post[:10])
    assert wrong.returncode == 1
    assert wrong.stderr.strip().endswith("is a post, not a reference")
    assert "Traceback" not in wrong.stderr


# A private community's key, built record by record, as members' stores see it.


class _Night:
    """Ann's private community "Night" with a moderator and members, as signed records
    dated from a minute ago (`at(store, ms, **fields)`)."""

    def __init__(self, folder: Path, *names: str) -> None:
        self.stores = {name: new_store(folder, name) for name in ("Ann", *names)}
        self.t = now_ms() - 60_000
        ann = self.stores["Ann"]
        genesis = self.at(ann, 0, kind="community", name="Night", visibility="private")
        self.community = genesis.id
        self.code = InviteCode.create(ann.identity, genesis.id, "Night", [], self.t + 10**9)
        self.records = [
            genesis,
            self.at(
                ann,
                1,
                kind="invite",
                community=genesis.id,
                invite_key=self.code.invite_key,
                expires_at=self.t + 10**9,
            ),
        ]

    def at(self, store: Store, ms: int, **fields: Any) -> Record:
        return sign_record(store.identity, {"created_at": self.t + ms, **fields})

    def key(self, author: str, ms: int, epoch: int, key: bytes, to: Iterable[str]) -> Record:
        sealed = [
            {"member": self.stores[n].identity.public_key, "box": seal(self.key_of(n), key)}
            for n in to
        ]
        return self.at(
            self.stores[author], ms, kind="key_update", community=self.community,
            epoch=epoch, keys=sealed,
        )  # fmt: skip

    def key_of(self, name: str) -> bytes:
        key: bytes = self.stores[name].identity.public_key
        return key

    def join(self, name: str, ms: int) -> Record:
        return self.at(
            self.stores[name], ms, kind="join", community=self.community,
            invite_key=self.code.invite_key, proof=self.code.prove_join(self.key_of(name)),
        )  # fmt: skip

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


def test_a_banned_moderator_cannot_make_members_adopt_a_backdated_key(tmp_path: Path) -> None:
    """Mod, banned, signs a key_update dated before the ban with a far higher epoch,
    sealing a key he knows to everyone: it is allowed where it is dated, but the key in
    force stays the one the rekey after the ban gave."""
    night = _Night(tmp_path, "Bob", "Mod")
    ann = night.stores["Ann"]
    c = night.community
    k0, k1, evil = os.urandom(32), os.urandom(32), os.urandom(32)
    night.records += [
        night.at(
            ann, 2, kind="role_grant", community=c, subject=night.key_of("Mod"), role="moderator"
        ),
        night.join("Bob", 3),
        night.key("Ann", 4, 0, k0, ("Ann", "Bob", "Mod")),
        night.at(
            ann, 10_000, kind="moderation", community=c, action="ban", target=night.key_of("Mod")
        ),
        night.key("Ann", 10_001, 1, k1, ("Ann", "Bob")),
    ]
    backdated = night.key("Mod", 9_999, 99, evil, ("Ann", "Bob"))
    for name in ("Ann", "Bob"):
        store = night.stores[name]
        assert all(o.status == "stored" for o in store.ingest([r.envelope for r in night.records]))
        assert (store.community_key(c), store.community_key_epoch(c)) == (k1, 1)
        store.ingest([backdated.envelope])
        assert store.status_of(backdated.id) == ("allowed", "")  # Mod was a moderator then
        assert (store.community_key(c), store.community_key_epoch(c)) == (k1, 1)
        assert evil in [key for _, key in store.community_keys(c)]  # history, not in force
    # A member who missed the rekey and gets the backdated record first moves on too.
    late = new_store(tmp_path, "Late")
    late.ingest([r.envelope for r in night.records[:4]])
    late.ingest([backdated.envelope])
    late.close()
    night.close()


def test_two_rekeys_at_once_end_on_the_same_key_everywhere(tmp_path: Path) -> None:
    night = _Night(tmp_path, "Mod", "X", "Y")
    c = night.community
    night.records += [
        night.at(
            night.stores["Ann"],
            2,
            kind="role_grant",
            community=c,
            subject=night.key_of("Mod"),
            role="moderator",
        ),
        night.join("X", 3),
        night.join("Y", 4),
    ]
    by_ann = night.key("Ann", 100, 1, os.urandom(32), ("Ann", "X", "Y"))
    by_mod = night.key("Mod", 101, 1, os.urandom(32), ("Mod", "X", "Y"))
    held = []
    for name, order in (("X", (by_ann, by_mod)), ("Y", (by_mod, by_ann))):
        store = night.stores[name]
        store.ingest([r.envelope for r in night.records])
        for record in order:
            store.ingest([record.envelope])
            store.community_key(c)
        held.append(store.community_key(c))
    assert held[0] == held[1]  # the later record's key, whatever the arrival order
    night.close()


def test_a_key_update_allowed_late_still_gives_the_key(tmp_path: Path) -> None:
    """A rekey by a moderator whose role arrives after it is refused at first; once
    the role arrives it is allowed, and the key it seals is the one in force."""
    night = _Night(tmp_path, "Mod", "Bob")
    c = night.community
    k0, k1 = os.urandom(32), os.urandom(32)
    grant = night.at(night.stores["Ann"], 2, kind="role_grant", community=c,
                     subject=night.key_of("Mod"), role="moderator")  # fmt: skip
    bob = night.stores["Bob"]
    bob.ingest([r.envelope for r in night.records] + [night.join("Bob", 3).envelope])
    bob.ingest([night.key("Ann", 4, 0, k0, ("Ann", "Bob")).envelope])
    rekey = night.key("Mod", 100, 1, k1, ("Ann", "Bob"))
    bob.ingest([rekey.envelope])
    assert bob.community_key(c) == k0
    bob.ingest([night.key("Ann", 200, 0, k0, ("Bob",)).envelope])  # a later look
    assert bob.community_key(c) == k0
    bob.ingest([grant.envelope])
    assert bob.status_of(rekey.id) == ("allowed", "")
    # The welcome sealed at 200 is newer than the rekey at 100: it stays in force...
    assert bob.community_key(c) == k0
    # ... until the next key_update, as a moderator's node reseals after a rekey.
    bob.ingest([night.key("Mod", 300, 1, k1, ("Bob",)).envelope])
    assert (bob.community_key(c), bob.community_key_epoch(c)) == (k1, 1)
    night.close()


def test_trust_is_recomputed_when_a_late_record_lets_a_reference_in(tmp_path: Path) -> None:
    """A reference waits for its author's join, which waits for the invite: when the
    invite arrives the reference takes effect, and trust counts it at once."""
    me, ann, bob, cal = (new_store(tmp_path, n) for n in ("Me", "Ann", "Bob", "Cal"))
    t = now_ms() - 60_000

    def at(store: Store, ms: int, **fields: Any) -> Record:
        return sign_record(store.identity, {"created_at": t + ms, **fields})

    genesis = at(ann, 0, kind="community", name="Lane", visibility="public")
    code = InviteCode.create(ann.identity, genesis.id, "Lane", [], expires_at=t + 10**9)
    invite = at(ann, 1, kind="invite", community=genesis.id, invite_key=code.invite_key,
                expires_at=t + 10**9)  # fmt: skip
    join = at(bob, 2, kind="join", community=genesis.id, invite_key=code.invite_key,
              proof=code.prove_join(bob.identity.public_key))  # fmt: skip
    reference = at(bob, 3, kind="reference", community=genesis.id,
                   subject=cal.identity.public_key, skill="plumbing", text="Good",
                   relationship="hired")  # fmt: skip
    me.mark(bob.identity.public_key, "trust")
    me.ingest([genesis.envelope, join.envelope, reference.envelope])
    assert cal.identity.public_key not in my_trust(me)[2]
    me.ingest([invite.envelope])
    assert me.status_of(reference.id) == ("allowed", "")
    assert my_trust(me)[2][cal.identity.public_key].trust == 0.5
    for store in (me, ann, bob, cal):
        store.close()


def test_members_offline_at_a_ban_catch_up_after_a_restart_and_a_left_member_cannot() -> None:
    """Bob is away when Ann bans Cal; Ann's node restarts; Bob comes back on the old
    key and gets the new one from Ann's node, which still answers the old handle to
    members. Dee, who left before the ban, is refused under the old handle."""

    async def scenario(folder: Path) -> None:
        with (
            new_store(folder, "Ann") as ann,
            new_store(folder, "Bob") as bob,
            new_store(folder, "Cal") as cal,
            new_store(folder, "Dee") as dee,
        ):
            async with Peer.running(ann.identity) as ann_peer:
                ann_commands = Commands(Node(ann, ann_peer))
                made = await ann_commands.community_create("Night", private=True)
                community = bytes.fromhex(made["id"])
                for store in (bob, cal, dee):
                    async with Peer.running(store.identity) as peer:
                        code = (await ann_commands.invite_create("Night", uses=1))["code"]
                        assert (await Commands(Node(store, peer)).join(code))["status"] == "joined"
                async with Peer.running(dee.identity) as dee_peer:
                    dee_node = Node(dee, dee_peer)
                    await dee_node.follow(community)
                    await dee_peer.connect(ann_peer.addresses()[0])
                    await Commands(dee_node).community_leave("Night")
                    await dee_node.sync(ann_peer.peer_id, community)
                    assert not ann.is_member(community, dee.identity.public_key)
                banned = await ann_commands.community_ban("Night", cal.identity.public_key.hex())
                assert banned["key_epoch"] == 1
                await ann_commands.post("Night", "After the ban")
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(dee.identity) as dee_peer,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                dee_node = Node(dee, dee_peer)
                assert await ann_node.follow(community)
                assert await bob_node.follow(community)
                assert bob.community_key_epoch(community) == 0
                await bob_peer.connect(ann_peer.addresses()[0])
                await bob_node.sync(ann_peer.peer_id, community)
                await _wait(lambda: bob.community_key_epoch(community) == 1, "Bob's new key")
                assert "After the ban" in [p.text for p in bob.feed(community).posts]

                await dee_node.follow(community)
                await dee_peer.connect(ann_peer.addresses()[0])
                with pytest.raises((SyncError, P2PError)):
                    await dee_node.sync(ann_peer.peer_id, community, timeout=10)
                assert "After the ban" not in [p.text for p in dee.feed(community).posts]

    run(scenario)


def test_a_member_let_back_after_a_ban_gets_the_key_in_force() -> None:
    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Cal") as cal:
            async with Peer.running(ann.identity) as ann_peer, Peer.running(cal.identity) as cp:
                ann_commands, cal_node = Commands(Node(ann, ann_peer)), Node(cal, cp)
                made = await ann_commands.community_create("Night", private=True)
                community = bytes.fromhex(made["id"])
                code = (await ann_commands.invite_create("Night", uses=1))["code"]
                assert (await Commands(cal_node).join(code))["status"] == "joined"
                cal_key = cal.identity.public_key.hex()  # Cal's profile may not be here yet
                banned = await ann_commands.community_ban("Night", cal_key)
                # The invite Cal used (one use) is used up: nothing to withdraw.
                assert banned["notes"] == []
                assert cal.community_key_epoch(community) == 0
                await ann_commands.community_ban("Night", cal_key, unban=True)
                await cal_node.sync(ann_peer.peer_id, community)
                await _wait(lambda: cal.community_key_epoch(community) == 1, "Cal's key")
                assert cal.community_key(community) == ann.community_key(community)

    run(scenario)


def test_two_moderators_holding_the_key_seal_it_to_nobody_again_and_a_stranger_gets_nothing() -> (
    None
):
    """Ann and Bob, both role holders, hold the key in force: neither node finds anyone
    to seal it to (no endless resealing). Eve, knowing the community's handle (every
    neighbour sees it as a topic name), is refused a sync: only members are served."""

    async def scenario(folder: Path) -> None:
        with new_store(folder, "Ann") as ann, new_store(folder, "Bob") as bob:
            async with (
                Peer.running(ann.identity) as ann_peer,
                Peer.running(bob.identity) as bob_peer,
                Peer.running(Identity.generate()) as eve,
            ):
                ann_node, bob_node = Node(ann, ann_peer), Node(bob, bob_peer)
                ann_commands = Commands(ann_node)
                made = await ann_commands.community_create("Night", private=True)
                community = bytes.fromhex(made["id"])
                code = (await ann_commands.invite_create("Night", uses=1))["code"]
                assert (await Commands(bob_node).join(code))["status"] == "joined"
                await ann_commands.community_roles("Night", grant=bob.identity.public_key.hex())
                await bob_node.sync(ann_peer.peer_id, community)
                assert bob.community(community).roles == ("moderator",)  # type: ignore[union-attr]
                before = ann.db.execute(
                    "SELECT count(*) FROM records WHERE kind = 'key_update'"
                ).fetchone()[0]
                for node in (ann_node, bob_node, ann_node):
                    assert await node.reseal(community, now=True) == []
                    await bob_node.sync(ann_peer.peer_id, community)
                after = ann.db.execute(
                    "SELECT count(*) FROM records WHERE kind = 'key_update'"
                ).fetchone()[0]
                assert after == before

                handle = community_handle(ann.community_key(community))  # type: ignore[arg-type]
                await eve.connect(ann_peer.addresses()[0])
                stream = await eve.open_stream(ann_peer.peer_id, SYNC_PROTOCOL)
                await stream.write(encode_frame(["open", 1, handle, b"\x61"]))
                assert b"unknown_community" in await stream.read(65536)

    run(scenario)


def test_a_banned_members_invites_let_nobody_in_and_no_key_is_sealed_to_them(
    tmp_path: Path,
) -> None:
    """After Mod is banned, a join with an invite Mod issued is refused, and so is a
    key_update (by a moderator who missed the ban) that seals a key to Mod."""
    night = _Night(tmp_path, "Mod", "Bob", "New")
    ann = night.stores["Ann"]
    c = night.community
    mod_code = InviteCode.create(night.stores["Mod"].identity, c, "Night", [], night.t + 10**9)
    night.records += [
        night.at(
            ann, 2, kind="role_grant", community=c, subject=night.key_of("Mod"), role="moderator"
        ),
        night.at(
            night.stores["Mod"],
            3,
            kind="invite",
            community=c,
            invite_key=mod_code.invite_key,
            expires_at=night.t + 10**9,
        ),
        night.join("Bob", 4),
        night.at(
            ann, 5, kind="role_grant", community=c, subject=night.key_of("Bob"), role="moderator"
        ),
        night.at(
            ann, 10_000, kind="moderation", community=c, action="ban", target=night.key_of("Mod")
        ),
    ]
    late_join = night.at(
        night.stores["New"], 10_001, kind="join", community=c,
        invite_key=mod_code.invite_key, proof=mod_code.prove_join(night.key_of("New")),
    )  # fmt: skip
    # Bob had not seen the ban when he rekeyed, and sealed the key to Mod too.
    stale_rekey = night.key("Bob", 10_002, 1, os.urandom(32), ("Ann", "Bob", "Mod"))
    ann.ingest([r.envelope for r in night.records])
    ann.ingest([late_join.envelope, stale_rekey.envelope])
    assert ann.status_of(late_join.id) == ("denied", "the invite's issuer is banned")
    assert ann.status_of(stale_rekey.id) == ("denied", "a key is sealed to a banned member")
    night.close()
