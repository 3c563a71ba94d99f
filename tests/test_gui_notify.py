"""Full-text search and notifications in the desktop app (issue 6), offscreen, on the
demo: You's app with Bob, Cat and Dan running as real `kithnet serve` nodes, each
acting from their own node through its control socket."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytestqt.qtbot import QtBot

from kithnet.gui.bridge import Bridge
from kithnet.gui.models import ItemRole
from kithnet.gui.notify import CHOOSE_HINT, SEARCH_PAGE, Notifier, SearchDialog
from kithnet.gui.people import MessagesWindow, ProfileDialog
from kithnet.node import demo
from kithnet.node.control import ControlError, call
from kithnet.node.notice_commands import snippet
from tests.gui_support import LISTEN, WAIT, DemoApp, ask

SLOW = 60_000  # ms: a record travelling between real nodes on a loaded machine


def _knows(data_dir: Path, record: str) -> bool:
    """Whether the node serving `data_dir` holds the post `record`."""
    try:
        call(data_dir, "thread", {"post": record})
    except ControlError:
        return False
    return True


def _holds(bridge: Bridge, qtbot: QtBot, record: str) -> bool:
    """Whether You's node holds the post `record` (asked through the app's bridge)."""
    outcome: dict[int, bool] = {}

    def answered(number: int, _result: object) -> None:
        outcome[number] = True

    def failed(number: int, _message: str) -> None:
        outcome[number] = False

    bridge.answered.connect(answered)
    bridge.failed.connect(failed)
    try:
        request = bridge.call("thread", post=record)
        qtbot.waitUntil(lambda: request in outcome, timeout=WAIT)
    finally:
        bridge.answered.disconnect(answered)
        bridge.failed.disconnect(failed)
    return outcome[request]


def _items(notifier: Notifier) -> list[dict[str, Any]]:
    return list(notifier.model.rows)


def _find(notifier: Notifier, kind: str, text: str) -> dict[str, Any] | None:
    return next((i for i in _items(notifier) if i["kind"] == kind and text in i["text"]), None)


def test_replies_messages_references_and_referrals_are_notified_once(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    """Bob replies to You's post, messages You, Cat vouches for You and Bob answers
    You's question: each is notified once, in the in-app list (offscreen has no tray)
    and by the notifier's signal, and choosing one opens what it is about. You's own
    posts and a muted member's reply are not notified; after a restart the old ones
    are not told again, and what arrived meanwhile is."""
    window, peers = demo_app
    bridge = window.bridge
    notifier = window.notifications.notifier
    bob, cat, dan = (peers[name][0] for name in ("Bob", "Cat", "Dan"))
    me = ask(bridge, qtbot, "references", member="You")["member"]
    qtbot.waitUntil(lambda: notifier.cursor is not None, timeout=WAIT)  # the first look
    heard: list[dict[str, Any]] = []
    notifier.notified.connect(heard.append)

    # You posts: nothing to tell You about. Bob replies from his node.
    mine = ask(
        bridge, qtbot, "post", community="Hackney Neighbours", text="Who has a ladder to lend?"
    )["id"]
    qtbot.waitUntil(lambda: _knows(bob, mine) and _knows(dan, mine), timeout=SLOW)
    # Dan, whom You muted, replies first: his reply reaches You's node, untold.
    ask(bridge, qtbot, "mute", member="Dan")
    dans = call(
        dan,
        "post",
        {"community": "Hackney Neighbours", "text": "Mine is broken", "reply_to": mine},
    )["id"]
    qtbot.waitUntil(lambda: _holds(bridge, qtbot, dans), timeout=SLOW)
    with qtbot.waitSignal(
        notifier.notified,
        timeout=SLOW,
        check_params_cb=lambda item: item["kind"] == "reply",
    ):
        call(
            bob,
            "post",
            {
                "community": "Hackney Neighbours",
                "text": "Borrow mine, it's in the shed",
                "reply_to": mine,
            },
        )
    reply = _find(notifier, "reply", "Borrow mine")
    assert reply is not None
    assert reply["title"] == "Bob replied to your post in Hackney Neighbours"
    assert reply["about"] == mine
    assert reply["thread"] == mine

    # A direct message from Bob.
    call(bob, "dm", {"member": me, "text": "Coming to the street party?"})
    qtbot.waitUntil(lambda: _find(notifier, "message", "street party") is not None, timeout=SLOW)
    message = _find(notifier, "message", "street party")
    assert message is not None
    assert message["title"] == "Message from Bob"

    # Cat, who shares Hackney Neighbours with You, vouches for You.
    call(
        cat,
        "vouch",
        {
            "member": me,
            "skill": "cooking",
            "text": "Brings the best dish to every party",
            "community": "Hackney Neighbours",
        },
    )
    qtbot.waitUntil(lambda: _find(notifier, "reference", "best dish") is not None, timeout=SLOW)
    reference = _find(notifier, "reference", "best dish")
    assert reference is not None
    assert reference["title"] == "Cat vouched for you (cooking)"

    # You asks a question; Bob refers it to Dan.
    question = ask(
        bridge,
        qtbot,
        "ask",
        text="Does anybody know a window cleaner?",
        skills=["cleaning"],
        community="Hackney Neighbours",
    )["question"]
    qtbot.waitUntil(lambda: _knows(bob, question), timeout=SLOW)
    call(bob, "refer", {"question": question, "member": "Dan", "note": "He cleans mine"})
    qtbot.waitUntil(lambda: _find(notifier, "referral", "He cleans mine") is not None, timeout=SLOW)
    referral = _find(notifier, "referral", "He cleans mine")
    assert referral is not None
    assert referral["title"] == "Bob answered your question in Hackney Neighbours"
    assert referral["text"] == "They point you to Dan: He cleans mine"

    # Each once; none of You's own doing, none of Dan's (muted).
    told = _items(notifier)
    assert sorted(i["id"] for i in heard) == sorted(i["id"] for i in told)
    assert len({i["id"] for i in told}) == len(told)
    assert all(i["who"] != me for i in told)
    assert all(i["id"] not in (mine, question, dans) for i in told)
    assert not any(i["who_name"] == "Dan" for i in told)
    assert notifier.tray is None  # offscreen: no system tray, the list holds them all
    assert window.notifications.bell.text() == f"Notifications ({len(told)})"
    qtmodeltester.check(notifier.model)

    # The list shows them newest first; choosing one opens what it is about.
    dock = window.notifications.dock
    window.notifications.toggle()
    assert not dock.isHidden()
    assert notifier.model.index(0).data().startswith("● Bob answered your question in Hackney")
    # Under a list that has notifications, the hint says how to open one.
    assert dock.message.text() == CHOOSE_HINT
    row = next(r for r in range(notifier.model.rowCount()) if told[r]["kind"] == "reply")
    with qtbot.waitSignal(notifier.post_chosen, timeout=WAIT) as chosen:
        dock.view.activated.emit(notifier.model.index(row))
    assert chosen.args == [reply["community"], reply["id"]]
    # The main window shows the post replied to in its community's feed.
    view = window.feed_view
    qtbot.waitUntil(
        lambda: view.currentIndex().isValid() and view.currentIndex().data(ItemRole)["id"] == mine,
        timeout=WAIT,
    )
    row = next(r for r in range(notifier.model.rowCount()) if told[r]["kind"] == "message")
    with qtbot.waitSignal(notifier.conversation_requested, timeout=WAIT) as chosen:
        dock.view.activated.emit(notifier.model.index(row))
    assert chosen.args == [message["who"]]
    [conversation] = window.findChildren(MessagesWindow)  # the main window opens it
    assert conversation.isVisible()
    conversation.close()
    row = next(r for r in range(notifier.model.rowCount()) if told[r]["kind"] == "reference")
    with qtbot.waitSignal(notifier.profile_requested, timeout=WAIT) as chosen:
        dock.view.activated.emit(notifier.model.index(row))
    assert chosen.args == [me]
    window.notifications.toggle()  # closing the list marks them seen
    assert window.notifications.bell.text() == "Notifications"
    assert not notifier.model.index(0).data().startswith("●")

    # Restart: You's node stops; Bob replies meanwhile; the app opens again on the
    # same data and tells only what is new.
    bridge.stop()
    call(
        bob,
        "post",
        {"community": "Hackney Neighbours", "text": "Still want the ladder?", "reply_to": mine},
    )
    again = Bridge(bridge.data_dir, LISTEN)
    try:
        with qtbot.waitSignal(again.unlocked, timeout=30_000):
            again.unlock(demo.DEMO_PASSPHRASE)
        later = Notifier(again)
        heard_later: list[dict[str, Any]] = []
        later.notified.connect(heard_later.append)
        qtbot.waitUntil(lambda: _find(later, "reply", "Still want") is not None, timeout=SLOW)
        # The node remembers how far it told: one more look tells nothing.
        assert ask(again, qtbot, "notifications", save=False)["items"] == []
        # A cursor that is not one is refused in words.
        with qtbot.waitSignal(again.failed, timeout=WAIT) as refused:
            again.call("notifications", after={"seq": "yesterday"})
        assert refused.args[1] == (
            "a notifications cursor is what `notifications` answered as `cursor`"
        )
        old = {i["id"] for i in told}
        assert [i["text"] for i in heard_later] == ["Still want the ladder?"]
        assert not old & {i["id"] for i in _items(later)}
        qtmodeltester.check(later.model)
    finally:
        again.stop()


def test_search_finds_posts_and_people_as_the_member_types(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    """Typing in the search dialog finds a demo post by a word in it and Cat by her
    skill; anything typed (quotes, AND, brackets, a minus) is searched for as words,
    never a syntax error; choosing a post shows it in the feed, choosing a person asks
    for their profile."""
    window, _peers = demo_app
    dialog = window.open_search()
    assert isinstance(dialog, SearchDialog)
    assert dialog.only_here.text() == "Only in Hackney Neighbours"
    assert window.open_search() is dialog  # Ctrl+F again brings the same one forward
    qtbot.keyClicks(dialog.text, "chimney")  # type: ignore[no-untyped-call]
    chimney = "Does anybody know a good chimney sweep?"
    qtbot.waitUntil(lambda: chimney in _texts(dialog), timeout=WAIT)
    row = _texts(dialog).index(chimney)
    found = dialog.posts.index(row).data(ItemRole)
    assert (found["author_name"], found["community_name"], found["kind"]) == (
        "Bob",
        "Hackney Neighbours",
        "question",
    )
    assert dialog.posts.index(row).data().startswith("Bob in Hackney Neighbours (")
    assert dialog.posts.index(row).data().endswith(f"\nQuestion: {chimney}")
    counts = re.compile(r"\d+\+? posts?, \d+ (person|people)")
    qtbot.waitUntil(lambda: counts.fullmatch(dialog.message.text()) is not None, timeout=WAIT)
    qtmodeltester.check(dialog.posts)

    # People: Cat by her skill. Her offers in a community You is not in stay out.
    dialog.text.clear()
    qtbot.keyClicks(dialog.text, "insulation")  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: "Cat" in _names(dialog), timeout=WAIT)
    row = _names(dialog).index("Cat")
    cat = dialog.people.index(row).data(ItemRole)
    assert "insulation" in cat["skills"]
    assert dialog.people.index(row).data() == "Cat\ninsulation, solar"
    grant = "Loft insulation grant deadline is the end of the month"
    qtbot.waitUntil(lambda: grant in _texts(dialog), timeout=WAIT)
    texts = _texts(dialog)
    assert "Loft insulation grant deadline is the end of the month" in texts
    assert not any("East London" in t for t in texts)  # Cat's offer to the installers
    qtmodeltester.check(dialog.people)
    with qtbot.waitSignal(dialog.profile_requested, timeout=WAIT) as asked:
        dialog.people_list.activated.emit(dialog.people.index(row))
    assert asked.args == [cat["member"]]
    [profile] = window.findChildren(ProfileDialog)  # the main window opens it
    assert profile.isVisible()
    assert profile.member == cat["member"]

    # What a member types is searched for as words, whatever its signs.
    for typed, expected in (
        ('"loft', "Has anyone had their loft boarded? Worth it?"),
        ("-loft* boarded)", "Has anyone had their loft boarded? Worth it?"),
        ('"loft AND (', None),
        ("NEAR(loft, 2) OR", None),
        ('"""', None),
    ):
        dialog.text.setText(typed)
        dialog.run()
        qtbot.waitUntil(lambda: not dialog.message.text().startswith("Searching"), timeout=WAIT)
        assert dialog.posts.error == ""
        assert dialog.people.error == ""
        if expected is not None:
            assert expected in _texts(dialog), typed
        else:
            assert dialog.message.text().startswith(("Nothing found", "Type to search")), typed
    result = ask(window.bridge, qtbot, "search", text='"loft AND (')
    assert result == {"text": '"loft AND (', "posts": [], "people": []}

    # Many matches come a page at a time, as the list scrolls.
    for number in range(SEARCH_PAGE + 5):
        ask(
            window.bridge, qtbot, "post", community="Hackney Neighbours", text=f"Lawnmower {number}"
        )
    dialog.text.setText("lawnmower")
    first_page = f"{SEARCH_PAGE}+ posts, 0 people"  # both halves of the answer are in
    qtbot.waitUntil(lambda: dialog.message.text() == first_page, timeout=WAIT)
    assert dialog.posts.rowCount() == SEARCH_PAGE
    assert dialog.posts.canFetchMore()
    dialog.posts.fetchMore()
    qtbot.waitUntil(lambda: dialog.posts.rowCount() == SEARCH_PAGE + 5, timeout=WAIT)
    qtbot.waitUntil(lambda: not dialog.posts.canFetchMore(), timeout=WAIT)
    assert sorted(_texts(dialog)) == sorted(f"Lawnmower {n}" for n in range(SEARCH_PAGE + 5))
    qtmodeltester.check(dialog.posts)

    # Only the open community; then choosing a post shows it in the main window.
    dialog.text.setText("street party")
    dialog.only_here.setChecked(True)
    street = "Street party on Saturday: bring a chair and a dish"
    qtbot.waitUntil(lambda: street in _texts(dialog), timeout=WAIT)
    row = _texts(dialog).index(street)
    party = dialog.posts.index(row).data(ItemRole)
    assert {
        dialog.posts.index(r).data(ItemRole)["community_name"] for r in range(len(_texts(dialog)))
    } == {"Hackney Neighbours"}
    with qtbot.waitSignal(dialog.post_chosen, timeout=WAIT) as chosen:
        dialog.post_list.activated.emit(dialog.posts.index(row))
    assert chosen.args == [party["community"], party["id"]]
    view = window.feed_view
    qtbot.waitUntil(
        lambda: (
            view.currentIndex().isValid()
            and view.currentIndex().data(ItemRole)["id"] == party["id"]
        ),
        timeout=WAIT,
    )
    # A mistaken community is said in words.
    dialog.community = ("not-a-community", "Nowhere")
    dialog.text.setText("party")
    dialog.run()
    qtbot.waitUntil(
        lambda: dialog.message.text().startswith("you are in no community"), timeout=WAIT
    )
    assert dialog.posts.rowCount() == 0


def _texts(dialog: SearchDialog) -> list[str]:
    return [dialog.posts.index(r).data(ItemRole)["text"] for r in range(dialog.posts.rowCount())]


def _names(dialog: SearchDialog) -> list[str]:
    return [dialog.people.index(r).data(ItemRole)["name"] for r in range(dialog.people.rowCount())]


def test_a_long_post_is_shown_cut_around_the_word_found() -> None:
    """A search result shows the part of a long post where the word is, on one line."""
    text = "Morning all.\n" + "Lots of news this week. " * 20 + "The chimney sweep comes Monday."
    shown = snippet(text, ["chimney"])
    assert "chimney sweep" in shown
    assert shown.startswith("…")
    assert "\n" not in shown
    assert len(shown) <= 162  # the width, and the marks that say it was cut
    assert snippet("Short and sweet", ["sweet"]) == "Short and sweet"
