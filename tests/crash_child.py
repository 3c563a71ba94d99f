"""The other process of tests/test_store_durability.py: store work that the test kills
at a random moment, or that tries to open a store another process holds.

Run from the repository root as ``python -m tests.crash_child COMMAND ARGS...``:

* ``ingest DATA_DIR PASSPHRASE BATCH_FILE FIRST NOW``: open the store, print "ready",
  then ingest each batch of BATCH_FILE in its own transaction, printing
  "committed N" (N counting from FIRST) as soon as each ingest returns.
* ``rekey DATA_DIR OLD NEW``: open the store with OLD, print "ready", change the
  passphrase to NEW and print "done".
* ``open DATA_DIR PASSPHRASE writer|readonly``: try to open the store and print
  "opened", or the error's class name and message.

Every line is flushed at once, so what the parent reads was written before the kill.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from pathlib import Path

from kithnet.localstore.errors import StoreError
from kithnet.localstore.store import Store

_LENGTH = struct.Struct(">I")


def write_batches(path: Path, batches: Sequence[Sequence[bytes]]) -> None:
    """Batches as length-prefixed byte strings: a count, then each envelope's length
    and bytes."""
    parts: list[bytes] = []
    for batch in batches:
        parts.append(_LENGTH.pack(len(batch)))
        for envelope in batch:
            parts.append(_LENGTH.pack(len(envelope)))
            parts.append(envelope)
    path.write_bytes(b"".join(parts))


def read_batches(path: Path) -> list[list[bytes]]:
    data = path.read_bytes()
    batches: list[list[bytes]] = []
    at = 0
    while at < len(data):
        (count,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        batch: list[bytes] = []
        for _ in range(count):
            (size,) = _LENGTH.unpack_from(data, at)
            at += _LENGTH.size
            batch.append(data[at : at + size])
            at += size
        batches.append(batch)
    return batches


def say(line: str) -> None:
    print(line, flush=True)


def ingest(data_dir: str, passphrase: str, batch_file: str, first: str, now: str) -> int:
    batches = read_batches(Path(batch_file))
    store = Store.open(data_dir, passphrase)
    say("ready")
    for number, batch in enumerate(batches, start=int(first)):
        outcomes = store.ingest(batch, now=int(now))
        wrong = [o for o in outcomes if o.status != "stored"]
        if wrong:
            say(f"batch {number} not stored: {wrong[0]}")
            return 1
        say(f"committed {number}")
    store.close()
    say("finished")
    return 0


def rekey(data_dir: str, old: str, new: str) -> int:
    store = Store.open(data_dir, old)
    say("ready")
    store.change_passphrase(new)
    say("done")
    store.close()
    return 0


def try_open(data_dir: str, passphrase: str, mode: str) -> int:
    try:
        store = Store.open(data_dir, passphrase, readonly=mode == "readonly")
    except StoreError as exc:
        say(f"{type(exc).__name__}: {exc}")
        return 0
    store.close()
    say("opened")
    return 0


def main(argv: Sequence[str]) -> int:
    command, *args = argv
    if command == "ingest":
        return ingest(*args)
    if command == "rekey":
        return rekey(*args)
    if command == "open":
        return try_open(*args)
    say(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
