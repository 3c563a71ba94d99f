"""Issue 5's scenario, end to end, with five members each running `kithnet serve` in its
own process on 127.0.0.1, used through the command line as a member would.

Ann lives in Hackney and is in "Hackney Neighbours" with Bob. Bob is also in "Solar &
Insulation Installers" with the installers Cat and Dan, and has vouched for Dan; Dan and
Bob have vouched for Cat's insulation work; a fresh account Cat made vouches for Cat too.
Ann asks in Hackney Neighbours who can insulate a loft and fit solar panels. Bob refers
the question to the installers' community. Ann joins through the referral's invite, sees
Cat's offer with 3 references, of which 2 count through people Ann trusts while the fresh
account's counts for nothing, and sends Cat a direct message that Cat reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.members import Member, wait_until

INSTALLERS = "Solar & Insulation Installers"


@pytest.fixture
def five(tmp_path: Path) -> Iterator[dict[str, Member]]:
    people = {name: Member(tmp_path, name) for name in ("Ann", "Bob", "Cat", "Dan", "Fresh")}
    try:
        yield people
    finally:
        for member in people.values():
            member.kill()


def test_asking_hackney_neighbours_finds_a_trusted_installer(five: dict[str, Member]) -> None:
    ann, bob, cat, dan, fresh = five.values()
    for member in five.values():
        member.start()
    ann.cli_json("profile", "set", "--bio", "Lives in Hackney")

    # Hackney Neighbours: Ann and Bob. Ann knows Bob and vouches for him.
    hackney = ann.cli_json(
        "community", "create", "Hackney Neighbours", "--tag", "hackney", "--tag", "neighbours"
    )["id"]
    code = ann.cli_json("invite", "create", "Hackney Neighbours")["code"]
    assert bob.cli_json("join", code)["status"] == "joined"
    ann.cli_json(
        "vouch", "Bob", "--skill", "gardening", "--text", "Keeps the square green",
        "--relationship", "knows_personally",
    )  # fmt: skip

    # The installers' community: Cat made it; Bob, Dan and Cat's fresh account joined.
    installers = cat.cli_json(
        "community", "create", INSTALLERS, "--tag", "insulation", "--tag", "solar"
    )["id"]
    code = cat.cli_json("invite", "create", INSTALLERS, "--uses", "5")["code"]
    for member in (bob, dan, fresh):
        assert member.cli_json("join", code)["status"] == "joined"
    offer = cat.cli_json(
        "post", INSTALLERS, "Loft insulation and solar panels, East London",
        "--kind", "offer", "--skill", "insulation", "--skill", "solar",
    )  # fmt: skip
    bob.cli_json("vouch", "Dan", "--skill", "solar", "--text", "Fitted our panels",
                 "--relationship", "hired")  # fmt: skip
    for member, text in (
        (bob, "Insulated our loft in a day"),
        (dan, "We work together on retrofits"),
        (fresh, "Best installer ever"),
    ):
        member.cli_json(
            "vouch", "Cat", "--skill", "insulation", "--text", text,
            "--community", INSTALLERS,
        )  # fmt: skip

    # Cat lists the community in the public directory; it reaches Ann through Bob.
    cat.cli_json("community", "announce", INSTALLERS)

    def listed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = ann.cli_json("directory", "--tag", "insulation")["entries"]
        return found

    [entry] = wait_until(listed, "Ann's directory to list the installers")
    assert (entry["name"], entry["joined"]) == (INSTALLERS, False)

    # Ann asks her neighbours. Her node knows no installer yet, only the listing.
    asked = ann.cli_json(
        "ask", "Does anybody know someone who can insulate my loft and fit solar panels?",
        "--skill", "insulation", "--skill", "solar", "--community", "Hackney Neighbours",
    )  # fmt: skip
    assert asked["community_name"] == "Hackney Neighbours"
    assert asked["providers"] == []
    [listing] = asked["communities"]
    assert (listing["name"], listing["joined"]) == (INSTALLERS, False)
    assert listing["reason"] == "in the directory; its tags: insulation, solar"
    question = asked["question"]

    # Bob sees the question and refers it to the installers' community.
    wait_until(lambda: question in bob.feed_ids(hackney), "Bob has Ann's question")
    referred = bob.cli_json("refer", question, "--community", INSTALLERS)
    assert referred["to"] == INSTALLERS

    def referral() -> dict[str, Any] | None:
        found = ann.command("referrals", question=question)["referrals"]
        return found[0] if found else None

    pointed = wait_until(referral, "Ann to see Bob's referral")
    assert (pointed["by"], pointed["trust"], pointed["community_name"]) == ("Bob", 1.0, INSTALLERS)

    # Ann joins from the referral and catches up on the installers' community.
    assert ann.cli_json("join", pointed["invite"])["status"] == "joined"
    wait_until(lambda: offer["id"] in ann.feed_ids(installers), "Ann to have Cat's offer")

    def cats_references() -> list[dict[str, Any]]:
        refs: list[dict[str, Any]] = ann.command("references", member="Cat")["references"]
        return refs if len(refs) == 3 else []

    refs = wait_until(cats_references, "Ann to have the 3 references about Cat")
    assert sorted(r["author_name"] for r in refs) == ["Bob", "Dan", "Fresh"]
    assert all(r["verified"] and r["community_name"] == INSTALLERS for r in refs)
    wait_until(
        lambda: ann.command("trust", member="Dan")["trust"] > 0, "Ann to have Bob's vouch for Dan"
    )

    ranked = ann.cli_json("trust", "Cat", "--skill", "insulation")
    assert ranked["rank"] == 1
    assert ranked["explanation"] == (
        "3 references; 2 from people you trust: Bob, whom you vouched for, "
        "and Dan, vouched for by Bob"
    )
    assert ann.cli_json("trust", "Fresh")["trust"] == 0  # nobody Ann trusts vouched for it

    again = ann.cli_json(
        "ask", "Loft insulation and solar?", "--skill", "insulation", "--skill", "solar",
        "--community", "Hackney Neighbours",
    )  # fmt: skip
    first = again["providers"][0]
    assert first["name"] == "Cat"
    assert (
        "insulation: 3 references; 2 from people you trust: Bob, whom you vouched for, "
        "and Dan, vouched for by Bob"
    ) in first["reasons"]
    assert again["communities"][0]["name"] == INSTALLERS
    shown = ann.cli("ask", "Anyone?", "--skill", "insulation", "--community", INSTALLERS)
    assert "Cat" in shown.stdout
    assert "2 from people you trust" in shown.stdout

    # Ann contacts Cat from there: a direct message only Cat can read.
    sent = ann.cli_json("dm", "Cat", "Hello Cat, could you quote for my loft in Hackney?")
    assert sent["status"] in ("delivered", "forwarded")

    def cats_inbox() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = cat.cli_json("inbox")["conversations"]
        return found

    [conversation] = wait_until(cats_inbox, "Cat to receive Ann's message")
    assert (conversation["name"], conversation["unread"]) == ("Ann", 1)
    read = cat.cli_json("inbox", "Ann")
    assert [m["text"] for m in read["messages"]] == [
        "Hello Cat, could you quote for my loft in Hackney?"
    ]
    assert read["unread"] == 1
    assert cat.cli_json("inbox")["unread"] == 0

    for member in five.values():
        member.stop()
