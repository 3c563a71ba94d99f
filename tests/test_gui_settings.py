"""The network panel and the settings dialog, offscreen, with real nodes behind the app:
the demo's peers by name in the panel, a catch-up of thousands of records shown by its
progress bar until it is up to date, changing the passphrase (a wrong current one
changes nothing), a backup written from the running app that restores into a store with
the same identity and posts, and relaying for others kept across a restart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QLineEdit,
    QProgressBar,
    QTabWidget,
)
from pytestqt.qtbot import QtBot

from kithnet.gui.app import MainWindow, UnlockDialog
from kithnet.gui.bridge import Bridge
from kithnet.gui.panels import NetworkPanel, SettingsDialog, _size
from kithnet.localstore.store import Store
from kithnet.node import demo, session
from kithnet.node.control import call
from tests.gui_support import LISTEN, WAIT, DemoApp, ask
from tests.members import PASSPHRASE, Member, environment

NEW_PASSPHRASE = "four words grow trees"


@pytest.fixture
def ann(tmp_path: Path) -> Iterator[Member]:
    """Ann's data, with a community of a few posts."""
    member = Member(tmp_path, "Ann")
    with Store.open(member.data_dir, PASSPHRASE) as store:
        genesis = store.publish({"kind": "community", "name": "Allotments", "visibility": "public"})
        store.publish_many(
            [
                {"kind": "post", "community": genesis.id, "type": "post", "text": f"Plot {i}"}
                for i in range(5)
            ]
        )
    yield member
    member.kill()


@pytest.fixture
def bridge(ann: Member, qtbot: QtBot) -> Iterator[Bridge]:
    made = Bridge(ann.data_dir, LISTEN)
    yield made
    made.stop()


def _unlock(bridge: Bridge, qtbot: QtBot, passphrase: str = PASSPHRASE) -> MainWindow:
    dialog = UnlockDialog(bridge)
    qtbot.addWidget(dialog)
    dialog.passphrase.setText(passphrase)
    with qtbot.waitSignal(bridge.unlocked, timeout=30_000):
        dialog.button.click()
    window = MainWindow(bridge)
    qtbot.addWidget(window)
    return window


def _settings(window: MainWindow, qtbot: QtBot) -> SettingsDialog:
    dialog = window.open_settings()
    assert isinstance(dialog, SettingsDialog)
    qtbot.waitUntil(dialog.relay.isEnabled, timeout=WAIT)  # the node told what is set
    return dialog


def _rows(panel: NetworkPanel) -> list[str]:
    model = panel.peers
    return [model.index(i).data() for i in range(model.rowCount())]


# The network panel -----------------------------------------------------------------------


def test_the_network_panel_shows_the_address_and_the_demo_peers_by_name(
    demo_app: DemoApp, qtbot: QtBot, qtmodeltester: Any
) -> None:
    window, _peers = demo_app
    window.show()
    window.menus["view"].actions()[0].trigger()  # View > Network (Ctrl+Shift+N)
    panel = window.findChild(NetworkPanel)
    assert panel is not None
    assert panel.isVisible()
    assert window.menus["view"].actions()[0].shortcut().toString() == "Ctrl+Shift+N"
    qtbot.waitUntil(lambda: panel.addresses.count() >= 1, timeout=WAIT)
    address = panel.addresses.item(0).text()
    assert address.startswith("/ip4/127.0.0.1/tcp/")
    assert address in ask(window.bridge, qtbot, "status")["listen"]
    # Bob, Cat and Dan, each sharing Hackney Neighbours with You (not Cat's installers,
    # which You is not in).
    wanted = {f"{name}: Hackney Neighbours" for name in ("Bob", "Cat", "Dan")}
    qtbot.waitUntil(lambda: wanted <= set(_rows(panel)), timeout=WAIT)
    qtbot.waitUntil(
        lambda: any(
            panel.communities.item(i).text().startswith("Hackney Neighbours: 3 peers online")
            for i in range(panel.communities.count())
        ),
        timeout=WAIT,
    )
    # Bob shares a second community, with a long name: his line wraps in the dock
    # rather than running off its edge.
    long_name = "Residents of Mare Street, Richmond Road and the Lansdowne Estate"
    made = ask(window.bridge, qtbot, "community.create", name=long_name)
    code = ask(window.bridge, qtbot, "invite.create", community=made["id"])["code"]
    call(_peers["Bob"][0], "join", {"code": code}, timeout=90)
    qtbot.waitUntil(lambda: any(long_name in row for row in _rows(panel)), timeout=WAIT)
    bob = next(n for n, row in enumerate(_rows(panel)) if row.startswith("Bob: "))

    def wrapped() -> bool:
        shown = panel.peers_view.visualRect(panel.peers.index(bob))
        line = panel.peers_view.fontMetrics().lineSpacing()
        return shown.right() <= panel.peers_view.viewport().width() and shown.height() > line

    qtbot.waitUntil(wrapped, timeout=WAIT)
    assert not panel.peers_view.horizontalScrollBar().isVisible()
    assert "Not relaying for others" in panel.relay.text()
    assert "Reached directly" in panel.relay.text()
    assert panel.health.text().startswith("Messages dropped: ")
    assert "Peers banned for misbehaving: 0" in panel.health.text()
    qtbot.waitUntil(lambda: panel.sync_label.text() == "History is up to date", timeout=WAIT)
    assert panel.progress.isHidden()
    qtmodeltester.check(panel.peers)
    # Copying the chosen address puts it on the clipboard, as the member would paste it.
    panel.addresses.setCurrentRow(0)
    panel.copy_button.click()
    assert QGuiApplication.clipboard().text() == address
    # Asked every few seconds while shown; not at all once hidden.
    assert panel.timer.isActive()
    panel.close()
    assert not panel.timer.isActive()
    assert window.open_network() is panel
    assert panel.timer.isActive()


def test_a_catch_up_of_thousands_of_records_shows_its_progress_until_up_to_date(
    tmp_path: Path, qtbot: QtBot
) -> None:
    posts = 10_000
    you, peers = demo.busy(tmp_path, posts)
    with demo.running_peers(peers):
        bridge = Bridge(you, LISTEN)
        try:
            window = _unlock(bridge, qtbot, demo.DEMO_PASSPHRASE)
            window.show()
            panel = window.open_network()
            assert isinstance(panel, NetworkPanel)
            panel.timer.setInterval(50)  # look often: the catch-up takes a few seconds
            seen: list[tuple[int, int, str]] = []
            feed_during: list[int] = []  # posts the open feed showed while catching up

            def look(request: int, result: object) -> None:
                # After the panel took its answer (it connected first).
                if (
                    isinstance(result, dict)
                    and result.get("catching_up")
                    and (not panel.progress.isHidden())
                ):
                    seen.append(
                        (
                            panel.progress.value(),
                            panel.progress.maximum(),
                            panel.sync_label.text(),
                        )
                    )
                    feed_during.append(window.feed.rowCount() if window.feed else 0)

            bridge.answered.connect(look)
            qtbot.waitUntil(
                lambda: (
                    panel.status is not None
                    and panel.status["records"] > posts
                    and panel.sync_label.text() == "History is up to date"
                ),
                timeout=120_000,
            )
            bridge.answered.disconnect(look)
        finally:
            bridge.stop()
    measured = [(value, maximum, text) for value, maximum, text in seen if maximum > 0]
    assert measured, f"the bar never showed records to come: {seen}"
    # Caught part way: some received, more to come, and said in words too.
    part_way = [s for s in measured if 0 < s[0] < s[1]]
    assert part_way, f"the bar never showed a catch-up part way: {measured}"
    value, maximum, text = part_way[0]
    assert text.startswith(f"Catching up Busy: {value:,} of {maximum:,} records")
    values = [value for value, _, _ in measured]
    assert values == sorted(values)  # it only goes forward
    assert max(maximum for _, maximum, _ in measured) >= posts  # every post Bob holds
    assert panel.progress.isHidden()  # up to date: no bar
    # The open feed fills as the catch-up goes, not only once it has ended.
    assert any(rows > 0 for rows in feed_during), feed_during


# Settings: passphrase ----------------------------------------------------------------------


def test_changing_the_passphrase_needs_the_current_one_and_then_only_the_new_one_opens(
    ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    window = _unlock(bridge, qtbot)
    window.menus["kithnet"].actions()[0].trigger()  # Kithnet > Settings… (Ctrl+,)
    dialog = window.findChild(SettingsDialog)
    assert dialog is not None
    assert window.menus["kithnet"].actions()[0].shortcut().toString() == "Ctrl+,"
    assert dialog.data_dir.text() == str(ann.data_dir)
    assert window.open_settings() is dialog  # opened again: the same dialog, refreshed
    # Nothing typed yet: what a good passphrase is, not a verdict on an empty field.
    assert dialog.strength.text() == "Use at least 10 characters, or a few words"
    # Typed badly: said at once, nothing asked of the node.
    dialog.current.setText(PASSPHRASE)
    dialog.new.setText(NEW_PASSPHRASE)
    dialog.confirm.setText("four words grow tree")
    dialog.change_button.click()
    assert dialog.passphrase_note.text() == "The two new passphrases differ: type them again"
    dialog.new.setText("short")
    assert dialog.strength.text().startswith("Too short")
    dialog.confirm.setText("short")
    dialog.change_button.click()
    assert dialog.passphrase_note.text().startswith("Too short")
    # A wrong current passphrase says so.
    dialog.current.setText("not my passphrase")
    dialog.new.setText(NEW_PASSPHRASE)
    dialog.confirm.setText(NEW_PASSPHRASE)
    assert dialog.strength.text() == "Strong"
    dialog.change_button.click()
    qtbot.waitUntil(dialog.change_button.isEnabled, timeout=WAIT)
    assert dialog.passphrase_note.text() == (
        "the current passphrase is wrong: nothing was changed; type it again"
    )
    # The right one changes it; the node goes on working meanwhile.
    dialog.current.setText(PASSPHRASE)
    dialog.new.setText(NEW_PASSPHRASE)
    dialog.confirm.setText(NEW_PASSPHRASE)
    dialog.change_button.click()
    assert dialog.current.text() == ""  # not left lying in the fields
    qtbot.waitUntil(dialog.change_button.isEnabled, timeout=WAIT)
    assert dialog.passphrase_note.text().startswith("Your passphrase is changed")
    feed = ask(bridge, qtbot, "feed.page", community="Allotments")
    assert "Plot 4" in [p["text"] for p in feed["posts"]]
    bridge.stop()
    with pytest.raises(session.UnlockError) as refused:
        session.open_store(ann.data_dir, PASSPHRASE)
    assert refused.value.wrong_passphrase
    with session.open_store(ann.data_dir, NEW_PASSPHRASE) as store:
        assert store.integrity_check() == "ok"
        assert store.identity.public_key == ann.public_key


# Settings: backup and restore -------------------------------------------------------------


def test_a_backup_written_from_the_running_app_restores_the_same_member(
    tmp_path: Path, ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    window = _unlock(bridge, qtbot)
    dialog = _settings(window, qtbot)
    backup = tmp_path / "ann.backup"
    dialog.backup_file.setText(str(backup))
    dialog.backup_passphrase.setText("not my passphrase")
    dialog.backup_button.click()
    qtbot.waitUntil(dialog.backup_button.isEnabled, timeout=WAIT)
    assert dialog.backup_note.text() == (
        "the passphrase is wrong: nothing was changed; type it again"
    )
    assert not backup.exists()
    dialog.backup_passphrase.setText(PASSPHRASE)
    dialog.backup_button.click()
    qtbot.waitUntil(dialog.backup_button.isEnabled, timeout=WAIT)
    assert dialog.backup_note.text().startswith(f"Backup written to {backup}: ")
    assert backup.exists()
    # The node goes on: a post after the backup is stored as usual.
    ask(bridge, qtbot, "post", community="Allotments", text="After the backup")
    # Writing over an existing file is refused before asking the node.
    dialog.backup_passphrase.setText(PASSPHRASE)
    dialog.backup_button.click()
    assert dialog.backup_note.text() == f"{backup} exists already: choose a new file name"
    # Restoring into the folder in use is refused; into a new one it works.
    dialog.restore_file.setText(str(backup))
    dialog.restore_folder.setText(str(ann.data_dir))
    dialog.restore_passphrase.setText(PASSPHRASE)
    dialog.restore_button.click()
    assert dialog.restore_note.text().startswith("That is the folder Kithnet is using now")
    restored = tmp_path / "restored"
    dialog.restore_folder.setText(str(restored))
    dialog.restore_passphrase.setText("not my passphrase")
    dialog.restore_button.click()
    qtbot.waitUntil(dialog.restore_button.isEnabled, timeout=WAIT)
    assert dialog.restore_note.text().startswith("wrong passphrase")
    assert not restored.exists()
    dialog.restore_passphrase.setText(PASSPHRASE)
    dialog.restore_button.click()
    qtbot.waitUntil(dialog.restore_button.isEnabled, timeout=60_000)
    note = dialog.restore_note.text()
    assert note.startswith(f"Restored Ann's data into {restored}."), note
    assert note.endswith(f"kithnet --data-dir {restored}")
    assert not dialog.copy_command.isHidden()
    dialog.copy_command.click()
    assert QGuiApplication.clipboard().text() == f"kithnet --data-dir {restored}"
    bridge.stop()
    # With the node stopped, asking for a backup says so (and can be asked again).
    dialog.backup_file.setText(str(tmp_path / "later.backup"))
    dialog.backup_passphrase.setText(PASSPHRASE)
    dialog.backup_button.click()
    qtbot.waitUntil(dialog.backup_button.isEnabled, timeout=WAIT)
    assert dialog.backup_note.text() == "the node has stopped"
    with session.open_store(restored, PASSPHRASE) as copy:
        assert copy.identity.public_key == ann.public_key
        texts = {p.text for c in copy.communities() for p in copy.feed(c.id, limit=50).posts}
    assert {f"Plot {i}" for i in range(5)} <= texts
    assert "After the backup" not in texts  # written after the backup was
    with session.open_store(ann.data_dir, PASSPHRASE) as store:
        assert store.integrity_check() == "ok"  # the running store was not harmed


# Settings: relaying for others ------------------------------------------------------------


def test_relaying_for_others_is_kept_and_used_from_the_next_start(
    ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    window = _unlock(bridge, qtbot)
    dialog = _settings(window, qtbot)
    assert not dialog.relay.isChecked()
    dialog.relay.click()
    qtbot.waitUntil(dialog.relay.isEnabled, timeout=WAIT)
    assert dialog.relay.isChecked()
    assert dialog.relay_note.text() == (
        "Your node will relay for others from its next start (quit and open Kithnet)."
    )
    assert not ask(bridge, qtbot, "status")["relay"]["relaying_for_others"]
    bridge.stop()
    again = Bridge(ann.data_dir, LISTEN)
    try:
        window = _unlock(again, qtbot)
        dialog = _settings(window, qtbot)
        assert dialog.relay.isChecked()
        assert dialog.relay_note.text() == "Your node relays for others now."
        window.show()
        panel = window.open_network()
        assert isinstance(panel, NetworkPanel)
        qtbot.waitUntil(
            lambda: "Relaying for members behind NAT" in panel.relay.text(), timeout=WAIT
        )
        # And off again, from the start after.
        dialog.relay.click()
        qtbot.waitUntil(dialog.relay.isEnabled, timeout=WAIT)
        assert not dialog.relay.isChecked()
        assert "stops relaying for others at its next start" in dialog.relay_note.text()
    finally:
        again.stop()


def test_picture_limits_are_shown_and_a_bad_size_says_how_to_write_one(
    ann: Member, bridge: Bridge, qtbot: QtBot
) -> None:
    window = _unlock(bridge, qtbot)
    dialog = _settings(window, qtbot)
    qtbot.waitUntil(lambda: dialog.limits_note.text().startswith("Pictures"), timeout=WAIT)
    dialog.max_size.setText("lots")
    dialog.max_total.setText("1GB")
    dialog.save_limits.click()
    qtbot.waitUntil(dialog.save_limits.isEnabled, timeout=WAIT)
    assert dialog.limits_note.text() == "'lots' is not a size: write e.g. 20MB, 512KB or 2GB"
    dialog.max_size.setText("5 MB")
    dialog.max_total.setText("1GB")
    dialog.save_limits.click()
    qtbot.waitUntil(dialog.save_limits.isEnabled, timeout=WAIT)
    assert dialog.limits_note.text().startswith("Saved. ")
    assert (dialog.max_size.text(), dialog.max_total.text()) == ("5 MB", "1 GB")
    limits = ask(bridge, qtbot, "blobs")
    assert (limits["max_size"], limits["max_total"]) == (5 * 1024**2, 1024**3)
    # Every control of the dialog and of the network panel has a name a screen reader says.
    panel = window.open_network()
    for widget in (dialog, panel):
        for kind in (QAbstractButton, QLineEdit, QAbstractItemView, QProgressBar, QTabWidget):
            for control in widget.findChildren(kind):
                assert control.accessibleName(), control


# The same commands from the command line, while a node holds the store ------------------


def test_kithnet_backup_and_passwd_go_through_the_running_node(tmp_path: Path, ann: Member) -> None:
    ann.start()
    backup = tmp_path / "ann.backup"
    written = ann.cli_json("backup", str(backup))
    assert written["file"] == str(backup)
    assert written["records"] >= 7  # her profile, the community, five posts
    wrong = subprocess.run(
        [sys.executable, "-m", "kithnet", "passwd", "--data-dir", str(ann.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment(), "KITHNET_PASSPHRASE": "not it", "KITHNET_NEW_PASSPHRASE": "x" * 12},
        stdin=subprocess.DEVNULL,
    )
    assert wrong.returncode == 1
    assert "the current passphrase is wrong: nothing was changed" in wrong.stderr
    changed = subprocess.run(
        [sys.executable, "-m", "kithnet", "passwd", "--data-dir", str(ann.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment(), "KITHNET_NEW_PASSPHRASE": NEW_PASSPHRASE},
        stdin=subprocess.DEVNULL,
    )
    assert changed.returncode == 0, changed.stderr
    assert ann.command("status")["running"]  # the node goes on
    ann.stop()
    with session.restore_store(backup, PASSPHRASE, tmp_path / "laptop") as copy:
        assert copy.identity.public_key == ann.public_key
    with pytest.raises(session.UnlockError):
        session.open_store(ann.data_dir, PASSPHRASE)
    with session.open_store(ann.data_dir, NEW_PASSPHRASE) as store:
        assert store.integrity_check() == "ok"


def test_status_tells_who_relays_for_whom_and_through_which_relay(tmp_path: Path) -> None:
    """Rae's node relays (opted in); Bob's, behind it, holds a reservation there and
    announces a circuit address: `status` (the network panel's source) says each."""
    rae, bob = Member(tmp_path, "Rae"), Member(tmp_path, "Bob")
    try:
        rae.start("--relay")
        bob.start("--relay-via", f"{rae.listen}/p2p/{rae.peer_id}")
        bob.wait_for_log(r"reachable through a relay at \S+")
        relay = bob.command("status")["relay"]
        assert not relay["relaying_for_others"]
        assert [r["relay_id"] for r in relay["reservations"]] == [rae.peer_id]
        circuit = f"{rae.listen}/p2p/{rae.peer_id}/p2p-circuit/p2p/{bob.peer_id}"
        assert relay["circuit_addresses"] == [circuit]
        relaying = rae.command("status")["relay"]
        assert relaying["relaying_for_others"]
        assert relaying["reserved_members"] == [bob.peer_id]
        assert relaying["reservations"] == []
        shown = bob.cli("status")
        assert f"reachable through a relay at {circuit}" in shown.stdout
        assert "relaying for members behind NAT: 1 reserved" in rae.cli("status").stdout
    finally:
        rae.kill()
        bob.kill()


def test_sizes_read_as_a_member_would_say_them() -> None:
    """Three figures at most: 1.32 KB, not 1.323 KB (read as 1,323 where the comma
    is a dot)."""
    assert _size(1355) == "1.32 KB"
    assert _size(10 * 1024**2) == "10 MB"
    assert _size(1024**3) == "1 GB"
    assert _size(512) == "512 bytes"
    assert _size(None) == "no limit"
