"""What the app's small forms share: a button with its accessible name and tooltip, and
the usual layout of a form (its rows, a line of status in words, Cancel and the action
on the right)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


def button(text: str, name: str | None = None, tip: str = "") -> QPushButton:
    """A push button named for screen readers (`name`, else its text without "…")."""
    made = QPushButton(text)
    made.setAccessibleName(name or text.replace("&", "").rstrip("…"))
    if tip:
        made.setToolTip(tip)
    return made


def lay_out_form(
    owner: QWidget,
    rows: Sequence[tuple[str, QWidget]],
    status: QLabel,
    cancel: QPushButton,
    action: QPushButton,
) -> QVBoxLayout:
    """Lay `owner` out as a form: the labelled rows, the status line under them, then
    Cancel and the action at the bottom right."""
    form = QFormLayout()
    for label, widget in rows:
        form.addRow(label, widget)
    buttons = QHBoxLayout()
    buttons.addStretch(1)
    buttons.addWidget(cancel)
    buttons.addWidget(action)
    layout = QVBoxLayout(owner)
    layout.addLayout(form)
    layout.addWidget(status)
    layout.addLayout(buttons)
    return layout
