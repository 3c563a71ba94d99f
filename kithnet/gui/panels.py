"""The network panel (what the node is doing on the network: its addresses, peers,
relays, a catch-up in progress) and the settings dialog (data folder, relaying for
others, picture limits, passphrase, backup and restore). Both reach the node only
through the bridge; restoring a backup makes a new store through kithnet.node.session,
in a worker thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QGuiApplication,
    QHideEvent,
    QKeySequence,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from kithnet.gui.app import passphrase_strength
from kithnet.gui.bridge import Bridge
from kithnet.gui.empty import say_when_empty
from kithnet.gui.models import Index, _Answers
from kithnet.node import session

REFRESH_MS = 3000  # the network panel asks the node this often while it is shown
MIN_PASSPHRASE = 10  # as for a new identity (FirstRunDialog)


def _size(size: int | None) -> str:
    if size is None:
        return "no limit"
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"  # 1.32 KB, not 1.323 KB (read as 1,323)
    return f"{size} bytes"


class PeersModel(_Answers):
    """The peers this node is connected to, by name, with the communities each shares
    with this member (`peers`)."""

    def refresh(self) -> None:
        self.ask("peers", "peers")

    def answer(self, purpose: str, result: Any) -> None:
        rows = sorted(result["connected"], key=lambda p: (not p["name"], p["name"], p["peer_id"]))
        if [r["peer_id"] for r in rows] == [r["peer_id"] for r in self.rows]:
            self.rows = rows  # the same peers: only what they share may have changed
            if rows:
                self.dataChanged.emit(self.index(0), self.index(len(rows) - 1))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        valid = index.isValid() and 0 <= index.row() < len(self.rows)
        if role == Qt.ItemDataRole.ToolTipRole and valid:
            return f"Peer id {self.rows[index.row()]['peer_id']}"
        return super().data(index, role)

    def display(self, row: dict[str, Any]) -> str:
        name = row["name"] or f"Someone ({row['peer_id'][:14]}…)"
        shared = ", ".join(row["communities"]) or "no community shared with you"
        relayed = " (through a relay)" if row.get("relayed") else ""
        return f"{name}: {shared}{relayed}"


def catch_up_text(catching_up: dict[str, Any] | None) -> str:
    """What the progress bar's label says of a catch-up (`status`'s `catching_up`)."""
    if catching_up is None:
        return "History is up to date"
    names = ", ".join(catching_up["communities"])
    if catching_up["reconciling"] and not catching_up["wanted"]:
        return f"Catching up {names}: finding what is missing…"
    more = " (and still looking for more)" if catching_up["reconciling"] else ""
    return (
        f"Catching up {names}: {catching_up['received']:,} of "
        f"{catching_up['wanted']:,} records received{more}"
    )


class NetworkPanel(QDockWidget):
    """What the member's node is doing on the network, asked of it every few seconds
    while the panel is shown (and not while it is hidden)."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__("Network", parent)
        self.setObjectName("network")
        self.bridge = bridge
        self.setAccessibleName("Network")
        body = QWidget()
        layout = QVBoxLayout(body)
        self.addresses = QListWidget()
        self.addresses.setAccessibleName("Your node's addresses")
        self.addresses.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.addresses.setMaximumHeight(70)
        # An address ends in the node's long peer id: shorten the middle, copy it whole.
        self.addresses.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.addresses.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.addresses.setToolTip("Addresses other members' nodes can reach yours on")
        self.copy_button = QPushButton("Copy addresses")
        self.copy_button.setAccessibleName("Copy addresses")
        self.copy_button.setToolTip("Copy the chosen addresses, or all of them (Ctrl+C)")
        QShortcut(
            QKeySequence.StandardKey.Copy,
            self.addresses,
            self.copy_addresses,
            Qt.ShortcutContext.WidgetShortcut,
        )
        self.peers = PeersModel(bridge, self)
        self.peers_view = QListView()
        self.peers_view.setAccessibleName("Connected peers")
        say_when_empty(
            self.peers_view,
            "No peer connected yet: your node looks for the members of your communities",
        )
        self.peers_view.setModel(self.peers)
        # A peer shares several communities: wrap the line, the dock is narrow.
        self.peers_view.setWordWrap(True)
        self.peers_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.peers_view.setAlternatingRowColors(True)
        self.peers_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.communities = QListWidget()
        self.communities.setAccessibleName("Peers per community")
        self.communities.setMaximumHeight(90)
        self.communities.setWordWrap(True)
        self.communities.setResizeMode(QListView.ResizeMode.Adjust)
        self.communities.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.relay = QLabel("")
        self.relay.setWordWrap(True)
        self.relay.setAccessibleName("Relays")
        self.relay.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.health = QLabel("")
        self.health.setWordWrap(True)
        self.health.setAccessibleName("Dropped and banned")
        self.sync_label = QLabel("")
        self.sync_label.setWordWrap(True)
        self.sync_label.setAccessibleName("Catching up")
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Catch-up progress")
        self.progress.setFormat("%v of %m records")
        self.progress.hide()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Network status")
        layout.addWidget(QLabel("Your node listens on"))
        layout.addWidget(self.addresses)
        layout.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(QLabel("Connected peers and the communities you share"))
        layout.addWidget(self.peers_view, 1)
        layout.addWidget(QLabel("Peers per community"))
        layout.addWidget(self.communities)
        layout.addWidget(self.relay)
        layout.addWidget(self.health)
        layout.addWidget(self.sync_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        self.setWidget(body)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.copy_button.clicked.connect(self.copy_addresses)
        self._asking: int | None = None
        self.status: dict[str, Any] | None = None  # the last answer shown
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def refresh(self) -> None:
        if self._asking is None:  # one question at a time: a busy node is not flooded
            self._asking = self.bridge.call("status")
            self.peers.refresh()

    def copy_addresses(self) -> None:
        chosen = self.addresses.selectedItems() or [
            self.addresses.item(i) for i in range(self.addresses.count())
        ]
        QGuiApplication.clipboard().setText("\n".join(item.text() for item in chosen))
        self.message.setText(f"Copied {len(chosen)} address(es)")

    def _failed(self, request: int, message: str) -> None:
        if request == self._asking:
            self._asking = None
            self.message.setText(f"The node did not answer: {message}")

    def _answered(self, request: int, result: object) -> None:
        if request != self._asking or not isinstance(result, dict):
            return
        self._asking = None
        self.status = result
        # Where others reach this node: its own addresses, and any through a relay.
        listen = list(dict.fromkeys([*result["listen"], *result["relay"]["circuit_addresses"]]))
        shown = [self.addresses.item(i).text() for i in range(self.addresses.count())]
        if shown != listen:  # keep the member's selection while nothing changed
            self.addresses.clear()
            self.addresses.addItems(listen)
            for i, address in enumerate(listen):
                self.addresses.item(i).setToolTip(address)
        self.communities.clear()
        for c in result["communities"]:
            peers = c["peers"]
            self.communities.addItem(
                f"{c['name']}: {peers} peer{'' if peers == 1 else 's'} online, "
                f"{c['records']:,} records"
            )
        self.relay.setText(_relay_text(result["relay"]))
        dropped = sum(result["dropped"].values())
        reasons = ", ".join(
            f"{reason.replace('_', ' ')} {count}"
            for reason, count in sorted(result["dropped"].items(), key=lambda kv: -kv[1])[:4]
        )
        banned = len(result["banned"])
        self.health.setText(
            f"Messages dropped: {dropped:,}{f' ({reasons})' if reasons else ''}. "
            f"Peers banned for misbehaving: {banned}."
        )
        self._show_catch_up(result["catching_up"])
        self.message.setText("")

    def _show_catch_up(self, catching_up: dict[str, Any] | None) -> None:
        self.sync_label.setText(catch_up_text(catching_up))
        if catching_up is None:
            self.progress.hide()
            return
        wanted = catching_up["wanted"]
        if wanted:
            self.progress.setRange(0, wanted)
            self.progress.setValue(min(catching_up["received"], wanted))
        else:  # still finding what is missing: a busy bar
            self.progress.setRange(0, 0)
        self.progress.show()


def _relay_text(relay: dict[str, Any]) -> str:
    parts = []
    if relay["relaying_for_others"]:
        members = len(relay["reserved_members"])
        parts.append(
            f"Relaying for members behind NAT: {members} reservation(s), "
            f"{relay['circuits']} open circuit(s)."
        )
    else:
        parts.append("Not relaying for others (Settings can turn it on).")
    if relay["reservations"]:
        parts.append(
            "Reachable through a relay at "
            + ", ".join(r["relay_address"] for r in relay["reservations"])
            + "."
        )
    else:
        parts.append("Reached directly, through no relay.")
    return " ".join(parts)


def _strength(text: str) -> str:
    """The new passphrase's strength; before anything is typed, what a good one is (not
    a verdict of "Too short" on an empty field)."""
    return passphrase_strength(text) if text else "Use at least 10 characters, or a few words"


class SettingsDialog(QDialog):
    """The data folder, relaying for others, picture limits, changing the passphrase,
    backing up the running store and restoring a backup into a new folder."""

    restored = Signal(str)  # what to tell the member (from the restoring thread)
    restore_failed = Signal(str)

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setWindowTitle("Kithnet settings")
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Settings")
        self.tabs.addTab(self._general(), "General")
        self.tabs.addTab(self._passphrase_tab(), "Passphrase")
        self.tabs.addTab(self._backup_tab(), "Backup and restore")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        close = QPushButton("Close")
        close.setAccessibleName("Close")
        close.clicked.connect(self.accept)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignRight)
        self.resize(620, 420)
        self._pending: dict[int, str] = {}
        bridge.answered.connect(self._answered)
        bridge.failed.connect(self._failed)
        self.restored.connect(self._restored)
        self.restore_failed.connect(self._restore_failed)
        self._restoring: threading.Thread | None = None

    def refresh(self) -> None:
        """Show what is set now (asked of the node each time the dialog opens)."""
        self._ask("settings", "settings")
        self._ask("blobs", "blobs")

    # Building -------------------------------------------------------------------------

    def _general(self) -> QWidget:
        page = QWidget()
        self.data_dir = QLineEdit(str(self.bridge.data_dir))
        self.data_dir.setReadOnly(True)
        self.data_dir.setAccessibleName("Data folder")
        self.open_folder = QPushButton("Open folder")
        self.open_folder.setAccessibleName("Open the data folder")
        self.open_folder.clicked.connect(self.open_data_dir)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.data_dir, 1)
        folder_row.addWidget(self.open_folder)
        self.folder_note = QLabel(
            "Your identity, your communities' records and your pictures, encrypted."
        )
        self.folder_note.setWordWrap(True)
        self.folder_note.setAccessibleName("Data folder status")
        self.relay = QCheckBox("Relay connections for members behind NAT")
        self.relay.setAccessibleName("Relay for members behind NAT")
        self.relay.setToolTip(
            "Lets members whose routers block incoming connections be reached through "
            "your node (like `kithnet serve --relay`); it uses some of your bandwidth"
        )
        self.relay.setEnabled(False)  # until the node says what is set
        self.relay_note = QLabel("")
        self.relay_note.setWordWrap(True)
        self.relay_note.setAccessibleName("Relay status")
        self.max_size = QLineEdit()
        self.max_size.setAccessibleName("Largest picture or file")
        self.max_size.setPlaceholderText("e.g. 20MB")
        self.max_total = QLineEdit()
        self.max_total.setAccessibleName("Space for pictures and files")
        self.max_total.setPlaceholderText("e.g. 2GB")
        self.save_limits = QPushButton("Save limits")
        self.save_limits.setAccessibleName("Save picture limits")
        self.limits_note = QLabel("")
        self.limits_note.setWordWrap(True)
        self.limits_note.setAccessibleName("Picture limits status")
        form = QFormLayout(page)
        form.addRow("Data folder", folder_row)
        form.addRow("", self.folder_note)
        form.addRow("", self.relay)
        form.addRow("", self.relay_note)
        form.addRow("Largest picture or file", self.max_size)
        form.addRow("Space for pictures and files", self.max_total)
        form.addRow("", self.save_limits)
        form.addRow("", self.limits_note)
        self.relay.toggled.connect(self.set_relay)
        self.save_limits.clicked.connect(self.set_limits)
        return page

    def _passphrase_tab(self) -> QWidget:
        page = QWidget()
        self.current = self._secret("Current passphrase")
        self.new = self._secret("New passphrase")
        self.confirm = self._secret("New passphrase again")
        self.strength = QLabel(_strength(""))
        self.strength.setAccessibleName("Passphrase strength")
        self.change_button = QPushButton("Change passphrase")
        self.change_button.setAccessibleName("Change passphrase")
        self.passphrase_note = QLabel(
            "Your data is encrypted under your passphrase. Changing it re-encrypts the "
            "store; nobody can recover a forgotten one."
        )
        self.passphrase_note.setWordWrap(True)
        self.passphrase_note.setAccessibleName("Passphrase status")
        form = QFormLayout(page)
        form.addRow("Current passphrase", self.current)
        form.addRow("New passphrase", self.new)
        form.addRow("Again", self.confirm)
        form.addRow("", self.strength)
        form.addRow("", self.change_button)
        form.addRow("", self.passphrase_note)
        self.new.textChanged.connect(lambda text: self.strength.setText(_strength(text)))
        self.change_button.clicked.connect(self.change_passphrase)
        self.confirm.returnPressed.connect(self.change_passphrase)
        return page

    def _backup_tab(self) -> QWidget:
        page = QWidget()
        self.backup_file = QLineEdit()
        self.backup_file.setAccessibleName("Backup file to write")
        choose = QPushButton("Choose…")
        choose.setAccessibleName("Choose where to write the backup")
        choose.clicked.connect(self._choose_backup_file)
        self.backup_passphrase = self._secret("Your passphrase, for the backup")
        self.backup_button = QPushButton("Write backup")
        self.backup_button.setAccessibleName("Write backup")
        self.backup_note = QLabel(
            "A backup holds your identity and everything your node keeps, encrypted "
            "under your passphrase. Keep it somewhere safe, away from this computer."
        )
        self.backup_note.setWordWrap(True)
        self.backup_note.setAccessibleName("Backup status")
        self.restore_file = QLineEdit()
        self.restore_file.setAccessibleName("Backup file to restore")
        choose_restore = QPushButton("Choose…")
        choose_restore.setAccessibleName("Choose a backup file to restore")
        choose_restore.clicked.connect(self._choose_restore_file)
        self.restore_folder = QLineEdit()
        self.restore_folder.setAccessibleName("New data folder")
        choose_folder = QPushButton("Choose…")
        choose_folder.setAccessibleName("Choose the new data folder")
        choose_folder.clicked.connect(self._choose_restore_folder)
        self.restore_passphrase = self._secret("The backup's passphrase")
        self.restore_button = QPushButton("Restore into the new folder")
        self.restore_button.setAccessibleName("Restore")
        self.restore_note = QLabel(
            "Restoring makes a new data folder from a backup; your current one is not "
            "touched. Kithnet then opens it when started with that folder."
        )
        self.restore_note.setWordWrap(True)
        self.restore_note.setAccessibleName("Restore status")
        self.restore_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_command = QPushButton("Copy the command")
        self.copy_command.setAccessibleName("Copy the command that opens the restored folder")
        self.copy_command.hide()
        self.copy_command.clicked.connect(self._copy_command)
        form = QFormLayout(page)
        form.addRow(QLabel("<b>Back up</b>"))
        form.addRow("Write to", self._row(self.backup_file, choose))
        form.addRow("Your passphrase", self.backup_passphrase)
        form.addRow("", self.backup_button)
        form.addRow("", self.backup_note)
        form.addRow(QLabel("<b>Restore</b>"))
        form.addRow("Backup file", self._row(self.restore_file, choose_restore))
        form.addRow("New data folder", self._row(self.restore_folder, choose_folder))
        form.addRow("Its passphrase", self.restore_passphrase)
        form.addRow("", self.restore_button)
        form.addRow("", self.restore_note)
        form.addRow("", self.copy_command)
        self.backup_button.clicked.connect(self.write_backup)
        self.backup_passphrase.returnPressed.connect(self.write_backup)
        self.restore_button.clicked.connect(self.restore)
        self.restore_passphrase.returnPressed.connect(self.restore)
        return page

    @staticmethod
    def _secret(name: str) -> QLineEdit:
        field = QLineEdit()
        field.setEchoMode(QLineEdit.EchoMode.Password)
        field.setAccessibleName(name)
        return field

    @staticmethod
    def _row(field: QLineEdit, button: QPushButton) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(field, 1)
        row.addWidget(button)
        return row

    # Asking the node ------------------------------------------------------------------

    def _ask(self, purpose: str, command: str, **args: Any) -> None:
        self._pending[self.bridge.call(command, **args)] = purpose

    def _answered(self, request: int, result: object) -> None:
        purpose = self._pending.pop(request, None)
        if purpose is None or not isinstance(result, dict):
            return
        if purpose in ("settings", "relay"):
            self.relay.blockSignals(True)
            self.relay.setChecked(bool(result["relay"]))
            self.relay.blockSignals(False)
            self.relay.setEnabled(True)
            self.relay_note.setText(_relay_note(result))
        elif purpose in ("blobs", "limits"):
            self.max_size.setText(_size(result["max_size"]))
            self.max_total.setText(_size(result["max_total"]))
            self.limits_note.setText(
                f"{'Saved. ' if purpose == 'limits' else ''}Pictures and files kept: "
                f"{result['count']:,}, using {_size(result['used'])}."
            )
            self.save_limits.setEnabled(True)
        elif purpose == "passwd":
            self.change_button.setEnabled(True)
            self.passphrase_note.setText(
                "Your passphrase is changed: from now on only the new one unlocks Kithnet."
            )
        elif purpose == "backup":
            self.backup_button.setEnabled(True)
            self.backup_note.setText(
                f"Backup written to {result['file']}: {result['records']:,} records, "
                f"fingerprint {result['fingerprint']}."
            )

    def _failed(self, request: int, message: str) -> None:
        purpose = self._pending.pop(request, None)
        if purpose in ("settings", "relay"):
            self.relay_note.setText(message)
            self.relay.setEnabled(True)
        elif purpose in ("blobs", "limits"):
            self.limits_note.setText(message)
            self.save_limits.setEnabled(True)
        elif purpose == "passwd":
            self.passphrase_note.setText(message)
            self.change_button.setEnabled(True)
            self.current.setFocus()
        elif purpose == "backup":
            self.backup_note.setText(message)
            self.backup_button.setEnabled(True)

    # General --------------------------------------------------------------------------

    def open_data_dir(self) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.bridge.data_dir))):
            self.folder_note.setText(
                f"No file manager could be opened here; the folder is {self.bridge.data_dir}"
            )

    def set_relay(self, on: bool) -> None:
        self.relay.setEnabled(False)
        self._ask("relay", "settings", relay=on)

    def set_limits(self) -> None:
        size, total = self.max_size.text().strip(), self.max_total.text().strip()
        if not size or not total or "limit" in size or "limit" in total:
            self.limits_note.setText("Write both limits as sizes, e.g. 20MB and 2GB")
            return
        self.save_limits.setEnabled(False)
        self._ask("limits", "blobs", max_size=size.replace(" ", ""), max_total=total)

    # Passphrase -----------------------------------------------------------------------

    def change_passphrase(self) -> None:
        if not self.change_button.isEnabled():
            return  # one change at a time (Return pressed while one runs)
        current, new = self.current.text(), self.new.text()
        if not current:
            self.passphrase_note.setText("Type your current passphrase")
            return
        if new != self.confirm.text():
            self.passphrase_note.setText("The two new passphrases differ: type them again")
            self.confirm.clear()
            return
        if len(new) < MIN_PASSPHRASE:
            self.passphrase_note.setText(passphrase_strength(new))
            return
        self.change_button.setEnabled(False)
        self.passphrase_note.setText("Re-encrypting your store under the new passphrase…")
        self._ask("passwd", "passwd", current=current, new=new)
        for field in (self.current, self.new, self.confirm):
            field.clear()

    # Backup and restore ---------------------------------------------------------------

    def _choose_backup_file(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Write the backup to", str(Path.home() / "kithnet.backup")
        )
        if chosen:
            self.backup_file.setText(chosen)

    def _choose_restore_file(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Choose a Kithnet backup")
        if chosen:
            self.restore_file.setText(chosen)

    def _choose_restore_folder(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Restore into this (empty) folder")
        if chosen:
            self.restore_folder.setText(chosen)

    def write_backup(self) -> None:
        if not self.backup_button.isEnabled():
            return  # one backup at a time
        file = self.backup_file.text().strip()
        if not file or not self.backup_passphrase.text():
            self.backup_note.setText("Choose where to write the backup and type your passphrase")
            return
        path = Path(file).expanduser()
        if not path.is_absolute():  # a bare name: in the home folder, not wherever the
            path = Path.home() / path  # app happened to be started from
        if path.exists():
            self.backup_note.setText(f"{path} exists already: choose a new file name")
            return
        self.backup_button.setEnabled(False)
        self.backup_note.setText("Writing the backup…")
        self._ask("backup", "backup", file=str(path), passphrase=self.backup_passphrase.text())
        self.backup_passphrase.clear()

    def restore(self) -> None:
        if not self.restore_button.isEnabled():
            return  # one restore at a time
        file, folder = self.restore_file.text().strip(), self.restore_folder.text().strip()
        passphrase = self.restore_passphrase.text()
        if not file or not folder or not passphrase:
            self.restore_note.setText(
                "Choose the backup file and a new, empty data folder, and type the "
                "backup's passphrase"
            )
            return
        target = Path(folder).expanduser().absolute()
        if target == self.bridge.data_dir.absolute():
            self.restore_note.setText(
                "That is the folder Kithnet is using now: choose a new, empty folder"
            )
            return
        self.restore_button.setEnabled(False)
        self.copy_command.hide()
        self.restore_note.setText("Restoring (checking every record)…")
        self.restore_passphrase.clear()
        # Argon2id and checking every record take a while: not on the thread that paints.
        self._restoring = threading.Thread(
            target=self._restore_in_background,
            args=(Path(file).expanduser(), passphrase, target),
            name="kithnet-restore",
            daemon=True,
        )
        self._restoring.start()

    def _restore_in_background(self, file: Path, passphrase: str, target: Path) -> None:
        try:
            with session.restore_store(file, passphrase, target) as store:
                name = store.profile().name
        except session.UnlockError as exc:
            self.restore_failed.emit(str(exc))
        except Exception as exc:  # say what went wrong, in words, whatever it was
            self.restore_failed.emit(f"the backup could not be restored: {exc}")
        else:
            self.restored.emit(
                f"Restored {name}'s data into {target}. Kithnet runs one data folder at a "
                f"time: to use this one, quit Kithnet and start it with\n"
                f"kithnet --data-dir {target}"
            )

    def _restored(self, message: str) -> None:
        self.restore_button.setEnabled(True)
        self.restore_note.setText(message)
        self.copy_command.show()

    def _restore_failed(self, message: str) -> None:
        self.restore_button.setEnabled(True)
        self.restore_note.setText(message)

    def _copy_command(self) -> None:
        command = self.restore_note.text().rsplit("\n", 1)[-1]
        QGuiApplication.clipboard().setText(command)


def _relay_note(settings: dict[str, Any]) -> str:
    if settings["relay"] == settings["relaying"]:
        if settings["relaying"]:
            return "Your node relays for others now."
        return "Your node relays for nobody (it uses no bandwidth for others)."
    if settings["relay"]:
        return "Your node will relay for others from its next start (quit and open Kithnet)."
    return "Your node stops relaying for others at its next start (quit and open Kithnet)."
