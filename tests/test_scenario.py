"""Three members, each running `kithnet serve` in its own process on 127.0.0.1, used
through the command line and the control socket as a member would (issue 4's scenario)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.members import Member, wait_until


@pytest.fixture
def members(tmp_path: Path) -> Iterator[tuple[Member, Member, Member]]:
    trio = (Member(tmp_path, "Ann"), Member(tmp_path, "Bob"), Member(tmp_path, "Cat"))
    try:
        yield trio
    finally:
        for member in trio:
            member.kill()


def test_three_members_join_post_go_away_and_catch_up(
    members: tuple[Member, Member, Member],
) -> None:
    ann, bob, cat = members
    for member in members:
        member.start()

    # The control socket is the owner's alone.
    mode = os.stat(ann.data_dir / "kithnet.sock").st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600

    created = ann.cli_json(
        "community", "create", "Hackney Neighbours", "--tag", "hackney", "--description", "E8"
    )
    community = created["id"]
    invite = ann.cli_json("invite", "create", "hackney", "--uses", "5", "--expires", "2h")
    assert invite["addresses"]
    assert invite["code"].startswith("kith1")

    # Bob and Cat join with the code alone: it names where Ann's node listens.
    for member in (bob, cat):
        joined = member.cli_json("join", invite["code"])
        assert joined["status"] == "joined", joined
        assert joined["community"] == community
    listed = bob.cli_json("community", "list")
    assert [c["name"] for c in listed] == ["Hackney Neighbours"]

    # A post reaches both by gossip.
    hello = ann.cli_json("post", "hackney", "Anyone know a good roofer?", "--kind", "question")
    for member in (bob, cat):

        def sees(m: Member = member) -> bool:
            return hello["id"] in m.feed_ids(community)

        wait_until(sees, f"{member.name} sees Ann's question")
    shown = bob.cli("feed", "hackney")
    assert "[question] Anyone know a good roofer?" in shown.stdout
    assert "Ann" in shown.stdout
    answer = bob.cli("post", "hackney", "Try Dave", "--reply-to", hello["id"])
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("posted ")
    wait_until(
        lambda: ann.command("feed", community=community)["posts"][0]["replies"] == 1,
        "Ann sees the reply",
    )
    assert "(1 reply)" in ann.cli("feed", "hackney").stdout

    # Cat goes away; Ann and Bob post 200 more; Cat comes back and catches up.
    cat.stop()
    written = set()
    for number in range(100):
        for member in (ann, bob):
            post = member.command("post", community=community, text=f"{member.name} {number}")
            written.add(post["id"])
    everything = written | {hello["id"]}
    wait_until(lambda: ann.feed_ids(community) == everything, "Ann has Bob's posts")
    wait_until(lambda: bob.feed_ids(community) == everything, "Bob has Ann's posts")
    assert not written & cat.feed_ids(community)
    cat.start()
    wait_until(lambda: cat.feed_ids(community) == everything, "Cat catches up", timeout=60)
    # (Some of it may come by gossip: peers offer the messages of the last seconds.)
    [ann_view] = ann.command("status")["communities"]
    [cat_view] = cat.command("status")["communities"]
    assert cat_view["records"] == ann_view["records"] >= 201 + 3  # posts, genesis, joins
    assert ann_view["peers"] == 2

    # Ann is away while Bob posts; Bob then goes too, and Ann gets Bob's post from Cat.
    ann.stop()
    late = bob.command("post", community=community, text="Roofer found: ask me")
    wait_until(lambda: late["id"] in cat.feed_ids(community), "Cat has Bob's late post")
    bob.stop()
    assert late["id"] not in ann.feed_ids(community)
    ann.start()
    wait_until(lambda: late["id"] in ann.feed_ids(community), "Ann gets it through Cat")
    peers = ann.cli_json("peers")
    assert [p["name"] for p in peers["connected"]] == ["Cat"]
    assert peers["connected"][0]["communities"] == ["Hackney Neighbours"]
    ann.stop()
    cat.stop()


def test_commands_without_a_running_node_start_one_for_their_own_duration(
    members: tuple[Member, Member, Member],
) -> None:
    ann, bob, cat = members
    ann.start()
    community = ann.cli_json("community", "create", "Lofts")["id"]
    code = ann.cli_json("invite", "create", "Lofts", "--uses", "1")["code"]

    # Bob runs no node: each command starts one, does its work and stops.
    assert "no node is running" in bob.cli("status").stdout
    mistyped = bob.cli("join", code[:40] + ("a" if code[40] != "a" else "b") + code[41:])
    assert mistyped.returncode == 1
    assert "mistyped" in mistyped.stderr
    assert "Traceback" not in mistyped.stderr
    joined = bob.cli_json("join", code)
    assert joined["status"] == "joined"
    posted = bob.cli_json("post", "lofts", "Fitted 200 mm of wool today", "--skill", "insulation")
    assert posted["members_online"] == 1
    wait_until(lambda: posted["id"] in ann.feed_ids(community), "Ann gets Bob's post")
    assert not (bob.data_dir / "kithnet.sock").exists()

    again = bob.cli("join", code)
    assert again.returncode == 0
    assert "already in Lofts" in again.stdout
    # The code was for one use: Cat cannot join with it, and is told why.
    used = cat.cli("join", code)
    assert used.returncode == 1
    assert "refused this invite" in used.stderr
    assert "Traceback" not in used.stderr
    assert cat.cli_json("community", "list") == []  # not a member

    # Offline: the post waits in the store and goes out when Bob's node next connects.
    ann.stop()
    later = bob.cli_json("post", "lofts", "Anyone free on Friday?")
    assert later["members_online"] == 0
    ann.start()
    bob.start()
    wait_until(lambda: later["id"] in ann.feed_ids(community), "Ann gets the offline post")
    bob.stop()
    ann.stop()


def test_a_member_reachable_only_through_a_relay(
    members: tuple[Member, Member, Member],
) -> None:
    """Rae's node relays (opted in); Bob's announces a circuit address through it; Ann,
    who knows only that circuit address, reaches Bob and gets his posts."""
    rae, bob, ann = members
    rae.start("--relay")
    bob.start("--relay-via", f"{rae.listen}/p2p/{rae.peer_id}")
    circuit = f"{rae.listen}/p2p/{rae.peer_id}/p2p-circuit/p2p/{bob.peer_id}"
    assert circuit in bob.wait_for_log(r"reachable through a relay at \S+")
    community = bob.cli_json("community", "create", "Lofts")["id"]
    code = bob.cli_json("invite", "create", "Lofts")
    assert circuit in code["addresses"]

    ann.start("--peer", circuit)
    ann.wait_for_log(f"connected to {bob.peer_id}")
    assert ann.cli_json("join", code["code"])["status"] == "joined"
    post = bob.command("post", community=community, text="Through the relay")
    wait_until(lambda: post["id"] in ann.feed_ids(community), "Ann gets Bob's post")
    for member in members:
        member.stop()


def test_a_private_community_by_the_command_line(
    members: tuple[Member, Member, Member],
) -> None:
    ann, bob, cat = members
    ann.start()
    made = ann.cli_json("community", "create", "Night Shift", "--private")
    assert made["visibility"] == "private"
    code = ann.cli_json("invite", "create", "Night Shift", "--uses", "1")["code"]
    bob.start()
    assert bob.cli_json("join", code)["status"] == "joined"
    post = ann.command("post", community=made["id"], text="Door code changes Friday")
    wait_until(lambda: post["id"] in bob.feed_ids(made["id"]), "Bob reads the private post")
    # The code is used up: Cat is refused, and holds no key to read anything with.
    refused = cat.cli("join", code)
    assert refused.returncode == 1
    assert "Night Shift" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert cat.cli_json("community", "list") == []
    ann.stop()
    bob.stop()


def test_vouching_trust_and_asking_by_the_command_line(
    members: tuple[Member, Member, Member],
) -> None:
    ann, bob, cat = members
    for member in members:
        member.start()
    ann_lofts = ann.cli_json("community", "create", "Lofts", "--tag", "insulation")["id"]
    code = ann.cli_json("invite", "create", "Lofts")["code"]
    for member in (bob, cat):
        assert member.cli_json("join", code)["status"] == "joined"
    ann.cli_json("vouch", "Bob", "--skill", "carpentry", "--text", "Fitted our stairs")
    bob.cli_json(
        "vouch", "Cat", "--skill", "insulation", "--text", "Did my loft", "--relationship", "hired"
    )

    def knows_bobs_reference() -> bool:
        refs = ann.command("references", member="Cat")["references"]
        return [(r["author_name"], r["skill"], r["verified"]) for r in refs] == [
            ("Bob", "insulation", True)
        ]

    wait_until(knows_bobs_reference, "Ann to have Bob's reference about Cat")
    shown = ann.cli("references", "Cat")
    assert "insulation: Bob in Lofts" in shown.stdout
    trust = ann.cli_json("trust", "Cat", "--skill", "insulation")
    assert trust["path"] == ["Bob", "Cat"]
    assert trust["trust"] == 0.5
    assert trust["rank"] == 1
    assert trust["explanation"] == (
        "1 reference; 1 from people you trust: Bob, whom you vouched for"
    )
    # Does anybody know...? Cat offers insulation; Ann asks and sees her at once.
    offer = cat.command(
        "post", community="Lofts", text="Loft insulation", kind="offer", skills=["insulation"]
    )
    wait_until(lambda: offer["id"] in ann.feed_ids(ann_lofts), "Ann has Cat's offer")
    asked = ann.cli_json("ask", "Who can insulate my loft?", "--skill", "insulation")
    assert asked["community_name"] == "Lofts"
    [first, *_] = asked["providers"]
    assert first["name"] == "Cat"
    assert first["reasons"] == [
        "insulation: 1 reference; 1 from people you trust: Bob, whom you vouched for"
    ]
    assert [c["name"] for c in asked["communities"]] == ["Lofts"]
    assert "Cat" in ann.cli("ask", "And solar?", "--skill", "insulation").stdout

    # Cat adds solar to her profile; asking about it finds her with no references yet.
    cat.cli_json("profile", "set", "--skill", "insulation", "--skill", "solar")

    wait_until(
        lambda: "solar" in ann.command("references", member="Cat")["skills"],
        "Ann to have Cat's new profile",
    )
    solar = ann.command("ask", text="Solar panels?", skills=["solar"])["providers"]
    assert [(p["name"], p["references"]) for p in solar] == [("Cat", 0)]

    # Bob knows a community for it that Ann is not in, and refers her question there.
    bob.cli_json("community", "create", "Installers", "--tag", "solar")
    wait_until(
        lambda: (
            asked["question"] in {p["id"] for p in bob.command("feed", community="Lofts")["posts"]}
        ),
        "Bob has Ann's question",
    )
    referred = bob.cli_json("refer", asked["question"], "--community", "Installers")
    assert referred["to"] == "Installers"

    def referral() -> dict[str, Any] | None:
        found = ann.command("referrals", question=asked["question"])["referrals"]
        return found[0] if found else None

    offered = wait_until(referral, "Ann to see Bob's referral")
    assert offered["by"] == "Bob"
    assert offered["trust"] == 1.0  # Ann vouched for Bob
    assert offered["community_name"] == "Installers"
    assert "points you to Installers" in ann.cli("referrals", asked["question"]).stdout
    assert ann.cli_json("join", offered["invite"])["status"] == "joined"
    ann.cli_json("community", "leave", "Installers")
    assert [c["name"] for c in ann.cli_json("community", "list")] == ["Lofts"]

    # Ann makes Bob a moderator; Bob bans Cat; every node applies both.
    ann.cli_json("community", "roles", "Lofts", "--grant", "Bob")

    def roles_seen_by(member: Member) -> dict[str, tuple[list[str], bool]]:
        listed = member.command("community.roles", community="Lofts")["members"]
        return {m["name"]: (m["roles"], m["banned"]) for m in listed}

    wait_until(lambda: roles_seen_by(cat)["Bob"] == (["moderator"], False), "Cat sees it")
    bob.cli_json("community", "ban", "Lofts", "Cat", "--reason", "testing bans")
    wait_until(lambda: roles_seen_by(ann)["Cat"] == ([], True), "Ann applies the ban")
    assert "Cat online BANNED" in ann.cli("community", "roles", "Lofts").stdout
    unknown = ann.cli("trust", "Nobody")
    assert unknown.returncode == 1
    assert "no member called 'Nobody'" in unknown.stderr
    for member in members:
        member.stop()
