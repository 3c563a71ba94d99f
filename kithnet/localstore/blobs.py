"""Blobs: the pictures and small files posts name by hash (docs/storage.md, "Blobs").

Kept in the encrypted database in 64 KiB chunks, so that neither storing nor serving a
blob ever holds it whole; a blob counts as here only once its hash has been checked.
Mixed into `Store`, whose database and transactions it uses.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kithnet.core.envelope import Record, decode_stored
from kithnet.localstore.errors import StoreError

CHUNK_SIZE = 64 * 1024
HARD_MAX_SIZE = 64 * 1024 * 1024  # no blob is ever larger, whatever the settings say
DEFAULT_MAX_SIZE = 10 * 1024 * 1024  # one blob, fetched without being asked
DEFAULT_MAX_TOTAL = 1024 * 1024 * 1024  # all blobs held
MAX_SIZE_SETTING = "blob_max_size"
MAX_TOTAL_SETTING = "blob_max_total"


class BlobTooBig(StoreError):
    """A blob over this member's limits; the message says which and how to change it."""


class BlobBusy(StoreError):
    """A blob is being received right now (a fetch in progress): it cannot be begun again."""


def blob_hash(data: bytes) -> bytes:
    """BLAKE2b-256 of a blob's bytes, as a post names it."""
    return hashlib.blake2b(data, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class BlobLimits:
    max_size: int
    max_total: int
    used: int  # bytes held or being received
    count: int  # complete blobs


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment a post names, and what this member holds of it."""

    post: bytes
    index: int  # from 0, in the record's order
    community: bytes
    hash: bytes
    size: int
    mime: str
    name: str
    state: str  # "here", "missing", "too big" (over max size) or "no room" (total)


@dataclass(frozen=True, slots=True)
class WantedBlob:
    hash: bytes
    sizes: tuple[int, ...]  # the sizes visible posts claim for it, within the limits
    mime: str
    communities: tuple[bytes, ...]  # whose visible posts name it
    seq: int  # the newest naming post's position: the paging cursor


# Allowed posts, neither deleted nor removed, that name a blob (a.hash).
_VISIBLE = (
    "JOIN records r ON r.id = a.post AND r.status = 'allowed'"
    " JOIN posts p ON p.rowid = r.seq AND p.deleted = 0 AND p.removed = 0"
)
# A blob (b.hash) that a post still names: a visible one, or one not yet judged.
_NAMED = (
    "EXISTS (SELECT 1 FROM attachments a JOIN records r ON r.id = a.post"
    " LEFT JOIN posts p ON p.rowid = r.seq WHERE a.hash = b.hash AND (r.status = 'pending'"
    " OR (r.status = 'allowed' AND p.deleted = 0 AND p.removed = 0)))"
)
FREE_GRACE_MS = 10 * 60 * 1000  # a blob this young is kept unnamed: its post is on its way


class BlobStore:
    """The blob half of `Store`."""

    db: Any
    data_dir: Path
    identity: Any

    if TYPE_CHECKING:  # what the rest of Store provides

        def _transaction(self) -> AbstractContextManager[None]: ...

        def setting(self, name: str) -> Any: ...

        def set_setting(self, name: str, value: Any) -> None: ...

    # Limits ---------------------------------------------------------------------------

    def blob_limits(self) -> BlobLimits:
        max_size = self.setting(MAX_SIZE_SETTING)
        max_total = self.setting(MAX_TOTAL_SETTING)
        used, count = self.db.execute(
            "SELECT coalesce(sum(size), 0), coalesce(sum(complete), 0) FROM blobs"
        ).fetchone()
        return BlobLimits(
            int(max_size) if isinstance(max_size, int) else DEFAULT_MAX_SIZE,
            int(max_total) if isinstance(max_total, int) else DEFAULT_MAX_TOTAL,
            int(used),
            int(count),
        )

    def set_blob_limits(self, *, max_size: int | None = None, max_total: int | None = None) -> None:
        if max_size is not None:
            if not 1 <= max_size <= HARD_MAX_SIZE:
                raise StoreError(
                    f"the largest blob can be at most {HARD_MAX_SIZE // (1024 * 1024)} MiB"
                )
            self.set_setting(MAX_SIZE_SETTING, max_size)
        if max_total is not None:
            if max_total < 1:
                raise StoreError("the total for blobs must be more than nothing")
            self.set_setting(MAX_TOTAL_SETTING, max_total)

    def check_blob_room(self, size: int, *, explicit: bool = False) -> None:
        """Raise BlobTooBig unless a new blob of `size` fits the limits (`explicit`: the
        member asked for it by name, so only the hard maximum and the total apply)."""
        limits = self.blob_limits()
        if size > HARD_MAX_SIZE:
            raise BlobTooBig(
                f"{_mib(size)} is over the {_mib(HARD_MAX_SIZE)} that any blob may have"
            )
        if not explicit and size > limits.max_size:
            raise BlobTooBig(
                f"{_mib(size)} is over your limit of {_mib(limits.max_size)} for one file; "
                "raise it with `kithnet blobs --max-size`"
            )
        if limits.used + size > limits.max_total:
            raise BlobTooBig(
                f"{_mib(size)} does not fit: blobs already use {_mib(limits.used)} of your "
                f"{_mib(limits.max_total)}; raise it with `kithnet blobs --max-total`"
            )

    def _state(self, size: int, complete: bool | None, limits: BlobLimits) -> str:
        if complete:
            return "here"
        if size > min(limits.max_size, HARD_MAX_SIZE):
            return "too big"
        if complete is None and limits.used + size > limits.max_total:
            return "no room"
        return "missing"

    # Adding and reading ---------------------------------------------------------------

    def add_blob_file(self, path: Path, mime: str) -> tuple[bytes, int]:
        """Store a file as a blob (this member's own attachment); returns its hash and
        size. Read twice in chunks (to hash it, then to store it and check it again), so
        a large file is never held whole, and a file changed meanwhile is refused."""
        if path.stat().st_size > HARD_MAX_SIZE:  # refused before reading it all
            self.check_blob_room(path.stat().st_size)
        digest = hashlib.blake2b(digest_size=32)
        size = 0
        with path.open("rb") as source:
            while chunk := source.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
                if size > HARD_MAX_SIZE:
                    break
        blob = digest.digest()
        if self.has_blob(blob):  # already here (attached before, or fetched): reuse it
            return blob, size
        self.check_blob_room(size)
        writer = self.begin_blob(blob, size, mime)
        try:
            with path.open("rb") as source:
                while chunk := source.read(CHUNK_SIZE):
                    writer.write(chunk)
            writer.finish()
        except BaseException:
            writer.discard()
            raise
        return blob, size

    def add_blob(self, data: bytes, mime: str) -> bytes:
        """Store bytes held in memory as a blob (tests, small files); returns the hash."""
        blob = blob_hash(data)
        if self.has_blob(blob):
            return blob
        self.check_blob_room(len(data))
        writer = self.begin_blob(blob, len(data), mime)
        writer.write(data)
        writer.finish()
        return blob

    def begin_blob(
        self,
        blob: bytes,
        size: int,
        mime: str,
        *,
        explicit: bool = False,
        origin: bytes | None = None,
        restoring: bool = False,
    ) -> BlobWriter:
        """Start receiving a blob: it counts towards the total from now on, and is not
        here until `finish` has checked its hash (and noted `origin`, the community it
        was fetched for). Raises BlobTooBig if it does not fit, BlobBusy if it is being
        received already (a half-received blob is only ever one in progress: every
        failure discards, and a start forgets what a stopped node left)."""
        row = self.db.execute("SELECT complete FROM blobs WHERE hash = ?", (blob,)).fetchone()
        if row is not None:
            raise BlobBusy(
                "it is here already" if row[0] else "it is being received from a member right now"
            )
        if restoring:  # from this member's own backup: their limits then held it
            if size > HARD_MAX_SIZE:
                raise BlobTooBig(f"{_mib(size)} is over what any blob may have")
        else:
            self.check_blob_room(size, explicit=explicit)
        with self._transaction():
            self.db.execute(
                "INSERT INTO blobs VALUES (?, ?, ?, 0, ?)",
                (blob, size, mime[:100], _now_ms()),
            )
        return BlobWriter(self, blob, size, origin)

    def discard_blob(self, blob: bytes) -> None:
        """Forget a blob that is not complete (a failed or abandoned fetch)."""
        row = self.db.execute("SELECT complete FROM blobs WHERE hash = ?", (blob,)).fetchone()
        if row is None or row[0]:
            return
        with self._transaction():
            self.db.execute("DELETE FROM blob_chunks WHERE hash = ?", (blob,))
            self.db.execute("DELETE FROM blobs WHERE hash = ?", (blob,))

    def _pins(self) -> Counter[bytes]:
        pins: Counter[bytes] = self.__dict__.setdefault("_blob_pins", Counter())
        return pins

    def pin_blobs(self, blobs: Iterable[bytes]) -> None:
        """Keep blobs while a post that will name them is being made (the freeing sweep
        and a failed post's clean-up leave them alone until `unpin_blobs`)."""
        self._pins().update(blobs)

    def unpin_blobs(self, blobs: Iterable[bytes]) -> None:
        pins = self._pins()
        pins.subtract(blobs)
        for blob in [b for b, n in pins.items() if n <= 0]:
            del pins[blob]

    def forget_unnamed_blob(self, blob: bytes) -> None:
        """Delete a blob no stored post names (one stored for a post that was then
        not made), unless another post being made uses it."""
        if self._pins().get(blob):
            return
        if self.db.execute("SELECT 1 FROM attachments WHERE hash = ?", (blob,)).fetchone():
            return
        self._delete_blobs([blob])

    def _delete_blobs(self, blobs: Sequence[bytes]) -> None:
        with self._transaction():
            for blob in blobs:
                self.db.execute("DELETE FROM blob_chunks WHERE hash = ?", (blob,))
                self.db.execute("DELETE FROM blobs WHERE hash = ?", (blob,))
                self.db.execute("DELETE FROM blob_origins WHERE hash = ?", (blob,))

    def forget_damaged_blob(self, blob: bytes) -> None:
        """Delete a blob whose stored bytes turned out wrong, so it can be fetched again."""
        self._delete_blobs([blob])

    def free_unnamed_blobs(self, *, grace_ms: int = FREE_GRACE_MS, limit: int = 500) -> int:
        """Delete up to `limit` complete blobs that no post names any more (every post
        naming them deleted, removed or refused). A blob with no origin yet (an
        attachment whose post is being made) is kept for `grace_ms`. Returns how many
        were freed."""
        rows = self.db.execute(
            "SELECT b.hash FROM blobs b WHERE b.complete = 1 AND (b.created_at < ?"  # noqa: S608
            " OR EXISTS (SELECT 1 FROM blob_origins o WHERE o.hash = b.hash))"
            f" AND NOT {_NAMED} LIMIT ?",
            (_now_ms() - grace_ms, limit),
        ).fetchall()
        pinned = self._pins()
        unnamed = [row[0] for row in rows if not pinned.get(row[0])]
        self._delete_blobs(unnamed)
        return len(unnamed)

    def note_blob_origins(self) -> int:
        """Give each complete blob with no origin (stored before origins were kept) an
        origin only where that is certain: the communities of this member's own posts
        naming it, else the one community whose posts name it. A hash named in several
        communities by others is left without one (anyone can copy a hash into a public
        post): it is not served until fetched again for a community."""
        me = self.identity.public_key
        with self._transaction():
            own = self.db.execute(
                "INSERT OR IGNORE INTO blob_origins (hash, community)"
                " SELECT DISTINCT a.hash, a.community FROM attachments a"
                " JOIN records r ON r.id = a.post JOIN blobs b ON b.hash = a.hash"
                " WHERE r.author = ? AND r.status = 'allowed' AND b.complete = 1"
                " AND NOT EXISTS (SELECT 1 FROM blob_origins o WHERE o.hash = a.hash)",
                (me,),
            )
            single = self.db.execute(
                "INSERT OR IGNORE INTO blob_origins (hash, community)"
                " SELECT a.hash, min(a.community) FROM attachments a"
                " JOIN blobs b ON b.hash = a.hash WHERE b.complete = 1"
                " AND NOT EXISTS (SELECT 1 FROM blob_origins o WHERE o.hash = a.hash)"
                " GROUP BY a.hash HAVING count(DISTINCT a.community) = 1"
            )
        return int(own.rowcount) + int(single.rowcount)

    def latest_record_seq(self) -> int:
        """The position of the newest stored record (changes whenever one arrives)."""
        row = self.db.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()
        return int(row[0])

    def blob_origins(self, blob: bytes) -> list[bytes]:
        """The communities this member obtained a blob for."""
        rows = self.db.execute(
            "SELECT community FROM blob_origins WHERE hash = ? ORDER BY community", (blob,)
        ).fetchall()
        return [row[0] for row in rows]

    def discard_incomplete_blobs(self) -> int:
        """Forget every blob left half-received (by a node that stopped mid-fetch)."""
        rows = self.db.execute("SELECT hash FROM blobs WHERE complete = 0").fetchall()
        for (blob,) in rows:
            self.discard_blob(blob)
        return len(rows)

    def has_blob(self, blob: bytes) -> bool:
        row = self.db.execute("SELECT complete FROM blobs WHERE hash = ?", (blob,)).fetchone()
        return bool(row and row[0])

    def blob_size(self, blob: bytes) -> int | None:
        """The size of a complete blob, or None if it is not here."""
        row = self.db.execute(
            "SELECT size FROM blobs WHERE hash = ? AND complete = 1", (blob,)
        ).fetchone()
        return None if row is None else int(row[0])

    def blob_chunks(self, blob: bytes) -> Iterator[bytes]:
        """A complete blob's bytes, one 64 KiB chunk at a time (one query each, so the
        blob is never in memory whole)."""
        if not self.has_blob(blob):
            return
        index = 0
        while True:
            row = self.db.execute(
                "SELECT data FROM blob_chunks WHERE hash = ? AND idx = ?", (blob, index)
            ).fetchone()
            if row is None:
                return
            yield bytes(row[0])
            index += 1

    # What posts name ------------------------------------------------------------------

    def _index_attachments(self, records: Iterable[Record]) -> None:
        """Note the attachments of newly stored post records (inside the ingest
        transaction)."""
        rows = []
        origins = []
        for record in records:
            if record.kind != "post" or record.community is None:
                continue
            for index, attachment in enumerate(record.fields.get("attachments") or ()):
                if record.author == self.identity.public_key:  # the member's own: shared there
                    origins.append((attachment["hash"], record.community))
                rows.append(
                    (
                        record.id,
                        index,
                        record.community,
                        attachment["hash"],
                        attachment["size"],
                        attachment["mime"],
                        attachment.get("name", ""),
                    )
                )
        if rows:
            self.db.executemany(
                "INSERT OR IGNORE INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
        if origins:
            self.db.executemany("INSERT OR IGNORE INTO blob_origins VALUES (?, ?)", origins)

    def attachments(self, posts: Sequence[bytes]) -> dict[bytes, list[Attachment]]:
        """The attachments of these posts, with what this member holds of each."""
        limits = self.blob_limits()
        found: dict[bytes, list[Attachment]] = {}
        for post in posts:
            rows = self.db.execute(
                "SELECT a.idx, a.community, a.hash, a.size, a.mime, a.name, b.complete"
                " FROM attachments a LEFT JOIN blobs b ON b.hash = a.hash"
                " WHERE a.post = ? ORDER BY a.idx",
                (post,),
            ).fetchall()
            found[post] = [
                Attachment(
                    post,
                    idx,
                    community,
                    blob,
                    size,
                    mime,
                    name,
                    self._state(size, None if complete is None else bool(complete), limits),
                )
                for idx, community, blob, size, mime, name, complete in rows
            ]
        return found

    def post_attachments(self, post: bytes) -> list[Attachment] | None:
        """The attachments of a post this member can see, or None if there is no such
        post (unknown, not allowed, deleted or removed)."""
        row = self.db.execute(
            "SELECT r.envelope FROM records r JOIN posts p ON p.rowid = r.seq"
            " WHERE r.id = ? AND r.status = 'allowed' AND p.deleted = 0 AND p.removed = 0",
            (post,),
        ).fetchone()
        if row is None:
            return None
        if not self.db.execute("SELECT 1 FROM attachments WHERE post = ?", (post,)).fetchone():
            # Stored before this store indexed attachments: index it now.
            with self._transaction():
                self._index_attachments([decode_stored(row[0])])
        return self.attachments([post])[post]

    def may_serve_blob(self, blob: bytes, member: bytes, community: bytes) -> bool:
        """Whether `member` may have a blob from us for `community`: we hold it whole,
        obtained it for that community (an origin), an allowed, visible post there names
        it, and they are a member of it, not banned. A post elsewhere naming the same
        hash (anyone can copy a hash) never makes it servable there."""
        row = self.db.execute(
            f"SELECT 1 FROM attachments a {_VISIBLE}"  # noqa: S608
            " JOIN blob_origins o ON o.hash = a.hash AND o.community = a.community"
            " JOIN members m ON m.community = a.community AND m.member = ?"
            " AND m.joined = 1 AND m.banned = 0"
            " JOIN blobs b ON b.hash = a.hash AND b.complete = 1"
            " WHERE a.hash = ? AND a.community = ? LIMIT 1",
            (member, blob, community),
        ).fetchone()
        return row is not None

    def wanted_blobs(
        self, *, limit: int = 100, before: tuple[int, bytes] | None = None
    ) -> list[WantedBlob]:
        """Blobs that visible posts name, not here, with a claimed size within this
        member's limits: what the node fetches by itself, newest naming post first, one
        entry per hash (every size claimed for it: the hash decides which is true). Pages
        by `before`, the (newest, hash) of the last entry of the page before."""
        limits = self.blob_limits()
        rows = self.db.execute(
            "SELECT a.hash, group_concat(DISTINCT a.size), min(a.mime),"  # noqa: S608
            " group_concat(DISTINCT hex(a.community)), max(r.seq) AS newest"
            f" FROM attachments a {_VISIBLE}"
            " WHERE a.size <= ? AND NOT EXISTS"
            " (SELECT 1 FROM blobs b WHERE b.hash = a.hash AND b.complete = 1)"
            " GROUP BY a.hash HAVING (newest, a.hash) < (?, ?)"
            " ORDER BY newest DESC, a.hash DESC LIMIT ?",
            (
                min(limits.max_size, HARD_MAX_SIZE),
                *(before if before is not None else (2**62, b"")),
                limit,
            ),
        ).fetchall()
        wanted = []
        room = limits.max_total - limits.used
        for blob, sizes, mime, communities, newest in rows:
            fitting = tuple(sorted(int(s) for s in str(sizes).split(",") if int(s) <= room))
            ids = tuple(dict.fromkeys(bytes.fromhex(c) for c in communities.split(",")))
            wanted.append(WantedBlob(blob, fitting, mime, ids, int(newest)))
        return wanted

    def claimed_sizes(self, blob: bytes) -> set[int]:
        """The sizes that allowed, visible posts claim for a blob (one is true, if any)."""
        rows = self.db.execute(
            f"SELECT DISTINCT a.size FROM attachments a {_VISIBLE}"  # noqa: S608
            " WHERE a.hash = ?",
            (blob,),
        ).fetchall()
        return {int(row[0]) for row in rows}

    def blob_communities(self, blob: bytes) -> list[bytes]:
        """The communities whose visible posts name a blob."""
        rows = self.db.execute(
            f"SELECT DISTINCT a.community FROM attachments a {_VISIBLE}"  # noqa: S608
            " WHERE a.hash = ?",
            (blob,),
        ).fetchall()
        return [row[0] for row in rows]


class BlobWriter:
    """Receives a blob in order, hashing as it goes; stores it in chunks, a few at a
    time (at most WRITE_BATCH chunks are held in memory), and marks it complete only when
    its size and hash are right. Anything else leaves nothing behind."""

    WRITE_BATCH = 16  # chunks per transaction: 1 MiB

    def __init__(self, store: BlobStore, blob: bytes, size: int, origin: bytes | None) -> None:
        self._store = store
        self.hash = blob
        self.size = size
        self.origin = origin
        self.received = 0
        self._digest = hashlib.blake2b(digest_size=32)
        self._buffer = bytearray()
        self._pending: list[tuple[bytes, int, bytes]] = []
        self._next = 0

    def write(self, data: bytes) -> None:
        """Take the next bytes; raises StoreError (and discards) past the size."""
        if self.received + len(data) > self.size:
            self.discard()
            raise StoreError("more bytes than the blob's size")
        self.received += len(data)
        self._digest.update(data)
        self._buffer += data
        while len(self._buffer) >= CHUNK_SIZE:
            self._pending.append((self.hash, self._next, bytes(self._buffer[:CHUNK_SIZE])))
            del self._buffer[:CHUNK_SIZE]
            self._next += 1
        if len(self._pending) >= self.WRITE_BATCH:
            self._flush(complete=False)

    def _flush(self, *, complete: bool) -> None:
        store = self._store
        with store._transaction():
            store.db.executemany("INSERT INTO blob_chunks VALUES (?, ?, ?)", self._pending)
            if complete:
                store.db.execute("UPDATE blobs SET complete = 1 WHERE hash = ?", (self.hash,))
                if self.origin is not None:
                    store.db.execute(
                        "INSERT OR IGNORE INTO blob_origins VALUES (?, ?)", (self.hash, self.origin)
                    )
        self._pending = []

    def finish(self) -> None:
        """Check size and hash; mark the blob here. Raises StoreError (and discards) if
        either is wrong."""
        if self.received != self.size:
            self.discard()
            raise StoreError(f"the blob ended after {self.received} of {self.size} bytes")
        if self._digest.digest() != self.hash:
            self.discard()
            raise StoreError("the blob's bytes do not match its hash")
        if self._buffer or self._next == 0:
            self._pending.append((self.hash, self._next, bytes(self._buffer)))
            self._buffer.clear()
        self._flush(complete=True)

    def discard(self) -> None:
        self._pending = []
        self._buffer.clear()
        self._store.discard_blob(self.hash)


def parse_size(text: str) -> int:
    """'20MB', '2 GiB', '512k', '1048576' → bytes (K, M and G count in 1024s)."""
    cleaned = text.strip().lower().replace(" ", "")
    for suffix in ("ib", "b"):
        if cleaned.endswith(suffix) and cleaned[: -len(suffix)][-1:] in ("k", "m", "g"):
            cleaned = cleaned[: -len(suffix)]
            break
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale > 1 else cleaned.removesuffix("b")
    try:
        value = float(number)
    except ValueError:
        raise StoreError(f"{text!r} is not a size: write e.g. 20MB, 512KB or 2GB") from None
    if value != value or value < 0 or value > 2**50:
        raise StoreError(f"{text!r} is not a size: write e.g. 20MB, 512KB or 2GB")
    return int(value * scale)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
