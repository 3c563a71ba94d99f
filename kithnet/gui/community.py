"""Everything about communities in the app but the feed: making one, inviting people
(the code as text, copied, and as a QR code), joining with a code, finding public
communities in the directory, and moderation (roles, bans, the log) and leaving.

Each screen reaches the node through the bridge's commands (`community.create`,
`invite.create`, `community.invites`, `join`, `directory`, `community.roles`,
`community.ban`, `community.log`, `community.leave`, `community.remove`) and shows
every refusal in the node's words. The main window hooks these in with `install` and
its `open_*` methods."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QDateTime, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPixmap,
    QTextOption,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from kithnet.crypto.invite import qr_matrix
from kithnet.gui.bridge import Bridge
from kithnet.gui.empty import say_when_empty
from kithnet.gui.forms import button as _button
from kithnet.gui.forms import lay_out_form
from kithnet.gui.models import ItemRole, _Answers

if TYPE_CHECKING:
    from kithnet.gui.app import MainWindow

QR_SIZE = 360  # about how many pixels wide the invite's QR code is drawn
Row = dict[str, Any]


def in_words(message: str) -> str:
    """A node's message as a sentence: capital first, full stop last."""
    message = message.strip()
    if not message:
        return ""
    message = message[0].upper() + message[1:]
    return message if message[-1] in ".!?" else message + "."


def _when(milliseconds: int | None) -> str:
    if not milliseconds:
        return ""
    return QDateTime.fromMSecsSinceEpoch(int(milliseconds)).toString("d MMM yyyy, HH:mm")


def _lines_high(edit: QPlainTextEdit, lines: int) -> None:
    """Make `edit` exactly `lines` lines of its font high, so no line shows cut in half."""
    # The margin is above the first line only: below the last the next one would peek out.
    margin = edit.document().documentMargin() + 2 * edit.frameWidth()
    edit.setFixedHeight(int(edit.fontMetrics().lineSpacing() * lines + margin))


def _status() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    label.setAccessibleName("Status")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class _Asking(QDialog):
    """A dialog that asks the node things: each request's answer goes to its own
    handler, and a failure is shown in the status line (or a handler of its own)."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.message = _status()
        self._waiting: dict[int, tuple[Callable[[Any], None], Callable[[str], None]]] = {}
        self._closed = False
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        # Closed, the dialog goes once nothing it asked is awaited (what it does with
        # an answer, opening a community just made or joined, still happens): else each
        # opening would leave one more hidden behind the main window.
        self.rejected.connect(self._close)

    def _close(self) -> None:
        self._closed = True
        self._go_if_done()

    def _go_if_done(self) -> None:
        if self._closed and not self._waiting and not self.isVisible():
            self.deleteLater()

    def request(
        self,
        command: str,
        on_answer: Callable[[Any], None],
        on_failure: Callable[[str], None] | None = None,
        **args: Any,
    ) -> None:
        failure = on_failure or self.say
        # A bridge whose node is not running fails at once, before the number is known.
        early: list[tuple[int, str]] = []

        def catch(number: int, message: str) -> None:
            early.append((number, message))

        self.bridge.failed.connect(catch)
        try:
            number = self.bridge.call(command, **args)
        finally:
            self.bridge.failed.disconnect(catch)
        if early and early[0][0] == number:
            failure(early[0][1])
            return
        self._waiting[number] = (on_answer, failure)

    def say(self, text: str) -> None:
        self.message.setText(in_words(text))
        # A longer message wraps onto more lines: grow rather than let it overlap the rest.
        if self.isVisible() and self.message.isVisible():
            short = self.message.heightForWidth(self.message.width()) - self.message.height()
            if short > 0:
                self.resize(self.width(), self.height() + short)

    def refresh(self) -> None:
        """Ask again for what the dialog shows."""

    def _arrived(self) -> None:
        if self.isVisible():  # a closed dialog asks nothing more as records arrive
            self.refresh()

    def _answered(self, request: int, result: object) -> None:
        handlers = self._waiting.pop(request, None)
        if handlers is not None:
            handlers[0](result)
            self._go_if_done()

    def _failed(self, request: int, message: str) -> None:
        handlers = self._waiting.pop(request, None)
        if handlers is not None:
            handlers[1](message)
            self._go_if_done()


# Models -------------------------------------------------------------------------------


class _Rows(_Answers):
    """A list answered again and again (after each change, as records arrive): the same
    rows in the same order change in place, so what the member chose stays chosen."""

    key = "id"

    def replace(self, rows: list[Row]) -> None:
        if [r[self.key] for r in rows] != [r[self.key] for r in self.rows]:
            self.beginResetModel()
            self.rows = rows
            self.endResetModel()
            return
        changed = [
            n for n, (old, new) in enumerate(zip(self.rows, rows, strict=True)) if old != new
        ]
        self.rows = rows
        if changed:
            self.dataChanged.emit(self.index(changed[0]), self.index(changed[-1]))


class InvitesModel(_Rows):
    """A community's invites with their state (`community.invites`)."""

    def answer(self, purpose: str, result: Any) -> None:
        self.replace(list(result["invites"]))

    def display(self, row: Row) -> str:
        uses = f"{row['uses']} of {row['max_uses']}" if row.get("max_uses") else f"{row['uses']}"
        by = "you" if row.get("mine") else (row.get("issuer_name") or row["issuer"][:12])
        return (
            f"{row['state'].capitalize()}: made by {by} on {_when(row['created_at'])}, "
            f"used {uses} time(s), until {_when(row['expires_at'])}"
        )


class DirectoryModel(_Rows):
    """Public communities listed in the directory (`directory`)."""

    def answer(self, purpose: str, result: Any) -> None:
        self.replace(list(result["entries"]))

    def display(self, row: Row) -> str:
        members = row.get("members")
        head = row["name"] + (f"  ({members} members)" if members else "")
        if row.get("joined"):
            head += "  (you are a member)"
        elif not row.get("invite") or row.get("invite_expired"):
            head += "  (its invite expired: it cannot be joined from here)"
        lines = [head]
        if row.get("description"):
            lines.append(row["description"])
        if row.get("tags"):
            lines.append(" ".join(f"#{tag}" for tag in row["tags"]))
        return "\n".join(lines)


class MembersModel(_Rows):
    """A community's members with their roles (`community.roles`)."""

    key = "member"

    def answer(self, purpose: str, result: Any) -> None:
        self.replace(list(result["members"]))

    def display(self, row: Row) -> str:
        marks = [*row["roles"]]
        if row.get("banned"):
            marks.append("banned")
        if row.get("online"):
            marks.append("online")
        name = row.get("name") or row["member"][:12]
        return f"{name}  ({', '.join(marks)})" if marks else name


class LogModel(_Rows):
    """The moderation log, newest first (`community.log`)."""

    def answer(self, purpose: str, result: Any) -> None:
        self.replace(list(result["entries"]))

    def display(self, row: Row) -> str:
        moderator = row.get("moderator_name") or row["moderator"][:12]
        action = {"ban": "banned", "unban": "unbanned", "remove": "removed"}.get(
            row["action"], row["action"]
        )
        target = row.get("target_name") or ("a post" if row["action"] == "remove" else "")
        target = target or row["target"][:12]
        reason = f": {row['reason']}" if row.get("reason") else ""
        return f"{_when(row['created_at'])}  {moderator} {action} {target}{reason}"


# Making a community -------------------------------------------------------------------


def split_tags(text: str) -> list[str]:
    """Tags as a member types them: separated by spaces or commas, with or without #."""
    return [tag.lstrip("#") for tag in re.split(r"[\s,]+", text) if tag.lstrip("#")]


class NewCommunityDialog(_Asking):
    """Name, description, tags and public or private: `community.create`."""

    created = Signal(str)  # the new community's id

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.setWindowTitle("New community")
        self.name = QLineEdit()
        self.name.setAccessibleName("Community name")
        self.name.setPlaceholderText("Mare Street Allotments")
        self.description = QPlainTextEdit()
        self.description.setAccessibleName("Description")
        self.description.setPlaceholderText("What the community is for, and who it is for")
        self.description.setMaximumHeight(80)
        self.tags = QLineEdit()
        self.tags.setAccessibleName("Tags")
        self.tags.setPlaceholderText("gardening hackney")
        self.public = QRadioButton("Public: it can be listed in the directory")
        self.public.setAccessibleName("Public")
        self.public.setChecked(True)
        self.private = QRadioButton("Private: only members invited in can read it")
        self.private.setAccessibleName("Private")
        self.create_button = _button("Create", "Create the community")
        self.create_button.setDefault(True)
        cancel = _button("Cancel")
        rows = [
            ("Name", self.name),
            ("Description", self.description),
            ("Tags", self.tags),
            ("Who can read it", self.public),
            ("", self.private),
        ]
        lay_out_form(self, rows, self.message, cancel, self.create_button)
        self.resize(480, 0)
        self.create_button.clicked.connect(self.make)
        cancel.clicked.connect(self.reject)

    def make(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.say("Give the community a name")
            self.name.setFocus()
            return
        self.create_button.setEnabled(False)
        self.say("Creating…")
        self.request(
            "community.create",
            self._created,
            self._refused,
            name=name,
            description=self.description.toPlainText().strip(),
            tags=split_tags(self.tags.text()),
            private=self.private.isChecked(),
        )

    def _created(self, result: Row) -> None:
        self.created.emit(result["id"])
        self.accept()

    def _refused(self, message: str) -> None:
        self.create_button.setEnabled(True)
        self.say(message)


# Invites ------------------------------------------------------------------------------


def qr_image(code: str) -> QImage:
    """The QR code of an invite code, one pixel per module, dark on light with its
    quiet zone. Always dark on light, whatever the palette: scanners expect it."""
    matrix = qr_matrix(code)
    size = len(matrix)
    image = QImage(size, size, QImage.Format.Format_RGB32)
    image.fill(QColor(Qt.GlobalColor.white))
    dark = QColor(Qt.GlobalColor.black).rgb()
    for y, row in enumerate(matrix):
        for x, module in enumerate(row):
            if module:
                image.setPixel(x, y, dark)
    return image


def qr_pixmap(code: str, size: int = QR_SIZE) -> QPixmap:
    """The QR code scaled by a whole number to about `size` pixels, with no smoothing
    (sharp modules scan best)."""
    image = qr_image(code)
    scale = max(2, size // image.width())
    return QPixmap.fromImage(
        image.scaled(
            image.width() * scale,
            image.height() * scale,
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.FastTransformation,
        )
    )


class InviteDialog(_Asking):
    """Make an invite to a community (how many uses, how many days) and show it as text
    to copy and as a QR code; list the community's invites, and withdraw one."""

    def __init__(self, bridge: Bridge, community: Row, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.community = community
        self.setWindowTitle(f"Invite people to {community['name']}")
        self.uses = QSpinBox()
        self.uses.setAccessibleName("How many people can use it")
        self.uses.setRange(0, 1_000_000)
        self.uses.setSpecialValueText("Any number")
        self.uses.setValue(1)
        self.days = QSpinBox()
        self.days.setAccessibleName("Days it lasts")
        self.days.setRange(1, 365)
        self.days.setValue(7)
        self.days.setSuffix(" days")
        self.create_button = _button("Create", "Create an invite", "Create an invite code")
        self.create_button.setDefault(True)
        self.code = QPlainTextEdit()
        self.code.setAccessibleName("Invite code")
        self.code.setReadOnly(True)
        self.code.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.code.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        self.code.setPlaceholderText("The code appears here: send it to whoever you invite")
        _lines_high(self.code, 4)
        self.copy_button = _button("Copy", "Copy the code", "Copy the code (Ctrl+Shift+C)")
        self.copy_button.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.copy_button.setEnabled(False)
        self.qr = QLabel()
        self.qr.setAccessibleName("QR code of the invite")
        self.qr.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.qr.setMinimumSize(QR_SIZE // 2, QR_SIZE // 2)
        self.qr_code: QImage | None = None  # the QR code as drawn, one pixel a module
        self.invites = InvitesModel(bridge, self)
        self.list = QListView()
        self.list.setAccessibleName("Invites to this community")
        say_when_empty(self.list, "No invites yet: create one above and send its code")
        self.list.setModel(self.invites)
        self.list.setWordWrap(True)
        self.withdraw_button = _button("Withdraw", "Withdraw the chosen invite")
        self.withdraw_button.setToolTip(
            "Nobody can join with a withdrawn code (only the member who made it can)"
        )
        self.withdraw_button.setEnabled(False)
        form = QFormLayout()
        form.addRow("Uses", self.uses)
        form.addRow("Lasts", self.days)
        made = QHBoxLayout()
        made.addWidget(self.code, 1)
        made.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        withdraw_row = QHBoxLayout()
        withdraw_row.addStretch(1)
        withdraw_row.addWidget(self.withdraw_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.create_button)
        layout.addLayout(made)
        layout.addWidget(self.qr, 1)
        layout.addWidget(self.message)
        layout.addWidget(QLabel("Invites so far"))
        layout.addWidget(self.list)
        layout.addLayout(withdraw_row)
        self.resize(560, 720)  # fits a 768-pixel-high screen with its title bar
        self.create_button.clicked.connect(self.make)
        self.copy_button.clicked.connect(self.copy)
        self.withdraw_button.clicked.connect(self.withdraw)
        self.list.selectionModel().currentChanged.connect(self._chosen)
        self.invites.modelReset.connect(self._chosen)
        self.invites.dataChanged.connect(self._chosen)
        bridge.arrived.connect(self._arrived)  # someone joined with a code: its uses grow
        self.refresh()

    def refresh(self) -> None:
        self.request("community.invites", self._listed, community=self.community["id"])

    def _listed(self, result: Row) -> None:
        self.invites.answer("list", result)

    def make(self) -> None:
        uses = self.uses.value() or None
        self.create_button.setEnabled(False)
        self.say("Making the invite…")
        self.request(
            "invite.create",
            self._created,
            self._refused,
            community=self.community["id"],
            uses=uses,
            expires=f"{self.days.value()}d",
        )

    def _created(self, result: Row) -> None:
        self.create_button.setEnabled(True)
        code = str(result["code"])
        self.code.setPlainText(code)
        self.copy_button.setEnabled(True)
        self.qr_code = qr_image(code)
        picture = qr_pixmap(code)
        self.qr.setPixmap(picture)
        self.qr.setMinimumSize(picture.size())  # a QR code cut at its edges does not scan
        uses = "anyone who has it" if result.get("uses") is None else f"{result['uses']} person(s)"
        self.say(
            f"Send this code to whoever you invite, or let them scan it: {uses} can join "
            f"{result['community_name']} with it until {_when(result['expires_at'])}."
        )
        self.refresh()

    def _refused(self, message: str) -> None:
        self.create_button.setEnabled(True)
        self.say(message)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code.toPlainText())
        self.say("The code is copied: paste it into a message to whoever you invite")

    def _selected(self) -> Row | None:
        index = self.list.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        return row if isinstance(row, dict) else None

    def _chosen(self, *_: object) -> None:
        row = self._selected()
        self.withdraw_button.setEnabled(
            bool(row and row.get("mine") and row["state"] in ("open", "used up"))
        )

    def withdraw(self) -> None:
        row = self._selected()
        if row is None:
            return
        self.withdraw_button.setEnabled(False)
        self.request(
            "community.invites.withdraw",
            self._withdrawn,
            community=self.community["id"],
            withdraw=row["id"],
        )

    def _withdrawn(self, result: Row) -> None:
        self.invites.answer("list", result)
        self.say("The invite is withdrawn: nobody can join with its code any more")


# Joining ------------------------------------------------------------------------------


class JoinDialog(_Asking):
    """Paste a code and join; a refusal says why in words and the dialog stays open to
    try again."""

    joined = Signal(str)  # the community's id, once this member is in it

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.setWindowTitle("Join with a code")
        self.code = QPlainTextEdit()
        self.code.setAccessibleName("Invite code")
        self.code.setPlaceholderText("Paste the invite code you were sent (it starts with kith1)")
        self.code.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)  # one long word
        _lines_high(self.code, 6)
        self.join_button = _button("Join", "Join the community", "Join (Ctrl+Return)")
        self.join_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.join_button.setDefault(True)
        cancel = _button("Close")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.join_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Invite code"))
        layout.addWidget(self.code)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        self.resize(520, 0)
        self.join_button.clicked.connect(self.join)
        cancel.clicked.connect(self.reject)

    def join(self) -> None:
        code = self.code.toPlainText().strip()
        if not code:
            self.say("Paste the invite code first")
            return
        self.join_button.setEnabled(False)
        self.code.setReadOnly(True)
        self.say("Joining: finding the community's members…")
        self.request("join", self._answered_join, self._refused, code=code)

    def _answered_join(self, result: Row) -> None:
        self.join_button.setEnabled(True)
        self.code.setReadOnly(False)
        if result["status"] == "waiting":
            detail = f" ({result['detail']})" if result.get("detail") else ""
            self.say(
                f"Your request to join {result['name']} is sent and waits for a member to "
                f"let you in{detail}. Try again later to see if you are in"
            )
            return
        self.joined.emit(result["community"])
        self.accept()

    def _refused(self, message: str) -> None:
        self.join_button.setEnabled(True)
        self.code.setReadOnly(False)
        self.say(message)
        self.code.setFocus()


# The directory ------------------------------------------------------------------------


class DirectoryDialog(_Asking):
    """Public communities: search by words and a tag, ask other nodes for more, join
    one with its listing's invite."""

    joined = Signal(str)  # the community's id

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.setWindowTitle("Find communities")
        self.text = QLineEdit()
        self.text.setAccessibleName("Search words")
        self.text.setPlaceholderText("Words in the name or description")
        self.tag = QLineEdit()
        self.tag.setAccessibleName("Tag")
        self.tag.setPlaceholderText("a tag, e.g. gardening")
        self.search_button = _button("Search", "Search the directory", "Search (Return)")
        self.refresh_button = _button(
            "Ask other nodes",
            "Refresh the directory",
            "Ask connected nodes for their listings (F5)",
        )
        self.refresh_button.setShortcut(QKeySequence(QKeySequence.StandardKey.Refresh))
        self.listings = DirectoryModel(bridge, self)
        self.list = QListView()
        self.list.setAccessibleName("Public communities")
        say_when_empty(
            self.list,
            "No listed community matches: try other words, or ask other nodes for theirs",
        )
        self.list.setModel(self.listings)
        self.list.setWordWrap(True)
        self.list.setSpacing(2)  # a listing is three lines: keep them apart
        self.list.setAlternatingRowColors(True)
        self.join_button = _button("Join", "Join the chosen community", "Join (Ctrl+Return)")
        self.join_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.join_button.setEnabled(False)
        search = QHBoxLayout()
        search.addWidget(self.text, 2)
        search.addWidget(self.tag, 1)
        search.addWidget(self.search_button)
        search.addWidget(self.refresh_button)
        join_row = QHBoxLayout()
        join_row.addWidget(self.message, 1)
        join_row.addWidget(self.join_button)
        layout = QVBoxLayout(self)
        layout.addLayout(search)
        layout.addWidget(self.list, 1)
        layout.addLayout(join_row)
        self.resize(640, 560)
        self.search_button.clicked.connect(lambda: self.search())
        self.text.returnPressed.connect(lambda: self.search())
        self.tag.returnPressed.connect(lambda: self.search())
        self.refresh_button.clicked.connect(self.refresh)
        self.join_button.clicked.connect(self.join)
        self.list.doubleClicked.connect(lambda _: self.join())
        self.list.selectionModel().currentChanged.connect(self._chosen)
        self.listings.modelReset.connect(self._chosen)
        self.listings.dataChanged.connect(self._chosen)
        self._joining = False
        self.search()
        self.refresh()  # what this node holds at once, then what others know

    def _arguments(self) -> Row:
        return {"text": self.text.text().strip(), "tag": self.tag.text().strip().lstrip("#")}

    def search(self, *, quiet: bool = False) -> None:
        """Search what this node holds; `quiet` keeps the status line as it is."""
        self.request("directory", lambda result: self._found(result, quiet), **self._arguments())

    def refresh(self) -> None:
        self.refresh_button.setEnabled(False)
        self.say("Asking other nodes for their listings…")
        self.request(
            "directory.refresh",
            self._found,
            self._refresh_failed,
            refresh=True,
            **self._arguments(),
        )

    def _found(self, result: Row, quiet: bool = False) -> None:
        self.listings.answer("search", result)
        shown, total = len(result["entries"]), result["total"]
        refreshed = result.get("refreshed")
        text = f"{shown} of the {total} communities listed here match."
        if not total:
            text = "No community is listed here yet."
        if refreshed is not None:
            self.refresh_button.setEnabled(True)
            text += (
                f" Asked {refreshed['asked']} node(s): {refreshed['new']} new listing(s)."
                if refreshed["asked"]
                else " No other node is connected to ask."
            )
        if not self._joining and not quiet:
            self.say(text)

    def _refresh_failed(self, message: str) -> None:
        self.refresh_button.setEnabled(True)
        self.say(message)

    def _selected(self) -> Row | None:
        index = self.list.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        return row if isinstance(row, dict) else None

    def _chosen(self, *_: object) -> None:
        row = self._selected()
        usable = row is not None and bool(row.get("invite")) and not row.get("invite_expired")
        joined = row is not None and bool(row.get("joined"))
        self.join_button.setEnabled(usable and not joined and not self._joining)

    def join(self) -> None:
        row = self._selected()
        if row is None or self._joining or not self.join_button.isEnabled():
            return
        self._joining = True
        self.join_button.setEnabled(False)
        self.say(f"Joining {row['name']}…")
        self.request("join", self._joined, self._refused, code=row["invite"])

    def _joined(self, result: Row) -> None:
        self._joining = False
        if result["status"] == "waiting":
            self.say(f"Your request to join {result['name']} waits for a member to let you in")
        else:
            self.say(f"You joined {result['name']}")
            self.joined.emit(result["community"])
        self.search(quiet=True)

    def _refused(self, message: str) -> None:
        self._joining = False
        self._chosen()
        self.say(message)


# Moderation and leaving -----------------------------------------------------------------


def confirm_leave(community: Row, parent: QWidget, leave: Callable[[], None]) -> QMessageBox:
    """Ask before leaving a community, and call `leave` if the member says yes; returns
    the question, shown but not blocking."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Leave community")
    box.setText(f"Leave {community['name']}?")
    box.setInformativeText(
        "You will no longer see or receive its posts. To come back you need a new invite."
    )
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Yes).setText("Leave")
    box.button(QMessageBox.StandardButton.Yes).setAccessibleName("Leave the community")
    box.button(QMessageBox.StandardButton.Cancel).setAccessibleName("Stay")
    box.setWindowModality(Qt.WindowModality.WindowModal)
    yes = box.button(QMessageBox.StandardButton.Yes)
    box.buttonClicked.connect(lambda clicked: leave() if clicked is yes else None)
    box.open()
    return box


class ModerationDialog(_Asking):
    """For a community's owners and moderators: members and their roles (owners grant
    and revoke them), bans with a reason, the moderation log; and leaving, for anyone."""

    left = Signal(str)  # the community's id, once this member has left it

    def __init__(self, bridge: Bridge, community: Row, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self.community = community
        roles = set(community.get("roles", []))
        self.owner = "owner" in roles
        self.moderator = bool(roles)
        self.setWindowTitle(f"Moderation of {community['name']}")
        self.members = MembersModel(bridge, self)
        self.log = LogModel(bridge, self)
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Moderation")
        # Roles
        roles_tab = QWidget()
        self.roles_list = self._members_view("Members and their roles")
        self.role = QComboBox()
        self.role.setAccessibleName("Role")
        self.role.addItems(["moderator", "owner"])
        self.grant_button = _button("Grant", "Grant the role to the chosen member")
        self.revoke_button = _button("Revoke", "Revoke the role from the chosen member")
        for button in (self.grant_button, self.revoke_button):
            button.setEnabled(False)
            if not self.owner:
                button.setToolTip("Only an owner of the community can grant or revoke roles")
        role_row = QHBoxLayout()
        role_row.addWidget(QLabel("Role"))
        role_row.addWidget(self.role)
        role_row.addStretch(1)
        role_row.addWidget(self.grant_button)
        role_row.addWidget(self.revoke_button)
        column = QVBoxLayout(roles_tab)
        column.addWidget(self.roles_list, 1)
        column.addLayout(role_row)
        # Bans
        self.bans_tab = bans_tab = QWidget()
        self.ban_list = self._members_view("Members to ban or unban")
        self.reason = QLineEdit()
        self.reason.setAccessibleName("Reason for the ban")
        self.reason.setPlaceholderText("Why: every member sees it in the moderation log")
        self.ban_button = _button("Ban", "Ban the chosen member")
        self.unban_button = _button("Unban", "Unban the chosen member")
        self.ban_button.setEnabled(False)
        self.unban_button.setEnabled(False)
        ban_row = QHBoxLayout()
        ban_row.addWidget(self.reason, 1)
        ban_row.addWidget(self.ban_button)
        ban_row.addWidget(self.unban_button)
        column = QVBoxLayout(bans_tab)
        column.addWidget(self.ban_list, 1)
        column.addLayout(ban_row)
        # The log
        log_tab = QWidget()
        self.log_list = QListView()
        self.log_list.setAccessibleName("Moderation log")
        say_when_empty(
            self.log_list,
            "Nothing removed or banned yet: each removal and ban shows here, with its "
            "reason, for every member to see",
        )
        self.log_list.setModel(self.log)
        self.log_list.setWordWrap(True)
        QVBoxLayout(log_tab).addWidget(self.log_list)
        # Leaving
        leave_tab = QWidget()
        self.leave_button = _button(f"Leave {community['name']}…", "Leave the community")
        self.confirmation: QMessageBox | None = None
        column = QVBoxLayout(leave_tab)
        explain = QLabel(
            "Leaving stops your node from following the community."
            + (
                " If you are its only owner, grant another member the owner role first."
                if self.owner
                else ""
            )
        )
        explain.setWordWrap(True)
        column.addWidget(explain)
        column.addWidget(self.leave_button, 0, Qt.AlignmentFlag.AlignLeft)
        column.addStretch(1)
        if self.moderator:
            self.tabs.addTab(roles_tab, "Roles")
            self.tabs.addTab(bans_tab, "Bans")
            self.tabs.addTab(log_tab, "Moderation log")
        self.tabs.addTab(leave_tab, "Leave")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.message)
        self.resize(560, 520)
        self.roles_list.selectionModel().currentChanged.connect(self._chosen)
        self.ban_list.selectionModel().currentChanged.connect(self._chosen)
        self.members.modelReset.connect(self._chosen)
        self.members.dataChanged.connect(self._chosen)
        self.grant_button.clicked.connect(lambda: self.change_role(grant=True))
        self.revoke_button.clicked.connect(lambda: self.change_role(grant=False))
        self.ban_button.clicked.connect(lambda: self.ban(unban=False))
        self.unban_button.clicked.connect(lambda: self.ban(unban=True))
        self.leave_button.clicked.connect(self.leave)
        bridge.arrived.connect(self._arrived)
        self.refresh()

    def _members_view(self, name: str) -> QListView:
        view = QListView()
        view.setAccessibleName(name)
        view.setModel(self.members)
        return view

    def refresh(self) -> None:
        if not self.moderator:
            return
        self.request("community.roles", self._roles, community=self.community["id"])
        self.request("community.log", self._logged, community=self.community["id"])

    def _roles(self, result: Row) -> None:
        self.members.answer("roles", result)

    def _logged(self, result: Row) -> None:
        self.log.answer("log", result)

    def _selected(self) -> Row | None:
        view = self.ban_list if self.tabs.currentWidget() is self.bans_tab else self.roles_list
        index = view.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        return row if isinstance(row, dict) else None

    def _chosen(self, *_: object) -> None:
        row = self._selected()
        self.grant_button.setEnabled(self.owner and row is not None)
        self.revoke_button.setEnabled(self.owner and row is not None and bool(row["roles"]))
        banned = bool(row and row.get("banned"))
        self.ban_button.setEnabled(self.moderator and row is not None and not banned)
        self.unban_button.setEnabled(self.moderator and banned)

    def choose(self, name: str) -> None:
        """Choose a member by name in both lists (for keyboard users and tests alike)."""
        for number, row in enumerate(self.members.rows):
            if row.get("name") == name:
                for view in (self.roles_list, self.ban_list):
                    view.setCurrentIndex(self.members.index(number))
                return

    def change_role(self, *, grant: bool) -> None:
        row = self._selected()
        if row is None:
            return
        role = self.role.currentText()
        who = row.get("name") or row["member"][:12]
        self.say(f"{'Granting' if grant else 'Revoking'} {who}'s {role} role…")
        args = {"grant": row["member"]} if grant else {"revoke": row["member"]}
        article = "an" if role == "owner" else "a"
        done = f"{who} is {'now' if grant else 'no longer'} {article} {role}"
        self.request(
            "community.roles",
            lambda result: self._changed(result, done),
            community=self.community["id"],
            role=role,
            **args,
        )

    def _changed(self, result: Row, done: str) -> None:
        self.members.answer("roles", result)
        self.say(done)

    def ban(self, *, unban: bool) -> None:
        row = self._selected()
        if row is None:
            return
        reason = self.reason.text().strip()
        if not unban and not reason:
            self.say("Give a reason: every member sees it in the moderation log")
            self.reason.setFocus()
            return
        self.ban_button.setEnabled(False)
        self.unban_button.setEnabled(False)
        self.say(f"{'Unbanning' if unban else 'Banning'} {row.get('name') or 'the member'}…")
        self.request(
            "community.ban",
            self._banned,
            community=self.community["id"],
            member=row["member"],
            reason=reason,
            unban=unban,
        )

    def _banned(self, result: Row) -> None:
        who = next(
            (r.get("name") for r in self.members.rows if r["member"] == result["member"]), ""
        )
        done = "banned" if result["action"] == "ban" else "unbanned"
        notes = "".join(f" {in_words(note)}" for note in result.get("notes", []))
        self.say(f"{who or 'The member'} is {done}.{notes}")
        self.reason.clear()
        self.refresh()

    def leave(self) -> None:
        self.confirmation = confirm_leave(self.community, self, self._leave_now)

    def _leave_now(self) -> None:
        self.say(f"Leaving {self.community['name']}…")
        self.request("community.leave", self._left, community=self.community["id"])

    def _left(self, result: Row) -> None:
        self.left.emit(self.community["id"])
        self.accept()


def remove_post(bridge: Bridge, post: str, reason: str = "") -> int:
    """A moderator removes a post (the feed's context menu calls this): the request's
    number, whose answer or failure comes through the bridge's signals."""
    return bridge.call("community.remove", record=post, reason=reason)


# The main window's hooks ----------------------------------------------------------------


class _Opener(QObject):
    """Chooses a community in the sidebar as soon as the list shows it (after a join or
    a creation, the list is asked again)."""

    def __init__(self, window: MainWindow, community: str) -> None:
        super().__init__(window)
        self.window = window
        self.community = community
        self.done = False
        window.communities.modelReset.connect(self.attempt)
        window.communities.dataChanged.connect(self.attempt)
        if not self.attempt():
            window.communities.refresh()

    def attempt(self, *_: object) -> bool:
        if self.done:
            return True
        model = self.window.communities
        for number, row in enumerate(model.rows):
            if row["id"] == self.community:
                self.done = True
                model.modelReset.disconnect(self.attempt)
                model.dataChanged.disconnect(self.attempt)
                self.window.sidebar.setCurrentIndex(model.index(number))
                self.deleteLater()
                return True
        return False


def show_community(window: MainWindow, community: str) -> None:
    """Refresh the sidebar and open `community` in it once it is there."""
    _Opener(window, community)


def current(window: MainWindow) -> Row | None:
    """The community chosen in the sidebar, as `community.list` gives it."""
    index = window.sidebar.currentIndex()
    row = index.data(ItemRole) if index.isValid() else None
    return row if isinstance(row, dict) else None


def _no_community(window: MainWindow) -> None:
    window.statusBar().showMessage("Choose a community first, or join one", 5000)


def open_new_community(window: MainWindow) -> NewCommunityDialog:
    dialog = NewCommunityDialog(window.bridge, window)
    dialog.created.connect(lambda community: show_community(window, community))
    dialog.show()
    return dialog


def open_invite(window: MainWindow) -> InviteDialog | None:
    community = current(window)
    if community is None:
        _no_community(window)
        return None
    dialog = InviteDialog(window.bridge, community, window)
    dialog.show()
    return dialog


def open_join(window: MainWindow) -> JoinDialog:
    dialog = JoinDialog(window.bridge, window)
    dialog.joined.connect(lambda community: show_community(window, community))
    dialog.show()
    return dialog


def open_directory(window: MainWindow) -> DirectoryDialog:
    dialog = DirectoryDialog(window.bridge, window)
    dialog.joined.connect(lambda community: show_community(window, community))
    dialog.show()
    return dialog


def open_moderation(window: MainWindow) -> ModerationDialog | None:
    community = current(window)
    if community is None:
        _no_community(window)
        return None
    dialog = ModerationDialog(window.bridge, community, window)
    dialog.left.connect(lambda _: _after_leaving(window))
    dialog.show()
    return dialog


def leave_current(window: MainWindow) -> QMessageBox | None:
    """Leave the chosen community, after asking."""
    community = current(window)
    if community is None:
        _no_community(window)
        return None
    request: list[int] = []

    def answered(number: int, result: object) -> None:
        if request and number == request[0]:
            done()
            _after_leaving(window)
            window.statusBar().showMessage(f"You left {community['name']}", 5000)

    def failed(number: int, message: str) -> None:
        if request and number == request[0]:
            done()
            window.statusBar().showMessage(in_words(message))

    def done() -> None:
        window.bridge.answered.disconnect(answered)
        window.bridge.failed.disconnect(failed)

    def leave() -> None:
        window.bridge.answered.connect(answered)
        window.bridge.failed.connect(failed)
        request.append(window.bridge.call("community.leave", community=community["id"]))

    return confirm_leave(community, window, leave)


def _after_leaving(window: MainWindow) -> None:
    window.sidebar.setCurrentIndex(QModelIndex())
    window.communities.refresh()


def install(window: MainWindow, moderation: QAction) -> QPushButton:
    """What the main window gains: the "Find communities…" button under the sidebar
    (returned), and the Moderation entry enabled only where the member is an owner or
    moderator."""
    find = _button(
        "Find communities…", "Find communities", "Find public communities (Ctrl+Shift+F)"
    )
    find.clicked.connect(window.open_directory)
    splitter = window.centralWidget()
    if isinstance(splitter, QSplitter):
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        place = splitter.indexOf(window.sidebar)
        column.addWidget(window.sidebar, 1)  # which takes it out of the splitter
        column.addWidget(find)
        splitter.insertWidget(place, holder)

    def follow_roles(*_: object) -> None:
        row = current(window)
        allowed = bool(row and row.get("roles"))
        moderation.setEnabled(allowed)
        moderation.setToolTip(
            "" if allowed else "Only owners and moderators of a community moderate it"
        )

    window.sidebar.selectionModel().currentChanged.connect(follow_roles)
    window.communities.dataChanged.connect(follow_roles)
    window.communities.modelReset.connect(follow_roles)
    follow_roles()
    return find
