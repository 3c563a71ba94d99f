"""The desktop app's windows: unlocking, and the main window (communities, the feed,
the composer). They reach the node only through kithnet.gui.bridge."""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStatusBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from kithnet.crypto.kdf import KdfParams
from kithnet.gui import community, empty, notify
from kithnet.gui.bridge import Bridge
from kithnet.gui.feed import FeedView
from kithnet.gui.models import CommunitiesModel, FeedModel, ItemRole
from kithnet.gui.people import MembersDialog, MessagesWindow, ProfileDialog
from kithnet.node import demo


class UnlockDialog(QDialog):
    """Asks for the passphrase; a wrong one says so and lets the member try again."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Unlock Kithnet")
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setAccessibleName("Passphrase")
        self.message = QLabel(f"Your data is in {bridge.data_dir}")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Unlock status")
        self.button = QPushButton("Unlock")
        self.button.setDefault(True)
        self.button.setAccessibleName("Unlock")
        form = QFormLayout()
        form.addRow("Passphrase", self.passphrase)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.button)
        self.button.clicked.connect(self.submit)
        self.passphrase.returnPressed.connect(self.submit)
        bridge.unlock_failed.connect(self._failed)
        bridge.stopped.connect(self._stopped)
        bridge.unlocked.connect(self._unlocked)

    def submit(self) -> None:
        if not self.passphrase.text():
            self.message.setText("Type your passphrase")
            return
        self.button.setEnabled(False)
        self.passphrase.setEnabled(False)
        self.message.setText("Unlocking…")
        self.bridge.unlock(self.passphrase.text())

    def _stopped(self, message: str) -> None:
        if message:  # the node could not start (its port is taken, say)
            self._failed(message)

    def _failed(self, message: str) -> None:
        self.message.setText(message)
        self.passphrase.clear()
        self.passphrase.setEnabled(True)
        self.button.setEnabled(True)
        self.passphrase.setFocus()

    def _unlocked(self, info: dict[str, object]) -> None:
        self.passphrase.clear()
        self.accept()


class AskDialog(QDialog):
    """Does anybody know…? Posts the question and shows at once the providers and the
    communities this member's node knows, each with the reason for its place; then the
    referrals as members answer, and joining a referred community is one click."""

    joined = Signal(str)  # the community's name, once the member is in it

    def __init__(self, bridge: Bridge, communities: Sequence[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Does anybody know…?")
        self.text = QLineEdit()
        self.text.setAccessibleName("Your question")
        self.text.setPlaceholderText("Does anybody know someone who can insulate my loft?")
        self.skills = QLineEdit()
        self.skills.setAccessibleName("Skills")
        self.skills.setPlaceholderText("insulation solar")
        self.where = QComboBox()
        self.where.setAccessibleName("Ask in")
        self.where.addItems(list(communities))
        self.ask_button = QPushButton("Ask")
        self.ask_button.setAccessibleName("Ask")
        self.providers = QListWidget()
        self.providers.setAccessibleName("People who could help")
        self.providers.setWordWrap(True)
        self.places = QListWidget()
        self.places.setAccessibleName("Communities that could help")
        self.places.setWordWrap(True)
        self.referrals = QListWidget()
        self.referrals.setAccessibleName("Referrals")
        empty.say_when_empty(self.referrals, "Members' answers appear here as they come")
        self.referrals.setWordWrap(True)
        self.join_button = QPushButton("Join the chosen community")
        self.join_button.setAccessibleName("Join the chosen community")
        self.join_button.setEnabled(False)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Status")
        form = QFormLayout()
        form.addRow("Question", self.text)
        form.addRow("Skills", self.skills)
        form.addRow("Ask in", self.where)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.ask_button)
        layout.addWidget(QLabel("People your node knows, most trusted first"))
        layout.addWidget(self.providers)
        layout.addWidget(QLabel("Communities"))
        layout.addWidget(self.places)
        layout.addWidget(QLabel("Referrals from members, most trusted first"))
        layout.addWidget(self.referrals)
        layout.addWidget(self.join_button)
        layout.addWidget(self.message)
        self.resize(640, 720)
        self.question: str | None = None
        self._asking: int | None = None
        self._looking: int | None = None
        self._joining: int | None = None
        self.ask_button.clicked.connect(self.ask)
        self.places.currentRowChanged.connect(lambda _: self._choose(self.places))
        self.referrals.currentRowChanged.connect(lambda _: self._choose(self.referrals))
        self.join_button.clicked.connect(self.join)
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        bridge.arrived.connect(self.look_for_referrals)
        # Closed, it is gone (once a join it asked for is answered, so the community
        # still opens): else each closed Ask window would go on asking the node for
        # referrals whenever anything arrives, one more with each question asked.
        self._closed = False
        self.rejected.connect(self._close)

    def _close(self) -> None:
        self._closed = True
        self._go_if_done()

    def _go_if_done(self) -> None:
        if self._closed and self._joining is None and not self.isVisible():
            self.deleteLater()

    def set_communities(self, names: Sequence[str]) -> None:
        """The communities to ask in, as the main window lists them now (the one
        chosen stays chosen)."""
        chosen = self.where.currentText()
        self.where.clear()
        self.where.addItems(list(names))
        if chosen in names:
            self.where.setCurrentText(chosen)

    def follow(self, communities: CommunitiesModel) -> None:
        """Keep "Ask in" as `communities` lists them: the list may still be loading
        when the dialog opens, or the member may join one meanwhile."""
        self._communities = communities
        communities.modelReset.connect(self._listed)  # a method: gone with the dialog

    def _listed(self) -> None:
        self.set_communities([row["name"] for row in self._communities.rows])

    def ask(self) -> None:
        skills = self.skills.text().split()
        if not self.text.text().strip() or not skills:
            self.message.setText("Write the question and name at least one skill")
            return
        self.ask_button.setEnabled(False)
        self.message.setText("Asking…")
        self._asking = self.bridge.call(
            "ask", text=self.text.text().strip(), skills=skills, community=self.where.currentText()
        )

    def look_for_referrals(self) -> None:
        if self.question is not None and self._looking is None and not self._closed:
            self._looking = self.bridge.call("referrals", question=self.question)

    def _choose(self, view: QListWidget) -> None:
        item = view.currentItem()
        self.join_button.setEnabled(bool(item is not None and item.data(ItemRole)))

    def join(self) -> None:
        for view in (self.referrals, self.places):
            item = view.currentItem()
            if item is not None and item.data(ItemRole):
                self._joining = self.bridge.call("join", code=item.data(ItemRole))
                self.join_button.setEnabled(False)
                self.message.setText("Joining…")
                return

    def _answered(self, request: int, result: object) -> None:
        if request == self._asking and isinstance(result, dict):
            self._asking = None
            self.ask_button.setEnabled(True)
            self.question = result["question"]
            self.message.setText(
                f"Asked in {result['community_name']} ({result['members_online']} members online)"
            )
            self.providers.clear()
            for p in result["providers"]:
                self.providers.addItem(
                    f"{p['name'] or p['member'][:12]}: {'; '.join(p['reasons'])}"
                )
            self.places.clear()
            for c in result["communities"]:
                item = QListWidgetItem(f"{c['name']}: {c['reason']}")
                item.setData(ItemRole, c.get("invite", "") if not c["joined"] else "")
                self.places.addItem(item)
        elif request == self._looking and isinstance(result, dict):
            self._looking = None
            self.referrals.clear()
            for r in result["referrals"]:
                where = r["community_name"] or r["member_name"] or "someone"
                # As the profile says it: "none yet" rather than a bare 0.00.
                trust = f"{r['trust']:.2f}" if r["trust"] else "none yet"
                item = QListWidgetItem(f"{r['by']} (your trust: {trust}) points you to {where}")
                item.setData(ItemRole, r["invite"])
                self.referrals.addItem(item)
        elif request == self._joining and isinstance(result, dict):
            self._joining = None
            name = str(result.get("community_name", "the community"))
            self.message.setText(f"You joined {name}")
            self.joined.emit(name)
            self._go_if_done()

    def _failed(self, request: int, message: str) -> None:
        if request in (self._asking, self._looking, self._joining):
            self._asking = self._looking = self._joining = None
            self.ask_button.setEnabled(True)
            self.message.setText(message)
            self._go_if_done()


def passphrase_strength(text: str) -> str:
    """A hint, not a rule: how hard a passphrase looks to guess."""
    kinds = sum(
        any(test(c) for c in text)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    words = len(text.split())
    if len(text) < 10:
        return "Too short: use at least 10 characters, or a few words"
    if words >= 4 or len(text) >= 20 or (len(text) >= 14 and kinds >= 3):
        return "Strong"
    if len(text) >= 14 or kinds >= 3:
        return "Fair: a few more words would make it strong"
    return "Weak: add words, or mix letters, digits and signs"


class FirstRunDialog(QDialog):
    """First run: make an identity (a name and a passphrase, with a strength hint; the
    fingerprint is shown once it exists) or restore one from a backup file."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.kdf: KdfParams | None = None  # the store's KDF (tests pass a fast one)
        self.setWindowTitle("Welcome to Kithnet")
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Start")
        # Create
        create = QWidget()
        self.name = QLineEdit()
        self.name.setAccessibleName("Your name")
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setAccessibleName("Passphrase")
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm.setAccessibleName("Passphrase again")
        self.strength = QLabel(passphrase_strength(""))
        self.strength.setAccessibleName("Passphrase strength")
        self.create_button = QPushButton("Create my identity")
        self.create_button.setAccessibleName("Create my identity")
        form = QFormLayout(create)
        form.addRow("Your name", self.name)
        form.addRow("Passphrase", self.passphrase)
        form.addRow("Again", self.confirm)
        form.addRow("", self.strength)
        form.addRow("", self.create_button)
        self.tabs.addTab(create, "Create an identity")
        # Restore
        restore = QWidget()
        self.backup = QLineEdit()
        self.backup.setAccessibleName("Backup file")
        browse = QPushButton("Choose…")
        browse.setAccessibleName("Choose a backup file")
        self.backup_passphrase = QLineEdit()
        self.backup_passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.backup_passphrase.setAccessibleName("Backup passphrase")
        self.restore_button = QPushButton("Restore")
        self.restore_button.setAccessibleName("Restore")
        file_row = QHBoxLayout()
        file_row.addWidget(self.backup, 1)
        file_row.addWidget(browse)
        restore_form = QFormLayout(restore)
        restore_form.addRow("Backup file", file_row)
        restore_form.addRow("Its passphrase", self.backup_passphrase)
        restore_form.addRow("", self.restore_button)
        self.tabs.addTab(restore, "Restore from a backup")
        self.message = QLabel(f"Your data will be kept, encrypted, in {bridge.data_dir}")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Status")
        self.continue_button = QPushButton("Continue")
        self.continue_button.setAccessibleName("Continue")
        self.continue_button.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.message)
        layout.addWidget(self.continue_button)
        self.passphrase.textChanged.connect(
            lambda text: self.strength.setText(passphrase_strength(text))
        )
        self.create_button.clicked.connect(self.make_identity)
        self.restore_button.clicked.connect(self.restore)
        browse.clicked.connect(self._browse)
        self.continue_button.clicked.connect(self.accept)
        bridge.unlock_failed.connect(self._failed)
        bridge.stopped.connect(self._stopped)
        bridge.unlocked.connect(self._made)

    def make_identity(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.message.setText("Type the name others will see")
            return
        if self.passphrase.text() != self.confirm.text():
            self.message.setText("The two passphrases differ: type them again")
            self.confirm.clear()
            return
        if len(self.passphrase.text()) < 10:
            self.message.setText(passphrase_strength(self.passphrase.text()))
            return
        self._busy("Making your keys (a few seconds)…")
        self.bridge.create(name, self.passphrase.text(), self.kdf)

    def restore(self) -> None:
        if not self.backup.text() or not self.backup_passphrase.text():
            self.message.setText("Choose the backup file and type its passphrase")
            return
        self._busy("Restoring…")
        self.bridge.restore(Path(self.backup.text()), self.backup_passphrase.text(), self.kdf)

    def _browse(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Choose a Kithnet backup")
        if chosen:
            self.backup.setText(chosen)

    def _busy(self, text: str) -> None:
        self.message.setText(text)
        self.tabs.setEnabled(False)

    def _stopped(self, message: str) -> None:
        if message:  # the node could not start (its port is taken, say)
            self._failed(message)

    def _failed(self, message: str) -> None:
        self.message.setText(message)
        self.tabs.setEnabled(True)

    def _made(self, info: dict[str, object]) -> None:
        self.passphrase.clear()
        self.confirm.clear()
        self.backup_passphrase.clear()
        self.tabs.hide()  # done: the emptied form would say "Too short" under the fingerprint
        self.message.setText(
            f"Welcome, {info['name']}. Your fingerprint is {info['fingerprint']}. "
            "Members can compare it with you "
            "(by voice, say) to be sure a message or a reference is yours."
        )
        self.continue_button.show()
        self.continue_button.setDefault(True)


class MainWindow(QMainWindow):
    """Communities on the left with unread counts; the chosen one's feed and a
    composer for posts, questions and offers on the right."""

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self.bridge = bridge
        self.setWindowTitle("Kithnet")
        self.communities = CommunitiesModel(bridge, self)
        self.sidebar = QListView()
        self.sidebar.setAccessibleName("Communities")
        self.sidebar.setModel(self.communities)
        self.feed_view = FeedView(bridge)
        self.feed_view.message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.feed_view.profile_requested.connect(self.open_profile)
        self.feed_view.marked_read.connect(lambda _community: self.communities.refresh())
        self.feed: FeedModel | None = None
        self.composer = QPlainTextEdit()
        self.composer.setAccessibleName("Write a post")
        self.composer.setPlaceholderText("Write a post, a question or an offer…")
        self.composer.setMaximumHeight(90)
        self.kind = QComboBox()
        self.kind.addItems(["post", "question", "offer"])
        self.kind.setAccessibleName("Kind of post")
        self.skills = QLineEdit()
        self.skills.setPlaceholderText("skills, separated by spaces")
        self.skills.setAccessibleName("Skills")
        self.send = QPushButton("Post")
        self.send.setAccessibleName("Post")
        self.send.setToolTip("Post (Ctrl+Return)")
        row = QHBoxLayout()
        row.addWidget(self.kind)
        row.addWidget(self.skills, 1)
        row.addWidget(self.send)
        right = QWidget()
        column = QVBoxLayout(right)
        column.addWidget(self.feed_view, 1)
        column.addWidget(self.composer)
        column.addLayout(row)
        splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        self.setCentralWidget(splitter)
        self.setStatusBar(QStatusBar())
        self.resize(1000, 680)
        self.ask_button = QPushButton("Does anybody know…?")
        self.ask_button.setAccessibleName("Ask")
        self.ask_button.setToolTip("Ask who can help (Ctrl+K)")
        column.insertWidget(0, self.ask_button)
        self.ask_button.clicked.connect(self.open_ask)
        self.send.clicked.connect(self.post)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.post)
        self.sidebar.selectionModel().currentChanged.connect(self._chosen)
        self.communities.modelReset.connect(self._choose_first)
        bridge.arrived.connect(self._arrived)
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        bridge.stopped.connect(self._node_stopped)
        self.stopped_box: QMessageBox | None = None  # shown if the node stops on its own
        self._posting: int | None = None
        bar = self.menuBar()
        self.menus: dict[str, QMenu] = {  # each screen of the app adds its entry with `add_action`
            "kithnet": bar.addMenu("&Kithnet"),
            "community": bar.addMenu("&Community"),
            "people": bar.addMenu("&People"),
            "view": bar.addMenu("&View"),
        }
        self.add_action("community", "Does anybody know…?", "Ctrl+K", self.open_ask)
        self.add_action("community", "New community…", "Ctrl+N", self.open_new_community)
        self.add_action("community", "Invite people…", "Ctrl+I", self.open_invite)
        self.add_action("community", "Join with a code…", "Ctrl+J", self.open_join)
        self.add_action("community", "Find communities…", "Ctrl+Shift+F", self.open_directory)
        moderation = self.add_action(
            "community", "Moderation…", "Ctrl+Shift+O", self.open_moderation
        )
        self.add_action("community", "Leave community…", None, self.leave_community)
        self.find_button = community.install(self, moderation)
        splitter.setSizes([220, 780])  # the sidebar as wide as community names need
        self.add_action("kithnet", "&Settings…", "Ctrl+,", self.open_settings).setMenuRole(
            QAction.MenuRole.PreferencesRole
        )
        self.add_action("view", "&Network", "Ctrl+Shift+N", self.open_network)
        self.add_action("people", "&Messages", "Ctrl+M", lambda: self.open_messages())
        self.add_action("people", "M&embers", "Ctrl+Shift+M", self.open_members)
        self.add_action("people", "My &profile", "Ctrl+Shift+P", lambda: self.open_profile(""))
        self.add_action("kithnet", "&Quit", "Ctrl+Q", self.close).setMenuRole(
            QAction.MenuRole.QuitRole
        )
        self.add_action("people", "&Search posts and people…", "Ctrl+F", self.open_search)
        self.notifications = notify.install(self)  # the tray, the dock and its button
        self.communities.refresh()

    def add_action(
        self, menu: str, text: str, shortcut: str | None, slot: Callable[[], object]
    ) -> QAction:
        """An entry in one of the menus, with its shortcut shown beside it."""
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.menus[menu].addAction(action)
        return action

    def open_ask(self) -> AskDialog:
        names = [row["name"] for row in self.communities.rows]
        dialog = AskDialog(self.bridge, names, self)
        dialog.follow(self.communities)
        dialog.joined.connect(lambda _name: self.communities.refresh())
        dialog.show()
        return dialog

    def open_new_community(self) -> community.NewCommunityDialog:
        return community.open_new_community(self)

    def open_invite(self) -> community.InviteDialog | None:
        return community.open_invite(self)

    def open_join(self) -> community.JoinDialog:
        return community.open_join(self)

    def open_directory(self) -> community.DirectoryDialog:
        return community.open_directory(self)

    def open_moderation(self) -> community.ModerationDialog | None:
        return community.open_moderation(self)

    def leave_community(self) -> QMessageBox | None:
        return community.leave_current(self)

    def open_search(self) -> notify.SearchDialog:
        return notify.open_search(self)

    def open_network(self) -> QDockWidget:
        from kithnet.gui.panels import NetworkPanel  # panels.py imports this module

        panel = self.findChild(NetworkPanel)
        if panel is None:
            panel = NetworkPanel(self.bridge, self)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, panel)
        panel.show()
        panel.raise_()
        return panel

    def open_settings(self) -> QDialog:
        from kithnet.gui.panels import SettingsDialog  # panels.py imports this module

        dialog = self.findChild(SettingsDialog) or SettingsDialog(self.bridge, self)
        dialog.refresh()
        dialog.show()
        return dialog

    def open_profile(self, member_hex: str) -> ProfileDialog:
        """A member's profile ("" for this member's own: kithnet/gui/people.py)."""
        dialog = ProfileDialog(self.bridge, member_hex, self, open_messages=self.open_messages)
        dialog.profile_changed.connect(self._arrived)  # names in the feed may change
        dialog.silenced.connect(self._chosen)  # the feed again, without (or with) their posts
        dialog.show()
        return dialog

    def open_messages(self, member_hex: str = "") -> MessagesWindow:
        """The Messages window (one per main window), on `member_hex`'s conversation."""
        window = self.findChild(MessagesWindow) or MessagesWindow(
            self.bridge, self, open_profile=self.open_profile
        )
        if member_hex:
            window.open_conversation(member_hex)
        window.show()
        window.raise_()
        return window

    def open_members(self) -> MembersDialog:
        dialog = MembersDialog(self.bridge, [row["name"] for row in self.communities.rows], self)
        dialog.profile_requested.connect(self.open_profile)
        dialog.show()
        return dialog

    def _choose_first(self) -> None:
        if self.communities.rowCount() and not self.sidebar.currentIndex().isValid():
            self.sidebar.setCurrentIndex(self.communities.index(0))

    def _chosen(self) -> None:
        index = self.sidebar.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        if row is None:
            return
        self.feed = self.feed_view.open(row)
        self.statusBar().showMessage(f"{row['name']}: {row['members']} members")

    def _arrived(self) -> None:
        self.communities.refresh()
        if self.feed is not None:
            self.feed.refresh()

    def post(self) -> None:
        text = self.composer.toPlainText().strip()
        if self._posting is not None:
            return
        if self.feed is None:
            self.statusBar().showMessage("Choose a community to post in, or join one first")
            return
        if not text:
            self.statusBar().showMessage("Write something to post first", 5000)
            return
        self.send.setEnabled(False)
        self._posting = self.bridge.call(
            "post",
            community=self.feed.community,
            text=text,
            kind=self.kind.currentText(),
            skills=self.skills.text().split(),
        )

    def _answered(self, request: int, result: object) -> None:
        if request == self._posting:
            self._posting = None
            self.send.setEnabled(True)
            self.composer.clear()
            if self.feed is not None:
                self.feed.refresh()
            self.statusBar().showMessage("Posted", 3000)

    def _failed(self, request: int, message: str) -> None:
        if request == self._posting:
            self._posting = None
            self.send.setEnabled(True)
            self.statusBar().showMessage(message)

    def _node_stopped(self, message: str) -> None:
        """The node stopped without being asked: say so, rather than leave a window
        that silently does nothing."""
        if not message:
            return  # asked to stop (the app is closing)
        text = (
            f"{message}. Kithnet is not connected any more: nothing can be posted, "
            "fetched or received until it is opened again. Everything stored so far is "
            "kept. Quit Kithnet and open it again."
        )
        self.send.setEnabled(False)
        self.composer.setReadOnly(True)
        self.statusBar().showMessage(f"{message}: quit Kithnet and open it again")
        self.stopped_box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Kithnet has stopped",
            text,
            QMessageBox.StandardButton.Ok,
            self,
        )
        self.stopped_box.setAccessibleName("Kithnet has stopped")
        self.stopped_box.open()


def _quiet_libraries() -> None:
    """py-libp2p logs every failed dial and refused stream; the app shows what matters."""
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)


def main(data_dir: Path, listen: Sequence[str]) -> int:
    """Open the app on a member's data: unlock, then the main window."""
    _quiet_libraries()
    app = QApplication.instance() or QApplication(sys.argv)
    bridge = Bridge(data_dir, listen)
    first = FirstRunDialog(bridge) if not bridge.has_store() else UnlockDialog(bridge)
    if first.exec() != QDialog.DialogCode.Accepted:
        bridge.stop()
        return 1
    window = MainWindow(bridge)
    window.show()
    code = app.exec()
    bridge.stop()
    return int(code)


def demo_main() -> int:
    """The demo `make run` opens (kithnet/node/demo.py): a fresh member and three local
    peers in a temporary folder, all thrown away when the window closes."""
    _quiet_libraries()
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory(prefix="kithnet-demo-") as folder:
        you, peers = demo.prepare(Path(folder))
        with demo.running_peers(peers):
            bridge = Bridge(you, ("/ip4/127.0.0.1/tcp/0",))
            windows: list[MainWindow] = []

            def show(info: dict[str, object]) -> None:
                window = MainWindow(bridge)
                window.setWindowTitle("Kithnet (demo: nothing here is kept)")
                window.show()
                windows.append(window)

            bridge.unlocked.connect(show)
            bridge.unlock_failed.connect(lambda message: app.exit(1))
            bridge.unlock(demo.DEMO_PASSPHRASE)
            # Ctrl+C or a TERM signal closes the demo, and its peers with it: Python
            # handles signals only when it runs, so a timer lets it run now and then.
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, lambda *_: app.quit())
            ticker = QTimer()
            ticker.timeout.connect(lambda: None)
            ticker.start(250)
            code = app.exec()
            bridge.stop()
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(Path(sys.argv[1]), ("/ip4/127.0.0.1/tcp/0",)))
