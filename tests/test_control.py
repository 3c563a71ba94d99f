"""The control socket as a running node serves it: owner-only, and a malformed, deep,
unknown or slow request gets an answer or is dropped while the node keeps serving."""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio

from kithnet.node.control import ControlError, NoNode, call, serving


async def _dispatch(command: str, args: dict[str, Any]) -> Any:
    if command == "echo":
        return args
    raise ValueError(f"no command {command!r}")


def _raw(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    return reply


def test_requests_good_and_bad_and_the_socket_stays_owner_only() -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as folder:
            data_dir = Path(folder)
            (data_dir / "kithnet.sock").write_text("left by a crash")
            async with serving(data_dir, _dispatch) as path:
                mode = os.stat(path).st_mode
                assert stat.S_ISSOCK(mode)
                assert stat.S_IMODE(mode) == 0o600

                def client_side() -> None:
                    assert call(data_dir, "echo", {"x": 1}) == {"x": 1}
                    with pytest.raises(ControlError, match="no command 'nope'"):
                        call(data_dir, "nope", {})
                    for bad in (b"[" * 200_000 + b"\n", b"not json\n", b'{"args": 1}\n', b"\n"):
                        reply = json.loads(_raw(path, bad))
                        assert reply["ok"] is False
                        assert reply["error"].startswith("bad control request")
                    # A client that sends nothing does not stop others being served.
                    with socket.socket(socket.AF_UNIX) as idle:
                        idle.connect(str(path))
                        assert call(data_dir, "echo", {"still": "here"}) == {"still": "here"}

                await trio.to_thread.run_sync(client_side)
            assert not (data_dir / "kithnet.sock").exists()
            with pytest.raises(NoNode):
                call(data_dir, "echo", {})

    trio.run(main)
