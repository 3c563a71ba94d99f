"""Finding things and hearing about them: full-text search over posts and people (as
the member types, through the node's `search` command), and notifications of replies
to the member's posts, referrals answering their questions, references about them and
direct messages (the node's `notifications` command, asked whenever records arrive).

Notifications pop up through the system tray where there is one, and always go into
the in-app list (a dock, opened from the button in the status bar), so none is lost on a
desktop without a tray. The node remembers how far the member was told, so a restart
does not tell them again. Choosing a result or a notification emits what it is about
(`post_chosen`, `profile_requested`, `conversation_requested`) for the other screens to
open; a post is also shown in the main window's feed."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QDialog,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QStyle,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from kithnet.gui.bridge import Bridge
from kithnet.gui.models import IdRole, Index, ItemRole, _Answers

if TYPE_CHECKING:
    from kithnet.gui.app import MainWindow

SEARCH_DELAY = 250  # ms of no typing before the search runs
SEARCH_PAGE = 20
SEARCH_MOST = 200  # the node's limit on one search
FIND_PAGES = 20  # pages of a feed looked through for a chosen post
GIVE_UP = 10_000  # ms: a chosen post not in the feed by then is not shown
KEPT = 500  # notifications the in-app list keeps (the newest)
KIND_LABEL = {"post": "", "question": "Question: ", "offer": "Offer: "}


# Search ----------------------------------------------------------------------------------


class SearchResults(_Answers):
    """One kind of result ("posts" or "people") of the `search` command, a page at a
    time: the view asks for more as it scrolls, and a new search replaces the rows.
    Answers to an older search than the one shown are dropped."""

    failed = Signal(str)
    searched = Signal()  # an answer for the current search was taken in

    def __init__(self, bridge: Bridge, key: str, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.key = key
        self.text = ""
        self.community: str | None = None
        self._generation = 0
        self._asked = 0  # the limit of the newest request
        self._loading = False
        self._exhausted = True

    def search(self, text: str, community: str | None = None) -> None:
        """Start a new search (an empty text clears the results)."""
        self._generation += 1
        self.text, self.community = text, community
        self.error = ""
        self.beginResetModel()
        self.rows = []
        self.endResetModel()
        self._exhausted = not text.strip()
        self._loading = False
        if not self._exhausted:
            self._ask(SEARCH_PAGE)

    def _ask(self, limit: int) -> None:
        self._loading = True
        self._asked = limit
        args: dict[str, Any] = {"text": self.text, "limit": limit}
        if self.community:
            args["community"] = self.community
        self.ask(str(self._generation), "search", **args)

    @property
    def busy(self) -> bool:
        """Whether an answer is awaited."""
        return self._loading

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self._exhausted and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if self.canFetchMore(parent):
            self._ask(min(len(self.rows) + SEARCH_PAGE, SEARCH_MOST))

    def answer(self, purpose: str, result: Any) -> None:
        if purpose != str(self._generation):
            return  # an older search's answer
        self._loading = False
        found = list(result[self.key])
        self._exhausted = len(found) < self._asked or self._asked >= SEARCH_MOST
        key = "id" if self.key == "posts" else "member"
        known = {row[key] for row in self.rows}
        fresh = [row for row in found if row[key] not in known]
        if fresh:
            start = len(self.rows)
            self.beginInsertRows(QModelIndex(), start, start + len(fresh) - 1)
            self.rows.extend(fresh)
            self.endInsertRows()
        self.searched.emit()

    def _on_failure(self, request: int, message: str) -> None:
        purpose = self._pending.pop(request, None)
        if purpose is not None:
            self._loading = False
            self._exhausted = True
            if purpose == str(self._generation):
                self.error = message
                self.failed.emit(message)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == IdRole and index.isValid() and 0 <= index.row() < len(self.rows):
            row = self.rows[index.row()]
            return row.get("id") or row.get("member")
        return super().data(index, role)

    def display(self, row: dict[str, Any]) -> str:
        if self.key == "people":
            skills = ", ".join(row.get("skills") or [])
            return f"{row['name'] or row['member'][:12]}" + (f"\n{skills}" if skills else "")
        who = row.get("author_name") or row["author"][:12]
        label = KIND_LABEL.get(row.get("kind", "post"), "")
        reply = "reply, " if row.get("reply_to") else ""
        where = f"{who} in {row['community_name']} ({reply}{_when(row['created_at'])})"
        return f"{where}\n{label}{row['text']}"


def _when(milliseconds: int) -> str:
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000)
    return moment.strftime("%d %b %Y %H:%M")


class SearchDialog(QDialog):
    """Search posts and people as the member types (after a short pause); choosing a
    post shows it, choosing a person asks for their profile."""

    chosen = Signal(dict)  # the result chosen, a post's or a person's
    post_chosen = Signal(str, str)  # community id, post id
    profile_requested = Signal(str)  # member key (hex)

    def __init__(
        self,
        bridge: Bridge,
        community: tuple[str, str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Search Kithnet")
        self.bridge = bridge
        self.community = community  # (id, name) of the community open in the window
        self.text = QLineEdit()
        self.text.setAccessibleName("Search")
        self.text.setPlaceholderText("Words to find in posts and profiles")
        self.text.setClearButtonEnabled(True)
        self.only_here = QCheckBox()
        self.only_here.setAccessibleName("Search only the open community")
        self.only_here.setToolTip("Search only the community open in the main window")
        self.set_community(community)
        self.posts = SearchResults(bridge, "posts", self)
        self.people = SearchResults(bridge, "people", self)
        self.post_list = QListView()
        self.post_list.setAccessibleName("Posts found")
        self.post_list.setModel(self.posts)
        self.post_list.setWordWrap(True)
        self.post_list.setAlternatingRowColors(True)
        self.people_list = QListView()
        self.people_list.setAccessibleName("People found")
        self.people_list.setModel(self.people)
        self.people_list.setAlternatingRowColors(True)
        self.message = QLabel("Type to search the posts of your communities and people's profiles")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Search status")
        top = QHBoxLayout()
        top.addWidget(self.text, 1)
        top.addWidget(self.only_here)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(QLabel("Posts"))
        layout.addWidget(self.post_list, 3)
        layout.addWidget(QLabel("People"))
        layout.addWidget(self.people_list, 1)
        self.resize(640, 560)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SEARCH_DELAY)
        self.timer.timeout.connect(self.run)
        self.text.textChanged.connect(lambda _: self.timer.start())
        self.text.returnPressed.connect(self.run)
        self.only_here.toggled.connect(lambda _: self.run())
        self.posts.searched.connect(self._show_counts)
        self.people.searched.connect(self._show_counts)
        self.posts.failed.connect(self.message.setText)
        self.people.failed.connect(self.message.setText)
        self.post_list.activated.connect(self._post_activated)
        self.people_list.activated.connect(self._person_activated)
        self.text.setFocus()

    def set_community(self, community: tuple[str, str] | None) -> None:
        """The community open in the main window, (id, name), that "Only in" means."""
        changed = community != self.community
        self.community = community
        self.only_here.setText(f"Only in {community[1]}" if community else "Only in one community")
        self.only_here.setEnabled(community is not None)
        if changed and self.only_here.isChecked() and self.text.text().strip():
            self.run()

    def run(self) -> None:
        """Search now for what is typed (in the node's thread, as every command)."""
        self.timer.stop()
        text = self.text.text()
        where = self.community[0] if self.community and self.only_here.isChecked() else None
        if not text.strip():
            self.message.setText(
                "Type to search the posts of your communities and people's profiles"
            )
        else:
            self.message.setText("Searching…")
        self.posts.search(text, where)
        self.people.search(text, where)

    def _show_counts(self) -> None:
        if self.posts.error or self.people.error or self.posts.busy or self.people.busy:
            return  # a failure is shown; or the other half of the answer is awaited
        posts, people = self.posts.rowCount(), self.people.rowCount()
        if not posts and not people:
            self.message.setText(f"Nothing found for “{self.text.text().strip()}”")
            return
        more = "+" if self.posts.canFetchMore() else ""
        self.message.setText(
            f"{posts}{more} post{'s' if posts != 1 else ''}, "
            f"{people} {'person' if people == 1 else 'people'}"
        )

    def _post_activated(self, index: QModelIndex) -> None:
        row = index.data(ItemRole)
        if row:
            self.chosen.emit(row)
            self.post_chosen.emit(row["community"], row["id"])

    def _person_activated(self, index: QModelIndex) -> None:
        row = index.data(ItemRole)
        if row:
            self.chosen.emit(row)
            self.profile_requested.emit(row["member"])


# Notifications ---------------------------------------------------------------------------


class NotificationsModel(QAbstractListModel):
    """The notifications heard since the app opened, newest first (at most KEPT); the
    first `unseen` rows are those the member has not looked at yet."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.unseen = 0

    def add(self, items: list[dict[str, Any]]) -> None:
        """Put new notifications (oldest first, as the node lists them) on top."""
        if not items:
            return
        fresh = list(reversed(items))
        self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
        self.rows[:0] = fresh
        self.unseen = min(self.unseen + len(fresh), KEPT)  # before views hear of them
        self.endInsertRows()
        if len(self.rows) > KEPT:
            self.beginRemoveRows(QModelIndex(), KEPT, len(self.rows) - 1)
            del self.rows[KEPT:]
            self.endRemoveRows()

    def mark_seen(self) -> None:
        if self.unseen:
            last = self.unseen - 1
            self.unseen = 0
            self.dataChanged.emit(self.index(0), self.index(last))

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            new = "● " if index.row() < self.unseen else ""
            return f"{new}{row['title']}\n{row['text']}\n{_when(row['created_at'])}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return row["text"]
        if role == Qt.ItemDataRole.FontRole and index.row() < self.unseen:
            font = QApplication.font()
            font.setBold(True)
            return font
        if role == ItemRole:
            return row
        if role == IdRole:
            return row["id"]
        return None


class Notifier(QObject):
    """Asks the node what is new whenever records arrive (and once at the start), one
    question at a time; puts each new item in `model`, emits `notified` for it and
    shows it through the system tray when there is one. `open(item)` emits what the
    item is about."""

    notified = Signal(dict)
    chosen = Signal(dict)  # an item the member chose (the tray's message, or in the list)
    post_chosen = Signal(str, str)  # community id, post id (a reply, or the question referred)
    profile_requested = Signal(str)  # member key (hex): a reference's subject
    conversation_requested = Signal(str)  # member key (hex): a message's sender
    failed = Signal(str)

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.model = NotificationsModel(self)
        self.cursor: dict[str, Any] | None = None  # None: where the node says it last told
        self.error = ""
        self._asking: int | None = None
        self._again = False
        self._last: dict[str, Any] | None = None  # the item the tray shows
        self.tray: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            icon = QApplication.windowIcon()
            if icon.isNull():
                style = QApplication.style()
                icon = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
            self.tray = QSystemTrayIcon(icon, self)
            self.tray.setToolTip("Kithnet")
            self.tray.messageClicked.connect(self._tray_clicked)
            self.tray.show()
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        bridge.arrived.connect(self.check)
        self.check()

    def check(self) -> None:
        """Ask the node for what arrived since the last look (again after the answer
        if one is on its way)."""
        if self._asking is not None:
            self._again = True
            return
        args: dict[str, Any] = {"limit": 50, "save": True}
        if self.cursor is not None:
            args["after"] = self.cursor
        self._asking = self.bridge.call("notifications", **args)

    def _answered(self, request: int, result: object) -> None:
        if request != self._asking or not isinstance(result, dict):
            return
        self._asking = None
        self.error = ""
        self.cursor = result["cursor"]
        items = list(result["items"])
        self.model.add(items)
        for item in items:
            self.notified.emit(item)
        self._pop_up(items, bool(result.get("more")))
        if self._again or result.get("more"):  # the rest is told by the next look
            self._again = False
            self.check()

    def _failed(self, request: int, message: str) -> None:
        if request == self._asking:
            self._asking = None
            self._again = False
            self.error = f"Could not check for notifications: {message}"
            self.failed.emit(self.error)

    def _pop_up(self, items: list[dict[str, Any]], more: bool) -> None:
        if self.tray is None or not items:
            return
        if len(items) == 1 and not more:
            self._last = items[0]
            self.tray.showMessage(items[0]["title"], items[0]["text"])
        else:
            self._last = None
            titles = "\n".join(i["title"] for i in items[-3:])
            self.tray.showMessage(f"{len(items)}{'+' if more else ''} new in Kithnet", titles)

    def _tray_clicked(self) -> None:
        if self._last is not None:
            self.open(self._last)

    def open(self, item: dict[str, Any]) -> None:
        """Emit what `item` is about, for the screens that show it."""
        self.chosen.emit(item)
        if item["kind"] == "reply" and item.get("community"):
            self.post_chosen.emit(item["community"], item["id"])
        elif item["kind"] == "referral" and item.get("community") and item.get("about"):
            self.post_chosen.emit(item["community"], item["about"])
        elif item["kind"] == "reference":
            self.profile_requested.emit(item.get("subject") or item["who"])
        elif item["kind"] == "message":
            self.conversation_requested.emit(item["who"])


EMPTY_HINT = "Replies, referrals, references and messages appear here"
CHOOSE_HINT = "Double-click a notification (or press Enter) to open what it is about"


class NotificationsDock(QDockWidget):
    """The in-app list of notifications: nothing is lost where there is no tray."""

    def __init__(self, notifier: Notifier, parent: QWidget | None = None) -> None:
        super().__init__("Notifications", parent)
        self.setObjectName("notifications")
        self.setAccessibleName("Notifications")
        self.notifier = notifier
        self.view = QListView()
        self.view.setAccessibleName("Notifications")
        self.view.setModel(notifier.model)
        self.view.setWordWrap(True)
        self.view.setAlternatingRowColors(True)
        self.seen = QPushButton("Mark all as seen")
        self.seen.setAccessibleName("Mark all notifications as seen")
        self.message = QLabel(EMPTY_HINT)
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Notifications status")
        self.message.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.seen)
        self.setWidget(body)
        self.seen.clicked.connect(notifier.model.mark_seen)
        self.view.activated.connect(self._activated)
        notifier.failed.connect(self.message.setText)
        # Under a list that has notifications, the hint says what choosing one does.
        notifier.model.rowsInserted.connect(self._hint)
        notifier.model.modelReset.connect(self._hint)

    def _hint(self) -> None:
        if self.message.text() in (EMPTY_HINT, CHOOSE_HINT):  # a failure stays shown
            self.message.setText(CHOOSE_HINT if self.notifier.model.rowCount() else EMPTY_HINT)

    def _activated(self, index: QModelIndex) -> None:
        item = index.data(ItemRole)
        if item:
            self.notifier.open(item)


class Notifications(QObject):
    """What the main window holds of this module: the notifier, its dock, and the
    button in the status bar (`bell`) that shows how many are unseen and opens the dock."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.notifier = Notifier(window.bridge, self)
        self.dock = NotificationsDock(self.notifier, window)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.bell = QPushButton()
        self.bell.setFlat(True)
        self.bell.setAccessibleName("Notifications")
        self.bell.setToolTip("Notifications (Ctrl+Shift+B)")
        window.statusBar().addPermanentWidget(self.bell)
        self.bell.clicked.connect(self.toggle)
        model = self.notifier.model
        for changed in (model.rowsInserted, model.dataChanged, model.modelReset):
            changed.connect(self._count)
        self.notifier.chosen.connect(self._chosen)
        self.notifier.profile_requested.connect(window.open_profile)
        self.notifier.conversation_requested.connect(window.open_messages)
        if self.notifier.tray is not None:  # clicking the tray icon brings the list up
            self.notifier.tray.activated.connect(lambda _reason: self.show_list())
        self.notifier.failed.connect(lambda message: window.statusBar().showMessage(message))
        self._count()

    def toggle(self) -> None:
        """Show the notifications (marking them seen once looked at), or hide them."""
        if not self.dock.isHidden():
            self.notifier.model.mark_seen()
            self.dock.hide()
        else:
            self.dock.show()
            self.dock.raise_()
            self.dock.view.setFocus()

    def show_list(self) -> None:
        """Bring the main window forward with the notifications open."""
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()
        if self.dock.isHidden():
            self.toggle()

    def _count(self) -> None:
        unseen = self.notifier.model.unseen
        # Words, not a bell sign: not every desktop has a font with emoji.
        self.bell.setText(f"Notifications ({unseen})" if unseen else "Notifications")
        self.bell.setAccessibleDescription(f"{unseen} unseen notifications")

    def _chosen(self, item: dict[str, Any]) -> None:
        if item["kind"] in ("reply", "referral") and item.get("community"):
            show_post(self.window, item["community"], item.get("thread") or item["id"])


def show_post(window: MainWindow, community: str, post: str) -> None:
    """Open `community` in the main window and select `post` in its feed (the post a
    reply belongs under: the feed lists top-level posts), looking through up to
    FIND_PAGES pages for it."""
    for row, shown in enumerate(window.communities.rows):
        if shown["id"] == community:
            window.sidebar.setCurrentIndex(window.communities.index(row))
            break
    else:
        window.statusBar().showMessage("You are not in that post's community any more")
        return
    _PostFinder(window, post).look()


class _PostFinder(QObject):
    """Selects a post in the window's feed once the page holding it has arrived."""

    def __init__(self, window: MainWindow, post: str) -> None:
        super().__init__(window)
        self.window = window
        self.post = post
        self.feed = window.feed
        self.pages = 0
        if self.feed is not None:
            self.feed.rowsInserted.connect(self.look)
        self.timer = QTimer(self)  # given up on when no page holding it comes
        self.timer.setSingleShot(True)
        self.timer.setInterval(GIVE_UP)
        self.timer.timeout.connect(self._give_up)
        self.timer.start()

    def _give_up(self) -> None:
        if self.window.feed is self.feed:
            self.window.statusBar().showMessage("That post is not in the feed any more", 5000)
        self.deleteLater()

    def look(self) -> None:
        feed = self.feed
        if feed is None or self.window.feed is not feed:
            self.deleteLater()  # the member opened something else meanwhile
            return
        for row, shown in enumerate(feed.rows):
            if shown["id"] == self.post:
                index = feed.index(row)
                self.window.feed_view.setCurrentIndex(index)
                self.window.feed_view.scrollTo(index)
                self.timer.stop()
                feed.rowsInserted.disconnect(self.look)
                self.deleteLater()
                return
        if feed.canFetchMore() and self.pages < FIND_PAGES:
            self.pages += 1
            feed.fetchMore()


def install(window: MainWindow) -> Notifications:
    """Notifications for the main window: the notifier, the dock and the status bar's
    button."""
    notifications = Notifications(window)
    window.add_action("view", "&Notifications", "Ctrl+Shift+B", notifications.toggle)
    return notifications


def open_search(window: MainWindow) -> SearchDialog:
    """The search dialog, over the community open in `window`; a chosen post is shown
    in the window's feed."""
    current = window.sidebar.currentIndex()
    row = current.data(ItemRole) if current.isValid() else None
    community = (row["id"], row["name"]) if row else None
    dialog = window.findChild(SearchDialog)
    if dialog is not None:  # one search window: brought forward, on the open community
        dialog.set_community(community)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        dialog.text.setFocus()
        dialog.text.selectAll()
        return dialog
    dialog = SearchDialog(window.bridge, community, window)
    dialog.profile_requested.connect(window.open_profile)
    dialog.chosen.connect(
        lambda row: show_post(window, row["community"], row["thread"]) if "thread" in row else None
    )
    dialog.show()
    return dialog
