"""What a member's store promises when things go wrong: a process killed in the middle of
a write or a passphrase change leaves a store that opens, whole; nothing readable
reaches the disk; a wrong passphrase, a second process, a full disk and damaged files
are each told apart, in words, and cost nothing that was stored."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

import pytest
from nacl.pwhash import argon2id

from kithnet.core.envelope import Record, sign_record
from kithnet.crypto.identity import Identity
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.errors import DiskFull, StoreDamaged, WrongPassphrase
from kithnet.localstore.files import HEADER_NAME, LOCK_NAME, derive_keys
from kithnet.localstore.store import Store
from tests.crash_child import write_batches
from tests.strategies import NOW_MS

ROOT = Path(__file__).resolve().parent.parent
FAST_KDF = KdfParams.new(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
ME = Identity.from_seed(bytes([11]) * 32)
PASSPHRASE = "correct horse"
POSTS_PER_BATCH = 25
# Ingest as if an hour later than every record here: none is dated in the future.
INGEST_NOW = NOW_MS + 3_600_000


# Helpers -----------------------------------------------------------------------------


def new_store(data_dir: Path) -> tuple[Store, Record]:
    """A store of ME's with one community ME founded (its genesis is the one record)."""
    store = Store.create(data_dir, PASSPHRASE, identity=ME, kdf=FAST_KDF)
    genesis = store.publish(
        {"kind": "community", "name": "Lofts", "visibility": "public", "created_at": NOW_MS},
        now=NOW_MS,
    )
    return store, genesis


def make_batch(community: bytes, number: int, size: int = POSTS_PER_BATCH) -> list[Record]:
    """Batch `number` of ME's posts; batches are dated one after another."""
    return [
        sign_record(
            ME,
            {
                "kind": "post",
                "community": community,
                "type": "post",
                "text": f"batch{number} post {i}",
                "created_at": NOW_MS + 1 + number * size + i,
            },
        )
        for i in range(size)
    ]


def envelopes(records: Iterable[Record]) -> list[bytes]:
    return [record.envelope for record in records]


def held(store: Store, records: Iterable[Record]) -> int:
    return sum(store.has_record(record.id) for record in records)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(child: subprocess.Popen[str], word: str) -> None:
    """Read the child's next line, which must be `word`."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if line != word + "\n":
        child.kill()
        out, err = child.communicate()
        pytest.fail(f"the child said {line + out!r} instead of {word!r}:\n{err}")


def kill(child: subprocess.Popen[str]) -> list[str]:
    """SIGKILL the child (a no-op if it has exited) and return every line it printed."""
    child.kill()
    out, err = child.communicate(timeout=60)
    assert "Traceback" not in err, err
    return out.splitlines()


def run_child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.crash_child", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


# 1. A writer killed at any moment ----------------------------------------------------

CRASH_KILLS = 55
BATCHES_PER_RUN = 150  # more than a child gets through before its kill
MAX_KILL_DELAY = 0.25  # seconds after "ready"; a batch takes a few milliseconds


def test_a_writer_killed_at_any_moment_keeps_every_committed_batch_and_no_half_batch(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    store, genesis = new_store(data_dir)
    store.close()
    rng = random.Random(7301)
    batches: list[list[Record]] = []
    batch_file = tmp_path / "batches.bin"
    whole = 0  # batches 0 .. whole-1 are in the store, the others are not
    interrupted = 0  # kills that came before the child had ingested all it was given
    committed_unannounced = 0  # kills between a commit and its "committed" line
    for _ in range(CRASH_KILLS):
        while len(batches) < whole + BATCHES_PER_RUN:
            batches.append(make_batch(genesis.id, len(batches)))
        given = batches[whole : whole + BATCHES_PER_RUN]
        write_batches(batch_file, [envelopes(batch) for batch in given])
        child = spawn(
            "ingest", str(data_dir), PASSPHRASE, str(batch_file), str(whole), str(INGEST_NOW)
        )
        wait_for(child, "ready")
        time.sleep(rng.uniform(0, MAX_KILL_DELAY))
        lines = kill(child)

        announced = [int(line.split()[1]) for line in lines if line.startswith("committed ")]
        assert announced == list(range(whole, whole + len(announced))), lines
        assert set(lines) <= {f"committed {n}" for n in announced} | {"finished"}, lines
        if "finished" not in lines:
            interrupted += 1

        with Store.open(data_dir, PASSPHRASE) as store:
            assert store.integrity_check() == "ok"
            # The child ingests in order: past the batch it was committing, nothing.
            looked_at = given[: len(announced) + 2]
            counts = [held(store, batch) for batch in looked_at]
            half = [(whole + i, n) for i, n in enumerate(counts) if n not in (0, POSTS_PER_BATCH)]
            assert half == [], "batches partly stored (batch, records held)"
            now_whole = counts.index(0) if 0 in counts else len(counts)
            assert all(n == 0 for n in counts[now_whole:]), counts
            assert now_whole >= len(announced), "a batch announced as committed is missing"
            assert store.record_count() == 1 + POSTS_PER_BATCH * (whole + now_whole)
        if now_whole > len(announced):
            committed_unannounced += 1
        whole += now_whole

    # The kills interrupted real work: children that had not finished, and a store
    # that kept growing across them.
    assert interrupted >= CRASH_KILLS // 2, f"only {interrupted} kills interrupted the child"
    assert whole >= CRASH_KILLS // 2, f"only {whole} batches were committed in all"
    with Store.open(data_dir, PASSPHRASE) as store:
        assert store.integrity_check() == "ok"
        assert all(held(store, batch) == POSTS_PER_BATCH for batch in batches[:whole])
        last = batches[whole - 1]
        assert store.feed(genesis.id).posts[0].id == last[-1].id
        found = store.search(f"batch{whole - 1} post", limit=50)  # "post": the prefix
        assert sorted(p.id for p in found) == sorted(r.id for r in last)
    print(
        f"{CRASH_KILLS} kills, {interrupted} mid-work, {committed_unannounced} between a"
        f" commit and its line; {whole} batches committed"
    )


# 2. A passphrase change killed at any moment ---------------------------------------

REKEY_KILLS = 24


def open_or_refusal(data_dir: Path, passphrase: str) -> Store | str:
    """The opened store, or the WrongPassphrase message."""
    try:
        return Store.open(data_dir, passphrase)
    except WrongPassphrase as exc:
        return str(exc)


def test_a_passphrase_change_killed_at_any_moment_leaves_exactly_one_passphrase(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    store, genesis = new_store(data_dir)
    records = [genesis]
    for number in range(40):
        batch = make_batch(genesis.id, number, size=50)
        store.ingest(envelopes(batch), now=INGEST_NOW)
        records += batch
    store.close()
    newest = records[-1]
    current, other = PASSPHRASE, "a new passphrase"

    def check(store: Store) -> None:
        assert store.integrity_check() == "ok"
        assert store.record_count() == len(records)
        assert held(store, records) == len(records)
        assert store.feed(genesis.id).posts[0].id == newest.id
        # No database file of the interrupted change is left taking up space.
        leftovers = [
            p.name for p in data_dir.glob("store-*") if not p.name.startswith(store.header.database)
        ]
        assert leftovers == []

    # How long a change takes, unkilled, on this machine.
    durations = []
    for _ in range(3):
        child = spawn("rekey", str(data_dir), current, other)
        wait_for(child, "ready")
        started = time.perf_counter()
        wait_for(child, "done")
        durations.append(time.perf_counter() - started)
        assert kill(child) == []
        current, other = other, current
    typical = statistics.median(durations)

    rng = random.Random(4077)
    changed = unchanged = 0
    for _ in range(REKEY_KILLS):
        child = spawn("rekey", str(data_dir), current, other)
        wait_for(child, "ready")
        time.sleep(rng.uniform(0, typical * 1.4))
        said = kill(child)
        opens = []
        refusals = []
        for passphrase in (current, other):
            store_or_refusal = open_or_refusal(data_dir, passphrase)
            if isinstance(store_or_refusal, str):
                refusals.append(store_or_refusal)
                continue
            with store_or_refusal:
                check(store_or_refusal)
            opens.append(passphrase)
        assert len(opens) == 1, f"{len(opens)} of the two passphrases open the store"
        assert refusals == [f"wrong passphrase for {data_dir}"]
        if opens == [other]:
            changed += 1
            current, other = other, current
        else:
            assert said == [], "the child said the change was done, but it was not"
            unchanged += 1
    # Kills landed both before and after the commit point.
    assert changed >= 1
    assert unchanged >= 1
    print(f"{REKEY_KILLS} kills; typical change {typical * 1000:.0f} ms; {changed} changed")


# 3. Nothing readable on disk -----------------------------------------------------------

CANARY = "plaintext-canary-7f3a loft insulation"
NAME = "Zebedee Quill"


def secrets_of(store: Store) -> dict[str, bytes]:
    key, _ = derive_keys(PASSPHRASE, store.header.kdf)
    seed = store.identity.seed
    found: dict[str, bytes] = {
        "identity seed": seed,
        "identity seed, hex": seed.hex().encode(),
        "database key": key,
        "database key, hex": key.hex().encode(),
        "passphrase": PASSPHRASE.encode(),
    }
    for label, text in (("post", CANARY), ("name", NAME)):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            found[f"{label} text, {encoding}"] = text.encode(encoding)
    # The words a full-text index would keep, lower-cased.
    for word in ("zebedee", "plaintext", "canary", "insulation"):
        found[f"indexed word {word!r}"] = word.encode()
    return found


def assert_nothing_readable(data_dir: Path, database: str, secrets: dict[str, bytes]) -> None:
    names = {path.name for path in data_dir.iterdir()}
    assert names - {database + "-wal", database + "-shm"} == {HEADER_NAME, LOCK_NAME, database}
    for path in data_dir.iterdir():
        data = path.read_bytes().lower()
        leaks = [label for label, secret in secrets.items() if secret.lower() in data]
        assert leaks == [], f"{path.name} holds {leaks}"

    # The database and its write-ahead log are ciphertext: no SQLite header, nothing a
    # compressor can shrink. (The -shm index holds page numbers and checksums only.)
    for name in (database, database + "-wal"):
        if name in names:
            data = (data_dir / name).read_bytes()
            assert len(data) >= 4096
            assert not data.startswith(b"SQLite format 3\x00")
            assert len(zlib.compress(data, 9)) > 0.97 * len(data), f"{name} compresses"

    # The header is the one file written to be read: KDF parameters, a file name and a
    # check value, nothing else. The lock file holds the writer's process id while it
    # runs, and nothing after.
    header = json.loads((data_dir / HEADER_NAME).read_bytes())
    assert set(header) == {"format", "kdf", "database", "check"}
    assert set(header["kdf"]) == {"algorithm", "salt", "opslimit", "memlimit"}
    assert header["database"] == database
    lock = (data_dir / LOCK_NAME).read_text()
    assert lock == "" or lock.isdigit()


def test_nothing_readable_reaches_the_disk_while_open_or_after_close(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = Store.create(data_dir, PASSPHRASE, name=NAME, kdf=FAST_KDF)
    community = store.publish({"kind": "community", "name": "Lofts", "visibility": "public"})
    store.publish({"kind": "post", "community": community.id, "type": "post", "text": CANARY})
    assert [p.text for p in store.search("canary")] == [CANARY]
    assert [p.name for p in store.search_profiles("zebedee")] == [NAME]
    secrets = secrets_of(store)
    database = store.header.database
    try:
        assert (data_dir / (database + "-wal")).stat().st_size > 0
        assert_nothing_readable(data_dir, database, secrets)
    finally:
        store.close()
    assert_nothing_readable(data_dir, database, secrets)
    with Store.open(data_dir, PASSPHRASE) as store:  # the secrets are in there, encrypted
        assert [p.text for p in store.search("canary")] == [CANARY]
        assert store.identity.seed == secrets["identity seed"]


# 4. A wrong passphrase ----------------------------------------------------------------


def test_a_wrong_passphrase_is_refused_in_words_and_changes_no_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store, genesis = new_store(data_dir)
    posts = make_batch(genesis.id, 0)
    store.ingest(envelopes(posts), now=INGEST_NOW)
    store.close()
    # What an interrupted passphrase change leaves behind; only the owner may tidy it.
    (data_dir / (HEADER_NAME + ".tmp")).write_bytes(b'{"format": "kithnet-store/1"')
    before = digests(data_dir)

    for wrong, readonly in (("correct horse ", False), ("Correct horse", True), ("x", False)):
        with pytest.raises(WrongPassphrase) as refused:
            Store.open(data_dir, wrong, readonly=readonly)
        assert str(refused.value) == f"wrong passphrase for {data_dir}"
        assert digests(data_dir) == before

    with Store.open(data_dir, PASSPHRASE) as store:
        assert store.integrity_check() == "ok"
        assert held(store, [genesis, *posts]) == 1 + len(posts)
    assert not (data_dir / (HEADER_NAME + ".tmp")).exists()


# 5. A second process -----------------------------------------------------------------


def test_a_second_process_is_kept_out_while_a_writer_holds_the_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store, genesis = new_store(data_dir)
    try:
        as_writer = run_child("open", str(data_dir), PASSPHRASE, "writer")
        as_reader = run_child("open", str(data_dir), PASSPHRASE, "readonly")
        # The refused attempts cost the holder nothing.
        post = store.publish(
            {"kind": "post", "community": genesis.id, "type": "post", "text": "still mine"}
        )
        assert store.has_record(post.id)
    finally:
        store.close()
    for said in (as_writer, as_reader):
        assert said.startswith("StoreLocked: "), said
        assert f"{data_dir} is in use" in said
        assert f"(process {os.getpid()})" in said
    assert run_child("open", str(data_dir), PASSPHRASE, "writer") == "opened"
    assert run_child("open", str(data_dir), PASSPHRASE, "readonly") == "opened"


# 6. A full disk ----------------------------------------------------------------------


def test_a_full_disk_refuses_the_whole_batch_and_the_store_recovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store, genesis = new_store(data_dir)
    try:
        earlier = [make_batch(genesis.id, n) for n in range(3)]
        for batch in earlier:
            store.ingest(envelopes(batch), now=INGEST_NOW)
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 4}")

        full: DiskFull | None = None
        failed: list[Record] = []
        for number in range(3, 60):
            batch = make_batch(genesis.id, number)
            try:
                store.ingest(envelopes(batch), now=INGEST_NOW)
            except DiskFull as exc:
                full, failed = exc, batch
                break
            earlier.append(batch)
        assert full is not None, "the size limit never filled up"
        assert str(full).startswith(f"the disk holding {data_dir} is full; nothing of this")

        assert held(store, failed) == 0
        assert all(held(store, batch) == POSTS_PER_BATCH for batch in earlier)
        assert store.record_count() == 1 + POSTS_PER_BATCH * len(earlier)
        # Batch words are exact terms when another word follows (the last is a prefix).
        failed_words = failed[0].fields["text"].split()[0] + " post"
        assert store.search(failed_words) == []

        store.db.execute("PRAGMA max_page_count = 1073741823")
        after = make_batch(genesis.id, 100)
        outcomes = store.ingest(envelopes(after), now=INGEST_NOW)
        assert {o.status for o in outcomes} == {"stored"}
        # Search finds what was stored, once, and nothing of the batch that failed.
        assert store.search(failed_words) == []
        assert sorted(p.id for p in store.search("batch100 post", limit=50)) == sorted(
            r.id for r in after
        )
        assert {o.status for o in store.ingest(envelopes(failed), now=INGEST_NOW)} == {"stored"}
        assert sorted(p.id for p in store.search(failed_words, limit=50)) == sorted(
            r.id for r in failed
        )
        assert store.integrity_check() == "ok"
    finally:
        store.close()


# 7. Damaged files --------------------------------------------------------------------


def populated_store(data_dir: Path) -> tuple[str, list[Record]]:
    """A closed store with some posts: (database file name, records)."""
    store, genesis = new_store(data_dir)
    records = [genesis]
    for number in range(8):
        batch = make_batch(genesis.id, number)
        store.ingest(envelopes(batch), now=INGEST_NOW)
        records += batch
    database = store.header.database
    store.close()
    return database, records


def flip(path: Path, offset: int, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_seen(data_dir: Path) -> str | None:
    """How a damaged store shows its damage (None: it does not). Anything but
    StoreDamaged from `open`, or a result or StoreDamaged from `integrity_check`,
    propagates."""
    try:
        store = Store.open(data_dir, PASSPHRASE)
    except StoreDamaged as exc:
        return f"open: {exc}"
    with store:
        try:
            result = store.integrity_check()
        except StoreDamaged as exc:
            return f"integrity_check: {exc}"
        return None if result == "ok" else f"integrity_check: {result}"


def test_bytes_flipped_in_the_middle_of_the_database_are_reported_as_damage(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    database, _ = populated_store(data_dir)
    path = data_dir / database
    flip(path, path.stat().st_size // 2)
    assert damage_seen(data_dir) is not None


def test_bytes_flipped_in_any_page_of_the_database_are_reported_as_damage(
    tmp_path: Path,
) -> None:
    pristine = tmp_path / "pristine"
    database, _ = populated_store(pristine)
    pages = (pristine / database).stat().st_size // 4096
    assert pages > 20
    unseen: list[int] = []
    escaped: list[tuple[int, str]] = []
    for page in range(pages):
        data_dir = tmp_path / f"page{page}"
        shutil.copytree(pristine, data_dir)
        flip(data_dir / database, page * 4096 + 2048)
        try:
            if damage_seen(data_dir) is None:
                unseen.append(page)
        except Exception as exc:  # collected and reported below
            escaped.append((page, f"{type(exc).__name__}: {exc}"))
        shutil.rmtree(data_dir)
    assert unseen == [], "damaged pages the store did not notice"
    assert escaped == [], "damage reported as something other than StoreDamaged"


def _damaged_header(original: bytes, damage: str) -> bytes:
    header = json.loads(original)
    if damage == "truncated":
        return original[: len(original) // 2]
    if damage == "empty":
        return b""
    if damage == "garbage":
        return bytes(range(256))
    if damage == "not a header":
        return b'{"hello": "world"}'
    if damage == "a list":
        return b"[1, 2, 3]"
    if damage == "bad salt":
        return json.dumps(dict(header, kdf=dict(header["kdf"], salt="not hex"))).encode()
    assert damage == "escaping name"
    return json.dumps(dict(header, database="../elsewhere.db")).encode()


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "garbage", "not a header", "a list", "bad salt", "escaping name"],
)
def test_a_damaged_header_is_reported_in_words_and_loses_nothing(
    tmp_path: Path, damage: str
) -> None:
    data_dir = tmp_path / "data"
    database, records = populated_store(data_dir)
    header = data_dir / HEADER_NAME
    original = header.read_bytes()
    header.write_bytes(_damaged_header(original, damage))

    for readonly in (False, True):
        with pytest.raises(StoreDamaged) as refused:
            Store.open(data_dir, PASSPHRASE, readonly=readonly)
        message = str(refused.value)
        assert message.startswith(f"the store header {header} is damaged"), message
        assert message.endswith("restore from a backup"), message
    assert (data_dir / database).exists()

    header.write_bytes(original)  # the backup
    with Store.open(data_dir, PASSPHRASE) as store:
        assert store.integrity_check() == "ok"
        assert held(store, records) == len(records)
