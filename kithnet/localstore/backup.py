"""Backups: one encrypted, authenticated file with the member's identity and every record
they hold (docs/storage.md, "Backup file").

The file is a short plaintext header (magic, version, KDF parameters and a passphrase
check value) followed by a libsodium secretstream (XChaCha20-Poly1305) of msgpack
chunks. The header is bound to the stream as associated data of its first chunk, and
the last chunk carries the FINAL tag, so a changed header, a flipped bit, a reordered,
dropped or truncated chunk is each detected. Restoring checks every chunk and every
record signature and builds the new store beside its destination, moving it into
place only when the whole file has been read: a bad backup writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgpack
import sqlcipher3
from nacl import bindings as sodium
from nacl.exceptions import CryptoError as NaclCryptoError

from kithnet.crypto.errors import BadKdfParams
from kithnet.crypto.identity import Identity
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.errors import BackupError, StoreError, StoreExists, WrongPassphrase
from kithnet.localstore.files import HEADER_NAME, DataDirLock, derive_keys, fsync_dir
from kithnet.localstore.notices import CURSOR_SETTING
from kithnet.localstore.store import _OWN_FILE, Store

MAGIC = b"KITHNET-BACKUP\n"
VERSION = 2  # 2: also direct messages, marks, settings and pictures and files
READABLE_VERSIONS = (1, 2)
MAX_HEADER = 4096
HEADER_SUM = 16
MAX_CHUNK = 64 * 1024 * 1024
RECORDS_PER_CHUNK = 1000
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_STREAM_HEADER = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES


def write_backup(store: Store, path: Path | str, passphrase: str) -> int:
    """Write every record of `store` and its identity to `path`, encrypted under a key
    from `passphrase`; returns the number of records. The file appears complete or not
    at all."""
    path = Path(path)
    kdf = KdfParams.new(store.header.kdf.opslimit, store.header.kdf.memlimit)
    key, check = derive_keys(passphrase, kdf)
    header = json.dumps(
        {"kdf": kdf.to_dict(), "check": check.hex(), "public_key": store.identity.public_key.hex()}
    ).encode()
    preamble = MAGIC + bytes([VERSION]) + struct.pack(">I", len(header)) + header + _sum(header)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    temp = path.with_name(path.name + ".partial")
    count = 0
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(preamble + stream_header)
            _push(out, state, {"identity": store.identity.seed}, preamble, _TAG_MESSAGE)
            for batch in store.envelopes(batch=RECORDS_PER_CHUNK):
                _push(out, state, {"records": batch}, b"", _TAG_MESSAGE)
                count += len(batch)
            for name, rows in _tables(store):
                _push(out, state, {name: rows}, b"", _TAG_MESSAGE)
            for blob, size, mime in store.db.execute(
                "SELECT hash, size, mime FROM blobs WHERE complete = 1 ORDER BY hash"
            ).fetchall():
                _push(out, state, {"blob": [blob, size, mime]}, b"", _TAG_MESSAGE)
                piece = bytearray()
                for data in store.blob_chunks(blob):
                    piece += data
                    if len(piece) >= BLOB_PIECE:
                        _push(out, state, {"blob_data": bytes(piece)}, b"", _TAG_MESSAGE)
                        piece.clear()
                if piece:
                    _push(out, state, {"blob_data": bytes(piece)}, b"", _TAG_MESSAGE)
            _push(out, state, {"end": count}, b"", _TAG_FINAL)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise StoreError(f"the backup could not be written to {path}: {exc.strerror}") from exc
    return count


BLOB_PIECE = 1024 * 1024  # bytes of a picture or file per chunk
# The member's own data besides records, table by table: what a backup holds of each.
_TABLE_COLUMNS = {
    "settings": ("name", "value"),
    "marks": ("member", "mark", "since"),
    "messages": (
        "id", "peer", "direction", "text", "created_at", "received_at", "state",
        "forwarders", "envelope",
    ),
}  # fmt: skip


# Settings that belong to the machine, not the member: where this node listens.
# Left out of backups: where this machine listens, and what counts this store's arrivals.
_MACHINE_SETTINGS = ("listen", "announce", CURSOR_SETTING)


def _tables(store: Store) -> Iterator[tuple[str, list[list[Any]]]]:
    """Settings (not the machine's), marks and direct messages, in chunks of up to
    RECORDS_PER_CHUNK rows."""
    for table, columns in _TABLE_COLUMNS.items():
        rows = store.db.execute(
            f"SELECT {', '.join(columns)} FROM {table}"  # noqa: S608 (names from above)
        ).fetchall()
        if table == "settings":
            rows = [row for row in rows if row[0] not in _MACHINE_SETTINGS]
        for start in range(0, len(rows), RECORDS_PER_CHUNK):
            yield table, [list(row) for row in rows[start : start + RECORDS_PER_CHUNK]]


def _restore_rows(store: Store, table: str, rows: Any, reader: _Reader) -> None:
    columns = _TABLE_COLUMNS[table]
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and len(row) == len(columns) for row in rows
    ):
        raise reader._damaged(f"its {table} are not readable")
    if table == "settings":
        for row in rows:
            try:
                json.loads(row[1])
            except (TypeError, ValueError) as exc:
                raise reader._damaged("a setting in it is not readable") from exc
    marks = ", ".join("?" for _ in columns)
    try:
        with store._transaction():
            store.db.executemany(
                f"INSERT OR REPLACE INTO {table} ({', '.join(columns)})"  # noqa: S608
                f" VALUES ({marks})",
                rows,
            )
    except (StoreError, sqlcipher3.Error) as exc:
        raise reader._damaged(f"its {table} cannot be stored ({exc})") from exc


def _sum(header: bytes) -> bytes:
    """A checksum of the plaintext header, so that damage there is not taken for a
    wrong passphrase."""
    return hashlib.blake2b(header, digest_size=HEADER_SUM).digest()


def _push(out: IO[bytes], state: Any, item: dict[str, Any], aad: bytes, tag: int) -> None:
    chunk = sodium.crypto_secretstream_xchacha20poly1305_push(
        state, msgpack.packb(item, use_bin_type=True), aad or None, tag
    )
    out.write(struct.pack(">I", len(chunk)) + chunk)


class _Reader:
    """Reads and authenticates a backup file chunk by chunk."""

    def __init__(self, path: Path, passphrase: str) -> None:
        self.path = path
        self.file = path.open("rb")
        try:
            self.preamble, header = self._read_header()
            try:
                kdf = KdfParams.from_dict(header["kdf"])
                expected = bytes.fromhex(header["check"])
            except (KeyError, TypeError, ValueError, BadKdfParams) as exc:
                raise self._damaged(f"its header is damaged ({exc})") from exc
            key, check = derive_keys(passphrase, kdf)
            if not hmac.compare_digest(check, expected):
                raise WrongPassphrase(f"wrong passphrase for the backup {path}")
            stream_header = self.file.read(_STREAM_HEADER)
            if len(stream_header) != _STREAM_HEADER:
                raise self._truncated()
            self.state = sodium.crypto_secretstream_xchacha20poly1305_state()
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(self.state, stream_header, key)
        except BaseException:
            self.file.close()
            raise
        self.first = True

    def _damaged(self, what: str) -> BackupError:
        return BackupError(f"{self.path} is damaged: {what}; nothing was restored")

    def _truncated(self) -> BackupError:
        return BackupError(f"{self.path} is cut short (an interrupted copy?); nothing was restored")

    def _read_header(self) -> tuple[bytes, dict[str, Any]]:
        magic = self.file.read(len(MAGIC) + 1)
        if magic[: len(MAGIC)] != MAGIC:
            raise BackupError(f"{self.path} is not a Kithnet backup")
        if len(magic) <= len(MAGIC):
            raise self._truncated()
        if magic[-1] not in READABLE_VERSIONS:
            raise BackupError(
                f"{self.path} was written by a newer Kithnet (backup format {magic[-1]}); "
                "update Kithnet to restore it"
            )
        size_bytes = self.file.read(4)
        if len(size_bytes) != 4:
            raise self._truncated()
        (size,) = struct.unpack(">I", size_bytes)
        if size > MAX_HEADER:
            raise self._damaged("its header is too long")
        raw = self.file.read(size)
        checksum = self.file.read(HEADER_SUM)
        if len(checksum) != HEADER_SUM:
            raise self._truncated()
        if not hmac.compare_digest(checksum, _sum(raw)):
            raise self._damaged("its header is damaged")
        try:
            header = json.loads(raw)
        except ValueError as exc:
            raise self._damaged("its header is not readable") from exc
        if not isinstance(header, dict):
            raise self._damaged("its header is not readable")
        return magic + size_bytes + raw + checksum, header

    def chunks(self) -> Iterator[dict[str, Any]]:
        """Every chunk in order; raises BackupError unless the stream ends with FINAL."""
        while True:
            size_bytes = self.file.read(4)
            if len(size_bytes) != 4:
                raise self._truncated()
            (size,) = struct.unpack(">I", size_bytes)
            if size < _ABYTES or size > MAX_CHUNK:
                raise self._damaged("a chunk has an impossible length")
            chunk = self.file.read(size)
            if len(chunk) != size:
                raise self._truncated()
            aad = self.preamble if self.first else None
            self.first = False
            try:
                plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                    self.state, chunk, aad
                )
            except NaclCryptoError as exc:
                raise self._damaged("a chunk fails authentication") from exc
            try:
                item = msgpack.unpackb(plain, raw=False)
            except (ValueError, msgpack.UnpackException) as exc:
                raise self._damaged("a chunk is not readable") from exc
            if not isinstance(item, dict):
                raise self._damaged("a chunk is not readable")
            yield item
            if tag == _TAG_FINAL:
                if self.file.read(1):
                    raise self._damaged("there are bytes after its end")
                return

    def close(self) -> None:
        self.file.close()


def _restore_batch(store: Store, envelopes: list[bytes], reader: _Reader) -> None:
    """Store a batch of backed-up records. They were accepted once, so they are not held
    to this machine's clock (which may be behind the one that took them in); anything
    else refused means the backup is not what it claims, and nothing is restored."""
    outcomes = store.ingest_checked(store.check_batch(envelopes, now=2**62))
    for outcome in outcomes:
        if outcome.status == "rejected" and outcome.reason != "not_authorised":
            raise reader._damaged(f"it holds a record that is refused ({outcome.message})")


def _begin_blob(store: Store, header: Any, reader: _Reader) -> Any:
    if not (
        isinstance(header, list)
        and len(header) == 3
        and isinstance(header[0], bytes)
        and len(header[0]) == 32
        and isinstance(header[1], int)
        and 0 <= header[1] <= MAX_CHUNK * 1024
        and isinstance(header[2], str)
    ):
        raise reader._damaged("a picture or file in it is not readable")
    try:
        return store.begin_blob(header[0], header[1], header[2], restoring=True)
    except StoreError as exc:
        raise reader._damaged(f"a picture or file in it cannot be stored ({exc})") from exc


def _blob_step(step: Any, data: bytes | None, reader: _Reader) -> None:
    try:
        step() if data is None else step(data)
    except StoreError as exc:
        raise reader._damaged(f"a picture or file in it is damaged ({exc})") from exc


def _not_ours(data_dir: Path) -> list[Path]:
    """What `data_dir` holds besides what an interrupted `Store.create` leaves (its lock
    file, database files and no header), which a restore may clear."""
    return [p for p in data_dir.iterdir() if not _OWN_FILE.fullmatch(p.name)]


def _clear_leftovers(data_dir: Path) -> None:
    """Remove what an interrupted create left in `data_dir`, holding its lock so that no
    other process is making a store there meanwhile."""
    lock = DataDirLock(data_dir, exclusive=True)
    lock.acquire()
    try:
        if (data_dir / HEADER_NAME).exists() or _not_ours(data_dir):
            raise StoreExists(f"{data_dir} is not empty any more; restore into a new folder")
        for path in data_dir.iterdir():
            path.unlink()
    finally:
        lock.release()


def restore_backup(
    path: Path | str, passphrase: str, data_dir: Path | str, *, kdf: KdfParams | None = None
) -> Store:
    """Rebuild a store in `data_dir` (which must not hold one) from a backup; the new
    store is unlocked by the same passphrase. Returns the open store."""
    path = Path(path)
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"{data_dir} is a file; restore into a new folder")
    if (data_dir / HEADER_NAME).exists():
        raise StoreExists(f"{data_dir} already holds a Kithnet store; restore into a new folder")
    if data_dir.exists() and any(_not_ours(data_dir)):
        raise StoreExists(f"{data_dir} is not empty; restore into a new folder")
    try:
        reader = _Reader(path, passphrase)
    except FileNotFoundError:
        raise BackupError(f"there is no file {path}") from None
    except OSError as exc:
        raise BackupError(f"{path} cannot be read: {exc.strerror}") from None
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restoring-", dir=data_dir.parent))
    store: Store | None = None
    try:
        chunks = reader.chunks()
        first = next(chunks)
        seed = first.get("identity")
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise reader._damaged("it holds no identity")
        store = Store.create(building, passphrase, identity=Identity.from_seed(seed), kdf=kdf)
        store.max_pending = 2**62  # the member's own store held them all
        count = 0
        ended = False
        blob: Any = None  # the picture or file being restored: a BlobWriter
        for item in chunks:
            if "blob_data" in item and blob is not None and isinstance(item["blob_data"], bytes):
                _blob_step(blob.write, item["blob_data"], reader)
                continue
            if blob is not None:  # the previous one is whole: its hash must match
                _blob_step(blob.finish, None, reader)
                blob = None
            if "records" in item and isinstance(item["records"], list):
                envelopes = [e for e in item["records"] if isinstance(e, bytes)]
                _restore_batch(store, envelopes, reader)
                count += len(envelopes)
            elif table := next((t for t in _TABLE_COLUMNS if t in item), None):
                _restore_rows(store, table, item[table], reader)
            elif "blob" in item:
                blob = _begin_blob(store, item["blob"], reader)
            elif "blob_data" in item:
                raise reader._damaged("it holds the bytes of a file it does not name")
            elif "end" in item:
                if item["end"] != count:
                    raise reader._damaged("its record count does not match")
                ended = True
            else:
                raise reader._damaged("it holds a part this Kithnet does not know")
        if not ended:
            raise reader._damaged("it does not end as a backup ends")
        store.mark_all_read()  # a restored history is not news
        store.close()
        store = None
        if data_dir.exists():
            _clear_leftovers(data_dir)
            data_dir.rmdir()
        os.replace(building, data_dir)
        fsync_dir(data_dir.parent)
    except BaseException:
        if store is not None:
            store.close()
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        reader.close()
    return Store.open(data_dir, passphrase)
