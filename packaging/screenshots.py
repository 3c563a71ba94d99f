"""`make screenshots`: the demo `make run` opens, in real windows (under Xvfb, see the
Makefile), and a PNG of each of the app's main screens in docs/screenshots/.

Each screen is one entry of SCREENS: the PNG's name and a function that opens the
screen on the running demo, waits (in Qt's event loop, bounded) until its content is
shown, and returns the window to grab. To add a screen, write such a function and add
it to SCREENS; `python packaging/screenshots.py NAME...` makes only the ones named."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# This tree's kithnet, here and in the peers' processes (a worktree beside the install).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (sys.path[0], os.getenv("PYTHONPATH"))))

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QWidget

from kithnet.gui.app import FirstRunDialog, MainWindow, UnlockDialog, _quiet_libraries
from kithnet.gui.bridge import Bridge
from kithnet.gui.models import ItemRole
from kithnet.gui.palette import use_scheme
from kithnet.gui.panels import NetworkPanel, SettingsDialog
from kithnet.gui.people import ProfileDialog
from kithnet.node import control, demo

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
WAIT = 60.0  # seconds: the longest any screen may take to show its content
LISTEN = ("/ip4/127.0.0.1/tcp/0",)
# What a member's dialogs would name as their data folder (these bridges never start).
MEMBER_DATA = Path("/home/ann/.local/share/kithnet")
QUESTION = "Does anybody know someone who can insulate my loft?"


class Timeout(Exception):
    """A screen's content did not show in time; the message says which."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Run Qt's event loop until `condition()` holds, checking every 50 ms; raise
    Timeout after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(
        lambda: loop.quit() if condition() or time.monotonic() > deadline else None
    )
    if not condition():
        timer.start()
        loop.exec()
        timer.stop()
    if not condition():
        raise Timeout(f"{what} did not happen within {timeout:.0f} s")


def settle(milliseconds: int = 400) -> None:
    """Let Qt lay out and paint what changed (the event loop runs meanwhile)."""
    loop = QEventLoop()
    QTimer.singleShot(milliseconds, loop.quit)
    loop.exec()


def ask(bridge: Bridge, command: str, **args: Any) -> Any:
    """A command's answer from the bridge's node (listening before asking)."""
    answers: dict[str, Any] = {}
    request = -1

    def answered(number: int, result: object) -> None:
        if number == request:
            answers["result"] = result

    def failed(number: int, message: str) -> None:
        if number == request:
            answers["error"] = message

    bridge.answered.connect(answered)
    bridge.failed.connect(failed)
    try:
        request = bridge.call(command, **args)
        wait_until(lambda: answers, f"the answer to {command}")
    finally:
        bridge.answered.disconnect(answered)
        bridge.failed.disconnect(failed)
    if "error" in answers:
        raise RuntimeError(f"{command}: {answers['error']}")
    return answers["result"]


@dataclass
class Demo:
    """The running demo: You's main window on its node, and the three peers' data
    directories (a screen can act as a peer through `kithnet.node.control.call`)."""

    app: QApplication
    window: MainWindow
    peers: dict[str, tuple[Path, str]]
    folder: Path  # for what a screen makes (thrown away at the end)
    at_exit: list[Callable[[], object]] = field(default_factory=list)  # e.g. a bridge's stop
    # What to undo once a screen is taken (a dialog opened under it, a dock shown).
    after_shot: list[Callable[[], object]] = field(default_factory=list)
    made: dict[str, Any] = field(default_factory=dict)  # what a screen made, for others

    @property
    def bridge(self) -> Bridge:
        return self.window.bridge

    def ask(self, command: str, **args: Any) -> Any:
        """A command's answer from You's node (listening before asking)."""
        return ask(self.bridge, command, **args)

    def as_peer(self, name: str, command: str, **args: Any) -> Any:
        """Run a command on a peer's running node (Bob, Cat or Dan)."""
        return control.call(self.peers[name][0], command, args, timeout=90)

    def key(self, name: str) -> str:
        """A member's key in hex, as You's node knows it."""
        return str(self.ask("references", member=name)["member"])

    def open_community(self, name: str) -> None:
        """Choose the community called `name` in the main window's sidebar."""
        model = self.window.communities
        if name not in [row["name"] for row in model.rows]:
            model.refresh()
            wait_until(lambda: name in [row["name"] for row in model.rows], f"{name} listed")
        self.window.sidebar.setCurrentIndex(
            model.index([row["name"] for row in model.rows].index(name))
        )

    def peer_knows(self, name: str, record: str) -> bool:
        """Whether a peer's node holds the record (a post or a question of You's)."""
        try:
            self.as_peer(name, "thread", post=record)
        except control.ControlError:
            return False
        return True

    def close_after(self, window: QWidget) -> QWidget:
        """A window under the one shot: closed once the shot is taken."""
        self.after_shot.append(window.close)
        return window


# The screens ------------------------------------------------------------------------------


def unlock_screen(demo_: Demo) -> QWidget:
    dialog = UnlockDialog(Bridge(MEMBER_DATA, LISTEN))
    dialog.passphrase.setText("correct horse battery staple")
    dialog.resize(460, dialog.sizeHint().height())
    return dialog


def first_run_screen(demo_: Demo) -> QWidget:
    dialog = FirstRunDialog(Bridge(MEMBER_DATA, LISTEN))
    dialog.name.setText("Ann")
    dialog.passphrase.setText("correct horse battery staple")
    dialog.confirm.setText("correct horse battery staple")
    dialog.resize(520, dialog.sizeHint().height())
    return dialog


def fingerprint_screen(demo_: Demo) -> QWidget:
    """First run, once the identity is made: its fingerprint to compare by voice."""
    bridge = Bridge(demo_.folder / "ann", LISTEN)
    demo_.at_exit.append(bridge.stop)
    dialog = FirstRunDialog(bridge)
    dialog.kdf = demo.DEMO_KDF  # a real identity, made at once
    dialog.name.setText("Ann")
    dialog.passphrase.setText("correct horse battery staple")
    dialog.confirm.setText("correct horse battery staple")
    dialog.create_button.click()
    wait_until(lambda: dialog.continue_button.isVisibleTo(dialog), "making Ann's identity")
    dialog.resize(520, dialog.heightForWidth(520))
    return dialog


def main_screen(demo_: Demo) -> QWidget:
    """The feed of Hackney Neighbours, all peers connected, Cat's picture fetched."""
    window = demo_.window
    top_level = [p for p in demo.POSTS[demo.HACKNEY] if not p.reply_to]
    wait_until(
        lambda: window.feed is not None and window.feed.rowCount() >= len(top_level),
        "the demo's feed",
    )
    wait_until(lambda: len(demo_.ask("peers")["connected"]) == 3, "connecting to the three peers")

    def picture_here() -> bool:
        posts = demo_.ask("feed.page", community=demo.HACKNEY, limit=50)["posts"]
        return any(a["state"] == "here" for p in posts for a in p["attachments"])

    wait_until(picture_here, "fetching Cat's picture")
    window.feed_view.scrollToTop()
    return window


def ask_screen(demo_: Demo) -> QWidget:
    """Asking who can insulate a loft: ranked providers at once, then Bob's referral
    to the installers' community, chosen so that joining is one click."""
    dialog = demo_.window.open_ask()
    dialog.text.setText(QUESTION)
    dialog.skills.setText("insulation")
    dialog.ask_button.click()
    wait_until(lambda: dialog.question is not None, "the answer to the question")
    wait_until(lambda: dialog.places.count(), "the communities that could help")

    def bob_has_it() -> bool:
        feed = demo_.as_peer("Bob", "feed", community=demo.HACKNEY, limit=50)
        return any(post["id"] == dialog.question for post in feed["posts"])

    wait_until(bob_has_it, "the question reaching Bob")
    demo_.as_peer("Bob", "refer", question=dialog.question, community=demo.INSTALLERS)
    wait_until(lambda: dialog.referrals.count() == 1, "Bob's referral")
    dialog.referrals.setCurrentRow(0)
    return dialog


def profile_screen(demo_: Demo) -> QWidget:
    """Cat's profile: the references about her insulation work, each checked, and how
    You's node ranks her for each skill, and why."""
    dialog = demo_.window.open_profile(demo_.key("Cat"))
    wait_until(lambda: dialog.references.rowCount() > 0, "the references about Cat")
    wait_until(lambda: "insulation" in dialog.trust.text(), "how You's node ranks Cat")
    return dialog


def vouch_screen(demo_: Demo) -> QWidget:
    """Vouching for Dan, from his profile, the form filled in."""
    profile = demo_.close_after(demo_.window.open_profile(demo_.key("Dan")))
    assert isinstance(profile, ProfileDialog)
    wait_until(profile.vouch_button.isEnabled, "Dan's profile")
    form = profile.open_vouch()
    assert form is not None
    form.skill.setCurrentText("carpentry")
    form.text.setPlainText("Built the raised beds for our street's garden, solid and on time.")
    return form


def messages_screen(demo_: Demo) -> QWidget:
    """A conversation with Bob: You writes, Bob's node answers."""
    window = demo_.window.open_messages(demo_.key("Bob"))
    window.composer.setPlainText("Could I borrow your ladder on Saturday?")
    window.send_button.click()
    wait_until(lambda: window.status.text().startswith("Delivered"), "the message reaching Bob")
    demo_.as_peer("Bob", "dm", member=demo_.key("You"), text="Of course: it's in the shed.")
    conversation = window.conversation
    assert conversation is not None
    wait_until(lambda: conversation.rowCount() >= 2, "Bob's answer")
    window.composer.setFocus()
    return window


def members_screen(demo_: Demo) -> QWidget:
    dialog = demo_.window.open_members()
    dialog.community.setCurrentText(demo.HACKNEY)
    wait_until(lambda: dialog.members.rowCount() >= 4, "Hackney Neighbours' members")
    return dialog


def invite_screen(demo_: Demo) -> QWidget:
    """An invite to Hackney Neighbours, as a code and as a QR code."""
    demo_.open_community(demo.HACKNEY)
    dialog = demo_.window.open_invite()
    assert dialog is not None
    dialog.uses.setValue(2)
    dialog.create_button.click()
    wait_until(lambda: dialog.qr_code is not None, "the invite's QR code")
    wait_until(lambda: dialog.invites.rowCount() > 0, "the list of invites")
    return dialog


def join_screen(demo_: Demo) -> QWidget:
    """Joining with a mistyped code: the dialog says what is wrong."""
    code = demo_.as_peer("Cat", "invite.create", community=demo.INSTALLERS)["code"]
    mistyped = code[:40] + ("a" if code[40] != "a" else "b") + code[41:]
    dialog = demo_.window.open_join()
    dialog.code.setPlainText(mistyped)
    dialog.join_button.click()
    wait_until(lambda: "mistyped" in dialog.message.text(), "the words for a mistyped code")
    return dialog


def directory_screen(demo_: Demo) -> QWidget:
    """Public communities, asked of the connected nodes."""
    demo_.as_peer("Cat", "community.announce", community=demo.INSTALLERS)
    dialog = demo_.window.open_directory()

    def listed() -> bool:
        if demo.INSTALLERS in [row["name"] for row in dialog.listings.rows]:
            return True
        if dialog.refresh_button.isEnabled():  # asked already, before Cat's listing came
            dialog.refresh()
        return False

    wait_until(listed, "the installers' listing")
    wait_until(dialog.refresh_button.isEnabled, "the other nodes' answers")
    names = [row["name"] for row in dialog.listings.rows]
    dialog.list.setCurrentIndex(dialog.listings.index(names.index(demo.INSTALLERS)))
    return dialog


OWN = "Mare Street Repair Café"


def own_community(demo_: Demo) -> str:
    """A community You owns (made once): Bob and Dan joined with You's invite, Dan is
    a moderator and You removed an advert of Dan's, which the log tells."""
    if "own" in demo_.made:
        return str(demo_.made["own"])
    made = demo_.ask("community.create", name=OWN, tags=["repair", "hackney"])
    code = demo_.ask("invite.create", community=made["id"], uses=5)["code"]
    for name in ("Bob", "Dan"):
        demo_.as_peer(name, "join", code=code)
    demo_.ask("community.roles", community=made["id"], role="moderator", grant=demo_.key("Dan"))
    advert = demo_.as_peer("Dan", "post", community=made["id"], text="Cheap double glazing!")

    def arrived() -> bool:
        posts = demo_.ask("feed", community=made["id"])["posts"]
        return any(post["id"] == advert["id"] for post in posts)

    wait_until(arrived, "Dan's advert")
    demo_.ask("community.remove", record=advert["id"], reason="Adverts go in the offers")
    demo_.made["own"] = made["id"]
    return str(made["id"])


def _moderation(demo_: Demo, tab: int) -> QWidget:
    own_community(demo_)
    demo_.open_community(OWN)
    dialog = demo_.window.open_moderation()
    assert dialog is not None
    wait_until(lambda: dialog.members.rowCount() >= 3, "the members of You's community")
    wait_until(lambda: dialog.log.rowCount() > 0, "the moderation log")
    dialog.choose("Dan")
    dialog.tabs.setCurrentIndex(tab)
    return dialog


def moderation_screen(demo_: Demo) -> QWidget:
    """Roles in a community You owns."""
    return _moderation(demo_, 0)


def moderation_log_screen(demo_: Demo) -> QWidget:
    """The moderation log of a community You owns."""
    return _moderation(demo_, 2)


def search_screen(demo_: Demo) -> QWidget:
    demo_.open_community(demo.HACKNEY)
    dialog = demo_.window.open_search()
    dialog.text.setText("insulation")
    dialog.run()
    wait_until(lambda: dialog.posts.rowCount() > 0, "posts about insulation")
    wait_until(lambda: not dialog.message.text().startswith("Searching"), "the search's counts")
    return dialog


def notifications_screen(demo_: Demo) -> QWidget:
    """The notifications dock, with Bob's reply to a post of You's."""
    window = demo_.window
    demo_.open_community(demo.HACKNEY)
    notifications = window.notifications
    wait_until(lambda: notifications.notifier.cursor is not None, "the notifier's first look")
    mine = demo_.ask("post", community=demo.HACKNEY, text="Who has a ladder to lend?")["id"]
    wait_until(lambda: demo_.peer_knows("Bob", mine), "You's post reaching Bob")
    demo_.as_peer(
        "Bob", "post", community=demo.HACKNEY, text="Borrow mine, it's in the shed", reply_to=mine
    )

    def replied() -> bool:
        model = notifications.notifier.model
        return any(
            model.index(row).data(ItemRole)["kind"] == "reply" for row in range(model.rowCount())
        )

    wait_until(replied, "the notice of Bob's reply")
    notifications.toggle()
    demo_.after_shot.append(notifications.toggle)
    return window


def network_screen(demo_: Demo) -> QWidget:
    """The network panel: addresses, the three peers and the communities shared."""
    panel = demo_.window.open_network()
    assert isinstance(panel, NetworkPanel)
    wait_until(lambda: panel.peers.rowCount() == 3, "the three peers in the panel")
    wait_until(lambda: panel.addresses.count() > 0, "You's node's addresses")
    demo_.after_shot.append(panel.close)
    return demo_.window


def _settings(demo_: Demo, tab: int) -> QWidget:
    dialog = demo_.window.open_settings()
    assert isinstance(dialog, SettingsDialog)
    wait_until(dialog.relay.isEnabled, "the node's settings")
    dialog.tabs.setCurrentIndex(tab)
    return dialog


def settings_screen(demo_: Demo) -> QWidget:
    """Settings: the data folder, relaying and the limits for pictures."""
    return _settings(demo_, 0)


def settings_passphrase_screen(demo_: Demo) -> QWidget:
    return _settings(demo_, 1)


def settings_backup_screen(demo_: Demo) -> QWidget:
    return _settings(demo_, 2)


def main_dark_screen(demo_: Demo) -> QWidget:
    """The main window under a dark palette."""
    use_scheme(demo_.app, Qt.ColorScheme.Dark)
    return main_screen(demo_)


# name -> the function that opens the screen; the PNG is docs/screenshots/NAME.png.
SCREENS: dict[str, Callable[[Demo], QWidget]] = {
    "unlock": unlock_screen,
    "first-run": first_run_screen,
    "first-run-fingerprint": fingerprint_screen,
    "main": main_screen,
    "main-dark": main_dark_screen,  # before the screens below post to the demo's feed
    "ask": ask_screen,
    "profile": profile_screen,
    "vouch": vouch_screen,
    "messages": messages_screen,
    "members": members_screen,
    "invite": invite_screen,
    "join": join_screen,
    "directory": directory_screen,
    "moderation": moderation_screen,
    "moderation-log": moderation_log_screen,
    "search": search_screen,
    "notifications": notifications_screen,
    "network": network_screen,
    "settings": settings_screen,
    "settings-passphrase": settings_passphrase_screen,
    "settings-backup": settings_backup_screen,
}


# Running ----------------------------------------------------------------------------------


def grab(window: QWidget, path: Path) -> None:
    """Save what the X server shows of `window` (a real window, raised first)."""
    window.show()
    window.raise_()
    window.activateWindow()
    wait_until(
        lambda: window.windowHandle() is not None and window.windowHandle().isExposed(),
        f"{path.stem} being shown",
    )
    settle()
    screen = window.windowHandle().screen()
    picture = screen.grabWindow(window.winId())
    if picture.isNull() or not picture.save(str(path)):
        raise RuntimeError(f"could not save {path}")
    print(f"{path}: {picture.width()}x{picture.height()}")


@contextmanager
def running_demo(app: QApplication) -> Iterator[Demo]:
    """The demo as `make run` opens it (kithnet.gui.app.demo_main), in a temporary
    folder thrown away at the end."""
    with tempfile.TemporaryDirectory(prefix="kithnet-shots-") as folder:
        you, peers = demo.prepare(Path(folder))
        with demo.running_peers(peers):
            bridge = Bridge(you, LISTEN)
            try:
                started: dict[str, object] = {}
                bridge.unlocked.connect(lambda info: started.update(info=info))
                bridge.unlock_failed.connect(lambda message: started.update(error=message))
                bridge.unlock(demo.DEMO_PASSPHRASE)
                wait_until(lambda: started, "unlocking You's node")
                if "error" in started:
                    raise RuntimeError(f"the demo did not unlock: {started['error']}")
                # Each screen can be taken alone, on the demo as a member finds it once
                # their node is in touch: the window opens on a node whose peers are
                # connected and follow Hackney's topic (its pictures can be fetched).
                wait_until(
                    lambda: len(ask(bridge, "peers")["connected"]) == 3,
                    "connecting to the three peers",
                )

                def in_touch() -> bool:
                    shared = ask(bridge, "status")["communities"]
                    return any(c["name"] == demo.HACKNEY and c["peers"] == 3 for c in shared)

                wait_until(in_touch, "the three peers following Hackney Neighbours")
                window = MainWindow(bridge)
                window.setWindowTitle("Kithnet (demo: nothing here is kept)")
                window.move(40, 40)
                window.show()
                running = Demo(app, window, peers, Path(folder))
                wait_until(lambda: window.communities.rowCount() > 0, "You's communities")
                try:
                    yield running
                finally:
                    for step in running.at_exit:
                        step()
            finally:
                bridge.stop()


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in SCREENS]
    if unknown:
        print(f"no screen called {', '.join(unknown)}; the screens: {', '.join(SCREENS)}")
        return 2
    _quiet_libraries()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"Qt platform: {app.platformName()} (real windows need xcb, under xvfb-run)")
    with running_demo(app) as running:
        for name in names or list(SCREENS):
            try:
                window = SCREENS[name](running)
                grab(window, OUT / f"{name}.png")
            except Timeout as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                return 1
            finally:
                use_scheme(app, Qt.ColorScheme.Light)
            if window is not running.window:  # a dialog: closed before the next screen
                if isinstance(window, QDialog):
                    window.reject()
                window.close()
            while running.after_shot:  # what was opened under it, last first
                running.after_shot.pop()()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
