"""List models over the node's answers, for Qt views. They hold only what was shown:
the feed fetches pages of posts as the view scrolls (`canFetchMore` / `fetchMore`),
through the bridge, and adds what arrives at the top, so a community of 100,000 posts
opens with one page and scrolls without loading the rest."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)

from kithnet.gui.bridge import Bridge

PAGE = 50
WINDOW = 2000  # posts a feed holds at most (see FeedModel)
Index = QModelIndex | QPersistentModelIndex

# Roles beyond DisplayRole: the whole record as the command returned it, and its id.
ItemRole = Qt.ItemDataRole.UserRole + 1
IdRole = Qt.ItemDataRole.UserRole + 2
KindRole = Qt.ItemDataRole.UserRole + 3  # a post's kind, in words: "Post", "Question", "Offer"
KINDS = {"post": "Post", "question": "Question", "offer": "Offer"}


class _Answers(QAbstractListModel):
    """A list model fed by bridge calls: requests this model made, and their answers."""

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.rows: list[dict[str, Any]] = []
        self.error = ""  # the last failure, in words
        self._pending: dict[int, str] = {}  # request -> what it was for
        bridge.answered.connect(self._on_answer)
        bridge.failed.connect(self._on_failure)

    def ask(self, purpose: str, command: str, **args: Any) -> None:
        self._pending[self.bridge.call(command, **args)] = purpose

    def _on_answer(self, request: int, result: object) -> None:
        purpose = self._pending.pop(request, None)
        if purpose is not None:
            self.answer(purpose, result)

    def _on_failure(self, request: int, message: str) -> None:
        if self._pending.pop(request, None) is not None:
            self.error = message

    def answer(self, purpose: str, result: Any) -> None:
        """Take an answer: by default, a list of rows that replaces what is shown."""
        self.beginResetModel()
        self.rows = list(result)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.display(row)
        if role == ItemRole:
            return row
        if role == IdRole:
            return row.get("id")
        if role == KindRole and "type" in row:
            return KINDS.get(row["type"], row["type"])
        return None

    def display(self, row: dict[str, Any]) -> str:
        return str(row.get("name") or row.get("text") or row.get("id", ""))


class CommunitiesModel(_Answers):
    """The member's communities with their unread counts (`community.list`)."""

    def refresh(self) -> None:
        self.ask("list", "community.list")

    def answer(self, purpose: str, result: Any) -> None:
        rows = list(result)
        if [r["id"] for r in rows] == [r["id"] for r in self.rows]:
            self.rows = rows  # the same communities: only their counts changed
            if rows:
                self.dataChanged.emit(self.index(0), self.index(len(rows) - 1))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def display(self, row: dict[str, Any]) -> str:
        unread = f"  ({row['unread']})" if row.get("unread") else ""
        lock = " 🔒" if row.get("visibility") == "private" else ""
        return f"{row['name']}{lock}{unread}"


class FeedModel(_Answers):
    """A community's posts, newest first, a page at a time (`feed.page`). It holds a
    window of at most WINDOW posts: scrolling on past it drops the newest ones (and
    scrolling back fetches them again, `fetch_newer`), so a view of it stays as quick
    at the 100,000th post as at the first (a tree view lays out every row it holds
    each time rows come or go)."""

    def __init__(self, bridge: Bridge, community: str, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.community = community
        self._next: list[Any] | None = None
        self._exhausted = False
        self._loading = False
        self.page = PAGE  # posts asked for by each fetchMore (the view asks more when flung)
        self.paced = False  # fetched only when its view asks (see canFetchMore)
        # Above the window: the cursor that fetches each block of newer posts dropped,
        # and its size, the block nearest the window last.
        self._above: list[tuple[list[Any] | None, int]] = []
        self._top: list[Any] | None = None  # the cursor of the post just above the window

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        # A paced feed says so only to its own view's asking (FeedView): Qt's tree view
        # fetches at every layout while the answer is yes, which would load it all.
        return self.has_more(parent) and not self.paced

    def has_more(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        """Whether older posts remain to fetch (and none are being fetched)."""
        return not parent.isValid() and not self._exhausted and not self._loading

    def has_newer(self) -> bool:
        """Whether newer posts were dropped from the window (and none are being fetched)."""
        return bool(self._above) and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if not self.has_more(parent):
            return
        self._loading = True
        before = self._next if self.rows else None
        self.ask("older", "feed.page", community=self.community, before=before, limit=self.page)

    def fetch_newer(self) -> None:
        """Fetch back the newest block of posts dropped from the window."""
        if not self.has_newer():
            return
        self._loading = True
        before, size = self._above[-1]
        # One more than the block: the post already first in the window shows that
        # the block still ends there (else newer posts came meanwhile).
        self.ask("back", "feed.page", community=self.community, before=before, limit=size + 1)

    def refresh(self) -> None:
        """Add posts that arrived since the newest shown (records came in, or the
        member posted)."""
        self.ask("newer", "feed.page", community=self.community, limit=PAGE)

    def _key(self, post: dict[str, Any]) -> tuple[int, str]:
        return (post["created_at"], post["id"])

    def _cursor(self, post: dict[str, Any]) -> list[Any]:
        return [post["created_at"], post["id"]]

    def answer(self, purpose: str, result: Any) -> None:
        posts = result["posts"]
        if purpose == "older":
            self._loading = False
            known = {row["id"] for row in self.rows}
            fresh = [p for p in posts if p["id"] not in known]
            if fresh:
                start = len(self.rows)
                self.beginInsertRows(QModelIndex(), start, start + len(fresh) - 1)
                self.rows.extend(fresh)
                self.endInsertRows()
            self._next = result["next"]
            self._exhausted = result["next"] is None
            if len(self.rows) > WINDOW:  # drop the newest, to fetch back if need be
                drop = len(self.rows) - WINDOW
                self._above.append((self._top, drop))
                self._top = self._cursor(self.rows[drop - 1])
                self.beginRemoveRows(QModelIndex(), 0, drop - 1)
                del self.rows[:drop]
                self.endRemoveRows()
            return
        if purpose == "back":
            self._loading = False
            before, _size = self._above.pop()
            first = self._key(self.rows[0]) if self.rows else None
            fresh = [p for p in posts if first is None or self._key(p) > first]
            if first is not None and result["next"] is not None and len(fresh) == len(posts):
                self._restart()  # newer posts came meanwhile: begin again at the top
                return
            if fresh:
                self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
                self.rows[:0] = fresh
                self.endInsertRows()
            self._top = before
            if len(self.rows) > WINDOW:  # drop the oldest, to fetch again if need be
                keep = WINDOW
                self.beginRemoveRows(QModelIndex(), keep, len(self.rows) - 1)
                del self.rows[keep:]
                self.endRemoveRows()
                self._next = self._cursor(self.rows[-1])
                self._exhausted = False
            return
        if not self.rows:  # nothing shown yet: this is the first page
            self._loading = True
            self.answer("older", result)
            return
        changed = {p["id"]: p for p in posts}
        if not self._above:  # the window shows the newest posts: add those that came
            self._add_new_and_forget_gone(result)
        # Edits, reactions and reply counts of the posts shown may have changed too.
        for row, post in enumerate(self.rows):
            if post["id"] in changed and changed[post["id"]] != post:
                self.rows[row] = changed[post["id"]]
                self.dataChanged.emit(self.index(row), self.index(row))

    def _restart(self) -> None:
        self.beginResetModel()
        self.rows = []
        self._above = []
        self._top = None
        self._next = None
        self._exhausted = False
        self.endResetModel()
        self.fetchMore()

    def _add_new_and_forget_gone(self, result: Any) -> None:
        posts = result["posts"]
        newest = self._key(self.rows[0])
        fresh = [p for p in posts if self._key(p) > newest]
        if fresh:
            self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
            self.rows[:0] = fresh
            self.endInsertRows()
        # Posts deleted or removed since: gone from the page that covers them (the whole
        # feed when the page is not full).
        if result["next"] is None and self._exhausted:
            oldest: tuple[int, str] | None = None
        elif posts:
            oldest = self._key(posts[-1])
        else:
            oldest = newest
        present = {p["id"] for p in posts}
        for row in range(len(self.rows) - 1, -1, -1):
            post = self.rows[row]
            if oldest is not None and self._key(post) < oldest:
                continue
            if post["id"] not in present:
                self._remove_row(row)

    def drop(self, post: str) -> None:
        """Take a post out of the feed (the member deleted or removed it)."""
        for row, shown in enumerate(self.rows):
            if shown["id"] == post:
                self._remove_row(row)
                return

    def _remove_row(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self.rows[row]
        self.endRemoveRows()

    def display(self, row: dict[str, Any]) -> str:
        label = {"post": "", "question": "Question: ", "offer": "Offer: "}[row["type"]]
        who = row.get("author_name") or row["author"][:12]
        tags = "  " + " ".join(f"#{t}" for t in row["tags"]) if row.get("tags") else ""
        edited = " (edited)" if row.get("edited") else ""
        return f"{who}\n{label}{row['text']}{edited}{tags}"
