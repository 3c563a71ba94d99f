"""Words in an empty list: what goes there and how it comes, drawn in the palette's
placeholder colour where the list's rows would be, so an empty pane never looks broken."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QAbstractItemView, QListWidget

MARGIN = 8  # pixels between the words and the list's edge


class EmptyListWords(QObject):
    """Draws `text` in `view` while its model has no rows (see `say_when_empty`)."""

    def __init__(self, view: QAbstractItemView, text: str) -> None:
        super().__init__(view)
        self.view = view
        self.text = text
        view.viewport().installEventFilter(self)

    def empty(self) -> bool:
        if isinstance(self.view, QListWidget):
            return self.view.count() == 0
        model = self.view.model()  # none: nothing chosen to show yet, nothing to say
        return model is not None and model.rowCount(self.view.rootIndex()) == 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # The viewport's background is filled before its paint event: the words drawn
        # here stay, and the view draws its (no) rows over them.
        if event.type() == QEvent.Type.Paint and watched is self.view.viewport() and self.empty():
            viewport = self.view.viewport()
            painter = QPainter(viewport)
            painter.setPen(self.view.palette().color(QPalette.ColorRole.PlaceholderText))
            area = QRect(viewport.rect()).adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
            painter.drawText(
                area,
                int(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
                | int(Qt.TextFlag.TextWordWrap),
                self.text,
            )
            painter.end()
        return False


def say_when_empty(view: QAbstractItemView, text: str) -> EmptyListWords:
    """While `view` shows no rows, show `text` in it instead (also read by screen
    readers, as the view's accessible description)."""
    view.setAccessibleDescription(text)
    return EmptyListWords(view, text)
