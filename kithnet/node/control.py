"""The control socket: how `kithnet` commands reach a running node.

A Unix socket `kithnet.sock` in the data directory, readable and writable by its owner
only (the data directory itself is 0700). One request per connection: a JSON line
`{"command": NAME, "args": {...}}`; one JSON line back, `{"ok": true, "result": ...}` or
`{"ok": false, "error": MESSAGE}`. Holding the data directory's lock is what entitles a
node to (re)create the socket, so a stale socket file left by a crash is simply replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

SOCKET_NAME = "kithnet.sock"
MAX_REQUEST = 1 << 20
MAX_SOCKET_PATH = 100  # sun_path holds 104-108 bytes depending on the system
READ_TIMEOUT = 10.0  # a client has this long to send its request
MAX_CLIENTS = 32  # requests handled at once

log = logging.getLogger(__name__)

Dispatcher = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """The control socket cannot be used; the message says why."""


class NoNode(ControlError):
    """No node is running for this data directory."""


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def _check_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlError(
            f"the data directory path is too long for a control socket ({path}); "
            "use a shorter --data-dir"
        )


@contextlib.asynccontextmanager
async def serving(data_dir: Path, dispatch: Dispatcher) -> AsyncIterator[Path]:
    """Serve the control socket while the block runs; the caller holds the data
    directory's lock."""
    path = socket_path(data_dir)
    _check_length(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a node that crashed; we hold the lock now
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born owner-only: no window for others
    try:
        await listener.bind(str(path))
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    listener.listen(16)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_accept, trio.SocketListener(listener), dispatch)
            try:
                yield path
            finally:
                nursery.cancel_scope.cancel()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _accept(listener: trio.SocketListener, dispatch: Dispatcher) -> None:
    limit = trio.CapacityLimiter(MAX_CLIENTS)
    async with trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            await limit.acquire_on_behalf_of(stream)
            nursery.start_soon(_handle_limited, stream, dispatch, limit)


async def _handle_limited(
    stream: trio.SocketStream, dispatch: Dispatcher, limit: trio.CapacityLimiter
) -> None:
    try:
        await _handle(stream, dispatch)
    finally:
        limit.release_on_behalf_of(stream)


async def _handle(stream: trio.SocketStream, dispatch: Dispatcher) -> None:
    async with stream:
        try:
            with trio.fail_after(READ_TIMEOUT):
                request = await _read_line(stream)
            command, args = request["command"], request.get("args", {})
            if not isinstance(command, str) or not isinstance(args, dict):
                raise ValueError("a request names a command and its args")
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            return
        except Exception as exc:  # not JSON, nested too deep, not a request...
            reply: dict[str, Any] = {"ok": False, "error": f"bad control request: {exc}"}
        else:
            try:
                reply = {"ok": True, "result": await dispatch(command, args)}
            except Exception as exc:  # every failure goes back to the command line
                reply = {"ok": False, "error": str(exc) or type(exc).__name__}
                if not getattr(exc, "expected", False):
                    log.exception("control command %s failed", command)
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            text = json.dumps({"ok": False, "error": f"the answer could not be sent: {exc}"})
        try:
            await stream.send_all(text.encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def _read_line(stream: trio.SocketStream) -> Any:
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("the request is too big")
    return json.loads(data)


def call(data_dir: Path, command: str, args: dict[str, Any], *, timeout: float = 600) -> Any:
    """Run a command in the node serving `data_dir` and return its result; raises NoNode
    if none is running, ControlError with the node's message if the command failed."""
    path = socket_path(data_dir)
    if not path.exists():
        raise NoNode(f"no node is running for {data_dir}")
    _check_length(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                raise NoNode(f"no node is running for {data_dir}") from exc
            raise ControlError(f"cannot reach the node for {data_dir}: {exc.strerror}") from exc
        client.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        data = bytearray()
        try:
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlError(f"the node did not answer within {timeout:.0f} s") from None
    if not data:
        raise ControlError("the node closed the control socket without an answer")
    reply = json.loads(data)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "the node refused the command"))
    return reply.get("result")
