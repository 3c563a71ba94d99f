"""The community feed in the desktop app, offscreen, with real nodes behind it: posts,
questions and offers drawn apart, threads with replies and reactions, editing,
deleting and removing, pictures inline (and a damaged one), and opening a community
marking it read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QMessageBox, QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from kithnet.core.envelope import Record
from kithnet.gui import models
from kithnet.gui.app import MainWindow
from kithnet.gui.bridge import Bridge
from kithnet.gui.feed import FeedView, Pictures, ThreadDialog, accent
from kithnet.gui.models import FeedModel, ItemRole, KindRole
from kithnet.gui.people import ProfileDialog
from kithnet.localstore.store import Store, now_ms
from kithnet.node import demo
from kithnet.node.control import call
from tests.gui_support import WAIT, DemoApp, ask, unlock_with_dialog
from tests.members import PASSPHRASE, Member
from tests.test_gui import _fill
from tests.test_store_ingest import FAST_KDF


def _community(member: Member) -> str:
    """Ann's own community, with a post, a question and an offer of hers."""
    with Store.open(member.data_dir, PASSPHRASE) as store:
        genesis = store.publish(
            {"kind": "community", "name": "Hackney Neighbours", "visibility": "public"}
        )
        start = now_ms() - 3_600_000
        store.publish_many(
            [
                {
                    "kind": "post",
                    "community": genesis.id,
                    "type": "post",
                    "text": "Street party on Saturday: bring a chair " * 6,
                    "created_at": start,
                },
                {
                    "kind": "post",
                    "community": genesis.id,
                    "type": "question",
                    "text": "Does anybody know a good chimney sweep?",
                    "tags": ["chimney"],
                    "created_at": start + 1,
                },
                {
                    "kind": "post",
                    "community": genesis.id,
                    "type": "offer",
                    "text": "Loft insulation done in a day",
                    "tags": ["insulation", "solar"],
                    "area": "East London",
                    "terms": "free survey",
                    "created_at": start + 2,
                },
            ]
        )
        return genesis.id.hex()


def _window(bridge: Bridge, qtbot: QtBot, posts: int) -> tuple[MainWindow, FeedModel]:
    unlock_with_dialog(bridge, qtbot)
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    qtbot.waitUntil(
        lambda: window.feed is not None and window.feed.rowCount() == posts, timeout=WAIT
    )
    assert window.feed is not None
    return window, window.feed


def _row(feed: FeedModel, text: str) -> dict[str, Any]:
    for i in range(feed.rowCount()):
        row = feed.index(i).data(ItemRole)
        if row["text"].startswith(text):
            return dict(row)
    raise AssertionError(f"no post {text!r} in the feed")


def _height(view: FeedView, row: int, width: int) -> int:
    option = QStyleOptionViewItem()
    view.initViewItemOption(option)
    option.rect.setWidth(width)
    return view.delegate.sizeHint(option, view.model().index(row, 0)).height()


def test_posts_questions_and_offers_are_drawn_apart_and_wrap_at_any_width(
    ann: Member, bridge: Bridge, qtbot: QtBot, qtmodeltester: Any
) -> None:
    _community(ann)
    window, feed = _window(bridge, qtbot, 3)
    view = window.feed_view
    assert [feed.index(i).data(KindRole) for i in range(3)] == ["Offer", "Question", "Post"]
    offer = view.delegate.texts(feed.index(0).data(ItemRole))
    assert offer[0] == "Offer"
    assert offer[1] == "Ann · 1 h ago"
    assert "Area: East London · Terms: free survey" in offer
    assert "#insulation" in offer
    assert "#solar" in offer
    question = view.delegate.texts(feed.index(1).data(ItemRole))
    assert question[0] == "Question"
    assert "#chimney" in question
    assert view.delegate.texts(feed.index(2).data(ItemRole))[0] == "Post"
    palette = view.palette()
    colours = {accent(kind, palette).name() for kind in ("post", "question", "offer")}
    assert len(colours) == 3  # three kinds, three accents
    assert accent("question", palette) == palette.color(QPalette.ColorRole.Highlight)
    # The long post takes more lines, so more height, in a narrow feed than a wide one.
    assert _height(view, 2, 260) > _height(view, 2, 900)
    window.show()
    qtbot.waitExposed(window)
    assert not view.grab().isNull()
    qtmodeltester.check(feed)


def test_a_thread_takes_a_reply_and_a_reaction_given_then_taken_back(
    ann: Member, bridge: Bridge, qtbot: QtBot, qtmodeltester: Any
) -> None:
    _community(ann)
    window, feed = _window(bridge, qtbot, 3)
    view = window.feed_view
    view.setCurrentIndex(feed.index(1))
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
    assert len(view.threads) == 1
    thread: ThreadDialog = view.threads[0]
    qtbot.addWidget(thread)
    qtbot.waitUntil(lambda: thread.model.rowCount() == 1, timeout=WAIT)
    assert thread.model.index(0).data(ItemRole)["text"].startswith("Does anybody know")
    thread.composer.setPlainText("Try Dan on Mare Street")
    qtbot.mouseClick(thread.send, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: thread.model.rowCount() == 2, timeout=WAIT)
    reply = thread.model.index(1).data(ItemRole)
    assert (reply["text"], reply["depth"]) == ("Try Dan on Mare Street", 1)
    assert thread.composer.toPlainText() == ""
    qtbot.waitUntil(lambda: _row(feed, "Does anybody")["replies"] == 1, timeout=WAIT)
    assert "💬 1 reply" in view.delegate.texts(_row(feed, "Does anybody"))
    qtmodeltester.check(thread.model)

    # A reaction, then the same button again takes it back.
    thread.view.setCurrentIndex(thread.model.index(0))
    like = thread.reactions["👍"]
    qtbot.mouseClick(like, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: like.isChecked() and like.text() == "👍 1", timeout=WAIT)
    qtbot.waitUntil(lambda: _row(feed, "Does anybody")["reactions"] == {"👍": 1}, timeout=WAIT)
    assert view.delegate.texts(_row(feed, "Does anybody"))[-1] == "💬 1 reply   👍 1"
    qtbot.mouseClick(like, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    qtbot.waitUntil(lambda: not like.isChecked() and like.text() == "👍", timeout=WAIT)
    qtbot.waitUntil(lambda: _row(feed, "Does anybody")["reactions"] == {}, timeout=WAIT)

    # An empty reply is refused in words.
    qtbot.mouseClick(thread.send, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    assert thread.message.text() == "Write your reply first"


def test_own_posts_are_edited_and_deleted_and_an_owner_removes(
    ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    _community(ann)
    window, feed = _window(bridge, qtbot, 3)
    view = window.feed_view
    mine = _row(feed, "Loft insulation")
    menu = [a.text() for a in view.menu_for(mine, view).actions()]
    assert menu == ["Open thread", "Show profile", "Edit…", "Delete…", "Remove…"]
    with qtbot.waitSignal(view.profile_requested, timeout=WAIT) as asked:
        next(a for a in view.menu_for(mine, view).actions() if a.text() == "Show profile").trigger()
    assert asked.args == [ann.public_key.hex()]
    [profile] = window.findChildren(ProfileDialog)  # the main window opens it
    assert profile.isVisible()
    assert profile.member == ann.public_key.hex()
    profile.close()

    edit = view.edit_post(mine)
    edit.setTextValue("Loft and cavity wall insulation, done in a day")
    edit.accept()
    qtbot.waitUntil(lambda: _row(feed, "Loft and cavity")["edited"], timeout=WAIT)
    texts = view.delegate.texts(_row(feed, "Loft and cavity"))
    assert texts[1].endswith("(edited)")
    assert "Loft and cavity wall insulation, done in a day" in texts

    empty = view.edit_post(mine)
    empty.setTextValue("  ")
    with qtbot.waitSignal(view.message, timeout=WAIT) as said:
        empty.accept()
    assert said.args == ["A post needs some text: nothing was changed"]

    thread = view.open_thread(_row(feed, "Does anybody"))
    qtbot.addWidget(thread)
    qtbot.waitUntil(lambda: thread.model.rowCount() == 1, timeout=WAIT)
    box = view.delete_post(_row(feed, "Does anybody"))
    box.done(QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: feed.rowCount() == 2, timeout=WAIT)
    assert all(not r["text"].startswith("Does anybody") for r in feed.rows)
    # Its open thread says so, and takes no more replies.
    qtbot.waitUntil(
        lambda: thread.message.text() == "That post was deleted or removed",
        timeout=WAIT,
    )
    assert not thread.send.isEnabled()

    remove = view.remove_post(_row(feed, "Street party"))
    remove.setTextValue("off topic")
    remove.accept()
    qtbot.waitUntil(lambda: feed.rowCount() == 1, timeout=WAIT)
    log = ask(bridge, qtbot, "community.log", community="Hackney Neighbours")
    assert "off topic" in str(log)


def test_a_post_deleted_elsewhere_leaves_the_feed_when_it_refreshes(
    ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    _community(ann)
    _, feed = _window(bridge, qtbot, 3)
    gone = _row(feed, "Street party")["id"]
    ask(bridge, qtbot, "delete", record=gone)  # as from the command line
    feed.refresh()
    qtbot.waitUntil(lambda: feed.rowCount() == 2, timeout=WAIT)
    assert gone not in {r["id"] for r in feed.rows}


def _joined_with_posts_by_bob(ann: Member, tmp_path: Path, posts: int) -> None:
    """Bob's community, which Ann has joined, with `posts` posts by Bob Ann holds but
    has not read."""
    with (
        Store.create(tmp_path / "bob", PASSPHRASE, name="Bob", kdf=FAST_KDF) as bob,
        Store.open(ann.data_dir, PASSPHRASE) as you,
    ):
        genesis = bob.publish({"kind": "community", "name": "Busy", "visibility": "public"})
        demo.admit(bob, you, genesis)
        made = bob.publish_many(
            [
                {"kind": "post", "community": genesis.id, "type": "post", "text": f"News {i}"}
                for i in range(posts)
            ]
        )
        records = [r for r in made if isinstance(r, Record)]
        assert len(records) == posts, made
        you.ingest([r.envelope for r in records])


def test_opening_a_community_marks_it_read(
    ann: Member, bridge: Bridge, tmp_path: Path, qtbot: QtBot
) -> None:
    _joined_with_posts_by_bob(ann, tmp_path, 4)
    unlock_with_dialog(bridge, qtbot)
    [busy] = ask(bridge, qtbot, "community.list")
    assert busy["unread"] == 4
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.feed is not None and window.feed.rowCount() == 4, timeout=WAIT)
    qtbot.waitUntil(lambda: window.communities.index(0).data() == "Busy", timeout=WAIT)
    [busy] = ask(bridge, qtbot, "community.list")
    assert busy["unread"] == 0
    failures: dict[int, str] = {}
    bridge.failed.connect(lambda number, message: failures.__setitem__(number, message))
    request = bridge.call("community.read", community="Nowhere")
    qtbot.waitUntil(lambda: request in failures, timeout=WAIT)
    assert failures[request].startswith("you are in no community called 'Nowhere'")


def _picture(path: Path, size: QSize, colour: str) -> Path:
    image = QImage(size, QImage.Format.Format_RGB32)
    image.fill(QColor(colour))
    assert image.save(str(path))
    return path


def test_a_peers_picture_shows_as_a_thumbnail_and_a_damaged_one_as_a_placeholder(
    demo_app: DemoApp, tmp_path: Path, qtbot: QtBot
) -> None:
    window, peers = demo_app
    bridge = window.bridge
    qtbot.waitUntil(lambda: len(ask(bridge, qtbot, "peers")["connected"]) == 3, timeout=30_000)
    bob = peers["Bob"][0]
    me = ask(bridge, qtbot, "status")["peer_id"]

    def bob_sends_to_me() -> bool:  # connected is not yet subscribed to the community
        seen = call(bob, "peers", {})["connected"]
        return any(p["peer_id"] == me and "Hackney Neighbours" in p["communities"] for p in seen)

    qtbot.waitUntil(bob_sends_to_me, timeout=30_000)
    photo = _picture(tmp_path / "bench.png", QSize(400, 300), "#3a7d44")
    damaged = tmp_path / "broken.png"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not a picture" * 20)
    call(
        bob,
        "post",
        {
            "community": "Hackney Neighbours",
            "text": "The mended bench",
            "attachments": [str(photo)],
        },
    )
    call(
        bob,
        "post",
        {"community": "Hackney Neighbours", "text": "Bad scan", "attachments": [str(damaged)]},
    )
    feed = window.feed
    assert feed is not None

    def shown() -> bool:
        texts = {r["text"] for r in feed.rows}
        return {"The mended bench", "Bad scan"} <= texts

    # Gossip brings them at once; were a message lost, the minutely catch-up would.
    qtbot.waitUntil(shown, timeout=90_000)
    pictures: Pictures = window.feed_view.pictures
    bench = _row(feed, "The mended bench")["id"]
    broken = _row(feed, "Bad scan")["id"]
    assert pictures.thumbnail(bench, 1) is None  # asked for: a placeholder meanwhile
    qtbot.waitUntil(lambda: pictures.thumbnail(bench, 1) is not None, timeout=30_000)
    thumb = pictures.thumbnail(bench, 1)
    assert thumb is not None
    assert not thumb.isNull()
    assert (thumb.width(), thumb.height()) == (160, 120)  # 400 x 300 fitted to 240 x 120
    pictures.state(broken, 1)
    qtbot.waitUntil(lambda: pictures.state(broken, 1) != Pictures.LOADING, timeout=30_000)
    assert pictures.state(broken, 1).startswith("This picture cannot be shown")
    assert pictures.thumbnail(broken, 1) is None
    window.show()
    qtbot.waitExposed(window)
    assert not window.feed_view.grab().isNull()  # drawing both is no crash

    # The thread shows the picture at full size.
    thread = window.feed_view.open_thread(_row(feed, "The mended bench"))
    qtbot.addWidget(thread)
    qtbot.waitUntil(lambda: thread.model.rowCount() == 1, timeout=WAIT)

    def full() -> bool:
        labels = thread.picture_labels()
        return len(labels) == 1 and not labels[0].pixmap().isNull()

    qtbot.waitUntil(full, timeout=WAIT)
    assert thread.picture_labels()[0].pixmap().size() == QSize(400, 300)
    bad = window.feed_view.open_thread(_row(feed, "Bad scan"))
    qtbot.addWidget(bad)
    qtbot.waitUntil(lambda: len(bad.picture_labels()) == 1, timeout=WAIT)
    assert bad.picture_labels()[0].text().startswith("This picture cannot be shown")


def test_a_picture_s_bytes_come_from_the_node_and_a_big_one_says_so(
    ann: Member, bridge: Bridge, tmp_path: Path, qtbot: QtBot
) -> None:
    _community(ann)
    window, feed = _window(bridge, qtbot, 3)
    photo = _picture(tmp_path / "hedge.png", QSize(300, 200), "#806040")
    posted = ask(
        bridge,
        qtbot,
        "post",
        community="Hackney Neighbours",
        text="The hedge, trimmed",
        attachments=[str(photo)],
    )
    data = ask(bridge, qtbot, "attachment.data", post=posted["id"])
    assert (data["state"], data["data"]) == ("here", photo.read_bytes())
    small = ask(bridge, qtbot, "attachment.data", post=posted["id"], max_size=100)
    assert (small["state"], small["data"]) == ("too big to show", None)
    feed.refresh()
    qtbot.waitUntil(lambda: feed.rowCount() == 4, timeout=WAIT)
    pictures = window.feed_view.pictures
    qtbot.waitUntil(lambda: pictures.thumbnail(posted["id"], 1) is not None, timeout=WAIT)
    thumb = pictures.thumbnail(posted["id"], 1)
    assert thumb is not None
    assert thumb.size() == QSize(180, 120)
    # Typing Delete on one's own post asks to be sure first.
    view = window.feed_view
    view.setCurrentIndex(feed.index(0))
    qtbot.keyClick(view, Qt.Key.Key_Delete)  # type: ignore[no-untyped-call]
    boxes = [w for w in view.window().findChildren(QMessageBox) if w.isVisible()]
    assert [b.text() for b in boxes] == ["Delete this post? Members' apps will hide it too."]
    boxes[0].done(QMessageBox.StandardButton.No)
    assert feed.rowCount() == 4


def test_the_feed_holds_a_window_of_posts_and_fetches_back_the_newer_ones(
    ann: Member, bridge: Bridge, qtbot: QtBot, qtmodeltester: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scrolling far drops the newest posts from the model (a tree view lays out all
    it holds), and scrolling back to the top fetches them again, in order."""
    monkeypatch.setattr(models, "WINDOW", 120)
    community = _fill(ann, 300)
    window, _ = _window(bridge, qtbot, 50)
    feed = FeedModel(bridge, community)  # without a view, to move it step by step

    def fetched(more: Callable[[], None]) -> None:
        more()
        qtbot.waitUntil(lambda: not feed._loading, timeout=WAIT)

    fetched(feed.fetchMore)
    assert feed.rowCount() == 50
    fetched(feed.fetchMore)
    assert feed.rowCount() == 100
    fetched(feed.fetchMore)  # 150 posts would overflow the window: the newest 30 go
    assert feed.rowCount() == 120
    assert (feed.rows[0]["text"], feed.rows[-1]["text"]) == ("Post number 269", "Post number 150")
    assert feed.has_newer()
    fetched(feed.fetch_newer)
    assert feed.rowCount() == 120
    assert [r["text"] for r in feed.rows[:2]] == ["Post number 299", "Post number 298"]
    assert feed.rows[-1]["text"] == "Post number 180"
    assert not feed.has_newer()
    fetched(feed.fetchMore)  # older again after the window moved back up
    assert (feed.rows[0]["text"], feed.rows[-1]["text"]) == ("Post number 249", "Post number 130")
    qtmodeltester.check(feed)  # (it fetches more itself)

    # In the app, scrolling down and back to the top does the same by itself.
    view = window.feed_view
    shown = window.feed
    assert shown is not None
    window.show()
    qtbot.waitExposed(window)
    for _ in range(6):
        view.scrollToBottom()
        qtbot.waitUntil(lambda: not shown._loading, timeout=WAIT)
    assert shown.has_newer()
    assert shown.rows[0]["text"] != "Post number 299"
    view.scrollToTop()
    qtbot.waitUntil(lambda: shown.rows[0]["text"] == "Post number 299", timeout=WAIT)
