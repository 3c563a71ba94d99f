"""The files of a data directory other than the database: the header that says how to
derive the database key, and the lock that keeps a second process out.

The header is the only file written unencrypted. It holds the KDF parameters and salt,
the name of the current database file and a 16-byte check value that tells a wrong
passphrase from a damaged database. Replacing it (atomically) is the commit point of a
passphrase change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kithnet.crypto.errors import BadKdfParams
from kithnet.crypto.kdf import KdfParams, derive_key
from kithnet.localstore.errors import StoreDamaged, StoreLocked, StoreMissing

HEADER_NAME = "kithnet-store.json"
LOCK_NAME = "kithnet.lock"
HEADER_FORMAT = "kithnet-store/1"
CHECK_DOMAIN = b"kithnet/store-check/v1"


@dataclass(frozen=True, slots=True)
class Header:
    kdf: KdfParams
    database: str  # file name of the current database, inside the data directory
    check: bytes  # 16 bytes: BLAKE2b keyed with the second half of the derived key

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": HEADER_FORMAT,
                "kdf": self.kdf.to_dict(),
                "database": self.database,
                "check": self.check.hex(),
            },
            indent=2,
        ).encode()


def derive_keys(passphrase: str, kdf: KdfParams) -> tuple[bytes, bytes]:
    """(database key, check value) for a passphrase; the slow step of unlocking."""
    derived = derive_key(passphrase, kdf, 64)
    check = hashlib.blake2b(CHECK_DOMAIN, key=derived[32:], digest_size=16).digest()
    return derived[:32], check


def read_header(data_dir: Path) -> Header:
    path = data_dir / HEADER_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreMissing(
            f"there is no Kithnet store in {data_dir}; create one with 'kithnet init'"
        ) from None
    try:
        data: Any = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != HEADER_FORMAT:
            raise ValueError("not a Kithnet store header")
        database = data["database"]
        if not isinstance(database, str) or Path(database).name != database:
            raise ValueError("bad database name")
        check = bytes.fromhex(data["check"])
        if len(check) != 16:
            raise ValueError("bad check value")
        kdf = KdfParams.from_dict(data["kdf"])
    except (ValueError, KeyError, TypeError, BadKdfParams) as exc:
        raise StoreDamaged(
            f"the store header {path} is damaged ({exc}); restore from a backup"
        ) from exc
    return Header(kdf, database, check)


def fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # directories cannot be opened for fsync there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that after a crash the file is either old or new."""
    temp = path.with_name(path.name + ".tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def write_header(data_dir: Path, header: Header) -> None:
    write_atomically(data_dir / HEADER_NAME, header.to_json())


class DataDirLock:
    """An advisory lock on the data directory: exclusive for a writer, shared for a
    reader. The OS drops it when the process dies, so a crash never leaves it stuck."""

    def __init__(self, data_dir: Path, *, exclusive: bool) -> None:
        self.path = data_dir / LOCK_NAME
        self.exclusive = exclusive
        self._handle: IO[bytes] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+b")
        try:
            _lock(handle, self.exclusive)
        except OSError:
            handle.seek(0)
            holder = handle.read(32).decode(errors="replace").strip()
            handle.close()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise StoreLocked(
                f"{self.path.parent} is in use by another Kithnet process{who}; "
                "close that one first, or use another --data-dir"
            ) from None
        self._handle = handle

    def announce(self) -> None:
        """Write this process's id into the lock file (once the store is open), so that a
        second process can say who holds it."""
        if self.exclusive and self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(str(os.getpid()).encode())
            self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                if self.exclusive:  # a process id left behind would name the wrong holder
                    self._handle.seek(0)
                    self._handle.truncate()
                _unlock(self._handle)
            self._handle.close()
            self._handle = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(handle: IO[bytes], exclusive: bool) -> None:
        # Windows has no shared byte-range lock through msvcrt: readers lock too.
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[bytes], exclusive: bool) -> None:
        fcntl.flock(
            handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        )

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
