"""Moderation and a member's own controls, with real hosts and stores: a banned member of
a private community cannot read what is posted after the ban; invites are listed and
withdrawn; removals and bans show in the moderation log; authors edit, delete and revoke;
the subject hides a reference; a member mutes or blocks someone for themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from kithnet.crypto.errors import CryptoError
from kithnet.crypto.sealed import unseal
from kithnet.localstore.errors import StoreError
from kithnet.node.commands import CommandError, Commands
from kithnet.node.node import Node
from kithnet.node.sync import SyncError
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

                banned = await ann_commands.community_ban("Night Shift", "Cal", reason="leaks")
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

                ban = await ann_commands.community_ban("Street", "Bob", reason="spam again")
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
                assert ranked["trust"] == 0  # blocked: no trust flows to or from Cal
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
    assert ann.cli("delete", post[:10]).returncode == 0
    assert ann.cli_json("feed", "Allotments")["posts"] == []
    assert "nothing has been moderated" in ann.cli("community", "log", "Allotments").stdout
    assert "muted or blocked nobody" in ann.cli("mute").stdout
    wrong = ann.cli("revoke", post[:10])
    assert wrong.returncode == 1
    assert wrong.stderr.strip().endswith("is a post, not a reference")
    assert "Traceback" not in wrong.stderr
