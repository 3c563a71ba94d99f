"""One member's encrypted store: a SQLCipher database in a data directory, the identity
inside it, the ingest pipeline and the queries the screens need (docs/storage.md)."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs
import sqlcipher3

from kithnet.core.authority import Verdict
from kithnet.core.envelope import Record, decode, decode_stored, sign_record
from kithnet.core.errors import RecordError
from kithnet.core.trust import Edge
from kithnet.core.validation import validate
from kithnet.crypto.errors import CryptoError
from kithnet.crypto.identity import Identity
from kithnet.crypto.identity import peer_id as peer_id_of
from kithnet.crypto.kdf import KdfParams
from kithnet.crypto.sealed import unseal
from kithnet.localstore import views
from kithnet.localstore.blobs import BlobStore
from kithnet.localstore.directory import DirectoryStore
from kithnet.localstore.errors import (
    DiskFull,
    StoreDamaged,
    StoreError,
    StoreExists,
    WrongPassphrase,
)
from kithnet.localstore.files import (
    HEADER_NAME,
    LOCK_NAME,
    DataDirLock,
    Header,
    derive_keys,
    fsync_file,
    read_header,
    write_header,
)
from kithnet.localstore.judge import Judge, target_of
from kithnet.localstore.messages import Messages

APP_NAME = "Kithnet"
DATABASE_PREFIX = "store-"
# Records kept while they wait for a dependency (about 40 MB of envelopes at most).
MAX_PENDING = 100_000
# The peer book: members' nodes worth dialling, and how many addresses each.
MAX_PEERS = 1000
MAX_PEER_ADDRESSES = 8


def default_data_dir() -> Path:
    """Where a member's store lives unless --data-dir says otherwise."""
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one envelope of a batch.

    status: "stored" (in effect), "pending" (kept; takes effect when what it waits for
    arrives), "duplicate" (already held) or "rejected" (with a reason code; records
    refused by authority are kept, since an earlier-dated record may still change that).
    """

    status: str
    record_id: bytes | None
    reason: str = ""
    message: str = ""


def _schema_files() -> list[tuple[int, str]]:
    folder = resources.files("kithnet.localstore").joinpath("schema")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


SCHEMA_VERSION = _schema_files()[-1][0]


def _is_full(exc: BaseException) -> bool:
    return "full" in str(exc).lower()


def _is_damage(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def _connect(path: Path, key: bytes, data_dir: Path) -> Any:
    db = sqlcipher3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA cipher_log_level = NONE")
        db.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        # Temporary tables and sort spills stay in memory: a temp file would be plaintext.
        db.execute("PRAGMA temp_store = MEMORY")
        db.execute("PRAGMA cache_size = -65536")  # 64 MiB of decrypted pages
        db.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        db.execute("PRAGMA journal_mode = WAL").fetchone()
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = OFF")
    except sqlcipher3.DatabaseError as exc:
        db.close()
        raise StoreDamaged(
            f"the database in {data_dir} cannot be read although the passphrase is right "
            f"({exc}); restore it from a backup"
        ) from exc
    return db


def _migrate(db: Any, data_dir: Path, *, write: bool) -> None:
    if write:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions ("
            " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT"
        )
    row = db.execute("SELECT max(version) FROM schema_versions").fetchone()
    current = row[0] or 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the store in {data_dir} was written by a newer Kithnet (schema {current}, "
            f"this one knows {SCHEMA_VERSION}); update Kithnet to open it"
        )
    if not write:
        if current < SCHEMA_VERSION:
            raise StoreError(
                f"the store in {data_dir} was written by an older Kithnet and must be "
                "upgraded first: open it once with the app or a command that writes"
            )
        return
    for version, script in _schema_files():
        if version > current:
            db.executescript(
                f"BEGIN;\n{script}\n"
                f"INSERT INTO schema_versions VALUES ({version}, {now_ms()});\nCOMMIT;"
            )


_OWN_FILE = re.compile(
    rf"{DATABASE_PREFIX}[0-9a-f]{{12}}\.db(-wal|-shm|-journal)?|{re.escape(HEADER_NAME)}\.tmp"
    rf"|{re.escape(LOCK_NAME)}"
)


def _remove_strays(data_dir: Path, keep: str | None) -> None:
    """Delete database files an interrupted create or passphrase change left behind
    (only names Kithnet gives its own files)."""
    for path in data_dir.iterdir():
        own = _OWN_FILE.fullmatch(path.name) and path.name != LOCK_NAME
        if own and (keep is None or not path.name.startswith(keep)):
            path.unlink()


def _check_new_data_dir(data_dir: Path) -> None:
    """A new store goes into a missing or empty folder, or one holding only what an
    interrupted `create` left: never among someone's other files."""
    if data_dir.exists() and not data_dir.is_dir():
        raise StoreError(f"{data_dir} is a file, not a folder; choose another --data-dir")
    if (data_dir / HEADER_NAME).exists():
        raise StoreExists(
            f"{data_dir} already holds a Kithnet store; open it, or choose another --data-dir"
        )
    if data_dir.exists():
        others = [p.name for p in data_dir.iterdir() if not _OWN_FILE.fullmatch(p.name)]
        if others:
            raise StoreError(
                f"{data_dir} is not empty (it holds {others[0]!r}); choose an empty or new "
                "folder for a store"
            )


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """Envelopes decoded, verified and validated, with the refused ones' outcomes."""

    outcomes: list[Outcome | None]
    records: list[tuple[int, Record]]
    refused: Counter[str]


def check_batch(envelopes: Iterable[bytes], *, now: int) -> CheckedBatch:
    outcomes: list[Outcome | None] = []
    records: list[tuple[int, Record]] = []
    refused: Counter[str] = Counter()
    for index, data in enumerate(envelopes):
        try:
            record = decode(data)
            validate(record, now)
            if record.kind == "dm":  # travels only over /kithnet/dm/1, never in a community
                raise RecordError("a direct message is not gossiped or synced", "direct_only")
        except RecordError as exc:
            refused[exc.reason] += 1
            outcomes.append(Outcome("rejected", None, exc.reason, str(exc)))
            continue
        outcomes.append(None)
        records.append((index, record))
    return CheckedBatch(outcomes, records, refused)


# The newest profiles of a community's members (?1) and of this member (?2).
_MEMBER_PROFILES = (
    "member IN (SELECT member FROM members WHERE community = ?1)"
    " OR member IN (SELECT member FROM roles WHERE community = ?1) OR member = ?2"
)


class Store(DirectoryStore, BlobStore):
    """A member's open store. Open it with `create` or `open`; close it when done."""

    def __init__(
        self, data_dir: Path, db: Any, header: Header, lock: DataDirLock, readonly: bool
    ) -> None:
        self.data_dir = data_dir
        self.db = db
        self.header = header
        self._lock = lock
        self.readonly = readonly
        row = db.execute("SELECT seed FROM identity").fetchone()
        if row is None:
            raise StoreDamaged(f"the store in {data_dir} holds no identity")
        self.identity = Identity.from_seed(row[0])
        self.max_pending = MAX_PENDING
        self._judge = Judge(db, self.identity.public_key, MAX_PENDING)
        self._peer_ids: dict[bytes, str] = {}  # member key -> libp2p peer id, computed once
        self._key_scan: dict[bytes, int] = {}  # community -> key_update seq looked at
        self._key_offers: dict[bytes, dict[bytes, tuple[int, int, bytes, bytes]]] = {}
        # Changes whenever the references in effect may have changed (see vouches()).
        self.graph_generation = 0
        self._graph_full_at = 0  # the generation of the last change that was not additions
        self._graph_log: list[tuple[int, list[Edge]]] = []  # references added since then
        self._vouches: tuple[int, list[Edge]] | None = None
        self.messages = Messages(self)  # direct messages (they never pass through ingest)

    # Opening and closing -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        data_dir: Path | str,
        passphrase: str,
        *,
        name: str | None = None,
        identity: Identity | None = None,
        kdf: KdfParams | None = None,
    ) -> Store:
        """Create a store with a new identity (or `identity`) and, given a name, its
        first profile record."""
        if not passphrase:
            raise StoreError("a store needs a passphrase; an empty one protects nothing")
        identity = identity or Identity.generate()
        profile = None
        if name is not None:  # checked before anything is written
            profile = sign_record(
                identity, {"kind": "profile", "name": name, "created_at": now_ms()}
            )
            try:
                validate(profile, now_ms())
            except RecordError as exc:
                raise StoreError(f"that name cannot be used: {exc}") from exc
        data_dir = Path(data_dir)
        _check_new_data_dir(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.name == "posix":
            data_dir.chmod(0o700)  # only this user may list or open the store's files
        lock = DataDirLock(data_dir, exclusive=True)
        lock.acquire()
        db = None
        try:
            _check_new_data_dir(data_dir)  # again, now that no one else can be creating
            _remove_strays(data_dir, keep=None)
            kdf = kdf or KdfParams.new()
            key, check = derive_keys(passphrase, kdf)
            header = Header(kdf, f"{DATABASE_PREFIX}{secrets.token_hex(6)}.db", check)
            db = _connect(data_dir / header.database, key, data_dir)
            _migrate(db, data_dir, write=True)
            db.execute(
                "INSERT INTO identity VALUES (1, ?, ?, ?)",
                (identity.seed, identity.public_key, now_ms()),
            )
            store = cls(data_dir, db, header, lock, readonly=False)
            if profile is not None:
                store.ingest([profile.envelope])
            # The header is written last: until it exists, there is no store here.
            write_header(data_dir, header)
            lock.announce()
        except BaseException:
            if db is not None:
                db.close()
                _remove_strays(data_dir, keep=None)
            lock.release()
            raise
        return store

    @classmethod
    def open(cls, data_dir: Path | str, passphrase: str, *, readonly: bool = False) -> Store:
        """Open an existing store; a second writer, or a reader while a writer has it,
        gets StoreLocked. A wrong passphrase changes nothing."""
        data_dir = Path(data_dir)
        if data_dir.exists() and not data_dir.is_dir():
            raise StoreError(f"{data_dir} is a file, not a folder holding a Kithnet store")
        if not (data_dir / HEADER_NAME).exists():
            read_header(data_dir)  # raises StoreMissing with the message
        lock = DataDirLock(data_dir, exclusive=not readonly)
        lock.acquire()
        try:
            header = read_header(data_dir)
            key, check = derive_keys(passphrase, header.kdf)
            if not hmac.compare_digest(check, header.check):
                raise WrongPassphrase(f"wrong passphrase for {data_dir}")
            path = data_dir / header.database
            if not path.exists():
                raise StoreDamaged(
                    f"the database file {path} is missing; restore the store from a backup"
                )
            if not readonly:
                _remove_strays(data_dir, keep=header.database)
            db = _connect(path, key, data_dir)
            try:
                _migrate(db, data_dir, write=not readonly)
                store = cls(data_dir, db, header, lock, readonly)
            except sqlcipher3.DatabaseError as exc:
                db.close()
                raise StoreDamaged(
                    f"the database in {data_dir} is damaged ({exc}); restore it from a backup"
                ) from exc
            except BaseException:
                db.close()
                raise
            lock.announce()
            return store
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.readonly:
            raise StoreError("this store was opened read-only")
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlcipher3.OperationalError as exc:
            raise StoreError(f"the store in {self.data_dir} is busy: {exc}") from exc
        try:
            yield
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlcipher3.OperationalError) and _is_full(exc):
                raise DiskFull(
                    f"the disk holding {self.data_dir} is full; nothing of this batch was "
                    "stored and everything stored before is intact. Free some space and "
                    "try again"
                ) from exc
            if isinstance(exc, sqlcipher3.DatabaseError) and _is_damage(exc):
                raise StoreDamaged(
                    f"the database in {self.data_dir} is damaged ({exc}); nothing of this "
                    "batch was stored. Restore the store from a backup"
                ) from exc
            raise
        try:
            self.db.execute("COMMIT")
        except sqlcipher3.OperationalError as exc:
            self._rollback()
            if _is_full(exc):
                raise DiskFull(
                    f"the disk holding {self.data_dir} is full; nothing of this batch was "
                    "stored. Free some space and try again"
                ) from exc
            raise

    def _rollback(self) -> None:
        # SQLite may already have rolled back (it does on SQLITE_FULL); the judge's
        # caches and queued index changes belong to the batch that failed.
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._judge.forget()
        self._note_graph_changes(failed=True)  # what the batch added is not there

    # Ingest --------------------------------------------------------------------------

    def ingest(self, envelopes: Iterable[bytes], *, now: int | None = None) -> list[Outcome]:
        """Take in a batch of envelopes (from peers or from this member) in one
        transaction and say for each what became of it."""
        now = now_ms() if now is None else now
        return self.ingest_checked(check_batch(envelopes, now=now), now=now)

    def check_batch(self, envelopes: Iterable[bytes], *, now: int | None = None) -> CheckedBatch:
        """The first half of `ingest`, which needs no database: safe to run on another
        thread while this one stores the previous batch."""
        return check_batch(envelopes, now=now_ms() if now is None else now)

    def ingest_checked(self, batch: CheckedBatch, *, now: int | None = None) -> list[Outcome]:
        """The second half of `ingest`: store a checked batch in one transaction."""
        now = now_ms() if now is None else now
        outcomes = list(batch.outcomes)
        refused = Counter(batch.refused)
        fresh = batch.records
        self._judge.max_pending = self.max_pending
        with self._transaction():
            held = self._held([record.id for _, record in fresh])
            new: list[tuple[int, Record]] = []
            for index, record in fresh:
                if record.id in held:
                    outcomes[index] = Outcome("duplicate", record.id)
                    continue
                held.add(record.id)
                new.append((index, record))
            self._judge.judge_new(
                [record for _, record in new],
                [
                    (
                        r.id,
                        r.envelope,
                        r.kind,
                        r.author,
                        r.community,
                        r.created_at,
                        now,
                        target_of(r),
                    )
                    for _, r in new
                ],
            )
            self._index_attachments(r for _, r in new)
            decided = self._judge.decided
            for index, record in new:
                if record.id in self._judge.dropped:
                    refused["pending_full"] += 1
                    outcomes[index] = Outcome(
                        "rejected",
                        record.id,
                        "pending_full",
                        "too many records are waiting for what they depend on; "
                        "this one was not kept",
                    )
                    continue
                decision = decided[record.id]
                if decision.verdict is Verdict.ALLOWED:
                    outcomes[index] = Outcome("stored", record.id)
                elif decision.verdict is Verdict.PENDING:
                    outcomes[index] = Outcome("pending", record.id, "pending", decision.reason)
                else:
                    refused["not_authorised"] += 1
                    outcomes[index] = Outcome(
                        "rejected", record.id, "not_authorised", decision.reason
                    )
            self.db.executemany(
                "INSERT INTO counters VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                [(f"refused.{reason}", count) for reason, count in refused.items()],
            )
        self._note_graph_changes()
        return [outcome for outcome in outcomes if outcome is not None]

    def _note_graph_changes(self, *, failed: bool = False) -> None:
        """After a batch: what it did to the references in effect, for vouches()."""
        judge = self._judge
        added, judge.refs_added = judge.refs_added, []
        if failed or judge.graph_changed:
            judge.graph_changed = False
            self.graph_generation += 1
            self._graph_log = []
            self._graph_full_at = self.graph_generation
        elif added:
            self.graph_generation += 1
            self._graph_log.append((self.graph_generation, added))

    def _held(self, ids: Sequence[bytes]) -> set[bytes]:
        return set(self._statuses(ids))

    def _statuses(self, ids: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        found: dict[bytes, tuple[str, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.execute(
                f"SELECT id, status, reason FROM records WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchall()
            found.update((row[0], (row[1], row[2])) for row in rows)
        return found

    def publish(self, fields: Mapping[str, Any], *, now: int | None = None) -> Record:
        """Sign a record as this member and store it; when this returns, the record is
        on disk (synchronous commit) and will survive a crash or power loss."""
        [result] = self.publish_many([fields], now=now)
        if isinstance(result, Exception):
            raise result
        return result

    def publish_many(
        self, many: Sequence[Mapping[str, Any]], *, now: int | None = None
    ) -> list[Record | StoreError | RecordError]:
        """`publish` for several records in one transaction (one commit, one fsync):
        for each, its record or the error that kept it out; the others are stored."""
        now = now_ms() if now is None else now
        results: list[Record | StoreError | RecordError] = []
        fresh: list[Record] = []
        for fields in many:
            body = dict(fields)
            body.setdefault("created_at", now)
            try:
                record = sign_record(self.identity, body)
                validate(record, now)
            except RecordError as exc:
                results.append(exc)
                continue
            results.append(record)
            fresh.append(record)
        outcomes = iter(self.ingest([r.envelope for r in fresh], now=now)) if fresh else iter(())
        for index, result in enumerate(results):
            if isinstance(result, Record):
                outcome = next(outcomes)
                if outcome.status == "rejected":
                    results[index] = StoreError(
                        f"this {result.kind} cannot be posted: {outcome.message}"
                    )
        return results

    # Passphrase ----------------------------------------------------------------------

    def change_passphrase(self, new_passphrase: str, *, kdf: KdfParams | None = None) -> None:
        """Re-encrypt the database under a key from `new_passphrase`.

        The database is copied into a new file under the new key, which is made
        durable; then the header is replaced atomically (the commit point); then the
        old file is deleted. Interrupted anywhere, the old or the new passphrase opens
        the store, never neither.
        """
        if not new_passphrase:
            raise StoreError("a store needs a passphrase; an empty one protects nothing")
        if self.readonly:
            raise StoreError("this store was opened read-only")
        kdf = kdf or KdfParams.new(self.header.kdf.opslimit, self.header.kdf.memlimit)
        key, check = derive_keys(new_passphrase, kdf)
        header = Header(kdf, f"{DATABASE_PREFIX}{secrets.token_hex(6)}.db", check)
        new_path = self.data_dir / header.database
        old_path = self.data_dir / self.header.database
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            self.db.execute(
                "ATTACH DATABASE ? AS rekeyed KEY ?", (str(new_path), f"x'{key.hex()}'")
            )
            self.db.execute("SELECT sqlcipher_export('rekeyed')")
            self.db.execute("DETACH DATABASE rekeyed")
        except sqlcipher3.OperationalError as exc:
            with contextlib.suppress(sqlcipher3.OperationalError):
                self.db.execute("DETACH DATABASE rekeyed")
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(new_path) + suffix)
            if _is_full(exc):
                raise DiskFull(
                    f"the disk holding {self.data_dir} is full; the passphrase is unchanged"
                ) from exc
            raise
        try:
            fsync_file(new_path)
            write_header(self.data_dir, header)
        except OSError as exc:
            try:
                current = read_header(self.data_dir).database
            except StoreError:
                current = None
            if current != header.database:  # else the header was replaced: carry on
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(str(new_path) + suffix)
                raise StoreError(
                    f"the new passphrase could not be saved ({exc.strerror}); the old one "
                    "still opens the store"
                ) from exc
        self.db.close()
        self.header = header
        self.db = _connect(new_path, key, self.data_dir)
        self._judge = Judge(self.db, self.identity.public_key, self.max_pending)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(old_path) + suffix)

    # Queries -------------------------------------------------------------------------

    def integrity_check(self) -> str:
        """SQLite's integrity check: "ok", or what is wrong (damage it cannot even read
        is reported, not raised)."""
        try:
            rows = self.db.execute("PRAGMA integrity_check").fetchall()
        except sqlcipher3.DatabaseError as exc:
            return f"damaged: {exc}"
        return "\n".join(str(row[0]) for row in rows)

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    def record_count(self) -> int:
        count: int = self.db.execute("SELECT count(*) FROM records").fetchone()[0]
        return count

    def has_record(self, record_id: bytes) -> bool:
        row = self.db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone()
        return row is not None

    def envelopes(self, *, batch: int = 1000) -> Iterator[list[bytes]]:
        """Every record held, in batches: first those of no community (profiles,
        geneses, references), then each community's in (created_at, id) order, so that
        a store fed from them only ever appends (for backups)."""
        communities = [
            row[0]
            for row in self.db.execute(
                "SELECT DISTINCT community FROM records WHERE community IS NOT NULL"
            ).fetchall()
        ]
        for community in [None, *communities]:
            after: tuple[int, bytes] = (-1, b"")
            while True:
                rows = self.db.execute(
                    "SELECT created_at, id, envelope FROM records"
                    " WHERE community IS ? AND (created_at, id) > (?, ?)"
                    " ORDER BY created_at, id LIMIT ?",
                    (community, after[0], after[1], batch),
                ).fetchall()
                if not rows:
                    break
                after = (rows[-1][0], rows[-1][1])
                yield [row[2] for row in rows]

    def sync_items(self, community: bytes) -> list[tuple[int, bytes]]:
        """(created_at, id) of every record held for a community, its genesis included,
        and the profiles of its members (and of this member, who may be joining): what
        catch-up sync reconciles. Only records in effect: one that waits or was refused
        stays here (a post by someone who never joined must not spread)."""
        rows = self.db.execute(
            "SELECT created_at, id FROM records WHERE community = ?1"  # noqa: S608
            " UNION ALL SELECT created_at, id FROM records WHERE id = ?1"
            f" UNION ALL SELECT created_at, record_id FROM profiles WHERE {_MEMBER_PROFILES}",
            (community, self.identity.public_key),
        ).fetchall()
        held_back = {
            row[0]
            for row in self.db.execute(
                "SELECT id FROM records WHERE community = ? AND status != 'allowed'",
                (community,),
            )
        }
        return [(row[0], row[1]) for row in rows if row[1] not in held_back]

    def envelopes_for(self, community: bytes, ids: Sequence[bytes]) -> list[bytes]:
        """The envelopes of those `ids` that belong to `community` (or are its genesis,
        or the profiles of its members), in (created_at, id) order; ids of other
        records are not answered."""
        found: list[tuple[int, bytes, bytes]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join(f"?{number + 3}" for number in range(len(chunk)))
            found += self.db.execute(
                f"SELECT created_at, id, envelope FROM records WHERE id IN ({marks})"  # noqa: S608
                " AND (community = ?1 OR id = ?1 OR id IN (SELECT record_id FROM profiles"
                f" WHERE {_MEMBER_PROFILES})) AND status = 'allowed'",
                (community, self.identity.public_key, *chunk),
            ).fetchall()
        return [row[2] for row in sorted(found)]

    def record(self, record_id: bytes) -> Record | None:
        """A stored record, whatever its status."""
        row = self.db.execute("SELECT envelope FROM records WHERE id = ?", (record_id,)).fetchone()
        return decode_stored(row[0]) if row else None

    def find_records(self, prefix: bytes, *, limit: int = 2) -> list[bytes]:
        """Ids of stored records that start with `prefix` (at most `limit`)."""
        if len(prefix) > 32:
            return []
        low = prefix + b"\0" * (32 - len(prefix))
        high = prefix + b"\xff" * (32 - len(prefix))
        rows = self.db.execute(
            "SELECT id FROM records WHERE id BETWEEN ? AND ? LIMIT ?", (low, high, limit)
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def status_of(self, record_id: bytes) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT status, reason FROM records WHERE id = ?", (record_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def profile(self, member: bytes | None = None) -> views.Profile:
        return views.profile(self.db, member or self.identity.public_key)

    def communities(self) -> list[views.Community]:
        return views.communities(self.db, self.identity.public_key)

    def feed(
        self, community: bytes, *, before: views.Cursor | None = None, limit: int = 50
    ) -> views.FeedPage:
        return views.feed(self.db, community, before=before, limit=limit)

    def thread(self, root: bytes) -> list[views.Post]:
        return views.thread(self.db, root)

    def search(
        self,
        text: str,
        *,
        community: bytes | None = None,
        limit: int = 20,
        communities: Sequence[bytes] | None = None,
    ) -> list[views.Post]:
        return views.search_posts(
            self.db, text, community=community, limit=limit, communities=communities
        )

    def offers_by(
        self, member: bytes, communities: list[bytes], *, limit: int = 20
    ) -> list[views.Post]:
        """A member's visible offers in the given communities, newest first."""
        return views.offers_by(self.db, member, communities, limit=limit)

    def search_profiles(self, text: str, *, limit: int = 20) -> list[views.Profile]:
        return views.search_profiles(self.db, text, limit=limit)

    def unread_counts(self) -> dict[bytes, int]:
        return views.unread_counts(self.db)

    def mark_read(self, community: bytes) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT INTO reads VALUES (?, (SELECT coalesce(max(seq), 0) FROM records), 0)"
                " ON CONFLICT (community) DO UPDATE SET read_seq = excluded.read_seq,"
                " unread = 0",
                (community,),
            )

    def mark_all_read(self) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO reads SELECT id,"
                " (SELECT coalesce(max(seq), 0) FROM records), 0 FROM communities"
            )

    def followed_communities(self) -> list[bytes]:
        """The communities this member's node takes part in: those it belongs to, and
        those it has asked to join (its join waits for the community's history)."""
        rows = self.db.execute(
            "SELECT DISTINCT community FROM records WHERE author = ? AND community IS NOT NULL"
            " AND status != 'denied' AND kind IN ('join', 'post', 'invite')",
            (self.identity.public_key,),
        ).fetchall()
        found = {c.id for c in self.communities()} | {row[0] for row in rows}
        left = {c for c in found if self._has_left(c)}
        return sorted(found - left)

    def _has_left(self, community: bytes) -> bool:
        row = self.db.execute(
            "SELECT joined FROM members WHERE community = ? AND member = ?",
            (community, self.identity.public_key),
        ).fetchone()
        owner = self.db.execute(
            "SELECT 1 FROM roles WHERE community = ? AND member = ?",
            (community, self.identity.public_key),
        ).fetchone()
        return row is not None and row[0] == 0 and owner is None

    def own_record(self, community: bytes, kind: str, **fields: Any) -> Record | None:
        """This member's newest record of `kind` in `community` that is not refused and
        whose fields include `fields` (a join with this invite, say), or None."""
        rows = self.db.execute(
            "SELECT envelope FROM records WHERE author = ? AND community = ? AND kind = ?"
            " AND status != 'denied' ORDER BY created_at DESC, id DESC",
            (self.identity.public_key, community, kind),
        ).fetchall()
        for (envelope,) in rows:
            record = decode_stored(envelope)
            if all(record.fields.get(name) == value for name, value in fields.items()):
                return record
        return None

    def community(self, community: bytes) -> views.Community | None:
        """A community this store holds the genesis of, member or not."""
        return views.community(self.db, community, self.identity.public_key)

    # Private communities --------------------------------------------------------------

    def community_keys(self, community: bytes) -> list[tuple[int, bytes]]:
        """Every content key of a private community this member holds, as (epoch, key),
        the one in force last.

        Keys come from `key_update` records sealed to this member that are in effect.
        The key in force is the one from the newest such record by (created_at, id),
        not the highest epoch: the judge allows a `key_update` only while its author
        holds a role, so a moderator who has been banned or demoted cannot date one
        after the ban, and one dated before loses to the rekey that followed the ban.
        Two moderators rekeying at once also end on the same key everywhere (the
        later record's). Epochs only label keys."""
        allowed = self._allowed_offers(community)
        if allowed:
            held: dict[bytes, tuple[int, bytes]] = {}
            for epoch, _created_at, _rid, key in allowed:
                held.pop(key, None)  # a key sealed again moves to its newest place
                held[key] = (epoch, key)
            return list(held.values())
        rows = self.db.execute(
            "SELECT epoch, key FROM community_keys WHERE community = ? ORDER BY epoch",
            (community,),
        ).fetchall()
        return [(int(epoch), bytes(key)) for epoch, key in rows]

    def _allowed_offers(self, community: bytes) -> list[tuple[int, int, bytes, bytes]]:
        """(epoch, created_at, record id, key) sealed to this member and in effect,
        oldest first."""
        offers = self._key_offers_for(community)
        statuses = self._statuses(list(offers)) if offers else {}
        return sorted(
            (offer for rid, offer in offers.items() if statuses.get(rid, ("",))[0] == "allowed"),
            key=lambda offer: (offer[1], offer[2]),
        )

    def key_in_force(self, community: bytes) -> tuple[int, int, bytes, bytes] | None:
        """(epoch, created_at, record id, key) of the `key_update` that gave this member
        the key in force, if a record did."""
        allowed = self._allowed_offers(community)
        return allowed[-1] if allowed else None

    def _key_offers_for(self, community: bytes) -> dict[bytes, tuple[int, int, bytes, bytes]]:
        """record id -> (epoch, created_at, id, key) of every `key_update` sealed to this
        member, whatever its status (a status may change later); opened once each."""
        offers = self._key_offers.setdefault(community, {})
        seen = self._key_scan.get(community, 0)
        rows = self.db.execute(
            "SELECT seq, envelope FROM records WHERE community = ? AND kind = 'key_update'"
            " AND seq > ? ORDER BY seq",
            (community, seen),
        ).fetchall()
        for seq, envelope in rows:
            seen = max(seen, seq)
            record = decode_stored(envelope)
            for entry in record.fields["keys"]:
                if entry["member"] != self.identity.public_key:
                    continue
                try:
                    key = unseal(self.identity, entry["box"])
                except CryptoError:
                    continue
                if len(key) == 32:
                    offers[record.id] = (record.fields["epoch"], record.created_at, record.id, key)
        self._key_scan[community] = seen
        return offers

    def community_key(self, community: bytes) -> bytes | None:
        """The content key in force of a private community, if this member holds one."""
        keys = self.community_keys(community)
        return keys[-1][1] if keys else None

    def community_key_epoch(self, community: bytes) -> int:
        """The epoch of the key in force (0 if none)."""
        keys = self.community_keys(community)
        return keys[-1][0] if keys else 0

    def is_member(self, community: bytes, member: bytes) -> bool:
        """Joined (or holding a role) and not banned."""
        row = self.db.execute(
            "SELECT joined, banned FROM members WHERE community = ? AND member = ?",
            (community, member),
        ).fetchone()
        return row is not None and bool(row[0]) and not row[1]

    def invite_state(self, community: bytes, invite_key: bytes) -> views.InviteState | None:
        """An invite as things stand: expiry, uses, withdrawn, and when its newest
        allowed join was dated."""
        row = self.db.execute(
            "SELECT expires_at, max_uses, uses, withdrawn FROM invites"
            " WHERE community = ? AND invite_key = ?",
            (community, invite_key),
        ).fetchone()
        if row is None:
            return None
        last = 0
        for (envelope,) in self.db.execute(
            "SELECT envelope FROM records WHERE community = ? AND kind = 'join'"
            " AND status = 'allowed'",
            (community,),
        ):
            join = decode_stored(envelope)
            if join.fields["invite_key"] == invite_key:
                last = max(last, join.created_at)
        return views.InviteState(row[0], row[1], row[2], bool(row[3]), last)

    def welcome_envelopes(self, community: bytes, invite_key: bytes) -> list[bytes]:
        """What a newcomer needs to judge its own join: the genesis, the role records,
        the invite it used, and moderation (bans), in (created_at, id) order."""
        rows = self.db.execute(
            "SELECT envelope FROM records WHERE (community = ?1 OR id = ?1)"
            " AND kind IN ('community', 'role_grant', 'role_revoke', 'moderation')"
            " AND status = 'allowed'"
            " UNION ALL SELECT r.envelope FROM records AS r JOIN invites AS i"
            " ON i.record_id = r.id WHERE i.community = ?1 AND i.invite_key = ?2",
            (community, invite_key),
        ).fetchall()
        return [row[0] for row in rows]

    def key_sealed_to(self, community: bytes, member: bytes, key_id: bytes) -> Record | None:
        """A `key_update` in effect that seals the key `key_id` names to `member`."""
        for (envelope,) in self.db.execute(
            "SELECT envelope FROM records WHERE community = ? AND kind = 'key_update'"
            " AND status = 'allowed'",
            (community,),
        ):
            record = decode_stored(envelope)
            if record.fields.get("key_id") == key_id and any(
                entry["member"] == member for entry in record.fields["keys"]
            ):
                return record
        return None

    def key_holders(self, community: bytes, key_id: bytes) -> set[bytes]:
        """Members whose newest `key_update` in effect (by created_at, id) seals them
        the key `key_id` names: who holds that key in force, as far as records show."""
        newest: dict[bytes, tuple[int, bytes, bytes | None]] = {}
        for (envelope,) in self.db.execute(
            "SELECT envelope FROM records WHERE community = ? AND kind = 'key_update'"
            " AND status = 'allowed'",
            (community,),
        ):
            record = decode_stored(envelope)
            mark = (record.created_at, record.id, record.fields.get("key_id"))
            for entry in record.fields["keys"]:
                held = newest.get(entry["member"])
                if held is None or mark[:2] > held[:2]:
                    newest[entry["member"]] = mark
        return {member for member, mark in newest.items() if mark[2] == key_id}

    def set_community_key(self, community: bytes, epoch: int, key: bytes) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO community_keys VALUES (?, ?, ?)", (community, epoch, key)
            )

    # References and trust ---------------------------------------------------------------

    def vouches_since(self, generation: int) -> list[Edge] | None:
        """The references that took effect since `generation`, if nothing else changed
        the graph since then (else None: read it whole)."""
        if generation < self._graph_full_at:
            return None
        blocked = {m for m, mark in self.marks().items() if mark == "block"}
        return [
            edge
            for gen, edges in self._graph_log
            if gen > generation
            for edge in edges
            if edge[0] not in blocked
        ]

    def vouches(self) -> list[Edge]:
        """Every reference in effect, not revoked and not by a member this member
        blocked: the graph trust flows along. Kept until a batch brings records that may
        change it (`graph_generation`); callers must not change the list."""
        if self._vouches is not None and self._vouches[0] == self.graph_generation:
            return self._vouches[1]
        if self._vouches is not None:
            added = self.vouches_since(self._vouches[0])
            if added is not None:
                grown = [*self._vouches[1], *added]
                self._vouches = (self.graph_generation, grown)
                return grown
        rows: list[Edge] = self.db.execute(
            "SELECT r.author, r.subject, r.skill FROM refs AS r INDEXED BY refs_graph"
            " WHERE r.id NOT IN (SELECT target FROM records INDEXED BY records_revokes"
            "  WHERE kind = 'reference_revoke' AND status = 'allowed')"
            " AND (r.community, r.id) NOT IN (SELECT community, record_id FROM removed)"
            " AND r.author NOT IN (SELECT member FROM marks WHERE mark = 'block')"
        ).fetchall()
        self._vouches = (self.graph_generation, rows)
        return rows  # (author, subject, skill) tuples

    def offering(self, skill: str) -> set[bytes]:
        """Members with a visible offer tagged `skill`, or who list it in their profile's
        skills or services."""
        rows = self.db.execute(
            "SELECT author FROM posts INDEXED BY posts_offers"
            " WHERE type = 'offer' AND deleted = 0 AND removed = 0"
            " AND (' ' || tags || ' ') LIKE ?"
            " UNION SELECT member FROM profiles WHERE (' ' || skills || ' ' || services || ' ')"
            " LIKE ? EXCEPT SELECT member FROM marks WHERE mark = 'block'",
            (f"% {skill} %", f"% {skill} %"),
        ).fetchall()
        return {row[0] for row in rows}

    def directory_entries(self) -> list[tuple[bytes, str, str, tuple[str, ...], str]]:
        """Public communities announced in the directory: (id, name, description, tags,
        public invite)."""
        rows = self.db.execute(
            "SELECT community, name, description, tags, invite FROM directory"
        ).fetchall()
        return [(r[0], r[1], r[2], tuple(r[3].split()), r[4]) for r in rows]

    def post_type(self, post: bytes) -> tuple[bytes, str] | None:
        """A post's community and type (post, question, offer), if it is here."""
        row = self.db.execute("SELECT community, type FROM posts WHERE id = ?", (post,)).fetchone()
        return (row[0], row[1]) if row else None

    def referrals(self, question: bytes) -> list[dict[str, Any]]:
        """The referrals in effect that answer a question, oldest first."""
        rows = self.db.execute(
            "SELECT r.id, r.author, r.to_community, r.to_member, r.invite, r.note,"
            " r.created_at, coalesce(c.name, d.name, '') FROM referrals AS r"
            " LEFT JOIN communities AS c ON c.id = r.to_community"
            " LEFT JOIN directory AS d ON d.community = r.to_community"
            " WHERE r.question = ? AND r.deleted = 0 ORDER BY r.created_at, r.id",
            (question,),
        ).fetchall()
        return [
            {
                "id": row[0],
                "author": row[1],
                "to_community": row[2],
                "to_member": row[3],
                "invite": row[4],
                "note": row[5],
                "created_at": row[6],
                "community_name": row[7],
            }
            for row in rows
        ]

    def names(self, members: Iterable[bytes] | None = None) -> dict[bytes, str]:
        """Every known member's profile name, or those of `members`."""
        if members is None:
            return dict(self.db.execute("SELECT member, name FROM profiles").fetchall())
        wanted = list(set(members))
        found: dict[bytes, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            found.update(
                self.db.execute(
                    f"SELECT member, name FROM profiles WHERE member IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchall()
            )
        return found

    def find_members(self, text: str) -> list[bytes]:
        """Members whose key (64 hex digits), libp2p peer id or profile name is `text`
        (names case-insensitively)."""
        wanted = text.strip()
        try:
            key = bytes.fromhex(wanted)
        except ValueError:
            key = b""
        if len(key) == 32:
            return [key]
        rows = self.db.execute("SELECT member, name FROM profiles").fetchall()
        by_name = [row[0] for row in rows if row[1].lower() == wanted.lower()]
        return by_name or [row[0] for row in rows if peer_id_of(row[0]) == wanted]

    # Peer book ------------------------------------------------------------------------

    def remember_peer(self, peer_id: str, addresses: Sequence[str], source: str) -> None:
        """Keep where a member's node can be reached (newest addresses first, at most
        MAX_PEER_ADDRESSES); the peer book holds at most MAX_PEERS, forgetting those
        that failed most and connected least recently."""
        addresses = [a for a in addresses if a.endswith("/p2p/" + peer_id)]
        if not addresses or peer_id == self.peer_id:
            return
        with self._transaction():
            row = self.db.execute(
                "SELECT addresses, source FROM peers WHERE peer_id = ?", (peer_id,)
            ).fetchone()
            known = json.loads(row[0]) if row else []
            # Hearsay never pushes out what the peer itself, an invite or a connection
            # told us: it only fills the room left.
            merged = [*known, *addresses] if source == "exchange" else [*addresses, *known]
            kept = list(dict.fromkeys(merged))[:MAX_PEER_ADDRESSES]
            trusted = source if row is None or row[1] == "exchange" else row[1]
            self.db.execute(
                "INSERT INTO peers (peer_id, addresses, source, learnt_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (peer_id) DO UPDATE SET addresses = excluded.addresses,"
                " source = excluded.source",
                (peer_id, json.dumps(kept), trusted, now_ms()),
            )
            # Full: forget hearsay first, then those that failed most and were seen least.
            self.db.execute(
                "DELETE FROM peers WHERE peer_id IN (SELECT peer_id FROM peers"
                " ORDER BY source = 'exchange', failures ASC,"
                " coalesce(last_connected, learnt_at) DESC LIMIT -1 OFFSET ?)",
                (MAX_PEERS,),
            )

    def peer_connected(self, peer_id: str) -> None:
        with self._transaction():
            self.db.execute(
                "UPDATE peers SET last_connected = ?, failures = 0 WHERE peer_id = ?",
                (now_ms(), peer_id),
            )

    def peer_failed(self, peer_id: str) -> None:
        with self._transaction():
            self.db.execute(
                "UPDATE peers SET failures = failures + 1 WHERE peer_id = ?", (peer_id,)
            )

    def known_peers(self, *, limit: int = 50) -> list[tuple[str, list[str]]]:
        """Peers to dial, most promising first: fewest failures, most recently seen."""
        rows = self.db.execute(
            "SELECT peer_id, addresses FROM peers"
            " ORDER BY failures ASC, coalesce(last_connected, learnt_at) DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(row[0], json.loads(row[1])) for row in rows]

    def peers_of(self, community: bytes, *, limit: int = 50) -> list[tuple[str, list[str]]]:
        """Known addresses of the community's members' nodes (for invites and peer
        exchange), most promising first."""
        members = self.member_peer_ids([community])
        return [p for p in self.known_peers(limit=MAX_PEERS) if p[0] in members][:limit]

    def peer_id_of(self, member: bytes) -> str:
        """A member's libp2p peer id (computed once per member)."""
        text = self._peer_ids.get(member)
        if text is None:
            text = self._peer_ids[member] = peer_id_of(member)
        return text

    def member_peer_ids(self, communities: Sequence[bytes]) -> set[str]:
        """The libp2p peer ids of the members (and role holders) of these communities."""
        found: set[str] = set()
        for community in communities:
            rows = self.db.execute(
                "SELECT member FROM members WHERE community = ?1"
                " UNION SELECT member FROM roles WHERE community = ?1",
                (community,),
            )
            found.update(self.peer_id_of(member) for (member,) in rows)
        return found

    def setting(self, name: str) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_setting(self, name: str, value: Any) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, json.dumps(value))
            )

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.identity.public_key)

    def members(self, community: bytes) -> list[views.Member]:
        return views.members(self.db, community)

    def moderation_log(self, community: bytes) -> list[views.ModerationEntry]:
        return views.moderation_log(self.db, community)

    def my_reaction(self, post: bytes, emoji: str) -> bytes | None:
        """The id of this member's reaction `emoji` to `post` in effect, if any."""
        row = self.db.execute(
            "SELECT id FROM reactions WHERE target = ? AND author = ? AND emoji = ?"
            " AND deleted = 0",
            (post, self.identity.public_key, emoji),
        ).fetchone()
        return bytes(row[0]) if row else None

    def post_tags(self, post: bytes) -> list[str]:
        """A post's tags as they stand (after edits)."""
        row = self.db.execute("SELECT tags FROM posts WHERE id = ?", (post,)).fetchone()
        return row[0].split() if row and row[0] else []

    def invite_keys_used_by(self, community: bytes, member: bytes) -> set[bytes]:
        """The invites `member` joined `community` with."""
        rows = self.db.execute(
            "SELECT envelope FROM records WHERE community = ? AND author = ? AND kind = 'join'",
            (community, member),
        ).fetchall()
        return {decode_stored(envelope).fields["invite_key"] for (envelope,) in rows}

    def invites(self, community: bytes) -> list[views.Invite]:
        return views.invites(self.db, community)

    # Trust, mute and block: this member's own marks on others, for themselves alone ---------------

    def mark(self, member: bytes, mark: str | None) -> None:
        """Trust, mute or block `member` for this member alone (None lifts the mark)."""
        if mark not in (None, "trust", "mute", "block"):
            raise ValueError(f"unknown mark {mark!r}")
        self.graph_generation += 1
        self._graph_log = []
        self._graph_full_at = self.graph_generation
        with self._transaction():
            if mark is None:
                self.db.execute("DELETE FROM marks WHERE member = ?", (member,))
            else:
                self.db.execute(
                    "INSERT INTO marks VALUES (?, ?, ?) ON CONFLICT (member)"
                    " DO UPDATE SET mark = excluded.mark, since = excluded.since",
                    (member, mark, now_ms()),
                )

    def marks(self) -> dict[bytes, str]:
        """This member's marks: member key -> 'trust', 'mute' or 'block'."""
        rows = self.db.execute("SELECT member, mark FROM marks").fetchall()
        return {bytes(m): mark for m, mark in rows}
