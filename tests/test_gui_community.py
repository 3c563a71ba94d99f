"""Communities in the desktop app, offscreen, on the demo's running nodes: making one,
inviting (the code as text, on the clipboard, and as a QR code that scans back), a
peer joining with it and the invite withdrawn; joining with a pasted code, with clear
words for a mistyped, expired, withdrawn or unreachable code; finding a community in
the directory and joining it; and moderation (roles, a ban with its reason in the log,
seen by the banned member's node too), shown only where the member has a role."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import zxingcpp
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QTabWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot

from kithnet.crypto.identity import Identity, peer_id
from kithnet.crypto.invite import InviteCode
from kithnet.gui.app import MainWindow
from kithnet.gui.bridge import Bridge
from kithnet.gui.community import DirectoryDialog, JoinDialog, current, remove_post
from kithnet.gui.models import ItemRole
from kithnet.node.control import call
from kithnet.node.demo import free_port
from tests.gui_support import LISTEN, WAIT, DemoApp, ask

INSTALLERS = "Solar & Insulation Installers"
JOIN_WAIT = 60_000  # ms: a join dials, syncs and waits for members' nodes


def _shown(window: MainWindow) -> str:
    """The name of the community open in the sidebar."""
    row = current(window)
    return "" if row is None else str(row["name"])


def _names(window: MainWindow) -> list[str]:
    return [row["name"] for row in window.communities.rows]


def _unnamed(dialog: QWidget) -> list[str]:
    """The dialog's controls a screen reader could not name."""
    kinds = (QAbstractButton, QLineEdit, QPlainTextEdit, QAbstractSpinBox, QComboBox)
    controls = [*dialog.findChildren(QAbstractItemView), *dialog.findChildren(QTabWidget)]
    for kind in kinds:
        controls += dialog.findChildren(kind)

    def part_of_another(control: QWidget) -> bool:  # a spin box's line edit, a combo's list
        parent = control.parentWidget()
        while parent is not None and parent is not dialog:
            if isinstance(parent, (QAbstractSpinBox, QComboBox)) or parent.isWindow():
                return True
            parent = parent.parentWidget()
        return False

    return [
        f"{type(c).__name__} {getattr(c, 'text', lambda: '')()}"
        for c in controls
        if not c.accessibleName() and not part_of_another(c)
    ]


def _action(window: MainWindow, text: str) -> Any:
    return next(a for a in window.menus["community"].actions() if a.text() == text)


def test_a_new_community_an_invite_as_text_and_qr_code_and_a_peer_joins_with_it(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    window, peers = demo_app
    shortcuts = {
        "New community…": "Ctrl+N",
        "Invite people…": "Ctrl+I",
        "Join with a code…": "Ctrl+J",
        "Find communities…": "Ctrl+Shift+F",
        "Moderation…": "Ctrl+Shift+O",
    }
    for text, keys in shortcuts.items():
        assert _action(window, text).shortcut().toString() == keys
    made = window.open_new_community()
    assert _unnamed(made) == []
    made.create_button.click()
    assert made.message.text() == "Give the community a name."
    assert made.isVisible()
    made.name.setText("Mare Street Allotments")
    made.description.setPlainText("Plots, seeds and tools")
    made.tags.setText("gardening, #hackney")
    made.create_button.click()
    qtbot.waitUntil(lambda: _shown(window) == "Mare Street Allotments", timeout=WAIT)
    assert not made.isVisible()
    mine = current(window)
    assert mine is not None
    assert (mine["tags"], mine["roles"], mine["visibility"]) == (
        ["gardening", "hackney"],
        ["owner"],
        "public",
    )

    invite = window.open_invite()
    assert invite is not None
    assert invite.windowTitle() == "Invite people to Mare Street Allotments"
    assert _unnamed(invite) == []
    assert not invite.copy_button.isEnabled()  # nothing to copy yet
    invite.uses.setValue(2)
    invite.days.setValue(3)
    invite.create_button.click()
    qtbot.waitUntil(lambda: invite.code.toPlainText().startswith("kith1"), timeout=WAIT)
    code = invite.code.toPlainText()
    assert "2 person(s) can join Mare Street Allotments" in invite.message.text()
    invite.copy_button.click()
    assert QGuiApplication.clipboard().text() == code
    # The QR code the member sees scans back to the very same code.
    [scanned] = zxingcpp.read_barcodes(invite.qr.pixmap().toImage())
    assert scanned.text.lower() == code
    # ...and it is shown whole, as the member's phone sees it on the screen.
    qtbot.waitUntil(lambda: invite.qr.height() >= invite.qr.pixmap().height(), timeout=WAIT)
    shown = invite.qr.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    [seen] = zxingcpp.read_barcodes(shown)
    assert seen.text.lower() == code
    qtbot.waitUntil(lambda: invite.invites.rowCount() == 1, timeout=WAIT)
    assert invite.invites.index(0).data().startswith("Open: made by you on ")

    # Dan pastes the code on his own node: he joins, and the invite shows one use.
    joined = call(peers["Dan"][0], "join", {"code": code}, timeout=90)
    assert (joined["status"], joined["name"]) == ("joined", "Mare Street Allotments")
    qtbot.waitUntil(lambda: invite.invites.rows[0]["uses"] == 1, timeout=WAIT)
    assert "used 1 of 2 time(s)" in invite.invites.index(0).data()
    qtmodeltester.check(invite.invites)

    # Withdrawn, the code lets nobody else in.
    invite.list.setCurrentIndex(invite.invites.index(0))
    assert invite.withdraw_button.isEnabled()
    invite.withdraw_button.click()
    qtbot.waitUntil(lambda: invite.invites.rows[0]["state"] == "withdrawn", timeout=WAIT)
    assert invite.invites.index(0).data().startswith("Withdrawn: ")
    assert not invite.withdraw_button.isEnabled()

    private = window.open_new_community()
    private.name.setText("Our Street Committee")
    private.private.setChecked(True)
    private.create_button.click()
    qtbot.waitUntil(lambda: _shown(window) == "Our Street Committee", timeout=WAIT)
    assert window.sidebar.currentIndex().data() == "Our Street Committee 🔒"


def test_joining_with_a_pasted_code_says_what_is_wrong_and_then_opens_the_community(
    demo_app: DemoApp, qtbot: QtBot
) -> None:
    window, peers = demo_app
    cat = peers["Cat"][0]
    dialog = window.open_join()
    assert _unnamed(dialog) == []

    def attempt(code: str) -> str:
        dialog.code.setPlainText(code)
        dialog.join_button.click()
        assert not dialog.join_button.isEnabled()  # one try at a time
        qtbot.waitUntil(dialog.join_button.isEnabled, timeout=JOIN_WAIT)
        assert dialog.isVisible()  # open to try again
        return dialog.message.text()

    dialog.code.setPlainText("  ")
    dialog.join_button.click()
    assert dialog.message.text() == "Paste the invite code first."
    code = call(cat, "invite.create", {"community": INSTALLERS})["code"]
    mistyped = code[:40] + ("a" if code[40] != "a" else "b") + code[41:]
    assert attempt(mistyped).startswith("The invite code was mistyped or cut short")
    # Two lines of words: the dialog grows to show them below the code, not over it.
    message, box = dialog.message, dialog.code
    qtbot.waitUntil(
        lambda: message.height() >= message.heightForWidth(message.width()), timeout=WAIT
    )
    assert message.geometry().top() >= box.geometry().bottom()
    assert attempt("hello, can I join?").startswith("This is not a Kithnet invite code")

    short = call(cat, "invite.create", {"community": INSTALLERS, "expires": "1s"})
    qtbot.waitUntil(lambda: time.time() * 1000 > short["expires_at"] + 50, timeout=WAIT)
    said = attempt(short["code"])
    assert said.startswith(f"This invite to {INSTALLERS!r} expired on ")
    assert "ask the person who invited you" in said

    withdrawn = call(cat, "invite.create", {"community": INSTALLERS})["code"]
    newest = call(cat, "community.invites", {"community": INSTALLERS})["invites"][0]
    call(cat, "community.invites.withdraw", {"community": INSTALLERS, "withdraw": newest["id"]})
    said = attempt(withdrawn)
    assert said.startswith("The community refused this invite: the invite was withdrawn")
    assert said.endswith("Ask the person who invited you for a new code.")

    # A community whose members' nodes cannot be reached: its founder is offline.
    founder = Identity.generate()
    nowhere = InviteCode.create(
        founder,
        os.urandom(32),
        "Nowhere Club",
        [f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{peer_id(founder.public_key)}"],
        int(time.time() * 1000) + 3_600_000,
    ).encode()
    said = attempt(nowhere)
    assert said.startswith("None of the members' nodes named in the invite to 'Nowhere Club'")
    assert "try joining with the same code again later" in said
    assert INSTALLERS not in _names(window)

    dialog.code.setPlainText(code.upper())  # as read off a QR code
    dialog.join_button.click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=JOIN_WAIT)
    qtbot.waitUntil(lambda: _shown(window) == INSTALLERS, timeout=WAIT)
    feed = window.feed
    assert feed is not None
    qtbot.waitUntil(lambda: feed.rowCount() > 0, timeout=WAIT)
    assert feed.community == current(window)["id"]  # type: ignore[index]
    authors = {feed.index(i).data(ItemRole)["author_name"] for i in range(feed.rowCount())}
    assert "Cat" in authors


def test_finding_a_community_in_the_directory_and_joining_it(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    window, peers = demo_app
    call(peers["Cat"][0], "community.announce", {"community": INSTALLERS}, timeout=60)
    assert window.find_button.text() == "Find communities…"
    window.find_button.click()
    [found] = window.findChildren(DirectoryDialog)
    assert found.isVisible()
    assert _unnamed(found) == []

    def listed() -> list[str]:
        return [row["name"] for row in found.listings.rows]

    # Opening it asks the connected nodes once; asking again finds what came since.
    qtbot.waitUntil(found.refresh_button.isEnabled, timeout=WAIT)
    if INSTALLERS not in listed():
        found.refresh_button.click()
        qtbot.waitUntil(lambda: INSTALLERS in listed(), timeout=WAIT)
    row = listed().index(INSTALLERS)
    shown = found.listings.index(row).data()
    assert shown.startswith(f"{INSTALLERS}  (3 members)")
    assert "Tradespeople who insulate and fit solar in East London" in shown
    assert "#insulation #solar" in shown
    qtmodeltester.check(found.listings)

    found.tag.setText("#gardening")
    found.search_button.click()
    qtbot.waitUntil(lambda: found.listings.rowCount() == 0, timeout=WAIT)
    assert found.message.text().startswith("0 of the ")
    found.tag.setText("solar")
    found.text.setText("east london")
    found.search_button.click()
    qtbot.waitUntil(lambda: listed() == [INSTALLERS], timeout=WAIT)

    assert not found.join_button.isEnabled()  # nothing chosen yet
    found.list.setCurrentIndex(found.listings.index(0))
    assert found.join_button.isEnabled()
    found.join_button.click()
    qtbot.waitUntil(lambda: _shown(window) == INSTALLERS, timeout=JOIN_WAIT)
    assert found.message.text() == f"You joined {INSTALLERS}."
    qtbot.waitUntil(lambda: found.listings.rows[0]["joined"], timeout=WAIT)
    assert found.listings.index(0).data().startswith(f"{INSTALLERS}  (3 members)  (you are")
    assert not found.join_button.isEnabled()


def test_owners_grant_roles_and_ban_with_a_reason_the_log_shows_it_and_members_see_it(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    window, peers = demo_app
    dan = peers["Dan"][0]
    moderation = _action(window, "Moderation…")
    qtbot.waitUntil(lambda: _shown(window) == "Hackney Neighbours", timeout=WAIT)
    assert not moderation.isEnabled()  # You has no role in Bob's community
    plain = window.open_moderation()
    assert plain is not None
    assert [plain.tabs.tabText(i) for i in range(plain.tabs.count())] == ["Leave"]
    plain.close()

    made = ask(window.bridge, qtbot, "community.create", name="Repair Café", tags=["repair"])
    code = ask(window.bridge, qtbot, "invite.create", community=made["id"])["code"]
    assert call(dan, "join", {"code": code}, timeout=90)["status"] == "joined"
    window.sidebar.setCurrentIndex(window.communities.index(0))
    window.communities.refresh()
    qtbot.waitUntil(lambda: "Repair Café" in _names(window), timeout=WAIT)
    window.sidebar.setCurrentIndex(window.communities.index(_names(window).index("Repair Café")))
    assert moderation.isEnabled()

    dialog = window.open_moderation()
    assert dialog is not None
    assert [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())] == [
        "Roles",
        "Bans",
        "Moderation log",
        "Leave",
    ]
    assert _unnamed(dialog) == []
    qtbot.waitUntil(lambda: "Dan" in [m["name"] for m in dialog.members.rows], timeout=WAIT)
    qtmodeltester.check(dialog.members)
    dialog.choose("Dan")
    dialog.role.setCurrentText("moderator")
    dialog.grant_button.click()
    qtbot.waitUntil(lambda: dialog.message.text() == "Dan is now a moderator.", timeout=WAIT)
    dan_row = [m["name"] for m in dialog.members.rows].index("Dan")
    assert dialog.members.index(dan_row).data().startswith("Dan  (moderator")
    assert dialog.revoke_button.isEnabled()
    dialog.revoke_button.click()
    qtbot.waitUntil(lambda: dialog.message.text() == "Dan is no longer a moderator.", timeout=WAIT)
    assert dialog.members.rows[dan_row]["roles"] == []
    assert not dialog.revoke_button.isEnabled()  # nothing left to revoke

    # A moderator removes an advert of Dan's (what the feed's context menu does).
    advert = call(dan, "post", {"community": made["id"], "text": "Cheap double glazing!"})
    qtbot.waitUntil(
        lambda: any(
            p["id"] == advert["id"]
            for p in ask(window.bridge, qtbot, "feed", community=made["id"])["posts"]
        ),
        timeout=WAIT,
    )
    asked: list[int] = []
    with qtbot.waitSignal(
        window.bridge.answered,
        timeout=WAIT,
        check_params_cb=lambda number, _: bool(asked) and number == asked[0],
    ):
        asked.append(remove_post(window.bridge, advert["id"], reason="Adverts go in the offers"))
    dialog.refresh()
    qtbot.waitUntil(lambda: dialog.log.rowCount() == 1, timeout=WAIT)
    assert dialog.log.index(0).data().endswith("You removed a post: Adverts go in the offers")

    dialog.tabs.setCurrentWidget(dialog.bans_tab)
    dialog.choose("Dan")
    assert dialog.ban_button.isEnabled()
    assert not dialog.unban_button.isEnabled()
    dialog.ban_button.click()
    assert dialog.message.text() == "Give a reason: every member sees it in the moderation log."
    dialog.reason.setText("Selling double glazing in every thread")
    dialog.ban_button.click()
    qtbot.waitUntil(lambda: dialog.log.rowCount() == 2, timeout=WAIT)
    assert dialog.message.text().startswith("Dan is banned.")
    assert (
        dialog.log.index(0)
        .data()
        .endswith("You banned Dan: Selling double glazing in every thread")
    )
    qtbot.waitUntil(lambda: dialog.members.rows[dan_row]["banned"], timeout=WAIT)
    assert dialog.unban_button.isEnabled()
    qtmodeltester.check(dialog.log)

    # Dan's own node received the ban, with its reason.
    def dan_sees_it() -> bool:
        entries = call(dan, "community.log", {"community": made["id"]})["entries"]
        return [(e["action"], e["reason"]) for e in entries] == [
            ("ban", "Selling double glazing in every thread"),
            ("remove", "Adverts go in the offers"),
        ]

    qtbot.waitUntil(dan_sees_it, timeout=WAIT)
    dialog.unban_button.click()
    qtbot.waitUntil(lambda: dialog.log.rowCount() == 3, timeout=WAIT)
    assert dialog.log.index(0).data().endswith("You unbanned Dan")
    qtbot.waitUntil(lambda: not dialog.members.rows[dan_row]["banned"], timeout=WAIT)

    # Leaving asks first; Cancel keeps the member in.
    dialog.leave_button.click()
    box = dialog.confirmation
    assert box is not None
    assert box.isVisible()
    assert box.text() == "Leave Repair Café?"
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert dialog.isVisible()
    window.sidebar.setCurrentIndex(
        window.communities.index(_names(window).index("Hackney Neighbours"))
    )
    question = window.leave_community()
    assert question is not None
    question.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: "Hackney Neighbours" not in _names(window), timeout=WAIT)
    assert "Repair Café" in _names(window)


def test_a_node_that_is_not_running_is_said_in_words_and_the_dialog_lets_one_try_again(
    tmp_path: Path, qtbot: QtBot
) -> None:
    bridge = Bridge(tmp_path / "nobody", LISTEN)  # never unlocked
    dialog = JoinDialog(bridge)
    qtbot.addWidget(dialog)
    dialog.code.setPlainText("kith1abc")
    dialog.join_button.click()
    # The bridge says so on the next turn of the event loop, once the caller knows
    # the number of its request.
    qtbot.waitUntil(lambda: dialog.message.text() == "The node is not running.", timeout=WAIT)
    assert dialog.join_button.isEnabled()
    assert not dialog.code.isReadOnly()
