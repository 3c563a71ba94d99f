"""People in the desktop app: a member's profile (who they are, their offers, the
references about them with whether each signature checks, and why the member's node
trusts them as it does), vouching, muting and blocking; direct messages; and the
members of a community, from which any profile opens. Everything goes through the
bridge (kithnet/gui/bridge.py), so nothing slow runs on the thread that paints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QDateTime, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QFont, QKeySequence, QPalette, QResizeEvent, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from kithnet.core.fields import Text, normalise_tag
from kithnet.core.kinds import KINDS
from kithnet.gui.bridge import Bridge
from kithnet.gui.empty import say_when_empty
from kithnet.gui.forms import button as _button
from kithnet.gui.forms import lay_out_form
from kithnet.gui.models import PAGE, Index, ItemRole, _Answers

# How a reference's author knows its subject, as the profile says it, and as the
# vouch form offers it.
KNOWS = {
    "hired": "hired them",
    "worked_with": "worked with them",
    "knows_personally": "knows them personally",
}
VOUCH_CHOICES = (
    ("hired", "I hired them"),
    ("worked_with", "I worked with them"),
    ("knows_personally", "I know them personally"),
)


def _text_limit(kind: str, field: str) -> int:
    """The most bytes a record kind's text field holds (kithnet/core/kinds.py)."""
    found = next(f.type for f in KINDS[kind].fields if f.name == field)
    assert isinstance(found, Text)
    return found.max_bytes


MAX_REFERENCE_BYTES = _text_limit("reference", "text")
MAX_BIO_BYTES = _text_limit("profile", "bio")
MAX_NAME_BYTES = _text_limit("profile", "name")
MAX_CONVERSATIONS = 1000  # what `inbox` lists at most
CONVERSATION_LIMIT = 200  # the newest messages of a conversation shown


def tags(text: str) -> list[str]:
    """Comma-separated skills or services as tags ("Loft insulation, solar" ->
    ["loft-insulation", "solar"]), each once."""
    found = (normalise_tag(part) for part in text.split(","))
    return list(dict.fromkeys(t for t in found if t))


def _who(row: dict[str, Any], name_key: str, key: str) -> str:
    return str(row.get(name_key) or row[key][:12])


def _when(milliseconds: int) -> str:
    return QDateTime.fromMSecsSinceEpoch(int(milliseconds)).toString("d MMM HH:mm")


def _faded() -> Any:
    """The palette's colour for what no longer counts (a revoked reference)."""
    return QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)


# Models ----------------------------------------------------------------------------------


class ReferencesModel(_Answers):
    """The references about one member (`references`), each with its author, skill,
    words, relationship, community and whether its signature checks."""

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.name = ""

    def refresh(self, member: str) -> None:
        self.ask("list", "references", member=member)

    def answer(self, purpose: str, result: Any) -> None:
        self.name = result["name"]
        rows = list(result["references"])
        if [r["id"] for r in rows] == [r["id"] for r in self.rows]:
            for number, (old, new) in enumerate(zip(self.rows, rows, strict=True)):
                if old != new:  # revoked or hidden since
                    self.rows[number] = new
                    self.dataChanged.emit(self.index(number), self.index(number))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def display(self, row: dict[str, Any]) -> str:
        who = _who(row, "author_name", "author")
        knows = KNOWS.get(row["relationship"], row["relationship"])
        check = "✓ signature checks" if row["verified"] else "✗ signature does not check"
        where = f" · in {row['community_name']}" if row.get("community_name") else ""
        state = ""
        if row["revoked"]:
            state = " · revoked by its author: it no longer counts"
        elif row["hidden"]:
            state = f" · hidden by {self.name or 'its subject'}"
        return f"{who} ({knows}), for {row['skill']}: “{row['text']}”\n{check}{where}{state}"

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.ForegroundRole and index.isValid():
            row = self.rows[index.row()] if index.row() < len(self.rows) else None
            return _faded() if row and (row["revoked"] or row["hidden"]) else None
        return super().data(index, role)


class MembersModel(_Answers):
    """A community's members with their roles, online or not (`community.roles`)."""

    failed = Signal(str)  # asking for the members failed: why, in words

    def _on_failure(self, request: int, message: str) -> None:
        if request in self._pending:
            super()._on_failure(request, message)
            self.failed.emit(message)

    def refresh(self, community: str) -> None:
        self.ask("list", "community.roles", community=community)

    def answer(self, purpose: str, result: Any) -> None:
        self.beginResetModel()
        self.rows = [dict(m, id=m["member"]) for m in result["members"]]
        self.endResetModel()

    def display(self, row: dict[str, Any]) -> str:
        roles = f" ({', '.join(row['roles'])})" if row["roles"] else ""
        state = " · banned" if row["banned"] else " · online" if row["online"] else ""
        return f"{_who(row, 'name', 'member')}{roles}{state}"


class ConversationsModel(_Answers):
    """This member's conversations, newest first, each with the other member, the last
    message and how many are unread (`inbox`); a page at a time as the view scrolls."""

    def __init__(self, bridge: Bridge, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.unread = 0  # all unread messages
        self._limit = PAGE
        self._more = False
        self._loading = False

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and self._more and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if self.canFetchMore(parent):
            self._limit = min(self._limit + PAGE, MAX_CONVERSATIONS)
            self.refresh()

    def refresh(self) -> None:
        self._loading = True
        self.ask("list", "inbox", limit=self._limit)

    def _on_failure(self, request: int, message: str) -> None:
        if request in self._pending:
            self._loading = False  # scrolling may ask again
        super()._on_failure(request, message)

    def row_of(self, member: str) -> int:
        return next((n for n, row in enumerate(self.rows) if row["member"] == member), -1)

    def answer(self, purpose: str, result: Any) -> None:
        self._loading = False
        self.unread = result["unread"]
        rows = [dict(c, id=c["member"]) for c in result["conversations"]]
        self._more = len(rows) >= self._limit < MAX_CONVERSATIONS
        old = [r["id"] for r in self.rows]
        new = [r["id"] for r in rows]
        if new[: len(old)] == old:  # the same order: counts changed, or a page more
            for number, row in enumerate(rows[: len(old)]):
                if self.rows[number] != row:
                    self.rows[number] = row
                    self.dataChanged.emit(self.index(number), self.index(number))
            if len(rows) > len(old):
                self.beginInsertRows(QModelIndex(), len(old), len(rows) - 1)
                self.rows.extend(rows[len(old) :])
                self.endInsertRows()
            return
        self.beginResetModel()  # a conversation moved to the top
        self.rows = rows
        self.endResetModel()

    def display(self, row: dict[str, Any]) -> str:
        unread = f"  ({row['unread']} unread)" if row["unread"] else ""
        last = row["last"]
        mine = "You: " if last["direction"] == "out" else ""
        return f"{_who(row, 'name', 'member')}{unread}\n{mine}{last['text']}"

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.FontRole and index.isValid() and index.row() < len(self.rows):
            if self.rows[index.row()]["unread"]:
                font = QFont()
                font.setBold(True)
                return font
            return None
        return super().data(index, role)


def message_state(row: dict[str, Any], name: str) -> str:
    """Where a message this member sent is, in words."""
    state = row["state"]
    if state == "delivered":
        return "delivered"
    if state == "forwarded":
        count = row["forwarders"]
        holders = f"{count} member{'s' if count != 1 else ''}"
        return f"held for {name} by {holders} you share a community with"
    if state == "waiting":
        return f"waiting: it goes out when your node next meets {name}'s node or a go-between"
    return ""


class ConversationModel(_Answers):
    """One conversation, oldest first (`inbox member=...`, which marks what it shows
    read)."""

    shown = Signal()  # an answer came, and reading it marked the conversation read

    def __init__(self, bridge: Bridge, member: str, parent: QObject | None = None) -> None:
        super().__init__(bridge, parent)
        self.member = member
        self.name = ""

    def refresh(self) -> None:
        self.ask("list", "inbox", member=self.member, limit=CONVERSATION_LIMIT)

    def answer(self, purpose: str, result: Any) -> None:
        self.name = result["name"]
        self._take(list(result["messages"]))
        self.shown.emit()

    def _take(self, rows: list[dict[str, Any]]) -> None:
        old = [r["id"] for r in self.rows]
        new = [r["id"] for r in rows]
        if new[: len(old)] == old:  # new messages at the end, states changed
            for number, row in enumerate(rows[: len(old)]):
                if self.rows[number] != row:
                    self.rows[number] = row
                    self.dataChanged.emit(self.index(number), self.index(number))
            if len(rows) > len(old):
                self.beginInsertRows(QModelIndex(), len(old), len(rows) - 1)
                self.rows.extend(rows[len(old) :])
                self.endInsertRows()
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def display(self, row: dict[str, Any]) -> str:
        name = self.name or self.member[:12]
        who = "You" if row["direction"] == "out" else name
        state = message_state(row, name) if row["direction"] == "out" else ""
        return f"{who} · {_when(row['created_at'])}{f' · {state}' if state else ''}\n{row['text']}"

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.TextAlignmentRole and index.isValid():
            if index.row() < len(self.rows) and self.rows[index.row()]["direction"] == "out":
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        return super().data(index, role)


# Asking the node from a window -----------------------------------------------------------


class _Asking:
    """A window's own requests to the node, each with what to do with its answer; a
    failure shows in the window's status line, in the node's words."""

    bridge: Bridge
    status: QLabel

    def _listen(self) -> None:
        self._requests: dict[int, Callable[[Any], None]] = {}
        self.bridge.answered.connect(self._answered)
        self.bridge.failed.connect(self._failed)

    def request(self, then: Callable[[Any], None], command: str, **args: Any) -> int:
        number = self.bridge.call(command, **args)
        self._requests[number] = then
        return number

    def _answered(self, request: int, result: object) -> None:
        then = self._requests.pop(request, None)
        if then is not None:
            then(result)

    def _failed(self, request: int, message: str) -> None:
        if self._requests.pop(request, None) is not None:
            self.status.setText(message)
            self.failed_request(request)

    def failed_request(self, request: int) -> None:
        """A window re-enables what waited for `request`."""

    def busy(self) -> bool:
        return bool(self._requests)


# The vouch form and the profile editor ---------------------------------------------------


class VouchDialog(_Asking, QDialog):
    """Vouch for a member's skill: what they did, and how you know them. The reference
    is signed by this member's node and travels to the community you share."""

    vouched = Signal(dict)  # the `vouch` answer

    def __init__(
        self, bridge: Bridge, member: str, name: str, skills: Sequence[str], parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.member = member
        self.setWindowTitle(f"Vouch for {name}")
        self.skill = QComboBox()
        self.skill.setEditable(True)
        self.skill.addItems(list(skills))
        self.skill.setCurrentText(skills[0] if skills else "")
        self.skill.setAccessibleName("Skill")
        self.skill.setToolTip("The one skill you vouch for, e.g. plumbing")
        self.text = QPlainTextEdit()
        self.text.setAccessibleName("What they did")
        self.text.setPlaceholderText(f"What did {name} do, and how well?")
        self.relationship = QComboBox()
        self.relationship.setAccessibleName("How you know them")
        for value, words in VOUCH_CHOICES:
            self.relationship.addItem(words, value)
        self.relationship.setCurrentIndex(1)
        self.status = QLabel(
            f"Members who trust you will see this when they look for {name}'s skill. "
            "It is signed with your key; you can revoke it later."
        )
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        self.send = _button("&Vouch", "Vouch", "Sign and send the reference (Ctrl+Return)")
        self.send.setDefault(True)
        cancel = _button("Cancel", "Cancel", "Close without vouching (Esc)")
        rows = [
            ("Skill", self.skill),
            ("What they did", self.text),
            ("How you know them", self.relationship),
        ]
        lay_out_form(self, rows, self.status, cancel, self.send)
        self.resize(480, 320)
        self.send.clicked.connect(self.submit)
        cancel.clicked.connect(self.reject)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.submit)
        self._listen()

    def submit(self) -> None:
        if self.busy():
            return
        skill = normalise_tag(self.skill.currentText())
        text = self.text.toPlainText().strip()
        if not skill:
            self.status.setText("Name the skill you vouch for (e.g. plumbing): nothing was sent")
            self.skill.setFocus()
            return
        if not text:
            self.status.setText(
                "Write what they did for you or with you: others read it to decide whom "
                "to trust. Nothing was sent"
            )
            self.text.setFocus()
            return
        if len(text.encode()) > MAX_REFERENCE_BYTES:
            self.status.setText(
                f"A reference holds at most {MAX_REFERENCE_BYTES} bytes of text (yours has "
                f"{len(text.encode())}): shorten it. Nothing was sent"
            )
            return
        self.send.setEnabled(False)
        self.status.setText("Signing and sending…")
        self.request(
            self._done,
            "vouch",
            member=self.member,
            skill=skill,
            text=text,
            relationship=self.relationship.currentData(),
        )

    def _done(self, result: dict[str, Any]) -> None:
        self.vouched.emit(result)
        self.accept()

    def failed_request(self, request: int) -> None:
        self.send.setEnabled(True)


class EditProfileDialog(_Asking, QDialog):
    """What others see of this member: name, a few words about them, skills and
    services (`profile.set`)."""

    saved = Signal(dict)  # the `profile.set` answer

    def __init__(self, bridge: Bridge, profile: dict[str, Any], parent: QWidget | None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Edit your profile")
        self.name = QLineEdit(profile["name"])
        self.name.setAccessibleName("Your name")
        self.name.setMaxLength(64)
        self.bio = QPlainTextEdit(profile["bio"])
        self.bio.setAccessibleName("About you")
        self.bio.setPlaceholderText("A few words others see: what you do, where")
        self.skills = QLineEdit(", ".join(profile["skills"]))
        self.skills.setAccessibleName("Your skills")
        self.skills.setPlaceholderText("what you can do, separated by commas: plumbing, tiling")
        self.services = QLineEdit(", ".join(profile["services"]))
        self.services.setAccessibleName("Your services")
        self.services.setPlaceholderText("what you offer others, separated by commas")
        self.status = QLabel("Members of your communities see this")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        self.save = _button("&Save", "Save", "Save and send your profile (Ctrl+Return)")
        self.save.setDefault(True)
        cancel = _button("Cancel", "Cancel", "Close without saving (Esc)")
        rows = [
            ("Name", self.name),
            ("About you", self.bio),
            ("Skills", self.skills),
            ("Services", self.services),
        ]
        lay_out_form(self, rows, self.status, cancel, self.save)
        self.resize(480, 360)
        self.save.clicked.connect(self.submit)
        cancel.clicked.connect(self.reject)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.submit)
        self._listen()

    def submit(self) -> None:
        if self.busy():
            return
        name = self.name.text().strip()
        if not name:
            self.status.setText("Type the name others will see: nothing was saved")
            return
        bio = self.bio.toPlainText().strip()
        if len(bio.encode()) > MAX_BIO_BYTES or len(name.encode()) > MAX_NAME_BYTES:
            self.status.setText(
                f"A name holds at most {MAX_NAME_BYTES} bytes and the words about you "
                f"{MAX_BIO_BYTES}: shorten them. Nothing was saved"
            )
            return
        self.save.setEnabled(False)
        self.status.setText("Saving…")
        self.request(
            self._done,
            "profile.set",
            name=name,
            bio=bio,
            skills=tags(self.skills.text()),
            services=tags(self.services.text()),
        )

    def _done(self, result: dict[str, Any]) -> None:
        self.saved.emit(result)
        self.accept()

    def failed_request(self, request: int) -> None:
        self.save.setEnabled(True)


# The profile -----------------------------------------------------------------------------


OFFERS_HEIGHT = 110  # pixels: the most a profile's offers take before they scroll


class ProfileDialog(_Asking, QDialog):
    """A member's profile: name, fingerprint, bio, skills, services and offers; the
    references about them, each with whether its signature checks; and how this
    member's node ranks them for each skill, and why. Someone else's profile offers to
    vouch, message, mute or block; one's own offers to edit it and to hide references."""

    profile_changed = Signal()  # this member edited their own profile
    silenced = Signal()  # this member muted, blocked, unmuted or unblocked them

    def __init__(
        self,
        bridge: Bridge,
        member_hex: str,
        parent: QWidget | None = None,
        open_messages: Callable[[str], QWidget] | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.member = member_hex  # "" for this member's own profile, until it answers
        self.profile: dict[str, Any] | None = None
        self.trust_lines: dict[str, str] = {}
        self._open_messages = open_messages
        self.vouch_form: VouchDialog | None = None
        self.editor: EditProfileDialog | None = None
        self.confirm: QMessageBox | None = None
        self.messages: QWidget | None = None
        self.setWindowTitle("Profile")
        self.name = QLabel("…")
        self.name.setAccessibleName("Name")
        title = self.name.font()
        title.setPointSizeF(title.pointSizeF() * 1.5)
        title.setBold(True)
        self.name.setFont(title)
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fingerprint = QLabel("")
        self.fingerprint.setAccessibleName("Fingerprint")
        self.fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bio = QLabel("")
        self.bio.setWordWrap(True)
        self.bio.setAccessibleName("About them")
        self.skills = QLabel("")
        self.skills.setWordWrap(True)
        self.skills.setAccessibleName("Skills")
        self.services = QLabel("")
        self.services.setWordWrap(True)
        self.services.setAccessibleName("Services")
        self.shared = QLabel("")
        self.shared.setWordWrap(True)
        self.shared.setAccessibleName("Communities you share")
        self.offers = QListWidget()
        self.offers.setAccessibleName("Offers")
        self.offers.setWordWrap(True)
        self.offers.setMaximumHeight(OFFERS_HEIGHT)
        self.references = ReferencesModel(bridge, self)
        self.references_view = QListView()
        self.references_view.setAccessibleName("References")
        self.references_view.setModel(self.references)
        self.references_view.setWordWrap(True)
        self.references_view.setAlternatingRowColors(True)
        self.references_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.references_view.setSpacing(3)
        self.offers_heading = QLabel("Offers")
        self.references_heading = QLabel("References about them")
        self.trust_heading = QLabel("How your node ranks them")
        self.trust = QLabel("")
        self.trust.setWordWrap(True)
        self.trust.setAccessibleName("Why your node trusts them")
        self.trust.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        # Someone else's profile
        self.vouch_button = _button("&Vouch…", "Vouch", "Vouch for a skill of theirs (Alt+V)")
        self.message_button = _button("&Message", "Message", "Write to them (Alt+M)")
        self.mute_button = _button("M&ute…", "Mute", "Hide their posts from your feeds (Alt+U)")
        self.block_button = _button(
            "&Block…", "Block", "Ignore their posts, references and messages (Alt+B)"
        )
        self.revoke_button = _button(
            "&Revoke my reference…",
            "Revoke my reference",
            "Withdraw the chosen reference you wrote (Alt+R)",
        )
        # One's own profile
        self.edit_button = _button(
            "&Edit profile…", "Edit profile", "Change what others see (Alt+E)"
        )
        self.hide_button = _button(
            "&Hide this reference",
            "Hide this reference",
            "Hide the chosen reference from your profile (Alt+H)",
        )
        for button in (
            self.vouch_button,
            self.message_button,
            self.mute_button,
            self.block_button,
            self.revoke_button,
            self.edit_button,
            self.hide_button,
        ):
            button.setEnabled(False)
        self.edit_button.hide()
        self.hide_button.hide()
        head = QFormLayout()
        head.addRow(self.name)
        head.addRow("Fingerprint", self.fingerprint)
        head.addRow("About", self.bio)
        head.addRow("Skills", self.skills)
        head.addRow("Services", self.services)
        head.addRow("Shared", self.shared)
        actions = QHBoxLayout()
        for button in (
            self.vouch_button,
            self.message_button,
            self.edit_button,
            self.mute_button,
            self.block_button,
        ):
            actions.addWidget(button)
        actions.addStretch(1)
        reference_actions = QHBoxLayout()
        reference_actions.addStretch(1)
        reference_actions.addWidget(self.revoke_button)
        reference_actions.addWidget(self.hide_button)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(actions)
        layout.addWidget(self.offers_heading)
        layout.addWidget(self.offers)
        layout.addWidget(self.references_heading)
        layout.addWidget(self.references_view, 1)
        layout.addLayout(reference_actions)
        layout.addWidget(self.trust_heading)
        layout.addWidget(self.trust)
        layout.addWidget(self.status)
        self.resize(620, 640)  # fits a 768-pixel-high screen; the references list grows
        self.vouch_button.clicked.connect(self.open_vouch)
        self.message_button.clicked.connect(self.open_conversation)
        self.mute_button.clicked.connect(lambda: self.ask_to_silence(block=False))
        self.block_button.clicked.connect(lambda: self.ask_to_silence(block=True))
        self.edit_button.clicked.connect(self.open_editor)
        self.hide_button.clicked.connect(self.hide_reference)
        self.revoke_button.clicked.connect(self.ask_to_revoke)
        self.references_view.selectionModel().currentChanged.connect(self._chosen)
        self.references.modelReset.connect(self._chosen)
        self.references.dataChanged.connect(self._chosen)
        bridge.arrived.connect(self._arrived)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # closed: nothing to refresh
        self._loading: int | None = None  # the profile's request, until it answers
        self._again = False
        self._listen()
        self.refresh()

    # Reading ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Ask again for the profile; its answer asks for the references, whose
        answer asks for the ranks. Asked while an answer is awaited, it asks once
        more when that answer comes."""
        if self._loading is not None:
            self._again = True
            return
        self._again = False
        self._loading = self.request(self._profile, "profile", member=self.member or None)

    def _arrived(self) -> None:
        if self.isVisible():
            self.refresh()

    def failed_request(self, request: int) -> None:
        if request == self._loading:
            self._loading = None

    def _profile(self, profile: dict[str, Any]) -> None:
        self._loading = None
        if self._again:
            self.refresh()
        self.profile = profile
        self.member = profile["member"]
        name = profile["name"] or "(no profile has reached your node yet)"
        mine = profile["me"]
        self.setWindowTitle("Your profile" if mine else f"{profile['name'] or 'Member'}: profile")
        self.name.setText(f"{name} (you)" if mine else name)
        self.fingerprint.setText(profile["fingerprint"])
        self.bio.setText(profile["bio"] or "—")
        self.skills.setText(", ".join(profile["skills"]) or "—")
        self.services.setText(", ".join(profile["services"]) or "—")
        if mine:
            self.shared.setText(", ".join(profile["communities"]) or "—")
        else:
            self.shared.setText(", ".join(profile["communities"]) or "no community you are both in")
        self.offers_heading.setText("Your offers" if mine else "Offers")
        self.references_heading.setText("References about you" if mine else "References about them")
        self.trust_heading.setText("How others rank you" if mine else "How your node ranks them")
        self.offers.clear()
        for offer in profile["offers"]:
            tags_text = " ".join(f"#{t}" for t in offer["tags"])
            self.offers.addItem(f"{offer['text']}  {tags_text}\nin {offer['community_name']}")
        if not profile["offers"]:
            self.offers.addItem(
                "You have made no offers: post one with the kind “offer”"
                if mine
                else "No offers in communities you share"
            )
        self._fit_offers()
        for button in (self.vouch_button, self.message_button, self.mute_button, self.block_button):
            button.setVisible(not mine)
            button.setEnabled(not mine)
        self.edit_button.setVisible(mine)
        self.edit_button.setEnabled(mine)
        self.hide_button.setVisible(mine)
        mark = profile["mark"]
        self.mute_button.setText("Unm&ute" if mark == "mute" else "M&ute…")
        self.mute_button.setAccessibleName("Unmute" if mark == "mute" else "Mute")
        self.block_button.setText("Un&block" if mark == "block" else "&Block…")
        self.block_button.setAccessibleName("Unblock" if mark == "block" else "Block")
        if mark in ("mute", "block"):
            verb = "muted" if mark == "mute" else "blocked"
            self.status.setText(f"You {verb} {profile['name'] or 'this member'}")
        self.request(self._references, "references", member=self.member)

    def _fit_offers(self) -> None:
        """The offers box as high as its offers (up to OFFERS_HEIGHT, then it scrolls):
        one offer leaves no empty box, the references get the room."""
        rows = sum(self.offers.sizeHintForRow(n) for n in range(self.offers.count()))
        frame = 2 * self.offers.frameWidth() + 2
        self.offers.setMaximumHeight(min(OFFERS_HEIGHT, rows + frame))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_offers()  # narrower, an offer wraps onto more lines

    def _references(self, result: dict[str, Any]) -> None:
        self.references.answer("list", result)
        self._chosen()
        if not result["references"]:
            whom = "you" if self.profile and self.profile["me"] else "them"
            self.references_heading.setText(f"References about {whom}: nobody has vouched yet")
        if self.profile is None or self.profile["me"]:
            self.trust.setText("This is you: others' nodes rank you by the references about you")
            return
        wanted = [*self.profile["skills"]]
        wanted += [r["skill"] for r in result["references"] if not r["revoked"]]
        self.request(self._trusted, "trust", member=self.member)
        for skill in dict.fromkeys(wanted):
            self.request(self._ranked, "trust", member=self.member, skill=skill)

    def _trusted(self, result: dict[str, Any]) -> None:
        name = result["name"] or "them"
        if result["path"] and len(result["path"]) > 1:
            via = " → ".join(result["path"])
            line = f"Your trust in {name}: {result['trust']:.2f}, through {via}"
        elif result["trust"]:
            line = f"Your trust in {name}: {result['trust']:.2f}: you vouched for or trust them"
        else:
            line = f"Your trust in {name}: none yet (no chain of references from you reaches them)"
        self.trust_lines[""] = line
        self._show_trust()

    def _ranked(self, result: dict[str, Any]) -> None:
        skill = result["skill"]
        if result["rank"] is None:
            line = f"{skill}: not ranked: {result['explanation']}"
        else:
            line = (
                f"{skill}: ranked {result['rank']} of {result['of']} known for it, "
                f"because {result['explanation']}"
            )
        self.trust_lines[skill] = line
        self._show_trust()

    def _show_trust(self) -> None:
        lines = [self.trust_lines[k] for k in sorted(self.trust_lines)]
        self.trust.setText("\n".join(lines))

    def _chosen(self, *_: object) -> None:
        row = self.chosen_reference()
        you = self.profile["you"] if self.profile else ""
        mine = bool(self.profile and self.profile["me"])
        self.hide_button.setEnabled(bool(mine and row and not row["hidden"]))
        wrote = bool(row and row["author"] == you and not row["revoked"])
        self.revoke_button.setVisible(wrote)
        self.revoke_button.setEnabled(wrote)

    def chosen_reference(self) -> dict[str, Any] | None:
        index = self.references_view.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        return row if isinstance(row, dict) else None

    def reference_lines(self) -> list[str]:
        """What the references list shows, line by line (for reading it aloud, or tests)."""
        return [str(self.references.index(n).data()) for n in range(self.references.rowCount())]

    # Acting -------------------------------------------------------------------------

    def open_vouch(self) -> VouchDialog | None:
        if self.profile is None or self.profile["me"]:
            return None
        self.vouch_form = VouchDialog(
            self.bridge, self.member, self.profile["name"], self.profile["skills"], self
        )
        self.vouch_form.vouched.connect(self._vouched)
        self.vouch_form.show()
        return self.vouch_form

    def _vouched(self, result: dict[str, Any]) -> None:
        online = result["members_online"]
        self.status.setText(
            f"Your reference for {result['skill']} is signed and went to "
            f"{result['community_name']} ({online} member{'s' if online != 1 else ''} online)"
        )
        self.trust_lines.clear()
        self.request(self._references, "references", member=self.member)

    def open_conversation(self) -> QWidget | None:
        if self.profile is None or self.profile["me"]:
            return None
        if self._open_messages is not None:
            self.messages = self._open_messages(self.member)
        else:
            window = MessagesWindow(self.bridge, self)
            window.open_conversation(self.member)
            window.show()
            self.messages = window
        return self.messages

    def open_editor(self) -> EditProfileDialog | None:
        if self.profile is None or not self.profile["me"]:
            return None
        self.editor = EditProfileDialog(self.bridge, self.profile, self)
        self.editor.saved.connect(self._edited)
        self.editor.show()
        return self.editor

    def _edited(self, result: dict[str, Any]) -> None:
        self.status.setText("Your profile is saved and on its way to your communities")
        self.profile_changed.emit()
        self.refresh()

    def _confirm(self, title: str, text: str, yes: str, then: Callable[[], object]) -> QMessageBox:
        """Ask before something that matters, without blocking the window."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=self)
        box.addButton(QMessageBox.StandardButton.Cancel)
        confirm = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
        confirm.setAccessibleName(yes)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda button: then() if button is confirm else None)
        box.open()
        self.confirm = box
        return box

    def confirm_button(self) -> QPushButton | None:
        """The button of the open question that goes ahead."""
        if self.confirm is None:
            return None
        for button in self.confirm.buttons():
            if self.confirm.buttonRole(button) == QMessageBox.ButtonRole.AcceptRole:
                return button  # type: ignore[return-value]
        return None

    def ask_to_silence(self, block: bool) -> QMessageBox | None:
        if self.profile is None or self.profile["me"]:
            return None
        name = self.profile["name"] or "this member"
        mark = self.profile["mark"]
        if mark == ("block" if block else "mute"):  # already: the button undoes it
            self.request(self._silenced, "mute", member=self.member, undo=True)
            return None
        if block:
            return self._confirm(
                f"Block {name}?",
                f"Your node will ignore {name}'s posts, references and messages. Only you "
                "are affected, and nobody is told. You can unblock them later.",
                "Block",
                lambda: self.request(self._silenced, "mute", member=self.member, block=True),
            )
        return self._confirm(
            f"Mute {name}?",
            f"{name}'s posts will be hidden from your feeds. Only you are affected, and "
            "nobody is told. You can unmute them later.",
            "Mute",
            lambda: self.request(self._silenced, "mute", member=self.member),
        )

    def _silenced(self, result: dict[str, Any]) -> None:
        level = next((s["level"] for s in result["silenced"] if s["member"] == self.member), "")
        name = self.profile["name"] if self.profile else "them"
        words = {"mute": f"You muted {name}", "block": f"You blocked {name}"}
        self.status.setText(words.get(level, f"{name} is no longer muted or blocked"))
        self.silenced.emit()
        self.refresh()

    def hide_reference(self) -> None:
        row = self.chosen_reference()
        if row is None or not (self.profile and self.profile["me"]) or row["hidden"]:
            return
        self.status.setText("Hiding it…")
        self.request(self._changed("hidden from your profile"), "hide", reference=row["id"])

    def ask_to_revoke(self) -> QMessageBox | None:
        row = self.chosen_reference()
        if row is None or self.profile is None or row["author"] != self.profile["you"]:
            return None
        return self._confirm(
            "Revoke your reference?",
            f"Your reference for {row['skill']} will stop counting for trust and show as "
            "revoked wherever it is seen. This cannot be undone: you can vouch again later.",
            "Revoke",
            lambda: self.request(self._changed("revoked"), "revoke", reference=row["id"]),
        )

    def _changed(self, what: str) -> Callable[[Any], None]:
        def done(result: Any) -> None:
            self.status.setText(f"The reference is {what}")
            self.trust_lines.clear()
            self.request(self._references, "references", member=self.member)

        return done


# Direct messages -------------------------------------------------------------------------


class MessagesWindow(_Asking, QWidget):
    """Direct messages: conversations on the left (unread ones in bold, with their
    counts), the chosen one on the right with a composer. What arrives shows at once."""

    def __init__(
        self,
        bridge: Bridge,
        parent: QWidget | None = None,
        open_profile: Callable[[str], QWidget] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window)
        self._open_profile = open_profile
        self.bridge = bridge
        self.setWindowTitle("Messages")
        self.conversations = ConversationsModel(bridge, self)
        self.list_view = QListView()
        self.list_view.setAccessibleName("Conversations")
        say_when_empty(
            self.list_view, "No conversations yet: open a member's profile and press Message"
        )
        self.list_view.setModel(self.conversations)
        self.list_view.setWordWrap(True)
        self.list_view.setSpacing(3)
        self.conversation: ConversationModel | None = None
        self.title = QLabel("Choose a conversation, or open a member's profile and press Message")
        self.title.setWordWrap(True)
        self.title.setAccessibleName("Conversation with")
        self.messages_view = QListView()
        self.messages_view.setAccessibleName("Messages")
        say_when_empty(self.messages_view, "No messages yet: write the first one below")
        self.messages_view.setWordWrap(True)
        self.messages_view.setAlternatingRowColors(True)
        self.messages_view.setSpacing(3)
        self.composer = QPlainTextEdit()
        self.composer.setAccessibleName("Write a message")
        self.composer.setPlaceholderText("Write a message: only they can read it")
        self.composer.setMaximumHeight(80)
        self.send_button = _button("&Send", "Send", "Send the message (Ctrl+Return)")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        row = QHBoxLayout()
        row.addWidget(self.composer, 1)
        row.addWidget(self.send_button)
        right = QWidget()
        column = QVBoxLayout(right)
        self.profile_button = _button(
            "&Profile", "Their profile", "Open their profile: references, vouching (Alt+P)"
        )
        self.profile_button.setEnabled(False)
        self.profile_button.setVisible(open_profile is not None)
        self.profile_button.clicked.connect(self.show_profile)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.profile_button)
        column.addLayout(header)
        column.addWidget(self.messages_view, 1)
        column.addLayout(row)
        column.addWidget(self.status)
        splitter = QSplitter()
        splitter.addWidget(self.list_view)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.resize(820, 560)
        self._set_composer(False)
        self.send_button.clicked.connect(self.send)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.send)
        self.list_view.selectionModel().currentChanged.connect(self._chosen)
        # The open conversation stays marked in the list, also when it is the first one.
        self.conversations.modelReset.connect(self._reselect)
        self.conversations.rowsInserted.connect(self._reselect)
        for changed in (
            self.conversations.modelReset,
            self.conversations.dataChanged,
            self.conversations.rowsInserted,
        ):
            changed.connect(self._count)
        bridge.arrived.connect(self.refresh)
        self._listen()
        self.conversations.refresh()

    def _set_composer(self, enabled: bool) -> None:
        self.composer.setEnabled(enabled)
        self.send_button.setEnabled(enabled)

    def refresh(self) -> None:
        """Show what arrived: the open conversation first if the window is open
        (reading it marks it read), then the unread counts."""
        if self.conversation is not None and self.isVisible():
            self.conversation.refresh()
        else:
            self.conversations.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()  # what arrived while the window was closed

    def open_conversation(self, member: str) -> ConversationModel:
        """Show the conversation with `member` (a key in hex), new or not."""
        if self.conversation is not None and self.conversation.member == member:
            return self.conversation
        if self.conversation is not None:
            self.conversation.shown.disconnect(self._read)
            self.conversation.rowsInserted.disconnect(self.messages_view.scrollToBottom)
            self.conversation.deleteLater()
        self.conversation = ConversationModel(self.bridge, member, self)
        self.conversation.shown.connect(self._read)
        self.conversation.rowsInserted.connect(self.messages_view.scrollToBottom)
        self.messages_view.setModel(self.conversation)
        self.title.setText("…")
        self.status.setText("")
        self._set_composer(True)
        self.profile_button.setEnabled(True)
        self.composer.setFocus()
        number = self.conversations.row_of(member)
        if number >= 0 and self.list_view.currentIndex().row() != number:
            self.list_view.setCurrentIndex(self.conversations.index(number))
        self.conversation.refresh()
        return self.conversation

    def show_profile(self) -> QWidget | None:
        """The profile of the member of the open conversation."""
        if self.conversation is None or self._open_profile is None:
            return None
        return self._open_profile(self.conversation.member)

    def _read(self) -> None:
        """The conversation is shown (and so read): its title, then the counts."""
        conversation = self.conversation
        if conversation is None:
            return
        self.title.setText(f"Conversation with {conversation.name or conversation.member[:12]}")
        self.conversations.refresh()

    def _chosen(self) -> None:
        index = self.list_view.currentIndex()
        row = index.data(ItemRole) if index.isValid() else None
        if isinstance(row, dict):
            self.open_conversation(row["member"])

    def _count(self) -> None:
        unread = self.conversations.unread
        self.setWindowTitle(f"Messages ({unread} unread)" if unread else "Messages")

    def _reselect(self) -> None:
        if self.conversation is not None:
            number = self.conversations.row_of(self.conversation.member)
            if number >= 0:
                self.list_view.setCurrentIndex(self.conversations.index(number))

    def send(self) -> None:
        text = self.composer.toPlainText().strip()
        conversation = self.conversation
        if conversation is None:
            self.status.setText("Choose whom to write to first")
            return
        if not text:
            self.status.setText("Write the message first")
            return
        if self.busy():
            return
        self.send_button.setEnabled(False)
        self.status.setText("Sending…")
        self.request(self._sent, "dm", member=conversation.member, text=text)

    def _sent(self, result: dict[str, Any]) -> None:
        self.send_button.setEnabled(True)
        self.composer.clear()
        name = result["name"] or result["member"][:12]
        if result["status"] == "delivered":
            self.status.setText(f"Delivered to {name}'s node")
        elif result["status"] == "forwarded":
            count = result["forwarders"]
            self.status.setText(
                f"{name} is offline: held for delivery by {count} member"
                f"{'s' if count != 1 else ''} you share a community with, sealed so only "
                f"{name} can read it, until {name}'s node is online"
            )
        else:
            self.status.setText(
                f"{name} is offline: held for delivery on your node. It goes out when your "
                f"node next meets {name}'s node, or a member who can pass it on"
            )
        if self.conversation is not None:
            self.conversation.refresh()

    def failed_request(self, request: int) -> None:
        self.send_button.setEnabled(self.conversation is not None)


# Members of a community ------------------------------------------------------------------


class MembersDialog(QDialog):
    """The members of a community, with their roles; any of them opens their profile."""

    profile_requested = Signal(str)  # a member's key, in hex

    def __init__(
        self, bridge: Bridge, communities: Sequence[str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Members")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.community = QComboBox()
        self.community.setAccessibleName("Community")
        self.community.addItems(list(communities))
        self.members = MembersModel(bridge, self)
        self.view = QListView()
        self.view.setAccessibleName("Members")
        self.view.setModel(self.members)
        self.show_button = _button(
            "Show &profile", "Show profile", "Open the chosen member's profile (Enter)"
        )
        self.show_button.setEnabled(False)
        self.status = QLabel("" if communities else "You are in no community yet")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        layout = QVBoxLayout(self)
        layout.addWidget(self.community)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.show_button)
        layout.addWidget(self.status)
        self.resize(380, 480)
        self.community.currentTextChanged.connect(self.refresh)
        self.view.activated.connect(lambda _: self.show_profile())
        self.view.selectionModel().currentChanged.connect(
            lambda current, _: self.show_button.setEnabled(current.isValid())
        )
        self.members.modelReset.connect(lambda: self.show_button.setEnabled(False))
        self.show_button.clicked.connect(self.show_profile)
        self.members.failed.connect(self.status.setText)
        self.refresh()

    def refresh(self) -> None:
        if self.community.currentText():
            self.members.refresh(self.community.currentText())

    def show_profile(self) -> None:
        index = self.view.currentIndex()
        if index.isValid():
            self.profile_requested.emit(index.data(ItemRole)["member"])
