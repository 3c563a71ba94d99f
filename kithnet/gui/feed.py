"""The community feed as a member sees it: posts, questions and offers drawn apart (a
kind badge and accent, offers' area and terms, skills as tags, pictures inline, replies
and reactions), a thread view to read and answer a post and react to it, and the
member's own posts edited or deleted from a context menu (moderators also remove).

The feed is a `QTreeView` with one column rather than a `QListView`: a list view with
rows of different heights asks every row's size each time rows are added, a tree view
only the rows it shows (scrolling per item), so a feed of 100,000 posts stays fast.
Pictures come from the node (`attachment.data`) and are decoded off the GUI thread."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPalette,
    QPixmap,
    QResizeEvent,
    QShortcut,
    QTextLayout,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from kithnet.gui.bridge import Bridge
from kithnet.gui.models import KINDS, PAGE, FeedModel, ItemRole, _Answers

Index = QModelIndex | QPersistentModelIndex

REACTIONS = ("👍", "❤️", "😂", "🎉", "🙏")
PAD = 8  # px around a row's content
BAR = 4  # px: the accent bar at a row's left edge
GAP = 4  # px between the parts of a row
INDENT = 24  # px per level of a reply in a thread
THUMB = QSize(240, 120)  # a picture's box in the feed
FULL = 1600  # px: pictures are kept at most this wide or high
PREFETCH = 10  # rows: the next page is asked for this close to the end
MAX_PAGE = 500  # posts: the largest page, asked for while the member waits at the end
PICTURES_KEPT = 300  # decoded pictures kept (the least recently drawn are dropped)


def relative_time(created_at_ms: int, now_ms: int | None = None) -> str:
    """'just now', '5 min ago', '3 h ago', 'yesterday', '4 days ago', or the date."""
    now = time.time() * 1000 if now_ms is None else now_ms
    seconds = max(0, (now - created_at_ms) / 1000)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 2 * 86400:
        return "yesterday"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)} days ago"
    return time.strftime("%d %b %Y", time.localtime(created_at_ms / 1000))


def accent(kind: str, palette: QPalette) -> QColor:
    """A kind's colour, from the palette (light or dark alike): posts the mid tone,
    questions the highlight, offers the highlight turned a third round the wheel."""
    if kind == "question":
        return palette.color(QPalette.ColorRole.Highlight)
    if kind == "offer":
        base = palette.color(QPalette.ColorRole.Highlight)
        return QColor.fromHsv((base.hsvHue() + 120) % 360, base.hsvSaturation(), base.value())
    return palette.color(QPalette.ColorRole.Mid)


def _on(colour: QColor, palette: QPalette) -> QColor:
    """Whichever of the palette's text and base colours reads better on `colour`."""
    text = palette.color(QPalette.ColorRole.Text)
    base = palette.color(QPalette.ColorRole.Base)
    light = colour.lightness()
    return text if abs(text.lightness() - light) >= abs(base.lightness() - light) else base


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""


def is_picture(attachment: dict[str, Any]) -> bool:
    return str(attachment.get("mime", "")).startswith("image/")


# Pictures --------------------------------------------------------------------------------


class _Decoder(QObject):
    """Decodes pictures on the thread pool; one for the app, never deleted, so a decode
    that ends after its screen closed has somewhere to say so."""

    decoded = Signal(object, object)  # key, QImage (None if it could not be decoded)

    def start(self, key: tuple[str, int], data: bytes) -> None:
        QThreadPool.globalInstance().start(lambda: self.decoded.emit(key, _decode(data)))


def _decode(data: bytes) -> QImage | None:
    image = QImage()
    if not image.loadFromData(data) or image.isNull():
        return None
    if image.width() > FULL or image.height() > FULL:
        image = image.scaled(
            FULL,
            FULL,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return image


_decoder: _Decoder | None = None


def _the_decoder() -> _Decoder:
    global _decoder
    if _decoder is None:
        _decoder = _Decoder()
    return _decoder


class Pictures(QObject):
    """The pictures of posts, asked of the node when first drawn: `thumbnail` and
    `picture` give the pixmap once it is here, else None and `state` says why (still
    coming, too big, damaged...). `changed(post)` when one arrives or fails."""

    changed = Signal(str)

    LOADING = "Picture coming…"

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._full: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self._thumbs: dict[tuple[str, int], QPixmap] = {}
        self._states: dict[tuple[str, int], str] = {}
        self._asked: dict[int, tuple[str, int]] = {}
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        _the_decoder().decoded.connect(self._decoded)

    def state(self, post: str, index: int) -> str:
        """'' once the picture is here, else what to show instead (and it is asked for)."""
        key = (post, index)
        if key in self._full:
            self._full.move_to_end(key)
            return ""
        if key not in self._states:
            self._states[key] = self.LOADING
            self._asked[self.bridge.call("attachment.data", post=post, index=index)] = key
        return self._states[key]

    def thumbnail(self, post: str, index: int) -> QPixmap | None:
        return self._thumbs.get((post, index)) if not self.state(post, index) else None

    def picture(self, post: str, index: int) -> QPixmap | None:
        return self._full.get((post, index)) if not self.state(post, index) else None

    def retry(self) -> None:
        """Ask again for pictures that could not be fetched (a member came online)."""
        for key, state in list(self._states.items()):
            if state.startswith("Picture not available"):
                del self._states[key]
                self.changed.emit(key[0])

    def _answered(self, request: int, result: object) -> None:
        key = self._asked.pop(request, None)
        if key is None or not isinstance(result, dict):
            return
        if result.get("data") is None:
            self._states[key] = f"Picture too big to show here ({_size(int(result['size']))})"
            self.changed.emit(key[0])
        else:
            _the_decoder().start(key, result["data"])

    def _failed(self, request: int, message: str) -> None:
        key = self._asked.pop(request, None)
        if key is not None:
            self._states[key] = f"Picture not available: {message}"
            self.changed.emit(key[0])

    def _decoded(self, key: tuple[str, int], image: QImage | None) -> None:
        if self._states.get(key) != self.LOADING:
            return  # not one of ours
        if image is None:
            self._states[key] = "This picture cannot be shown: it is damaged or of an unknown kind"
        else:
            full = QPixmap.fromImage(image)
            self._full[key] = full
            self._thumbs[key] = (
                full.scaled(
                    THUMB,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
                if full.width() > THUMB.width() or full.height() > THUMB.height()
                else full
            )
            del self._states[key]
            while len(self._full) > PICTURES_KEPT:
                old, _ = self._full.popitem(last=False)
                self._thumbs.pop(old, None)
        self.changed.emit(key[0])


# Drawing a post --------------------------------------------------------------------------


@dataclass
class _Piece:
    """One thing drawn in a row: text (wrapped), a badge, a tag, or a picture box."""

    what: str  # "text", "meta", "badge", "tag", "picture", "file"
    rect: QRect
    text: str = ""
    layout: QTextLayout | None = None
    picture: int = 0  # the attachment's index (from 1) for "picture"


@dataclass
class _Layout:
    pieces: list[_Piece] = field(default_factory=list)
    height: int = 0


class FeedDelegate(QStyledItemDelegate):
    """Draws a post: the kind's badge and accent bar, author and when, "(edited)", the
    text wrapped to the width, an offer's area and terms, skills as tags, pictures, and
    the reply count and reactions. Size hints come from the same layout as painting, so
    nothing is cut off at any width."""

    def __init__(self, pictures: Pictures, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pictures = pictures
        self._cache: OrderedDict[tuple[Any, ...], _Layout] = OrderedDict()

    # What a row shows, in words (also what tests and screen readers read)

    def texts(self, row: dict[str, Any]) -> list[str]:
        """The texts a row shows, top to bottom."""
        return [p.text for p in self._layout(row, 600, QFont()).pieces if p.text]

    def _parts(self, row: dict[str, Any]) -> dict[str, Any]:
        who = row.get("author_name") or row["author"][:12]
        meta = f"{who} · {relative_time(row['created_at'])}"
        if row.get("edited"):
            meta += " (edited)"
        offer = []
        if row.get("area"):
            offer.append(f"Area: {row['area']}")
        if row.get("terms"):
            offer.append(f"Terms: {row['terms']}")
        replies = int(row.get("replies", 0))
        footer = [f"💬 {replies} {'reply' if replies == 1 else 'replies'}"] if replies else []
        footer += [f"{emoji} {count}" for emoji, count in sorted(row.get("reactions", {}).items())]
        return {
            "badge": KINDS.get(row["type"], row["type"]),
            "meta": meta,
            "text": row.get("text", ""),
            "offer": " · ".join(offer),
            "tags": list(row.get("tags", [])),
            "footer": "   ".join(footer),
            "attachments": list(row.get("attachments", [])),
        }

    # Layout

    def _layout(self, row: dict[str, Any], width: int, font: QFont) -> _Layout:
        key = (
            row["id"],
            width,
            font.key(),
            row.get("text"),
            tuple(row.get("tags", ())),
            row.get("edited"),
            row.get("replies"),
            tuple(sorted(row.get("reactions", {}).items())),
            row["created_at"] // 60_000,
            int(time.time() // 60),
        )
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        made = self._make_layout(row, width, font)
        self._cache[key] = made
        while len(self._cache) > 500:
            self._cache.popitem(last=False)
        return made

    def _make_layout(self, row: dict[str, Any], width: int, font: QFont) -> _Layout:
        parts = self._parts(row)
        left = BAR + PAD + INDENT * int(row.get("depth", 0))
        inner = max(40, width - left - PAD)
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        bold = QFont(small)
        bold.setBold(True)
        out = _Layout()
        y = PAD
        # The kind's badge, then author and when.
        badge_metrics = QFontMetrics(bold)
        badge = QRect(
            left, y, badge_metrics.horizontalAdvance(parts["badge"]) + 12, badge_metrics.height()
        )
        out.pieces.append(_Piece("badge", badge, parts["badge"]))
        meta_left = badge.right() + 1 + GAP * 2
        meta_layout, meta_height = _wrap(parts["meta"], small, max(40, left + inner - meta_left))
        out.pieces.append(
            _Piece(
                "meta",
                QRect(meta_left, y, left + inner - meta_left, meta_height),
                parts["meta"],
                meta_layout,
            )
        )
        y += max(badge.height(), meta_height) + GAP
        for what, text, used in (
            ("text", parts["text"], font),
            ("offer", parts["offer"], bold),
        ):
            if text:
                layout, height = _wrap(text, used, inner)
                out.pieces.append(_Piece(what, QRect(left, y, inner, height), text, layout))
                y += height + GAP
        # Skills as tags, flowing onto more lines as needed.
        if parts["tags"]:
            metrics = QFontMetrics(small)
            x = left
            line = metrics.height() + 4
            for tag in parts["tags"]:
                text = f"#{tag}"
                w = min(inner, metrics.horizontalAdvance(text) + 12)
                if x > left and x + w > left + inner:
                    x = left
                    y += line + GAP
                out.pieces.append(_Piece("tag", QRect(x, y, w, line), text))
                x += w + GAP
            y += line + GAP
        # Pictures in boxes of one size (so a row keeps its height as they arrive);
        # other files as a line each.
        pictures = [i for i, a in enumerate(parts["attachments"], start=1) if is_picture(a)]
        if pictures:
            per_line = max(1, (inner + GAP) // (THUMB.width() + GAP))
            box = QSize(min(THUMB.width(), inner), THUMB.height())
            for n, index in enumerate(pictures):
                if n and n % per_line == 0:
                    y += box.height() + GAP
                x = left + (n % per_line) * (box.width() + GAP)
                out.pieces.append(_Piece("picture", QRect(QPoint(x, y), box), picture=index))
            y += box.height() + GAP
        for attachment in parts["attachments"]:
            if not is_picture(attachment):
                text = f"📎 {attachment.get('name') or 'file'} ({_size(int(attachment['size']))})"
                layout, height = _wrap(text, small, inner)
                out.pieces.append(_Piece("file", QRect(left, y, inner, height), text, layout))
                y += height + GAP
        if parts["footer"]:
            layout, height = _wrap(parts["footer"], small, inner)
            out.pieces.append(
                _Piece("footer", QRect(left, y, inner, height), parts["footer"], layout)
            )
            y += height + GAP
        out.height = y - GAP + PAD
        return out

    # QStyledItemDelegate

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        row = index.data(ItemRole)
        if not isinstance(row, dict):
            return super().sizeHint(option, index)
        width = _width(option)
        return QSize(width, self._layout(row, width, option.font).height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = index.data(ItemRole)
        if not isinstance(row, dict):
            super().paint(painter, option, index)
            return
        rect: QRect = option.rect
        palette: QPalette = option.palette
        widget = option.widget
        style = widget.style() if widget is not None else None
        background = QStyleOptionViewItem(option)
        self.initStyleOption(background, index)
        background.text = ""
        if style is not None:
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, background, painter, widget
            )
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_colour = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        muted = palette.color(QPalette.ColorRole.PlaceholderText) if not selected else text_colour
        colour = accent(row["type"], palette)
        layout = self._layout(row, rect.width(), option.font)
        painter.save()
        painter.translate(rect.topLeft())
        painter.setClipRect(QRect(0, 0, rect.width(), rect.height()))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        depth = int(row.get("depth", 0))
        painter.fillRect(QRect(INDENT * depth, 0, BAR, rect.height()), colour)
        small = QFont(option.font)
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.9))
        bold = QFont(small)
        bold.setBold(True)
        for piece in layout.pieces:
            if piece.what == "badge":
                # On a selected row (the highlight's colour) the badge turns inside out.
                fill = text_colour if selected else colour
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(fill)
                painter.drawRoundedRect(piece.rect, 4, 4)
                painter.setPen(
                    palette.color(QPalette.ColorRole.Highlight)
                    if selected
                    else _on(colour, palette)
                )
                painter.setFont(bold)
                painter.drawText(piece.rect, Qt.AlignmentFlag.AlignCenter, piece.text)
            elif piece.what == "tag":
                painter.setPen(colour)
                painter.setBrush(palette.color(QPalette.ColorRole.AlternateBase))
                painter.drawRoundedRect(piece.rect.adjusted(0, 0, -1, -1), 6, 6)
                painter.setPen(palette.color(QPalette.ColorRole.Text))  # on AlternateBase
                painter.setFont(small)
                painter.drawText(
                    piece.rect,
                    Qt.AlignmentFlag.AlignCenter,
                    QFontMetrics(small).elidedText(
                        piece.text, Qt.TextElideMode.ElideRight, piece.rect.width() - 8
                    ),
                )
            elif piece.what == "picture":
                self._paint_picture(painter, piece, row, palette)
            elif piece.layout is not None:
                painter.setPen(muted if piece.what in ("meta", "footer", "file") else text_colour)
                piece.layout.draw(painter, piece.rect.topLeft())
        painter.restore()

    def _paint_picture(
        self, painter: QPainter, piece: _Piece, row: dict[str, Any], palette: QPalette
    ) -> None:
        thumb = self.pictures.thumbnail(row["id"], piece.picture)
        if thumb is not None and not thumb.isNull():
            painter.drawPixmap(piece.rect.topLeft(), thumb)
            return
        painter.setPen(palette.color(QPalette.ColorRole.Mid))
        painter.setBrush(palette.color(QPalette.ColorRole.AlternateBase))
        painter.drawRoundedRect(piece.rect.adjusted(0, 0, -1, -1), 4, 4)
        painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            piece.rect.adjusted(6, 6, -6, -6),
            Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
            "🖼 " + self.pictures.state(row["id"], piece.picture),
        )


def _width(option: QStyleOptionViewItem) -> int:
    """The width a row is laid out in: the option's, or (a tree view asks heights with
    no width) its view's."""
    widget = option.widget
    if option.rect.width() > 0:
        return max(120, option.rect.width())
    if isinstance(widget, QAbstractItemView):
        return max(120, widget.viewport().width())
    return max(120, option.rect.width())


def _wrap(text: str, font: QFont, width: int) -> tuple[QTextLayout, int]:
    """`text` laid out in lines of at most `width` px, breaking inside a word only
    when a word is longer than a line; and its height."""
    layout = QTextLayout(text, font)
    option = QTextOption()
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    layout.setTextOption(option)
    layout.beginLayout()
    y = 0.0
    while True:
        line = layout.createLine()
        if not line.isValid():
            break
        line.setLineWidth(width)
        line.setPosition(QPoint(0, int(y)).toPointF())
        y += line.height()
    layout.endLayout()
    return layout, int(y + 0.999)


# The feed's view -------------------------------------------------------------------------


class _PostView(QTreeView):
    """A one-column tree view drawn by FeedDelegate, scrolling per post."""

    def __init__(self, pictures: Pictures, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pictures = pictures
        self.delegate = FeedDelegate(pictures, self)
        self.setItemDelegate(self.delegate)
        self.setHeaderHidden(True)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(False)
        self.setWordWrap(True)
        self.setAlternatingRowColors(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerItem)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # A method of this view, not a lambda: Qt drops the connection when the view is
        # destroyed (a thread window shares the feed's pictures and closes first).
        pictures.changed.connect(self._picture_changed)
        self._width = 0

    def _picture_changed(self, _post: str) -> None:
        self.viewport().update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.viewport().width() != self._width:
            self._width = self.viewport().width()
            self.scheduleDelayedItemsLayout()  # rows wrap anew: their heights change

    def current_post(self) -> dict[str, Any] | None:
        index = self.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        return row if isinstance(row, dict) else None


class FeedView(_PostView):
    """A community's feed. Enter or a double click opens a post's thread; the context
    menu shows the author's profile, and edits, deletes or (moderators) removes."""

    profile_requested = Signal(str)  # the member's public key, hex
    marked_read = Signal(str)  # a community's id: its unread count is now 0
    message = Signal(str)  # what happened, or what failed, in words
    painted = Signal()  # the view drew posts (the benchmark times the first)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(Pictures(bridge), parent)
        self.pictures.setParent(self)
        self.bridge = bridge
        self.setAccessibleName("Feed")
        self.feed: FeedModel | None = None
        self.roles: list[str] = []
        self.threads: list[ThreadDialog] = []
        self._anchor = QPersistentModelIndex()  # the post to keep first as rows change
        self._asked: dict[int, tuple[str, str]] = {}  # request -> (what, post id)
        self.doubleClicked.connect(self._open_index)
        self.verticalScrollBar().valueChanged.connect(self._near_end)
        self.verticalScrollBar().rangeChanged.connect(self._near_end)
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        bridge.arrived.connect(self.pictures.retry)

    def open(self, community: dict[str, Any]) -> FeedModel:
        """Show a community's feed (its first page) and mark it read."""
        previous = self.feed
        self.feed = FeedModel(self.bridge, community["id"], self)
        self.feed.paced = True
        self.roles = list(community.get("roles", []))
        self.setModel(self.feed)
        if previous is not None:
            previous.deleteLater()  # and with it, its hold on the node's answers
        self.feed.rowsInserted.connect(self._new_posts)
        self.feed.rowsAboutToBeInserted.connect(self._hold_place)
        self.feed.rowsAboutToBeRemoved.connect(self._hold_place)
        self.feed.fetchMore()
        self._mark_read()
        return self.feed

    def _hold_place(self) -> None:
        """Rows come or go above the first one shown: keep that one first (unless the
        member is at the top, where newly arrived posts are to be seen)."""
        if self.verticalScrollBar().value() > 0 and not self._anchor.isValid():
            self._anchor = QPersistentModelIndex(self.indexAt(QPoint(1, 1)))

    def updateGeometries(self) -> None:
        super().updateGeometries()
        if self._anchor.isValid():
            row = self._anchor.row()
            self._anchor = QPersistentModelIndex()
            self.verticalScrollBar().setValue(row)
        self._near_end()  # rows came or went: more may be wanted (the range may not change)

    def _near_end(self) -> None:
        """Fetch the next page when the member nears the end of what is shown (or it
        does not fill the view); a larger one while they wait at the very end."""
        feed = self.feed
        bar = self.verticalScrollBar()
        if feed is not None and bar.value() <= PREFETCH and feed.has_newer():
            feed.page = PAGE
            feed.fetch_newer()
            return
        if feed is None or not feed.has_more():
            return
        if bar.value() < bar.maximum() - PREFETCH:
            return
        waiting = bar.maximum() > 0 and bar.value() == bar.maximum()
        feed.page = min(feed.page * 2, MAX_PAGE) if waiting else PAGE
        feed.fetchMore()

    def _mark_read(self) -> None:
        if self.feed is not None:
            self._asked[self.bridge.call("community.read", community=self.feed.community)] = (
                "read",
                self.feed.community,
            )

    def _new_posts(self, _parent: QModelIndex, first: int, _last: int) -> None:
        if first == 0 and self.feed is not None and self.feed.rowCount() > _last + 1:
            self._mark_read()  # arrived while the member reads this community

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self.feed is not None and self.feed.rowCount():
            self.painted.emit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        row = self.current_post()
        if row is not None and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.open_thread(row)
            return
        if row is not None and row.get("mine") and event.matches(QKeySequence.StandardKey.Delete):
            self.delete_post(row)
            return
        if (
            row is not None
            and row.get("mine")
            and event.key() == Qt.Key.Key_E
            and (event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        ):
            self.edit_post(row)
            return
        super().keyPressEvent(event)

    def _open_index(self, index: QModelIndex) -> None:
        row = index.data(ItemRole)
        if isinstance(row, dict):
            self.open_thread(row)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        index = self.indexAt(event.pos())
        row = index.data(ItemRole) if index.isValid() else None
        if isinstance(row, dict):
            self.menu_for(row, self).popup(event.globalPos())

    # What a member can do with a post

    def menu_for(self, row: dict[str, Any], parent: QWidget) -> QMenu:
        """The context menu of a post: what this member may do with it."""
        menu = QMenu(parent)
        menu.setAccessibleName("Post actions")
        if not row.get("reply_to"):
            menu.addAction("Open thread", QKeySequence("Return"), lambda: self.open_thread(row))
        menu.addAction("Show profile", lambda: self.profile_requested.emit(row["author"]))
        if row.get("mine"):
            menu.addAction("Edit…", QKeySequence("Ctrl+E"), lambda: self.edit_post(row))
            menu.addAction(
                "Delete…", QKeySequence.StandardKey.Delete, lambda: self.delete_post(row)
            )
        if {"owner", "moderator"} & set(self.roles):
            menu.addAction("Remove…", lambda: self.remove_post(row))
        return menu

    def open_thread(self, row: dict[str, Any]) -> ThreadDialog:
        dialog = ThreadDialog(self, row["id"], self.window())
        dialog.finished.connect(lambda _: self.threads.remove(dialog))
        self.threads.append(dialog)
        dialog.show()
        return dialog

    def edit_post(self, row: dict[str, Any]) -> QInputDialog:
        """Asks for the new text; on OK the post is edited."""
        dialog = QInputDialog(self.window())
        dialog.setWindowTitle("Edit your post")
        dialog.setLabelText("The post's new text")
        dialog.setOption(QInputDialog.InputDialogOption.UsePlainTextEditForTextInput)
        dialog.setTextValue(row.get("text", ""))
        dialog.setAccessibleName("Edit your post")

        def done() -> None:
            text = dialog.textValue().strip()
            if not text:
                self.message.emit("A post needs some text: nothing was changed")
                return
            self._asked[self.bridge.call("edit", post=row["id"], text=text)] = ("edit", row["id"])

        dialog.accepted.connect(done)
        dialog.open()
        return dialog

    def delete_post(self, row: dict[str, Any]) -> QMessageBox:
        """Asks to be sure; on Yes the post is deleted for everyone."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Delete this post?",
            "Delete this post? Members' apps will hide it too.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self.window(),
        )
        box.setAccessibleName("Delete this post?")

        def done(button: QMessageBox.StandardButton) -> None:
            if button == QMessageBox.StandardButton.Yes:
                self._asked[self.bridge.call("delete", record=row["id"])] = ("delete", row["id"])

        box.finished.connect(lambda code: done(QMessageBox.StandardButton(code)))
        box.open()
        return box

    def remove_post(self, row: dict[str, Any]) -> QInputDialog:
        """A moderator removes a post, with a reason the moderation log keeps."""
        dialog = QInputDialog(self.window())
        dialog.setWindowTitle("Remove this post")
        dialog.setLabelText("Why is it removed? (members see it in the moderation log)")
        dialog.setAccessibleName("Remove this post")

        def done() -> None:
            reason = dialog.textValue().strip()
            self._asked[self.bridge.call("community.remove", record=row["id"], reason=reason)] = (
                "remove",
                row["id"],
            )

        dialog.accepted.connect(done)
        dialog.open()
        return dialog

    def changed(self) -> None:
        """Something in a thread changed (a reply, a reaction): the feed shows it."""
        if self.feed is not None:
            self.feed.refresh()

    def _answered(self, request: int, result: object) -> None:
        asked = self._asked.pop(request, None)
        if asked is None:
            return
        what, post = asked
        if what == "read":
            self.marked_read.emit(post)
            return
        if what in ("delete", "remove") and self.feed is not None:
            self.feed.drop(post)
        self.message.emit({"edit": "Edited", "delete": "Deleted", "remove": "Removed"}[what])
        self.changed()
        for thread in self.threads:
            thread.refresh()

    def _failed(self, request: int, message: str) -> None:
        asked = self._asked.pop(request, None)
        if asked is not None:
            self.message.emit(message)


# Threads -------------------------------------------------------------------------------


class ThreadModel(_Answers):
    """A post and its replies, depth first (`thread`)."""

    went = Signal(str)  # the thread cannot be shown (its post was deleted or removed)

    def __init__(self, bridge: Bridge, post: str, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.post = post
        self.gone = False  # the post was deleted or removed

    def refresh(self) -> None:
        self.ask("thread", "thread", post=self.post)

    def answer(self, purpose: str, result: Any) -> None:
        posts = list(result["posts"])
        if [p["id"] for p in posts] == [p["id"] for p in self.rows]:
            self.rows = posts  # the same posts: their reactions or texts changed
            if posts:
                self.dataChanged.emit(self.index(0), self.index(len(posts) - 1))
            return
        self.beginResetModel()
        self.rows = posts
        self.endResetModel()

    def _on_failure(self, request: int, message: str) -> None:
        if request in self._pending:
            self.gone = True
            self.went.emit(message)
        super()._on_failure(request, message)

    def display(self, row: dict[str, Any]) -> str:
        who = row.get("author_name") or row["author"][:12]
        return f"{who}\n{row.get('text', '')}"


class ThreadDialog(QDialog):
    """A post with its replies: pictures at full size, reactions to give or take
    back, and a reply composer (Ctrl+Return sends)."""

    def __init__(self, feed: FeedView, post: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.bridge = feed.bridge
        self.community = feed.feed.community if feed.feed is not None else ""
        self.setWindowTitle("Thread")
        self.setAccessibleName("Thread")
        self.model = ThreadModel(self.bridge, post, self)
        self.view = _PostView(feed.pictures)
        self.view.setAccessibleName("Thread posts")
        self.view.setModel(self.model)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        self.pictures = QWidget()
        self.picture_row = QHBoxLayout(self.pictures)
        self.picture_row.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidget(self.pictures)
        scroll.setWidgetResizable(True)
        scroll.setAccessibleName("Pictures")
        scroll.setMaximumHeight(440)
        self.picture_area = scroll
        scroll.hide()
        self.reactions: dict[str, QToolButton] = {}
        react_row = QHBoxLayout()
        for n, emoji in enumerate(REACTIONS, start=1):
            button = QToolButton()
            button.setText(emoji)
            button.setCheckable(True)
            button.setAccessibleName(f"React {emoji}")
            button.setToolTip(f"React {emoji} (Alt+{n}); again to take it back")
            button.setShortcut(QKeySequence(f"Alt+{n}"))
            button.clicked.connect(lambda _=False, e=emoji: self.react(e))
            react_row.addWidget(button)
            self.reactions[emoji] = button
        react_row.addStretch(1)
        self.replying = QLabel("")
        self.replying.setWordWrap(True)
        self.replying.setAccessibleName("Replying to")
        self.composer = QPlainTextEdit()
        self.composer.setAccessibleName("Write a reply")
        self.composer.setPlaceholderText("Write a reply…")
        self.composer.setMaximumHeight(90)
        self.send = QPushButton("Reply")
        self.send.setAccessibleName("Reply")
        self.send.setToolTip("Reply (Ctrl+Return)")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Status")
        layout = QVBoxLayout(self)
        layout.addWidget(scroll)
        layout.addWidget(self.view, 1)
        layout.addLayout(react_row)
        layout.addWidget(self.replying)
        layout.addWidget(self.composer)
        layout.addWidget(self.send)
        layout.addWidget(self.message)
        self.resize(640, 720)
        self._asked: dict[int, str] = {}
        self._pictures_of: str | None = None
        self.send.clicked.connect(self.reply)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.reply)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.model.went.connect(self._went)
        self.model.modelReset.connect(self._shown)
        self.model.dataChanged.connect(self._shown)
        self.view.selectionModel().currentChanged.connect(self._shown)
        feed.pictures.changed.connect(self._picture_changed)
        self.bridge.answered.connect(self._answered)
        self.bridge.failed.connect(self._failed)
        self.bridge.arrived.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.model.refresh()

    def _went(self, message: str) -> None:
        self.message.setText(message[:1].upper() + message[1:])
        self.send.setEnabled(False)
        self.composer.setEnabled(False)
        for button in self.reactions.values():
            button.setEnabled(False)

    def selected(self) -> dict[str, Any] | None:
        """The post chosen in the thread (the first, the thread's post, by default)."""
        return self.view.current_post() or (self.model.rows[0] if self.model.rows else None)

    def _shown(self) -> None:
        if self.model.rows and not self.view.currentIndex().isValid():
            self.view.setCurrentIndex(self.model.index(0))
            return
        post = self.selected()
        if post is None:
            return
        who = post.get("author_name") or post["author"][:12]
        self.replying.setText(f"Replying to {who}: {post.get('text', '')[:80]}")
        mine = set(post.get("my_reactions", []))
        for emoji, button in self.reactions.items():
            count = post.get("reactions", {}).get(emoji, 0)
            button.setChecked(emoji in mine)
            button.setText(f"{emoji} {count}" if count else emoji)
        self._show_pictures(post)

    def _picture_changed(self, post: str) -> None:
        if post == self._pictures_of:
            self._pictures_of = None
            selected = self.selected()
            if selected is not None:
                self._show_pictures(selected)

    def _show_pictures(self, post: dict[str, Any]) -> None:
        if post["id"] == self._pictures_of:
            return
        self._pictures_of = post["id"]
        while self.picture_row.count():
            item = self.picture_row.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        shown = False
        for index, attachment in enumerate(post.get("attachments", []), start=1):
            if not is_picture(attachment):
                continue
            shown = True
            label = QLabel()
            label.setAccessibleName(f"Picture {index}")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture = self.feed.pictures.picture(post["id"], index)
            if picture is None:
                label.setText(self.feed.pictures.state(post["id"], index))
                label.setWordWrap(True)
                label.setMinimumSize(THUMB)
            else:
                label.setPixmap(
                    picture.scaled(
                        QSize(600, 420),
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation,
                    )
                    if picture.width() > 600 or picture.height() > 420
                    else picture
                )
            self.picture_row.addWidget(label)
        self.picture_area.setVisible(shown)

    def picture_labels(self) -> list[QLabel]:
        labels = []
        for i in range(self.picture_row.count()):
            item = self.picture_row.itemAt(i)
            widget = item.widget() if item is not None else None
            if isinstance(widget, QLabel):
                labels.append(widget)
        return labels

    def _menu(self, point: QPoint) -> None:
        index = self.view.indexAt(point)
        row = index.data(ItemRole) if index.isValid() else None
        if isinstance(row, dict):
            self.feed.menu_for(row, self).popup(self.view.viewport().mapToGlobal(point))

    def reply(self) -> None:
        post = self.selected()
        text = self.composer.toPlainText().strip()
        if post is None:
            return
        if not text:
            self.message.setText("Write your reply first")
            return
        self.send.setEnabled(False)
        self.message.setText("Sending…")
        request = self.bridge.call("post", community=self.community, text=text, reply_to=post["id"])
        self._asked[request] = "reply"

    def react(self, emoji: str) -> None:
        post = self.selected()
        if post is None:
            return
        undo = emoji in post.get("my_reactions", [])
        self._asked[self.bridge.call("react", post=post["id"], emoji=emoji, undo=undo)] = "react"

    def _answered(self, request: int, result: object) -> None:
        what = self._asked.pop(request, None)
        if what is None:
            return
        if what == "reply":
            self.composer.clear()
            self.send.setEnabled(True)
            self.message.setText("Replied")
        self.refresh()
        self.feed.changed()

    def _failed(self, request: int, message: str) -> None:
        if self._asked.pop(request, None) is not None:
            self.send.setEnabled(True)
            self.message.setText(message)
            self._shown()  # the reaction buttons show what holds
