"""Helpers for the benchmarks that run members in child processes: JSON messages, one a
line, over the child's stdin and stdout; the memory of this process from /proc; a running
peer that does not lose the body's exception; waiting until a GossipSub mesh holds a
neighbour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from kithnet.crypto.identity import Identity
from kithnet.p2p.host import Peer

LINE_LIMIT = 1 << 20


def memory_mib() -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (resident at its peak) of this process, in MiB."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / 1024  # reported in kB
    return found


class Channel:
    """JSON messages, one a line: read from a trio stream, written to `send` (or, in a
    child, printed to stdout)."""

    def __init__(
        self, receive: trio.abc.ReceiveStream, send: trio.abc.SendStream | None = None
    ) -> None:
        self._receive = receive
        self._send = send
        self._buffer = bytearray()

    async def send(self, **message: Any) -> None:
        line = json.dumps(message) + "\n"
        if self._send is None:
            sys.stdout.write(line)
            sys.stdout.flush()
        else:
            await self._send.send_all(line.encode())

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The next message; EOFError when the other side has closed its end,
        trio.TooSlowError after `timeout` seconds. Lines that are not JSON objects
        (something else printed them) go to stderr."""
        with trio.fail_after(timeout):
            while True:
                line = await self._line()
                if line.startswith(b"{"):
                    message: dict[str, Any] = json.loads(line)
                    return message
                sys.stderr.write(line.decode(errors="replace") + "\n")

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > LINE_LIMIT:
                raise ValueError("a line of over 1 MiB from the other process")
            data = await self._receive.receive_some()
            if not data:
                raise EOFError("the other process closed its end")
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


def parent_channel() -> Channel:
    """In a child: messages from the parent on stdin, to the parent on stdout."""
    return Channel(trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))


async def wait_for_parent_to_close(channel: Channel, timeout: float) -> None:
    """In a child: return once the parent closes our stdin (or after `timeout` s)."""
    with trio.move_on_after(timeout):
        try:
            while True:
                await channel.receive(timeout)
        except EOFError:
            return


@asynccontextmanager
async def child_process(arguments: Sequence[str]) -> AsyncIterator[Channel]:
    """Run this Python with `arguments`, talking to it over its stdin and stdout (its
    stderr is ours). On leaving, its stdin is closed, and it is killed if it has not
    ended 15 s later."""
    process = await trio.lowlevel.open_process(
        [sys.executable, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None
    assert process.stdout is not None
    failed = True
    try:
        yield Channel(process.stdout, process.stdin)
        failed = False
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(15):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()
    if not failed and process.returncode != 0:
        raise RuntimeError(f"the child process {arguments} ended with {process.returncode}")


@asynccontextmanager
async def running_peer(identity: Identity) -> AsyncIterator[Peer]:
    """`Peer.running`, except that an exception raised in the body comes out: with
    Peer.running alone (py-libp2p 0.8.1, trio 0.35) a ValueError or trio.TooSlowError
    raised in the body vanishes and the `async with` ends normally, probably because
    Peer.running cancels its own nursery while the exception passes through it."""
    failure: Exception | None = None
    async with Peer.running(identity) as peer:
        try:
            yield peer
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure


async def wait_for_mesh(peer: Peer, topic: str, peer_id: str, timeout: float = 10) -> None:
    """Return once `peer_id` is in `peer`'s GossipSub mesh for `topic`: only then does a
    message `peer` publishes reach it (py-libp2p sends a joined topic's messages to mesh
    peers only, and grafts new neighbours at a heartbeat). Raises trio.TooSlowError."""
    router = peer.pubsub.router
    with trio.fail_after(timeout):
        while peer_id not in {str(member) for member in router.mesh.get(topic, ())}:
            await trio.sleep(0.01)
