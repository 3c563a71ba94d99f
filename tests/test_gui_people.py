"""People in the desktop app (kithnet/gui/people.py), on the demo with its peers' real
nodes: a profile with its references and why they rank, vouching, muting, editing
one's own profile, and direct messages both ways."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from kithnet.gui.app import MainWindow
from kithnet.gui.bridge import Bridge
from kithnet.gui.models import ItemRole
from kithnet.gui.people import OFFERS_HEIGHT, MembersDialog, MessagesWindow, ProfileDialog
from kithnet.node import demo
from kithnet.node.control import call
from tests.gui_support import LISTEN, WAIT, DemoApp, ask

Processes = dict[str, "subprocess.Popen[bytes]"]


@pytest.fixture
def demo_with_processes(
    tmp_path: Path, qtbot: QtBot
) -> Iterator[tuple[MainWindow, dict[str, tuple[Path, str]], Processes]]:
    """The demo app (as the demo_app fixture) and each peer's `kithnet serve` process,
    for a test that takes a peer offline."""
    you, peers = demo.prepare(tmp_path)
    with demo.running_peers(peers) as processes:
        bridge = Bridge(you, LISTEN)
        try:
            with qtbot.waitSignal(bridge.unlocked, timeout=30_000):
                bridge.unlock(demo.DEMO_PASSPHRASE)
            window = MainWindow(bridge)
            qtbot.addWidget(window)
            qtbot.waitUntil(lambda: window.communities.rowCount() >= 1, timeout=WAIT)
            yield window, peers, dict(zip(peers, processes, strict=True))
        finally:
            bridge.stop()


def _click(qtbot: QtBot, button: Any) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]


def _members(window: MainWindow, qtbot: QtBot, community: str) -> MembersDialog:
    dialog = window.open_members()
    dialog.community.setCurrentText(community)
    qtbot.waitUntil(lambda: dialog.members.rowCount() >= 4, timeout=WAIT)
    return dialog


def _profile_from_members(window: MainWindow, qtbot: QtBot, name: str) -> ProfileDialog:
    """Open a member's profile as a member would without the feed: People → Members."""
    members = _members(window, qtbot, "Hackney Neighbours")
    shown = [members.members.index(n).data() for n in range(members.members.rowCount())]
    row = next(n for n, text in enumerate(shown) if text.split(" ")[0] == name)
    members.view.setCurrentIndex(members.members.index(row))
    assert members.show_button.isEnabled()
    _click(qtbot, members.show_button)
    profiles = window.findChildren(ProfileDialog)
    assert profiles, "Show profile opened nothing"
    profile = profiles[-1]
    qtbot.waitUntil(lambda: profile.profile is not None, timeout=WAIT)
    return profile


def _key(window: MainWindow, qtbot: QtBot, name: str) -> str:
    return str(ask(window.bridge, qtbot, "profile", member=name)["member"])


def test_a_profile_shows_who_they_are_their_references_checked_and_why_they_rank(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    """You opens Cat's profile from Hackney Neighbours' members: her bio and skills,
    the references by Bob and Dan with their signatures checked, and why Cat ranks
    first for insulation."""
    window, peers = demo_app
    members = _members(window, qtbot, "Hackney Neighbours")
    shown = [members.members.index(n).data() for n in range(members.members.rowCount())]
    assert "Bob (owner) · online" in shown or "Bob (owner)" in shown
    qtmodeltester.check(members.members)
    profile = _profile_from_members(window, qtbot, "Cat")
    assert profile.name.text() == "Cat"
    assert profile.bio.text() == "Insulation and solar installer, 12 years"
    assert profile.skills.text() == "insulation, solar"
    assert len(profile.fingerprint.text().split()) == 5  # five groups to read aloud
    qtbot.waitUntil(lambda: profile.references.rowCount() >= 2, timeout=WAIT)
    lines = profile.reference_lines()
    by_bob = next(line for line in lines if line.startswith("Bob "))
    by_dan = next(line for line in lines if line.startswith("Dan "))
    assert by_bob == (
        "Bob (hired them), for insulation: “Insulated our loft in a day, tidy work”\n"
        "✓ signature checks · in Solar & Insulation Installers"
    )
    assert by_dan.startswith("Dan (worked with them), for insulation: “We work together")
    assert "✓ signature checks" in by_dan
    qtbot.waitUntil(lambda: "insulation: ranked" in profile.trust.text(), timeout=WAIT)
    trust = profile.trust.text()
    assert trust.splitlines() == [
        "Your trust in Cat: none yet (no chain of references from you reaches them)",
        "insulation: ranked 1 of 1 known for it, because 2 references: none from people you trust",
        "solar: not ranked: no references for it",
    ]
    # Someone else's profile: vouch, message, mute, block; not edit.
    assert profile.vouch_button.isEnabled()
    assert profile.message_button.isEnabled()
    assert profile.edit_button.isHidden()
    assert profile.hide_button.isHidden()
    assert profile.revoke_button.isHidden()  # You wrote none of these
    qtmodeltester.check(profile.references)
    # Offers show only from communities shared with the viewer: for You, who is not
    # among the installers, her Hackney offer alone; Bob, who is, sees both.
    hackney_offer = "Free draught-proofing check for your windows and doors"
    shown = [profile.offers.item(i).text() for i in range(profile.offers.count())]
    assert len(shown) == 1
    assert shown[0].startswith(hackney_offer)
    assert shown[0].endswith("in Hackney Neighbours")
    # The box is as high as its one offer: the offer whole, no empty box below it.
    qtbot.waitUntil(lambda: profile.offers.height() < OFFERS_HEIGHT, timeout=WAIT)
    offer = profile.offers.visualItemRect(profile.offers.item(0))
    assert offer.top() >= 0
    assert offer.bottom() < profile.offers.viewport().height()
    assert profile.shared.text() == "Hackney Neighbours"
    seen_by_bob = call(peers["Bob"][0], "profile", {"member": "Cat"})
    assert seen_by_bob["communities"] == ["Hackney Neighbours", "Solar & Insulation Installers"]
    assert sorted((o["text"], o["community_name"]) for o in seen_by_bob["offers"]) == [
        (hackney_offer, "Hackney Neighbours"),
        (
            "Loft insulation, solar panels and batteries across East London",
            "Solar & Insulation Installers",
        ),
    ]
    assert seen_by_bob["fingerprint"] == profile.fingerprint.text()
    assert not seen_by_bob["me"]


def test_vouching_from_a_profile_reaches_the_member_and_a_bad_vouch_sends_nothing(
    demo_app: DemoApp, qtbot: QtBot
) -> None:
    """You vouches for Dan's solar work from his profile: the reference shows in his
    list with its signature checked, and Dan's own node receives it. A vouch without a
    skill or without words says what is missing and sends nothing."""
    window, peers = demo_app
    profile = _profile_from_members(window, qtbot, "Dan")
    dan = profile.member
    qtbot.waitUntil(lambda: profile.references.rowCount() >= 2, timeout=WAIT)
    before = profile.references.rowCount()
    form = profile.open_vouch()
    assert form is not None
    form.skill.setCurrentText("")
    form.text.setPlainText("Fitted our panels")
    _click(qtbot, form.send)
    assert form.status.text() == "Name the skill you vouch for (e.g. plumbing): nothing was sent"
    form.skill.setCurrentText("Solar")
    form.text.setPlainText("   ")
    _click(qtbot, form.send)
    assert form.status.text().startswith("Write what they did for you or with you")
    assert form.status.text().endswith("Nothing was sent")
    form.text.setPlainText("Great work! " * 400)
    _click(qtbot, form.send)
    assert form.status.text() == (
        "A reference holds at most 4000 bytes of text (yours has 4799): shorten it. "
        "Nothing was sent"
    )
    assert form.isVisible()
    mine = ask(window.bridge, qtbot, "references", member=dan)["references"]
    assert not [r for r in mine if r["author_name"] == "You"]

    form.text.setPlainText("Rewired our kitchen safely and on time")
    form.relationship.setCurrentIndex(0)  # I hired them
    _click(qtbot, form.send)
    qtbot.waitUntil(lambda: profile.references.rowCount() == before + 1, timeout=WAIT)
    assert not form.isVisible()
    assert profile.status.text().startswith("Your reference for solar is signed and went to ")
    line = next(line for line in profile.reference_lines() if line.startswith("You "))
    assert line == (
        "You (hired them), for solar: “Rewired our kitchen safely and on time”\n"
        "✓ signature checks · in Hackney Neighbours"
    )

    def dan_has_it() -> bool:
        found = call(peers["Dan"][0], "references", {"member": dan})["references"]
        return any(r["text"] == "Rewired our kitchen safely and on time" for r in found)

    qtbot.waitUntil(dan_has_it, timeout=30_000)
    # Having vouched, You now trusts Dan, and says so.
    qtbot.waitUntil(lambda: "Your trust in Dan: 1.00" in profile.trust.text(), timeout=WAIT)

    # The author can revoke it, after saying yes.
    row = next(n for n, t in enumerate(profile.reference_lines()) if t.startswith("You "))
    profile.references_view.setCurrentIndex(profile.references.index(row))
    assert not profile.revoke_button.isHidden()
    box = profile.ask_to_revoke()
    assert box is not None
    assert "cannot be undone" in box.text()
    yes = profile.confirm_button()
    assert yes is not None
    _click(qtbot, yes)
    qtbot.waitUntil(lambda: "revoked by its author" in profile.reference_lines()[row], timeout=WAIT)


def test_muting_asks_first_and_then_hides_the_member(demo_app: DemoApp, qtbot: QtBot) -> None:
    """You mutes Dan from his profile, after saying yes: his posts leave the feed."""
    window, peers = demo_app

    def authors() -> set[str]:
        feed = window.feed
        if feed is None:
            return set()
        return {feed.index(n).data(ItemRole)["author_name"] for n in range(feed.rowCount())}

    qtbot.waitUntil(lambda: "Dan" in authors(), timeout=WAIT)
    profile = _profile_from_members(window, qtbot, "Dan")
    box = profile.ask_to_silence(block=False)
    assert box is not None
    assert box.windowTitle() == "Mute Dan?"
    box.button(box.StandardButton.Cancel).click()
    assert ask(window.bridge, qtbot, "mute")["silenced"] == []  # cancelled: nothing done
    _click(qtbot, profile.mute_button)
    yes = profile.confirm_button()
    assert yes is not None
    assert yes.text() == "Mute"
    _click(qtbot, yes)
    qtbot.waitUntil(lambda: profile.status.text() == "You muted Dan", timeout=WAIT)
    qtbot.waitUntil(lambda: profile.mute_button.accessibleName() == "Unmute", timeout=WAIT)
    silenced = ask(window.bridge, qtbot, "mute")["silenced"]
    assert [(s["name"], s["level"]) for s in silenced] == [("Dan", "mute")]
    qtbot.waitUntil(lambda: "Dan" not in authors() and "Bob" in authors(), timeout=WAIT)

    # Closed, the profile is gone and asks nothing more when records arrive.
    profile.close()
    feed = window.feed
    assert feed is not None
    call(peers["Bob"][0], "post", {"community": "Hackney Neighbours", "text": "Skip day"})
    qtbot.waitUntil(lambda: feed.index(0).data().endswith("Skip day"), timeout=30_000)
    assert not window.findChildren(ProfileDialog)


def test_editing_your_profile_changes_the_name_the_app_shows(
    demo_app: DemoApp, qtbot: QtBot
) -> None:
    window, peers = demo_app
    mine = window.open_profile("")
    qtbot.waitUntil(lambda: mine.profile is not None, timeout=WAIT)
    assert mine.name.text() == "You (you)"
    assert mine.vouch_button.isHidden()
    assert mine.message_button.isHidden()
    editor = mine.open_editor()
    assert editor is not None
    editor.name.setText("  ")
    _click(qtbot, editor.save)
    assert editor.status.text() == "Type the name others will see: nothing was saved"
    editor.name.setText("Yasmin")
    editor.bio.setPlainText("New on Mare Street; walks dogs")
    editor.skills.setText("Dog walking, gardening")
    _click(qtbot, editor.save)
    qtbot.waitUntil(lambda: mine.name.text() == "Yasmin (you)", timeout=WAIT)
    assert mine.skills.text() == "dog-walking, gardening"
    assert mine.bio.text() == "New on Mare Street; walks dogs"
    members = _members(window, qtbot, "Hackney Neighbours")
    shown = [members.members.index(n).data() for n in range(members.members.rowCount())]
    assert any(text.startswith("Yasmin") for text in shown)
    assert not any(text.startswith("You") for text in shown)

    def bob_knows() -> bool:
        return bool(call(peers["Bob"][0], "profile", {"member": mine.member})["name"] == "Yasmin")

    qtbot.waitUntil(bob_knows, timeout=30_000)

    # Bob vouches for her from his node: it arrives on her profile, and she hides it.
    assert mine.trust.text().startswith("This is you")
    call(
        peers["Bob"][0],
        "vouch",
        {
            "member": mine.member,
            "skill": "gardening",
            "text": "Helps at the allotment every week",
            "relationship": "knows_personally",
        },
        timeout=60,
    )
    qtbot.waitUntil(lambda: mine.references.rowCount() == 1, timeout=30_000)
    assert mine.reference_lines() == [
        "Bob (knows them personally), for gardening: “Helps at the allotment every week”\n"
        "✓ signature checks · in Hackney Neighbours"
    ]
    assert not mine.hide_button.isEnabled()  # nothing chosen yet
    mine.references_view.setCurrentIndex(mine.references.index(0))
    assert mine.revoke_button.isHidden()  # Bob's to revoke, not hers
    _click(qtbot, mine.hide_button)
    qtbot.waitUntil(lambda: mine.reference_lines()[0].endswith(" · hidden by Yasmin"), timeout=WAIT)
    assert mine.status.text() == "The reference is hidden from your profile"

    def bob_sees_it_hidden() -> bool:
        found = call(peers["Bob"][0], "references", {"member": mine.member})["references"]
        return bool(found and found[0]["hidden"])

    qtbot.waitUntil(bob_sees_it_hidden, timeout=30_000)


def test_messages_go_both_ways_with_unread_counts(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    """You writes to Bob from his profile's Message button; Bob's node has it. Bob
    answers from his node while You's Messages window is closed: the conversation
    shows one unread; opening the window shows the answer and reads it; a message
    arriving while it is open shows at once."""
    window, peers = demo_app
    bob_dir = peers["Bob"][0]
    profile = _profile_from_members(window, qtbot, "Bob")
    bob = profile.member
    messages = profile.open_conversation()
    assert isinstance(messages, MessagesWindow)
    assert messages is window.findChild(MessagesWindow)
    qtbot.waitUntil(lambda: messages.title.text() == "Conversation with Bob", timeout=WAIT)
    _click(qtbot, messages.send_button)
    assert messages.status.text() == "Write the message first"
    messages.composer.setPlainText("Hi Bob, is the ladder free on Sunday?")
    _click(qtbot, messages.send_button)
    qtbot.waitUntil(lambda: messages.status.text() == "Delivered to Bob's node", timeout=30_000)
    assert messages.composer.toPlainText() == ""
    conversation = messages.conversation
    assert conversation is not None

    def delivered() -> bool:  # shown as waiting at first: it is kept before it goes out
        return conversation.rowCount() == 1 and " · delivered" in conversation.index(0).data()

    qtbot.waitUntil(delivered, timeout=WAIT)
    assert conversation.index(0).data().startswith("You · ")
    # The new conversation is listed, and marked in the list as the one open.
    qtbot.waitUntil(lambda: messages.conversations.row_of(bob) >= 0, timeout=WAIT)
    assert messages.list_view.currentIndex().row() == messages.conversations.row_of(bob)
    assert (
        conversation.index(0).data().endswith(" · delivered\nHi Bob, is the ladder free on Sunday?")
    )
    you = ask(window.bridge, qtbot, "profile")["member"]
    inbox = call(bob_dir, "inbox", {})
    [with_you] = [c for c in inbox["conversations"] if c["member"] == you]
    assert with_you["last"]["text"] == "Hi Bob, is the ladder free on Sunday?"
    assert with_you["unread"] == 1

    messages.close()
    call(bob_dir, "dm", {"member": you, "text": "Yes, come by at ten"}, timeout=60)
    model = messages.conversations

    def unread_from_bob() -> int:
        row = model.row_of(bob)
        return int(model.rows[row]["unread"]) if row >= 0 else 0

    qtbot.waitUntil(lambda: unread_from_bob() == 1, timeout=30_000)
    assert model.index(model.row_of(bob)).data() == "Bob  (1 unread)\nYes, come by at ten"
    assert model.unread == 1
    assert messages.windowTitle() == "Messages (1 unread)"
    assert conversation.rowCount() == 1  # not read while the window is closed
    qtmodeltester.check(model)

    action = next(a for a in window.menus["people"].actions() if a.text() == "&Messages")
    assert action.shortcut().toString() == "Ctrl+M"
    action.trigger()
    assert messages.isVisible()
    qtbot.waitUntil(lambda: conversation.rowCount() == 2, timeout=WAIT)
    assert conversation.index(1).data().endswith("\nYes, come by at ten")
    assert conversation.index(1).data().startswith("Bob · ")
    qtbot.waitUntil(lambda: unread_from_bob() == 0, timeout=WAIT)
    assert model.index(model.row_of(bob)).data() == "Bob\nYes, come by at ten"

    call(bob_dir, "dm", {"member": you, "text": "Bring gloves"}, timeout=60)
    qtbot.waitUntil(lambda: conversation.rowCount() == 3, timeout=30_000)
    assert conversation.index(2).data().endswith("\nBring gloves")
    qtbot.waitUntil(lambda: unread_from_bob() == 0 and model.unread == 0, timeout=WAIT)
    qtmodeltester.check(conversation)
    qtmodeltester.check(model)
    # From the conversation, Bob's profile is one click away.
    profile.close()
    qtbot.waitUntil(lambda: not window.findChildren(ProfileDialog), timeout=WAIT)
    _click(qtbot, messages.profile_button)
    [bobs] = window.findChildren(ProfileDialog)
    qtbot.waitUntil(lambda: bobs.name.text() == "Bob", timeout=WAIT)


def test_a_message_to_a_member_who_is_offline_says_it_is_held_for_delivery(
    demo_with_processes: tuple[MainWindow, dict[str, tuple[Path, str]], Processes],
    qtbot: QtBot,
) -> None:
    """Dan's node stops. You writes to him: the app says, in words, that the message
    is held for delivery (by members You shares a community with, sealed for Dan)."""
    window, _peers, processes = demo_with_processes
    profile = _profile_from_members(window, qtbot, "Dan")

    def connected() -> set[str]:
        return {p["name"] for p in ask(window.bridge, qtbot, "peers")["connected"]}

    qtbot.waitUntil(lambda: connected() == {"Bob", "Cat", "Dan"}, timeout=30_000)
    processes["Dan"].terminate()
    processes["Dan"].wait(timeout=15)
    qtbot.waitUntil(lambda: "Dan" not in connected(), timeout=30_000)
    messages = profile.open_conversation()
    assert isinstance(messages, MessagesWindow)
    messages.composer.setPlainText("Can you look at our fuse box next week?")
    _click(qtbot, messages.send_button)
    qtbot.waitUntil(lambda: messages.status.text().startswith("Dan is offline"), timeout=60_000)
    assert messages.status.text() == (
        "Dan is offline: held for delivery by 2 members you share a community with, "
        "sealed so only Dan can read it, until Dan's node is online"
    )
    conversation = messages.conversation
    assert conversation is not None
    # Shown at once as waiting (it is kept before it goes out), then as held.

    def held() -> bool:
        return conversation.rowCount() == 1 and "· held for Dan" in conversation.index(0).data()

    qtbot.waitUntil(held, timeout=WAIT)
    assert (
        conversation.index(0)
        .data()
        .endswith(
            " · held for Dan by 2 members you share a community with\n"
            "Can you look at our fuse box next week?"
        )
    )
