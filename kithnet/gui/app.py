"""The desktop app's windows: unlocking, and the main window (communities, the feed,
the composer). They reach the node only through kithnet.gui.bridge."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

from kithnet.gui.bridge import Bridge
from kithnet.gui.models import CommunitiesModel, FeedModel, ItemRole


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
        bridge.unlocked.connect(self._unlocked)

    def submit(self) -> None:
        if not self.passphrase.text():
            self.message.setText("Type your passphrase")
            return
        self.button.setEnabled(False)
        self.passphrase.setEnabled(False)
        self.message.setText("Unlocking…")
        self.bridge.unlock(self.passphrase.text())

    def _failed(self, message: str) -> None:
        self.message.setText(message)
        self.passphrase.clear()
        self.passphrase.setEnabled(True)
        self.button.setEnabled(True)
        self.passphrase.setFocus()

    def _unlocked(self, info: dict[str, object]) -> None:
        self.passphrase.clear()
        self.accept()


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
        self.feed_view = QListView()
        self.feed_view.setAccessibleName("Feed")
        self.feed_view.setWordWrap(True)
        self.feed_view.setAlternatingRowColors(True)
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
        self.send.clicked.connect(self.post)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.post)
        self.sidebar.selectionModel().currentChanged.connect(self._chosen)
        self.communities.modelReset.connect(self._choose_first)
        bridge.arrived.connect(self._arrived)
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        self._posting: int | None = None
        self.communities.refresh()

    def _choose_first(self) -> None:
        if self.communities.rowCount() and not self.sidebar.currentIndex().isValid():
            self.sidebar.setCurrentIndex(self.communities.index(0))

    def _chosen(self) -> None:
        index = self.sidebar.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        if row is None:
            return
        self.feed = FeedModel(self.bridge, row["id"], self)
        self.feed_view.setModel(self.feed)
        self.feed.fetchMore()
        self.statusBar().showMessage(f"{row['name']}: {row['members']} members")

    def _arrived(self) -> None:
        self.communities.refresh()
        if self.feed is not None:
            self.feed.refresh()

    def post(self) -> None:
        text = self.composer.toPlainText().strip()
        if self.feed is None or not text or self._posting is not None:
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


def main(data_dir: Path, listen: Sequence[str]) -> int:
    """Open the app on a member's data: unlock, then the main window."""
    app = QApplication.instance() or QApplication(sys.argv)
    bridge = Bridge(data_dir, listen)
    unlock = UnlockDialog(bridge)
    if unlock.exec() != QDialog.DialogCode.Accepted:
        return 1
    window = MainWindow(bridge)
    window.show()
    code = app.exec()
    bridge.stop()
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(Path(sys.argv[1]), ("/ip4/127.0.0.1/tcp/0",)))
