"""`kithnet serve` as a member runs it: two nodes in separate processes on 127.0.0.1; the
one that was away catches up with the other, and both stop cleanly on SIGTERM with
everything on disk."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from kithnet.localstore.store import Store, now_ms
from tests.test_store_ingest import FAST_KDF

PASSPHRASE = "serve test"


def start(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITHNET_")}
    env["KITHNET_PASSPHRASE"] = PASSPHRASE
    return subprocess.Popen(
        [sys.executable, "-m", "kithnet", "serve", "--data-dir", str(data_dir), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout: float = 60) -> str:
    """The first stderr line matching `pattern`; fails after `timeout` seconds."""
    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=deadline - time.monotonic()):
            break
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}; saw:\n{''.join(seen)}")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None
    rest = process.stderr.read()
    process.stderr.close()
    assert "Traceback" not in rest
    assert "stopped" in rest


def test_a_member_who_was_away_catches_up_from_a_serving_node(tmp_path: Path) -> None:
    ann_dir, bob_dir = tmp_path / "ann", tmp_path / "bob"
    bob_identity = Identity.generate()
    with Store.create(ann_dir, PASSPHRASE, name="Ann", kdf=FAST_KDF) as ann:
        genesis = ann.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
        code = InviteCode.create(ann.identity, genesis.id, "Lofts", [], now_ms() + 3_600_000)
        invite = ann.publish(
            {
                "kind": "invite",
                "community": genesis.id,
                "invite_key": code.invite_key,
                "expires_at": now_ms() + 3_600_000,
            }
        )
        for i in range(40):
            ann.publish({"kind": "post", "community": genesis.id, "type": "post", "text": f"{i}"})
        ann_records = ann.record_count()
    with Store.create(bob_dir, PASSPHRASE, identity=bob_identity, name="Bob", kdf=FAST_KDF) as bob:
        bob.ingest([genesis.envelope, invite.envelope])
        join = bob.publish(
            {
                "kind": "join",
                "community": genesis.id,
                "invite_key": code.invite_key,
                "proof": code.prove_join(bob_identity.public_key),
            }
        )
        assert bob.status_of(join.id) == ("allowed", "")

    ann_node = start(ann_dir, "--listen", "/ip4/127.0.0.1/tcp/0")
    try:
        line = wait_for_line(ann_node, r"listening on /ip4/127\.0\.0\.1/")
        address = line.split("listening on ")[1].strip()
        bob_node = start(bob_dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--peer", address)
        try:
            synced = wait_for_line(bob_node, r"synced .* received")
            # Bob sends his join and his profile.
            assert re.search(r": (\d+) received, 2 sent", synced), synced
        finally:
            stop(bob_node)
    finally:
        stop(ann_node)

    with Store.open(bob_dir, PASSPHRASE) as bob, Store.open(ann_dir, PASSPHRASE) as ann:
        assert ann.has_record(join.id)
        # Ann gained Bob's join and profile; both hold the same community history
        # and profiles of its members.
        assert ann.record_count() == ann_records + 2
        assert ann.profile(bob_identity.public_key).name == "Bob"
        assert {i for _, i in bob.sync_items(genesis.id)} == {
            i for _, i in ann.sync_items(genesis.id)
        }
        assert len(bob.feed(genesis.id).posts) == 40
        assert [(p.id, p.text) for p in bob.feed(genesis.id).posts] == [
            (p.id, p.text) for p in ann.feed(genesis.id).posts
        ]
        assert bob.integrity_check() == "ok"
