"""The one way the desktop app reaches the node.

The node runs with trio in a thread of its own, as `kithnet serve` runs it (its
store, its host, its control socket), so nothing slow ever runs on the thread that
paints: unlocking (Argon2id), queries, gossip and sync all happen there. The app asks
for things by command name, exactly the commands the command line uses
(kithnet/node/commands.py), and hears back through Qt signals, which Qt queues to the
GUI thread:

- `unlocked(info)` or `unlock_failed(message)` after `unlock(passphrase)`, `create(name,
  passphrase)` (first run) or `restore(backup, passphrase)`;
- `answered(request, result)` or `failed(request, message)` for each `call`;
- `arrived()` when records or direct messages came from the network (at most every
  ARRIVAL_GAP s);
- `stopped(message)` when the node stops ("" if asked to).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from PySide6.QtCore import QObject, QTimer, Signal

from kithnet.crypto.identity import fingerprint
from kithnet.crypto.kdf import KdfParams
from kithnet.node import session

if TYPE_CHECKING:
    from kithnet.node.commands import Commands
    from kithnet.node.direct import DirectMessages
    from kithnet.node.node import Node
    from kithnet.node.session import Store

ARRIVAL_GAP = 0.25  # seconds: at most this often the app hears that records arrived
log = logging.getLogger(__name__)


def _load_node() -> None:
    import kithnet.node.daemon  # noqa: F401 (imported for its load time, used in _serve)

    # Imported, libp2p leaves its logger with no handler, so Python prints its warnings
    # (every failed DHT read) on the member's terminal; the app says what matters itself.
    logging.getLogger("libp2p").addHandler(logging.NullHandler())


def _reason(message: str) -> str:
    return f" ({message})" if message else ""


def in_words(exc: Exception) -> str:
    """An exception as the member should read it. Kithnet's own errors are written for
    them; a file error says what and where; anything else (a database error, a bug) is
    not shown raw: it is logged, and the member is told what it means for them."""
    if type(exc).__module__.split(".")[0] == "kithnet":
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    log.error("a command failed", exc_info=exc)
    return (
        "Kithnet's node could not do that: something unexpected went wrong "
        f"({type(exc).__name__}). Nothing you see may have changed; try again, and if it "
        "happens again, restart Kithnet"
    )


class Bridge(QObject):
    """The app's handle on its node (see the module's docstring)."""

    unlocked = Signal(dict)
    unlock_failed = Signal(str)
    answered = Signal(int, object)
    failed = Signal(int, str)
    arrived = Signal()
    stopped = Signal(str)

    def __init__(self, data_dir: Path | str, listen: Sequence[str]) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.listen = list(listen)
        self._requests = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._commands: Commands | None = None
        self._ready = threading.Event()
        # Requests sent and not yet answered: when the node stops, each is failed, so
        # no screen waits for ever with its button disabled.
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = False  # stop() was asked: the node's end is no surprise

    # Starting and stopping -------------------------------------------------------------

    def has_store(self) -> bool:
        """Whether the data folder holds a store (else the app offers to make one)."""
        return session.has_store(self.data_dir)

    def unlock(self, passphrase: str) -> None:
        """Open the store with `passphrase` and start the node, in the node's thread."""
        self._start(lambda: session.open_store(self.data_dir, passphrase))

    def create(self, name: str, passphrase: str, kdf: KdfParams | None = None) -> None:
        """Make a new identity and store (first run), then start the node."""
        self._start(lambda: session.create_store(self.data_dir, passphrase, name, kdf))

    def restore(self, backup: Path, passphrase: str, kdf: KdfParams | None = None) -> None:
        """Rebuild the store from a backup file (first run), then start the node."""
        self._start(lambda: session.restore_store(backup, passphrase, self.data_dir, kdf))

    def _start(self, open_store: Callable[[], Store]) -> None:
        if self._thread is not None:
            # A thread that failed to open the store ends right after saying so.
            self._thread.join(0 if self._token is not None else 5)
            if self._thread.is_alive():
                return  # the node runs already
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, args=(open_store,), name="kithnet-node", daemon=True
        )
        self._thread.start()

    def _run(self, open_store: Callable[[], Store]) -> None:
        # The node's code (libp2p: about 2 s to import) loads while the passphrase's key
        # is derived (libsodium lets go of the GIL), not before the first window shows.
        loading = threading.Thread(target=_load_node, name="kithnet-load", daemon=True)
        loading.start()
        try:
            store = open_store()
        except session.UnlockError as exc:
            self.unlock_failed.emit(str(exc))
            return
        except Exception as exc:  # whatever it was, the unlock dialog must hear of it
            self.unlock_failed.emit(in_words(exc))
            return
        finally:
            loading.join()
        if self._stopping:  # the member gave up while the key was derived: no node
            store.close()
            self.stopped.emit("")
            return
        message = ""
        try:
            with store:
                trio.run(self._serve, store)
        except Exception as exc:  # the node could not start, or failed: say so
            log.exception("the node stopped")
            message = in_words(exc)
        finally:
            if not message and not self._stopping:
                message = "Kithnet's node stopped unexpectedly"
            self._ready.set()
            with self._lock:
                unanswered, self._pending = sorted(self._pending), set()
            for request in unanswered:
                self.failed.emit(
                    request, f"Kithnet's node stopped before answering{_reason(message)}"
                )
            self.stopped.emit(message)

    async def _serve(self, store: Store) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            if self._stopping:  # stop() came before the token was there to cancel with
                scope.cancel()

            def ready(node: Node, commands: Commands) -> None:
                self._commands = commands
                node.peer.start_soon(lambda: self._watch_arrivals(node, node.direct))
                # What exists now (libp2p, Qt, the node) lives as long as the app: the
                # garbage collector need not scan it again. Its full collections then
                # take a few ms instead of pausing both threads for 100 ms while a
                # long feed scrolls (bench/bench_gui_feed.py with BENCH_DEBUG=1). No
                # collection first: that would be such a pause, just as the first
                # page is asked for.
                gc.freeze()
                self._ready.set()
                self.unlocked.emit(
                    {
                        "public_key": store.identity.public_key.hex(),
                        "fingerprint": fingerprint(store.identity.public_key),
                        "peer_id": store.peer_id,
                        "name": store.profile().name,
                        "addresses": node.peer.addresses(),
                    }
                )

            from kithnet.node.daemon import serve  # loaded by _load_node meanwhile
            from kithnet.node.settings_commands import RELAY_SETTING

            # The member's choice in Settings: relay for members behind NAT.
            relay = bool(store.setting(RELAY_SETTING))
            await serve(store, self.listen, (), relay=relay, on_signals=False, ready=ready)

    async def _watch_arrivals(self, *sources: Node | DirectMessages) -> None:
        """Emit `arrived` when records or direct messages arrive, at most every
        ARRIVAL_GAP s; what arrives during a gap is told right after it (not lost)."""
        pending = trio.Event()

        async def listen(source: Node | DirectMessages) -> None:
            while True:
                await source.wait_for_arrival()
                pending.set()

        async with trio.open_nursery() as nursery:
            for source in sources:
                nursery.start_soon(listen, source)
            while True:
                await pending.wait()
                pending = trio.Event()
                self.arrived.emit()
                await trio.sleep(ARRIVAL_GAP)

    def stop(self, timeout: float = 30) -> None:
        """Stop the node and wait for its thread (everything stored is durable)."""
        self._stopping = True
        token, scope = self._token, self._cancel
        if token is not None and scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    # Asking ------------------------------------------------------------------------------

    def call(self, command: str, **args: Any) -> int:
        """Run a command in the node; its answer comes as `answered` or `failed` with
        the number this returns."""
        request = next(self._requests)
        token, commands = self._token, self._commands
        if token is None or commands is None:
            self._fail_later(request, "the node is not running")
            return request

        async def run() -> None:
            try:
                result = await commands.dispatch(command, args)
            except Exception as exc:  # every failure goes back to the app, in words
                if self._settle(request):
                    self.failed.emit(request, in_words(exc))
            else:
                if self._settle(request):
                    self.answered.emit(request, result)

        def start() -> None:
            try:
                commands.node.peer.start_soon(run)
            except RuntimeError:  # the node is stopping: its nursery takes no more
                if self._settle(request):
                    self.failed.emit(request, "Kithnet's node is stopping")

        with self._lock:
            self._pending.add(request)
        try:
            token.run_sync_soon(start)
        except trio.RunFinishedError:
            self._settle(request)
            self._fail_later(request, "the node has stopped")
        return request

    def _settle(self, request: int) -> bool:
        """Take `request` out of those awaiting an answer; False if it was not there
        (the node's end already failed it)."""
        with self._lock:
            if request not in self._pending:
                return False
            self._pending.discard(request)
            return True

    def _fail_later(self, request: int, message: str) -> None:
        """Say a call failed once the caller has the request's number (a failure said
        at once would reach it before `call` returned, and so be missed)."""
        QTimer.singleShot(0, self, lambda: self.failed.emit(request, message))
