"""The desktop app for every member: each control of each screen has an accessible name
(what a screen reader says), and the app draws with the palette's colours, so its text
stays readable under the system's dark palette as under the light one.

SCREENS lists the screens the checks open; a new screen is one more entry (a function
from the running demo to the screen's window)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)
from pytestqt.qtbot import QtBot

from kithnet.gui.app import AskDialog, FirstRunDialog, MainWindow, UnlockDialog
from kithnet.gui.bridge import Bridge
from kithnet.gui.empty import say_when_empty
from kithnet.gui.palette import use_scheme
from kithnet.gui.people import ProfileDialog
from kithnet.node import demo
from tests.gui_support import LISTEN, WAIT, DemoApp, ask

# What a member can press, type into or choose from.
INTERACTIVE = (
    QAbstractButton,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QComboBox,
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
)


def _describe(widget: QWidget) -> str:
    text = widget.text() if isinstance(widget, QAbstractButton | QLineEdit) else ""
    hint = getattr(widget, "placeholderText", lambda: "")()
    label = text or hint or widget.objectName() or "(no text)"
    return f"{type(widget).__name__} {label!r}"


def _part_of_another(widget: QWidget) -> bool:
    """A widget Qt makes inside a control (a spin box's or an editable combo box's line
    edit): the owning control carries the name."""
    parent = widget.parentWidget()
    return isinstance(parent, QAbstractSpinBox | QComboBox)


def unnamed_controls(window: QWidget) -> list[str]:
    """Each interactive control of `window` a member can see that has no accessible
    name, described by its class and text. Every page of each tab widget is looked at
    (the current one is restored)."""
    missing: list[str] = []

    def look() -> None:
        for widget in [window, *window.findChildren(QWidget)]:
            if not isinstance(widget, INTERACTIVE) or _part_of_another(widget):
                continue
            if widget is not window and not widget.isVisibleTo(window):
                continue
            if not widget.accessibleName().strip():
                description = _describe(widget)
                if description not in missing:
                    missing.append(description)

    look()
    for tabs in window.findChildren(QTabWidget):
        current = tabs.currentIndex()
        for index in range(tabs.count()):
            tabs.setCurrentIndex(index)
            look()
        tabs.setCurrentIndex(current)
    return missing


def _luminance(colour: QColor) -> float:
    """Relative luminance (WCAG 2)."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(colour.redF())
        + 0.7152 * channel(colour.greenF())
        + 0.0722 * channel(colour.blueF())
    )


def contrast(a: float, b: float) -> float:
    """WCAG contrast ratio of two luminances (1 to 21)."""
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def text_on_background(widget: QWidget, area: QRect | None = None) -> tuple[float, float]:
    """What `widget` shows (or the `area` of it), as painted: the luminance of its
    background (its commonest colour) and the best contrast any painted colour has with
    it (its text)."""
    picture = widget.grab(area) if area is not None else widget.grab()
    image = picture.toImage().convertToFormat(QImage.Format.Format_RGB32)
    data = bytes(image.constBits())
    counts = Counter(memoryview(data).cast("I"))
    background = _luminance(QColor.fromRgb(counts.most_common(1)[0][0]))
    best = max(contrast(background, _luminance(QColor.fromRgb(rgb))) for rgb in counts)
    return background, best


# The screens -------------------------------------------------------------------------------

# An opener gets the running demo, a spare folder and qtbot (to wait for what a screen
# shows once the node answers: some controls appear only then).
Opener = Callable[[DemoApp, Path, QtBot], QWidget]


def _ask(app: DemoApp, folder: Path, qtbot: QtBot) -> QWidget:
    dialog = app[0].open_ask()
    assert isinstance(dialog, AskDialog)
    return dialog


def _profile(name: str) -> Callable[[DemoApp, Path, QtBot], ProfileDialog]:
    def open_profile(app: DemoApp, folder: Path, qtbot: QtBot) -> ProfileDialog:
        window = app[0]
        dialog = window.open_profile(ask(window.bridge, qtbot, "references", member=name)["member"])
        qtbot.waitUntil(lambda: dialog.profile is not None, timeout=WAIT)
        qtbot.waitUntil(lambda: dialog.references.rowCount() > 0 or name == "You", timeout=WAIT)
        return dialog

    return open_profile


def _vouch(app: DemoApp, folder: Path, qtbot: QtBot) -> QWidget:
    form = _profile("Cat")(app, folder, qtbot).open_vouch()
    assert form is not None
    return form


def _messages(app: DemoApp, folder: Path, qtbot: QtBot) -> QWidget:
    window = app[0]
    bob = ask(window.bridge, qtbot, "references", member="Bob")["member"]
    return window.open_messages(bob)  # a conversation open: its composer and buttons shown


def _in(community: str, open_it: Callable[[MainWindow], QWidget | None]) -> Opener:
    """An opener of a screen about the community called `community`, chosen first."""

    def opener(app: DemoApp, folder: Path, qtbot: QtBot) -> QWidget:
        window = app[0]
        names = [row["name"] for row in window.communities.rows]
        if community not in names:
            window.communities.refresh()
            qtbot.waitUntil(
                lambda: community in [row["name"] for row in window.communities.rows],
                timeout=WAIT,
            )
            names = [row["name"] for row in window.communities.rows]
        window.sidebar.setCurrentIndex(window.communities.index(names.index(community)))
        shown = open_it(window)
        assert shown is not None
        return shown

    return opener


def _moderation_of_my_own(app: DemoApp, folder: Path, qtbot: QtBot) -> QWidget:
    """Moderation where You is the owner: roles, bans and the log, not only leaving."""
    ask(app[0].bridge, qtbot, "community.create", name="Repair Café")
    return _in("Repair Café", MainWindow.open_moderation)(app, folder, qtbot)


def _notifications(app: DemoApp, folder: Path, qtbot: QtBot) -> QWidget:
    app[0].notifications.toggle()
    return app[0].notifications.dock


# name -> a function that opens the screen on the running demo (and a spare folder).
SCREENS: dict[str, Opener] = {
    "unlock": lambda app, folder, qtbot: UnlockDialog(Bridge(folder / "member", LISTEN)),
    "first run": lambda app, folder, qtbot: FirstRunDialog(Bridge(folder / "new member", LISTEN)),
    "main window": lambda app, folder, qtbot: app[0],
    "ask": _ask,
    "profile": _profile("Cat"),
    "own profile": _profile("You"),
    "vouch": _vouch,
    "messages": _messages,
    "members": lambda app, folder, qtbot: app[0].open_members(),
    "new community": lambda app, folder, qtbot: app[0].open_new_community(),
    "invite": _in(demo.HACKNEY, MainWindow.open_invite),
    "join": lambda app, folder, qtbot: app[0].open_join(),
    "directory": lambda app, folder, qtbot: app[0].open_directory(),
    "moderation as a member": _in(demo.HACKNEY, MainWindow.open_moderation),
    "moderation as the owner": _moderation_of_my_own,
    "search": lambda app, folder, qtbot: app[0].open_search(),
    "notifications": _notifications,
    "network": lambda app, folder, qtbot: app[0].open_network(),
    "settings": lambda app, folder, qtbot: app[0].open_settings(),
}


@pytest.fixture
def shown_demo(demo_app: DemoApp, qtbot: QtBot) -> DemoApp:
    """The demo's main window on the screen, its feed loaded."""
    window = demo_app[0]
    window.show()
    qtbot.waitExposed(window, timeout=WAIT)

    def loaded() -> bool:
        return window.feed is not None and window.feed.rowCount() > 0

    qtbot.waitUntil(loaded, timeout=WAIT)
    return demo_app


def test_every_control_of_every_screen_has_an_accessible_name(
    shown_demo: DemoApp, qtbot: QtBot, tmp_path: Path
) -> None:
    found = {}
    for name, opener in SCREENS.items():
        window = opener(shown_demo, tmp_path, qtbot)
        if window.isWindow() and window is not shown_demo[0]:
            qtbot.addWidget(window)
        found[name] = unnamed_controls(window)
    assert found == {name: [] for name in SCREENS}


def test_the_check_names_a_control_without_an_accessible_name(qtbot: QtBot) -> None:
    """The check above can fail: a dialog with an unnamed button is caught, a hidden one
    is not asked about, and the name set is what makes it pass."""
    dialog = QDialog()
    qtbot.addWidget(dialog)
    layout = QVBoxLayout(dialog)
    send = QPushButton("Send")
    hidden = QPushButton("Later")
    hidden.hide()
    tabs = QTabWidget()
    note = QLineEdit(placeholderText="on the second page")
    tabs.addTab(QWidget(), "First")
    tabs.addTab(note, "Second")
    tabs.setAccessibleName("Pages")
    for widget in (send, hidden, tabs):
        layout.addWidget(widget)
    assert unnamed_controls(dialog) == [
        "QPushButton 'Send'",
        "QLineEdit 'on the second page'",
    ]
    assert tabs.currentIndex() == 0
    send.setAccessibleName("Send")
    note.setAccessibleName("Note")
    assert unnamed_controls(dialog) == []


@pytest.fixture
def scheme() -> Iterator[Callable[[Qt.ColorScheme], None]]:
    """Switch the app to a colour scheme; the palette the tests began with comes back."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = app.palette()
    yield lambda chosen: use_scheme(app, chosen)
    app.styleHints().unsetColorScheme()
    app.setPalette(before)


@pytest.mark.parametrize(
    ("chosen", "dark"), [(Qt.ColorScheme.Dark, True), (Qt.ColorScheme.Light, False)]
)
def test_the_feed_and_the_sidebar_are_readable_in_the_dark_and_light_palettes(
    shown_demo: DemoApp,
    qtbot: QtBot,
    scheme: Callable[[Qt.ColorScheme], None],
    chosen: Qt.ColorScheme,
    dark: bool,
) -> None:
    """The feed's posts in the palette's text colour on its base colour: light on dark
    in the dark scheme, dark on light in the light one, with a contrast of at least 7:1
    (WCAG AAA) either way; the chosen community stands out from its highlight too."""
    window = shown_demo[0]
    scheme(chosen)

    def repainted() -> bool:  # the palette reaches the widgets through the event loop
        base = _luminance(window.feed_view.palette().base().color())
        return (base < 0.2) if dark else (base > 0.7)

    qtbot.waitUntil(repainted, timeout=WAIT)
    background, best = text_on_background(window.feed_view.viewport())
    assert (background < 0.2) if dark else (background > 0.7)
    assert best >= 7, f"the feed's text has a contrast of {best:.1f}:1"
    chosen_row = window.sidebar.visualRect(window.sidebar.currentIndex())
    assert demo.HACKNEY in window.sidebar.currentIndex().data()
    _, best = text_on_background(window.sidebar.viewport(), chosen_row)
    assert best >= 3, f"the chosen community's name has a contrast of {best:.1f}:1"


@pytest.mark.parametrize("chosen", [Qt.ColorScheme.Light, Qt.ColorScheme.Dark])
def test_an_empty_list_says_what_goes_there_until_a_row_comes(
    qtbot: QtBot, scheme: Callable[[Qt.ColorScheme], None], chosen: Qt.ColorScheme
) -> None:
    """The words are drawn, readable (at least 3:1 in either palette), told to screen
    readers, and gone once the list has a row."""
    scheme(chosen)
    view = QListWidget()
    qtbot.addWidget(view)
    view.resize(320, 160)
    say_when_empty(view, "No invites yet: create one above and send its code")
    view.show()
    qtbot.waitExposed(view)
    _, best = text_on_background(view.viewport())
    assert best >= 3, f"the words have a contrast of {best:.1f}:1"
    assert view.accessibleDescription() == "No invites yet: create one above and send its code"
    view.addItem("")  # a row (without words of its own): the placeholder goes
    _, best = text_on_background(view.viewport())
    assert best < 1.5
