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
    """A community's posts, newest first, a page at a time (`feed.page`)."""

    def __init__(self, bridge: Bridge, community: str, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.community = community
        self._next: list[Any] | None = None
        self._exhausted = False
        self._loading = False
        self.page = PAGE  # posts asked for by each fetchMore (the view asks more when flung)
        self.paced = False  # fetched only when its view asks (see canFetchMore)

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        # A paced feed says so only to its own view's asking (FeedView): Qt's tree view
        # fetches at every layout while the answer is yes, which would load it all.
        return self.has_more(parent) and not self.paced

    def has_more(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        """Whether older posts remain to fetch (and none are being fetched)."""
        return not parent.isValid() and not self._exhausted and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if not self.has_more(parent):
            return
        self._loading = True
        before = self._next if self.rows else None
        self.ask("older", "feed.page", community=self.community, before=before, limit=self.page)

    def refresh(self) -> None:
        """Add posts that arrived since the newest shown (records came in, or the
        member posted)."""
        self.ask("newer", "feed.page", community=self.community, limit=PAGE)

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
            return
        if not self.rows:  # nothing shown yet: this is the first page
            self._loading = True
            self.answer("older", result)
            return
        newest = (self.rows[0]["created_at"], self.rows[0]["id"])
        fresh = [p for p in posts if (p["created_at"], p["id"]) > newest]
        if fresh:
            self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
            self.rows[:0] = fresh
            self.endInsertRows()
        # Posts deleted or removed since: gone from the page that covers them (the whole
        # feed when the page is not full).
        if result["next"] is None:
            oldest: tuple[int, str] | None = None
        elif posts:
            oldest = (posts[-1]["created_at"], posts[-1]["id"])
        else:
            oldest = newest
        present = {p["id"] for p in posts}
        for row in range(len(self.rows) - 1, -1, -1):
            post = self.rows[row]
            if oldest is not None and (post["created_at"], post["id"]) < oldest:
                continue
            if post["id"] not in present:
                self._remove_row(row)
        # Edits, reactions and reply counts of the posts shown may have changed too.
        changed = {p["id"]: p for p in posts}
        for row, post in enumerate(self.rows):
            if post["id"] in changed and changed[post["id"]] != post:
                self.rows[row] = changed[post["id"]]
                self.dataChanged.emit(self.index(row), self.index(row))

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
