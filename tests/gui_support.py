"""What the desktop app's tests share: waits, asking the app's node a command and
waiting for that answer, and the demo app (what `make run` opens) as a fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from kithnet.gui.app import MainWindow, UnlockDialog
from kithnet.gui.bridge import Bridge
from kithnet.node import demo
from tests.members import PASSPHRASE, Member

WAIT = 20_000  # ms: a loaded CI machine is slow, and a wait ends as soon as it can

LISTEN = ("/ip4/127.0.0.1/tcp/0",)

DemoApp = tuple[MainWindow, dict[str, tuple[Path, str]]]


def ask(bridge: Bridge, qtbot: QtBot, command: str, **args: Any) -> Any:
    """A command's answer, waiting for that answer and not another (the app asks for
    feeds and lists by itself as records arrive). The answers are collected from before
    the call: a plain function connected to the bridge may be called in the node's
    thread, as soon as the node answers, so a wait begun after the call could miss it."""
    answers: dict[int, Any] = {}

    def take(number: int, result: Any) -> None:
        answers[number] = result

    bridge.answered.connect(take)
    try:
        request = bridge.call(command, **args)
        qtbot.waitUntil(lambda: request in answers, timeout=30_000)
    finally:
        bridge.answered.disconnect(take)
    return answers[request]


@pytest.fixture
def ann(tmp_path: Path) -> Iterator[Member]:
    """Ann's data folder, for a test to fill and open in the app."""
    member = Member(tmp_path, "Ann")
    yield member
    member.kill()


@pytest.fixture
def bridge(ann: Member, qtbot: QtBot) -> Iterator[Bridge]:
    """The app's bridge on Ann's data, not yet unlocked."""
    made = Bridge(ann.data_dir, LISTEN)
    yield made
    made.stop()


def unlock_with_dialog(bridge: Bridge, qtbot: QtBot) -> None:
    """Unlock as a member does: the passphrase typed into the unlock dialog."""
    dialog = UnlockDialog(bridge)
    qtbot.addWidget(dialog)
    dialog.passphrase.setText(PASSPHRASE)
    with qtbot.waitSignal(bridge.unlocked, timeout=30_000):
        dialog.button.click()


@pytest.fixture
def demo_app(tmp_path: Path, qtbot: QtBot) -> Iterator[DemoApp]:
    """What `make run` opens: the demo's three peers running, and You's main window
    on its unlocked node, showing Hackney Neighbours."""
    you, peers = demo.prepare(tmp_path)
    with demo.running_peers(peers):
        bridge = Bridge(you, LISTEN)
        try:
            with qtbot.waitSignal(bridge.unlocked, timeout=30_000):
                bridge.unlock(demo.DEMO_PASSPHRASE)
            window = MainWindow(bridge)
            qtbot.addWidget(window)
            qtbot.waitUntil(lambda: window.communities.rowCount() >= 1, timeout=WAIT)
            yield window, peers
        finally:
            bridge.stop()
