"""Defects a member would hit in the desktop app, each found in review and shown here
by a test that failed before its fix: requests left unanswered when the node stops, a
main window silently dead after its node stopped, closed dialogs that kept asking the
node, a backup written over the store's own files, raw exception text, and shortcuts
on one key sequence."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import shiboken6
import trio
from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QAction, QShortcut
from PySide6.QtWidgets import QAbstractButton, QWidget
from pytestqt.qtbot import QtBot

from kithnet.crypto.kdf import KdfParams
from kithnet.gui.app import AskDialog, FirstRunDialog, MainWindow
from kithnet.gui.bridge import Bridge
from kithnet.gui.community import (
    DirectoryDialog,
    InviteDialog,
    JoinDialog,
    ModerationDialog,
    NewCommunityDialog,
)
from kithnet.gui.panels import SettingsDialog
from kithnet.gui.people import VouchDialog
from kithnet.localstore.backup import write_backup
from kithnet.localstore.store import Store
from kithnet.node.notice_commands import NoticeCommands
from tests import histories
from tests.gui_support import LISTEN, WAIT, ask
from tests.histories import CAROL, DAVE
from tests.members import PASSPHRASE, Member
from tests.strategies import NOW_MS
from tests.test_gui_app import unnamed_controls
from tests.test_store_ingest import FAST_KDF


@pytest.fixture
def ann(tmp_path: Path) -> Iterator[Member]:
    """Ann's data, with a community of a few posts."""
    member = Member(tmp_path, "Ann")
    with Store.open(member.data_dir, PASSPHRASE) as store:
        genesis = store.publish({"kind": "community", "name": "Allotments", "visibility": "public"})
        store.publish_many(
            [
                {"kind": "post", "community": genesis.id, "type": "post", "text": f"Plot {i}"}
                for i in range(3)
            ]
        )
    yield member
    member.kill()


@pytest.fixture
def bridge(ann: Member, qtbot: QtBot) -> Iterator[Bridge]:
    made = Bridge(ann.data_dir, LISTEN)
    with qtbot.waitSignal(made.unlocked, timeout=30_000):
        made.unlock(PASSPHRASE)
    yield made
    made.stop()


@pytest.fixture
def window(bridge: Bridge, qtbot: QtBot) -> MainWindow:
    made = MainWindow(bridge)
    qtbot.addWidget(made)
    made.show()
    qtbot.waitUntil(lambda: made.communities.rowCount() == 1, timeout=WAIT)
    return made


# The node stopping -----------------------------------------------------------------------


def test_a_request_in_flight_when_the_node_stops_is_answered_with_a_failure(
    bridge: Bridge, qtbot: QtBot
) -> None:
    """A screen waiting for an answer (its button disabled) hears that the node
    stopped, instead of waiting for ever."""
    token, scope = bridge._token, bridge._cancel
    assert token is not None
    assert scope is not None
    sent: list[int] = []
    with qtbot.waitSignal(
        bridge.failed, timeout=WAIT, check_params_cb=lambda number, _: number in sent
    ) as failed:
        token.run_sync_soon(scope.cancel)  # the node is ending (as when it fails)...
        # ...and the passphrase check, started meanwhile, is cancelled at its first step.
        sent.append(bridge.call("passwd", current=PASSPHRASE, new="another passphrase"))
    assert "stop" in failed.args[1]


def test_the_main_window_says_so_when_its_node_stops_on_its_own(
    bridge: Bridge, window: MainWindow, qtbot: QtBot
) -> None:
    """A node that ends without being asked (it failed) leaves a window that says so
    and stops offering to post, not one that silently does nothing."""
    token, scope = bridge._token, bridge._cancel
    assert token is not None
    assert scope is not None
    with qtbot.waitSignal(bridge.stopped, timeout=WAIT):
        token.run_sync_soon(scope.cancel)  # the node ends, as when it fails
    qtbot.waitUntil(lambda: window.stopped_box is not None, timeout=WAIT)
    assert window.stopped_box is not None
    assert window.stopped_box.isVisible()
    assert "stopped unexpectedly" in window.stopped_box.text()
    assert "open it again" in window.stopped_box.text()
    assert not window.send.isEnabled()
    assert "open it again" in window.statusBar().currentMessage()


def test_quitting_the_app_shows_no_warning(
    bridge: Bridge, window: MainWindow, qtbot: QtBot
) -> None:
    with qtbot.waitSignal(bridge.stopped, timeout=WAIT) as stopped:
        bridge.stop()
    assert stopped.args == [""]
    assert window.stopped_box is None


def test_an_unexpected_failure_in_the_node_is_told_in_words_not_as_python_text(
    bridge: Bridge, qtbot: QtBot
) -> None:
    sent: list[int] = []
    with qtbot.waitSignal(
        bridge.failed, timeout=WAIT, check_params_cb=lambda number, _: number in sent
    ) as failed:
        sent.append(bridge.call("profile", member=123))  # a bug's AttributeError, say
    message = failed.args[1]
    assert "object has no attribute" not in message
    assert message.startswith("Kithnet's node could not do that")
    assert "try again" in message


# Closed windows --------------------------------------------------------------------------


def test_a_closed_ask_window_stops_asking_the_node_for_referrals(
    bridge: Bridge, window: MainWindow, qtbot: QtBot
) -> None:
    dialog = window.open_ask()
    dialog.text.setText("Does anybody know a good plumber?")
    dialog.skills.setText("plumbing")
    with qtbot.waitSignal(bridge.answered, timeout=WAIT):
        dialog.ask_button.click()
    qtbot.waitUntil(lambda: dialog.question is not None, timeout=WAIT)
    dialog.close()
    # Gone once closed: it no longer asks for referrals on every arrival.
    qtbot.waitUntil(lambda: not shiboken6.isValid(dialog), timeout=WAIT)
    assert window.findChildren(AskDialog) == []


def test_closed_community_windows_do_not_pile_up(window: MainWindow, qtbot: QtBot) -> None:
    """Each opening made a new window that, closed, stayed hidden behind the main one,
    still taking in every answer of the node."""
    kinds = (InviteDialog, DirectoryDialog, NewCommunityDialog, JoinDialog, ModerationDialog)
    for _ in range(3):
        opened = [
            window.open_invite(),
            window.open_directory(),
            window.open_new_community(),
            window.open_join(),
            window.open_moderation(),
        ]
        for dialog in opened:
            assert dialog is not None
            dialog.close()
    qtbot.waitUntil(lambda: not any(window.findChildren(kind) for kind in kinds), timeout=WAIT)


def test_a_community_made_then_its_window_closed_at_once_still_opens(
    window: MainWindow, qtbot: QtBot
) -> None:
    made = window.open_new_community()
    made.name.setText("Tool Library")
    made.create_button.click()
    made.close()  # before the node has answered
    qtbot.waitUntil(lambda: window.sidebar.currentIndex().data() == "Tool Library", timeout=WAIT)
    qtbot.waitUntil(lambda: not window.findChildren(NewCommunityDialog), timeout=WAIT)


# Backups ---------------------------------------------------------------------------------


def test_a_backup_is_not_written_over_the_stores_own_files(
    ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    header = ann.data_dir / "kithnet-store.json"
    before = header.read_bytes()
    sent: list[int] = []
    with qtbot.waitSignal(
        bridge.failed, timeout=WAIT, check_params_cb=lambda number, _: number in sent
    ) as failed:
        sent.append(bridge.call("backup", file=str(header), passphrase=PASSPHRASE))
    assert "inside Kithnet's data folder" in failed.args[1]
    assert header.read_bytes() == before
    bridge.stop()
    with Store.open(ann.data_dir, PASSPHRASE) as store:  # the store still opens
        assert store.profile().name == "Ann"


# Keyboard and accessibility --------------------------------------------------------------


def _every_screen(window: MainWindow, qtbot: QtBot) -> list[QWidget]:
    """The main window and every window and dialog its menus open, shown."""
    window.open_network()
    opened: list[QWidget | None] = [
        window.open_ask(),
        window.open_settings(),
        window.open_search(),
        window.open_messages(),
        window.open_profile(""),
        window.open_members(),
        window.open_new_community(),
        window.open_join(),
        window.open_directory(),
        window.open_invite(),
        window.open_moderation(),
    ]
    own = window.open_profile("")
    qtbot.waitUntil(lambda: own.profile is not None, timeout=WAIT)
    opened += [own.open_editor(), VouchDialog(window.bridge, "00" * 32, "Bob", ["plumbing"], own)]
    screens: list[QWidget] = [window]
    for screen in opened:
        assert screen is not None
        screen.show()
        screens.append(screen)
    for shown in screens:
        qtbot.waitExposed(shown, timeout=WAIT)
    return screens


def shortcut_clashes(top: QWidget) -> dict[str, list[str]]:
    """Key sequences that more than one action, shortcut or button of the window `top`
    (its docks included) answers to at once: Qt then fires none of them ("Ambiguous
    shortcut"). A shortcut limited to its own widget (a list's Ctrl+C) clashes with
    nothing."""
    bound: dict[str, list[str]] = {}
    widget_only = Qt.ShortcutContext.WidgetShortcut
    for action in top.findChildren(QAction):
        owner = action.parent()
        mine = isinstance(owner, QWidget) and owner.window() is top
        if mine and action.shortcutContext() != widget_only:
            for sequence in action.shortcuts():
                bound.setdefault(sequence.toString(), []).append(f"menu {action.text()}")
    for shortcut in top.findChildren(QShortcut):
        owner = shortcut.parent()
        mine = isinstance(owner, QWidget) and owner.window() is top
        if mine and shortcut.context() != widget_only and shortcut.isEnabled():
            key = shortcut.key().toString()
            bound.setdefault(key, []).append(f"shortcut on {type(owner).__name__}")
    for button in top.findChildren(QAbstractButton):
        if button.window() is top and not button.shortcut().isEmpty():
            bound.setdefault(button.shortcut().toString(), []).append(f"button {button.text()}")
    return {key: names for key, names in bound.items() if len(names) > 1}


def test_no_two_shortcuts_of_a_window_share_a_key_and_every_control_is_named(
    bridge: Bridge, window: MainWindow, qtbot: QtBot
) -> None:
    screens = _every_screen(window, qtbot)
    clashes = {type(s).__name__: shortcut_clashes(s) for s in screens}
    assert clashes == {type(s).__name__: {} for s in screens}
    unnamed = {type(s).__name__: unnamed_controls(s) for s in screens}
    assert unnamed == {type(s).__name__: [] for s in screens}


def test_the_clash_check_finds_two_actions_on_one_key(window: MainWindow) -> None:
    """The check above can fail: a second action on Ctrl+K (Ask's) is caught."""
    assert shortcut_clashes(window) == {}
    window.add_action("view", "Something else", "Ctrl+K", lambda: None)
    assert shortcut_clashes(window) == {
        "Ctrl+K": ["menu Does anybody know…?", "menu Something else"]
    }


# Notifications ---------------------------------------------------------------------------


class _Notices(NoticeCommands):
    """The node's `notifications` command over a store (it needs nothing else)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def look(self) -> list[str]:
        answer = trio.run(self.notifications)
        return [item["title"] for item in answer["items"]]


def test_a_reply_that_arrives_before_its_authors_join_is_notified_once_it_counts(
    tmp_path: Path,
) -> None:
    """Gossip brings Dave's reply to Carol's question before the record of Dave
    joining: the reply waits (pending), and Carol's node looks for news meanwhile. Once
    Dave's join arrives the reply counts, and Carol hears of it then, once."""
    lofts = histories.Community()
    carol_question = lofts.make(CAROL, kind="post", type="question", text="Who does lofts?")
    dave_join = lofts.join_record(DAVE)
    dave_reply = lofts.make(DAVE, kind="post", type="post", text="Me!", reply_to=carol_question.id)
    with Store.create(
        tmp_path / "carol", "carol's passphrase", identity=CAROL, kdf=FAST_KDF
    ) as store:
        store.ingest(
            [r.envelope for r in lofts.state.records.values()]
            + [lofts.join_record(CAROL).envelope, carol_question.envelope],
            now=NOW_MS,
        )
        notices = _Notices(store)
        assert notices.look() == []  # the first look starts from now
        assert store.ingest([dave_reply.envelope], now=NOW_MS)[0].status == "pending"
        assert notices.look() == []  # not a reply anyone can see yet
        assert notices.look() == []  # nor at the next look
        store.ingest([dave_join.envelope], now=NOW_MS)
        dave = DAVE.public_key.hex()[:12]  # no profile of Dave's has come
        assert notices.look() == [f"{dave} replied to your post in Lofts"]
        assert notices.look() == []  # told once


def test_giving_up_while_unlocking_starts_no_node(ann: Member, qtbot: QtBot) -> None:
    """Closing the unlock dialog while the key is derived stops at once: the node is
    not started behind the member's back (the app used to wait its 30 s out)."""
    slow = Member(ann.data_dir.parent, "Slow")
    with Store.open(slow.data_dir, PASSPHRASE) as store:
        store.change_passphrase(PASSPHRASE, kdf=KdfParams.new(4, 256 * 1024 * 1024))
    bridge = Bridge(slow.data_dir, LISTEN)
    unlocked: list[object] = []
    bridge.unlocked.connect(unlocked.append)
    bridge.unlock(PASSPHRASE)
    bridge.stop(timeout=WAIT / 1000)
    assert bridge._thread is not None
    assert not bridge._thread.is_alive()
    QCoreApplication.processEvents()  # what the finished thread sent is delivered
    assert unlocked == []


def test_a_backup_named_without_a_folder_goes_to_the_home_folder(
    window: MainWindow, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not into whatever folder the app was started from (a desktop launcher's may be
    the root, or the program's own)."""
    home, elsewhere = tmp_path / "home", tmp_path / "started-here"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    dialog = window.open_settings()
    assert isinstance(dialog, SettingsDialog)
    dialog.backup_file.setText("allotments.backup")
    dialog.backup_passphrase.setText(PASSPHRASE)
    dialog.backup_button.click()
    qtbot.waitUntil(dialog.backup_button.isEnabled, timeout=WAIT)
    assert dialog.backup_note.text().startswith(f"Backup written to {home / 'allotments.backup'}")
    assert (home / "allotments.backup").exists()
    assert list(elsewhere.iterdir()) == []


def test_a_burst_of_replies_bigger_than_one_look_is_told_over_the_next_looks(
    tmp_path: Path,
) -> None:
    """Sixty replies while Carol was away: a look tells at most fifty of a kind, and
    the next one the ten left (they used to be passed over for good)."""
    lofts = histories.Community()
    question = lofts.make(CAROL, kind="post", type="question", text="Who does lofts?")
    with Store.create(
        tmp_path / "carol", "carol's passphrase", identity=CAROL, kdf=FAST_KDF
    ) as store:
        store.ingest(
            [r.envelope for r in lofts.state.records.values()]
            + [lofts.join_record(CAROL).envelope, question.envelope],
            now=NOW_MS,
        )
        notices = _Notices(store)
        assert notices.look() == []
        replies = [
            lofts.make(DAVE, kind="post", type="post", text=f"Reply {i}", reply_to=question.id)
            for i in range(60)
        ]
        store.ingest([lofts.join_record(DAVE).envelope] + [r.envelope for r in replies], now=NOW_MS)
        first = trio.run(notices.notifications)
        assert len(first["items"]) == 50
        assert first["more"]
        second = trio.run(notices.notifications)
        assert not second["more"]
        told = [item["id"] for item in first["items"] + second["items"]]
        assert sorted(told) == sorted(r.id.hex() for r in replies)  # each once
        assert notices.look() == []


def test_a_burst_of_messages_within_one_millisecond_is_told_once_each(tmp_path: Path) -> None:
    """Seventy messages, thirty of them taken in at the same millisecond where a look
    stops: the next look tells the rest of that millisecond, and none twice."""
    with Store.create(
        tmp_path / "carol", "carol's passphrase", identity=CAROL, kdf=FAST_KDF
    ) as store:
        notices = _Notices(store)
        assert notices.look() == []
        times = [NOW_MS + i for i in range(40)] + [NOW_MS + 100] * 30
        with store.db:
            store.db.executemany(
                "INSERT INTO messages (id, peer, direction, text, created_at, received_at,"
                " state, envelope) VALUES (?, ?, 'in', ?, ?, ?, 'unread', x'00')",
                [
                    (bytes([i]) * 32, DAVE.public_key, f"Message {i}", at, at)
                    for i, at in enumerate(times)
                ],
            )
        first = trio.run(notices.notifications)
        second = trio.run(notices.notifications)
        assert (len(first["items"]), first["more"]) == (50, True)
        assert (len(second["items"]), second["more"]) == (20, False)
        told = sorted(item["text"] for item in first["items"] + second["items"])
        assert told == sorted(f"Message {i}" for i in range(70))
        assert notices.look() == []


# Cold start ------------------------------------------------------------------------------

GUI_MODULES = ("app", "bridge", "models", "community", "people", "notify", "panels", "palette")


def test_no_screen_of_the_app_loads_the_nodes_code_before_the_first_window() -> None:
    """libp2p takes about 2 s to import: the bridge loads it while the passphrase's key
    is derived. A GUI module importing it (or the node's commands, which do) at import
    time would put that before the unlock dialog shows."""
    probe = (
        "import sys\n"
        f"for name in {GUI_MODULES!r}:\n"
        "    __import__('kithnet.gui.' + name)\n"
        "heavy = ('libp2p', 'kithnet.node.commands', 'kithnet.node.daemon', 'kithnet.p2p')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


# Restoring on first run ------------------------------------------------------------------


def test_first_run_restores_into_the_folder_an_interrupted_start_left_behind(
    ann: Member, tmp_path: Path, qtbot: QtBot
) -> None:
    """The member quit while their first identity was being made (the key derivation
    takes seconds), which leaves the data folder holding Kithnet's lock file and no
    store. Restoring a backup there must work: the first-run window offers no other
    folder, and used to answer only that the folder is not empty."""
    backup = tmp_path / "ann.backup"
    with Store.open(ann.data_dir, PASSPHRASE) as store:
        write_backup(store, backup, PASSPHRASE)
    folder = tmp_path / "new-computer"
    folder.mkdir()
    (folder / "kithnet.lock").write_bytes(b"")  # what the interrupted start left
    bridge = Bridge(folder, LISTEN)
    try:
        dialog = FirstRunDialog(bridge)
        qtbot.addWidget(dialog)
        dialog.kdf = FAST_KDF
        dialog.tabs.setCurrentIndex(1)
        dialog.backup.setText(str(backup))
        dialog.backup_passphrase.setText(PASSPHRASE)
        dialog.restore_button.click()
        qtbot.waitUntil(lambda: dialog.message.text().startswith("Welcome, Ann"), timeout=WAIT)
    finally:
        bridge.stop()
    with Store.open(folder, PASSPHRASE) as restored:
        assert restored.identity.public_key == ann.public_key


def test_restoring_on_first_run_leaves_a_folder_with_someone_elses_files_alone(
    ann: Member, tmp_path: Path, qtbot: QtBot
) -> None:
    backup = tmp_path / "ann.backup"
    with Store.open(ann.data_dir, PASSPHRASE) as store:
        write_backup(store, backup, PASSPHRASE)
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("Dear Ann")
    bridge = Bridge(folder, LISTEN)
    try:
        dialog = FirstRunDialog(bridge)
        qtbot.addWidget(dialog)
        dialog.tabs.setCurrentIndex(1)
        dialog.backup.setText(str(backup))
        dialog.backup_passphrase.setText(PASSPHRASE)
        with qtbot.waitSignal(bridge.unlock_failed, timeout=WAIT):
            dialog.restore_button.click()
    finally:
        bridge.stop()
    assert "is not empty" in dialog.message.text()
    assert sorted(p.name for p in folder.iterdir()) == ["letter.txt"]


# Search ----------------------------------------------------------------------------------


def test_search_fills_its_page_from_the_members_communities(ann: Member, qtbot: QtBot) -> None:
    """Posts of a community the member does not belong to (one they left, or only
    follow) are stored too, and matched best here: they used to take the page's places
    and be dropped after, so the page came back short and the app stopped asking for
    more."""
    other = histories.Community()
    other.join(DAVE)
    with Store.open(ann.data_dir, PASSPHRASE) as store:
        [allotments] = store.communities()
        store.publish_many(
            [
                {
                    "kind": "post",
                    "community": allotments.id,
                    "type": "post",
                    "text": f"Courgette {i} on the plot by the shed, and a few beans too",
                }
                for i in range(10)
            ]
        )
        store.ingest(
            [r.envelope for r in other.state.records.values()]
            + [
                other.make(DAVE, kind="post", type="post", text="courgette courgette").envelope
                for _ in range(30)
            ],
            now=NOW_MS,
        )
    bridge = Bridge(ann.data_dir, LISTEN)
    try:
        with qtbot.waitSignal(bridge.unlocked, timeout=30_000):
            bridge.unlock(PASSPHRASE)
        found = ask(bridge, qtbot, "search", text="courgette", limit=5)
    finally:
        bridge.stop()
    assert len(found["posts"]) == 5
    assert {p["community_name"] for p in found["posts"]} == {"Allotments"}
