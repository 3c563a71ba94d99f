"""Members running real `kithnet serve` processes on 127.0.0.1, driven the way a member
drives them: the `kithnet` command line, or the same commands over the control socket."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kithnet.localstore.store import Store
from kithnet.node.control import call
from tests.test_store_ingest import FAST_KDF

PASSPHRASE = "members test"


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITHNET_")}
    env["KITHNET_PASSPHRASE"] = PASSPHRASE
    return env


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll `check` (at most every 0.1 s) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Member:
    """One member: a data directory (a fast KDF, to keep tests quick) and, while it
    runs, a `kithnet serve` process logging to a file."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.data_dir = folder / name.lower()
        self.log = folder / f"{name.lower()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        # One port for the member's life, as a real node keeps (4001 by default): an
        # address others learnt stays good across restarts.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.listen = f"/ip4/127.0.0.1/tcp/{probe.getsockname()[1]}"
        self._log_offset = 0
        with Store.create(self.data_dir, PASSPHRASE, name=name, kdf=FAST_KDF) as store:
            self.peer_id = store.peer_id
            self.public_key = store.identity.public_key

    def start(self, *args: str) -> None:
        assert self.process is None
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "kithnet", "serve", "--data-dir", str(self.data_dir)),
                    *("--listen", self.listen, "--resync", "2", *args),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=environment(),
            )
        self.wait_for_log("control socket", timeout=60)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[self._log_offset :]

    def wait_for_log(self, pattern: str, timeout: float = 30) -> str:
        def found() -> str | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name}'s node exited:\n{self.log_text()}")
            match = re.search(pattern, self.log_text())
            return match.group(0) if match else None

        result: str = wait_until(found, f"{pattern!r} in {self.name}'s log", timeout)
        return result

    def stop(self) -> None:
        """SIGTERM, as a service manager would; the node must stop cleanly."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process = None
        text = self.log_text()
        assert code == 0, text
        assert "Traceback" not in text, text
        assert "stopped" in text

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def command(self, name: str, **args: Any) -> Any:
        """A command through the running node's control socket."""
        return call(self.data_dir, name, args, timeout=120)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`kithnet ARGS --data-dir ...` as the member types it."""
        return subprocess.run(
            [sys.executable, "-m", "kithnet", *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment(),
            stdin=subprocess.DEVNULL,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def feed_ids(self, community: str) -> set[str]:
        if self.process is not None:
            posts = self.command("feed", community=community, limit=1000)["posts"]
        else:
            with Store.open(self.data_dir, PASSPHRASE, readonly=True) as store:
                page = store.feed(bytes.fromhex(community), limit=1000)
                return {post.id.hex() for post in page.posts}
        return {post["id"] for post in posts}
