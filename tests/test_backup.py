"""Backups: one encrypted file restores a working store; a damaged, cut-short or
wrongly unlocked backup is refused with a clear error and writes nothing."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from kithnet.core.envelope import decode_stored, sign_record
from kithnet.crypto.sealed import seal
from kithnet.localstore.backup import restore_backup, write_backup
from kithnet.localstore.errors import BackupError, StoreExists, WrongPassphrase
from kithnet.localstore.store import Store
from tests.histories import RICH_HISTORY
from tests.strategies import NOW_MS
from tests.test_store_ingest import FAST_KDF, ME, new_store, snapshot

PASSPHRASE = "correct horse"


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Store]:
    store = new_store(tmp_path)
    store.ingest([r.envelope for r in RICH_HISTORY], now=NOW_MS)
    genesis = store.publish({"kind": "community", "name": "Mine", "visibility": "public"})
    store.publish({"kind": "post", "community": genesis.id, "type": "post", "text": "my own"})
    yield store
    store.close()


@pytest.fixture
def backup_file(full_store: Store, tmp_path: Path) -> Path:
    path = tmp_path / "me.kithnet-backup"
    count = write_backup(full_store, path, PASSPHRASE)
    assert count == full_store.record_count() == len(RICH_HISTORY) + 2
    return path


def nothing_written(folder: Path) -> bool:
    """Neither the destination nor a half-built store beside it exists."""
    return not folder.exists() and not list(folder.parent.glob(f".{folder.name}.restoring-*"))


def test_a_backup_restores_the_same_identity_records_and_views(
    full_store: Store, backup_file: Path, tmp_path: Path
) -> None:
    restored = restore_backup(backup_file, PASSPHRASE, tmp_path / "new", kdf=FAST_KDF)
    try:
        assert restored.identity.public_key == ME.public_key
        assert restored.identity.seed == full_store.identity.seed
        assert snapshot(restored) == snapshot(full_store)
        assert [c.name for c in restored.communities()] == [
            c.name for c in full_store.communities()
        ]
        assert set(restored.unread_counts().values()) == {0}  # a restored history is not news
    finally:
        restored.close()
    # The new store opens with the same passphrase, like any other.
    Store.open(tmp_path / "new", PASSPHRASE).close()


def test_the_backup_file_holds_no_plaintext(full_store: Store, backup_file: Path) -> None:
    data = backup_file.read_bytes()
    assert full_store.identity.seed not in data
    assert b"my own" not in data
    assert b"Loft, wall" not in data
    assert backup_file.stat().st_mode & 0o077 == 0  # readable by its owner only


def test_a_wrong_passphrase_is_named_and_writes_nothing(backup_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WrongPassphrase, match="wrong passphrase for the backup"):
        restore_backup(backup_file, "battery staple", tmp_path / "new", kdf=FAST_KDF)
    assert nothing_written(tmp_path / "new")


def test_a_cut_short_backup_is_refused_and_writes_nothing(
    backup_file: Path, tmp_path: Path
) -> None:
    data = backup_file.read_bytes()
    rng = random.Random(3)
    cuts = {0, 5, 16, 20, 40, len(data) - 1, len(data) - 17}
    cuts |= {rng.randrange(len(data)) for _ in range(12)}
    for cut in sorted(cuts):
        damaged = tmp_path / f"cut-{cut}"
        damaged.write_bytes(data[:cut])
        target = tmp_path / f"restored-{cut}"
        with pytest.raises(BackupError) as refused:
            restore_backup(damaged, PASSPHRASE, target, kdf=FAST_KDF)
        assert "nothing was restored" in str(refused.value) or "not a Kithnet backup" in str(
            refused.value
        )
        assert nothing_written(target), cut


def test_a_damaged_backup_is_refused_and_writes_nothing(backup_file: Path, tmp_path: Path) -> None:
    data = backup_file.read_bytes()
    rng = random.Random(5)
    positions = sorted({rng.randrange(len(data)) for _ in range(25)} | {len(data) - 1})
    for position in positions:
        damaged = tmp_path / f"flip-{position}"
        changed = bytearray(data)
        changed[position] ^= 1 << rng.randrange(8)
        damaged.write_bytes(bytes(changed))
        target = tmp_path / f"restored-{position}"
        with pytest.raises(BackupError):
            restore_backup(damaged, PASSPHRASE, target, kdf=FAST_KDF)
        assert nothing_written(target), position


def test_appended_bytes_and_other_files_are_refused(backup_file: Path, tmp_path: Path) -> None:
    longer = tmp_path / "longer"
    longer.write_bytes(backup_file.read_bytes() + b"\x00")
    with pytest.raises(BackupError, match="after its end"):
        restore_backup(longer, PASSPHRASE, tmp_path / "a", kdf=FAST_KDF)
    other = tmp_path / "photo.jpg"
    other.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(BackupError, match="not a Kithnet backup"):
        restore_backup(other, PASSPHRASE, tmp_path / "b", kdf=FAST_KDF)
    with pytest.raises(BackupError, match="there is no file"):
        restore_backup(tmp_path / "missing", PASSPHRASE, tmp_path / "c", kdf=FAST_KDF)
    assert nothing_written(tmp_path / "a")
    assert nothing_written(tmp_path / "b")


def test_restore_never_overwrites_a_store(
    full_store: Store, backup_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(StoreExists, match="already holds a Kithnet store"):
        restore_backup(backup_file, PASSPHRASE, full_store.data_dir, kdf=FAST_KDF)
    assert full_store.integrity_check() == "ok"
    assert full_store.record_count() == len(RICH_HISTORY) + 2


def test_a_restore_is_not_held_to_a_clock_behind_the_one_that_took_the_records(
    tmp_path: Path,
) -> None:
    """A record dated just ahead of the source's clock is restored on a machine whose
    clock is behind, instead of being dropped."""
    source = new_store(tmp_path / "source")
    ahead = NOW_MS + 9 * 60 * 1000
    genesis = sign_record(
        ME, {"kind": "community", "name": "Early", "visibility": "public", "created_at": ahead}
    )
    assert source.ingest([genesis.envelope], now=NOW_MS)[0].status == "stored"
    write_backup(source, tmp_path / "b", PASSPHRASE)
    source.close()
    with restore_backup(tmp_path / "b", PASSPHRASE, tmp_path / "new", kdf=FAST_KDF) as restored:
        assert [c.name for c in restored.communities()] == ["Early"]


def test_a_backup_holding_a_forged_record_restores_nothing(
    full_store: Store, tmp_path: Path
) -> None:
    real = RICH_HISTORY[3].envelope
    forged = real[:-1] + bytes([real[-1] ^ 1])
    full_store.db.execute(  # as if the file had been made by something else
        "INSERT INTO records (id, envelope, kind, author, created_at, received_at, status)"
        " VALUES (?, ?, 'post', ?, 0, 0, 'allowed')",
        (bytes(32), forged, bytes(32)),
    )
    write_backup(full_store, tmp_path / "b", PASSPHRASE)
    with pytest.raises(BackupError, match="refused"):
        restore_backup(tmp_path / "b", PASSPHRASE, tmp_path / "new", kdf=FAST_KDF)
    assert nothing_written(tmp_path / "new")


def test_a_backup_lists_each_communitys_records_in_judging_order(full_store: Store) -> None:
    order = [decode_stored(e) for batch in full_store.envelopes(batch=7) for e in batch]
    assert len(order) == full_store.record_count()
    for community in {r.community for r in order}:
        mine = [(r.created_at, r.id) for r in order if r.community == community]
        assert mine == sorted(mine)
    first_in_community = next(i for i, r in enumerate(order) if r.community is not None)
    assert all(r.community is not None for r in order[first_in_community:])


def test_a_restored_store_can_read_its_private_communities_again(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        genesis = store.publish({"kind": "community", "name": "Shift", "visibility": "private"})
        key = bytes(range(32))
        store.set_community_key(genesis.id, 0, key)
        me = store.identity.public_key
        store.publish(
            {
                "kind": "key_update",
                "community": genesis.id,
                "epoch": 0,
                "keys": [{"member": me, "box": seal(me, key)}],
            }
        )
        write_backup(store, tmp_path / "b", PASSPHRASE)
    with restore_backup(tmp_path / "b", PASSPHRASE, tmp_path / "new", kdf=FAST_KDF) as restored:
        assert restored.community_key(genesis.id) == key  # opened from the sealed record


def test_a_backup_keeps_messages_marks_settings_and_pictures(tmp_path: Path) -> None:
    """What is not a record is the member's too: their direct messages, whom they muted
    or trust, their limits, and the pictures and files they hold (checked against their
    hashes when restored)."""
    other = Store.create(tmp_path / "other", PASSPHRASE, name="Other", kdf=FAST_KDF)
    with new_store(tmp_path) as store:
        sent = sign_record(
            store.identity,
            {
                "kind": "dm",
                "recipient": other.identity.public_key,
                "box": b"\x00" * 64,
                "created_at": NOW_MS,
            },
        )
        store.messages.add_sent(sent, "See you at the allotment", NOW_MS)
        store.mark(other.identity.public_key, "mute")
        store.set_setting("blob_max_size", 3 * 1024 * 1024)
        picture = random.Random(3).randbytes(2 * 1024 * 1024 + 17)
        blob = store.add_blob(picture, "image/png")
        write_backup(store, tmp_path / "b", PASSPHRASE)
        conversations = store.messages.conversations()
    other.close()
    with restore_backup(tmp_path / "b", PASSPHRASE, tmp_path / "new", kdf=FAST_KDF) as restored:
        assert restored.messages.conversations() == conversations
        assert restored.marks() == {other.identity.public_key: "mute"}
        assert restored.setting("blob_max_size") == 3 * 1024 * 1024
        assert b"".join(restored.blob_chunks(blob)) == picture
        assert restored.has_blob(blob)


def test_a_backup_restores_under_lowered_limits_and_leaves_the_machine_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files held under limits the member has since lowered still come back; where the
    old machine listened does not; a format-1 backup (records only) is still read."""
    with new_store(tmp_path) as store:
        blob = store.add_blob(random.Random(5).randbytes(300_000), "image/jpeg")
        store.set_blob_limits(max_total=100_000)
        store.set_setting("listen", ["/ip4/192.0.2.7/tcp/4001"])
        write_backup(store, tmp_path / "b2", PASSPHRASE)
    with restore_backup(tmp_path / "b2", PASSPHRASE, tmp_path / "new", kdf=FAST_KDF) as restored:
        assert restored.has_blob(blob)
        assert restored.blob_limits().max_total == 100_000
        assert restored.setting("listen") is None
    monkeypatch.setattr("kithnet.localstore.backup.VERSION", 1)
    with new_store(tmp_path / "old") as store:
        store.publish({"kind": "community", "name": "Old", "visibility": "public"})
        write_backup(store, tmp_path / "b1", PASSPHRASE)
    assert (tmp_path / "b1").read_bytes()[15] == 1  # the version byte after the magic
    with restore_backup(tmp_path / "b1", PASSPHRASE, tmp_path / "v1", kdf=FAST_KDF) as restored:
        assert [c.name for c in restored.communities()] == ["Old"]
