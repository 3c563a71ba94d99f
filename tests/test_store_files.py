"""The data directory: where it is, what a store refuses, and numbered migrations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kithnet.localstore.errors import StoreError, StoreExists, StoreMissing
from kithnet.localstore.files import HEADER_NAME
from kithnet.localstore.store import SCHEMA_VERSION, Store, _schema_files, default_data_dir
from tests.test_store_ingest import FAST_KDF, ME


def test_the_default_data_dir_follows_the_platform(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "Kithnet"


def test_a_store_is_created_private_and_not_twice(tmp_path: Path) -> None:
    data_dir = tmp_path / "me"
    Store.create(data_dir, "pass", name="Me", identity=ME, kdf=FAST_KDF).close()
    if os.name == "posix":
        assert data_dir.stat().st_mode & 0o777 == 0o700
    header = json.loads((data_dir / HEADER_NAME).read_text())
    assert set(header) == {"format", "kdf", "database", "check"}
    with pytest.raises(StoreExists, match="already holds a Kithnet store"):
        Store.create(data_dir, "pass", kdf=FAST_KDF)
    with Store.open(data_dir, "pass") as store:
        assert store.identity.public_key == ME.public_key
        assert store.profile().name == "Me"


def test_opening_where_there_is_no_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreMissing, match="kithnet init"):
        Store.open(tmp_path / "nothing", "pass")
    assert not (tmp_path / "nothing").exists()


def test_an_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="passphrase"):
        Store.create(tmp_path / "me", "", kdf=FAST_KDF)
    assert not (tmp_path / "me" / HEADER_NAME).exists()


def test_migrations_are_recorded_and_a_newer_store_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "me"
    with Store.create(data_dir, "pass", kdf=FAST_KDF) as store:
        versions = store.db.execute("SELECT version FROM schema_versions").fetchall()
        # Every schema file, in order (numbers may have gaps while branches merge).
        assert versions == [(v,) for v, _ in _schema_files()]
        assert versions[-1] == (SCHEMA_VERSION,)
    with Store.open(data_dir, "pass") as store:  # nothing applied twice
        assert store.db.execute("SELECT count(*) FROM schema_versions").fetchone()[0] == len(
            versions
        )
        store.db.execute("INSERT INTO schema_versions VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer Kithnet"):
        Store.open(data_dir, "pass")


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    data_dir = tmp_path / "me"
    Store.create(data_dir, "pass", kdf=FAST_KDF).close()
    with Store.open(data_dir, "pass", readonly=True) as store:
        with pytest.raises(StoreError, match="read-only"):
            store.publish({"kind": "profile", "name": "Me"})
        assert store.record_count() == 0
        # Two readers may share it.
        with Store.open(data_dir, "pass", readonly=True) as other:
            assert other.identity.public_key == store.identity.public_key


def test_a_new_store_never_goes_among_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    receipt = folder / "store-receipts.pdf"
    receipt.write_bytes(b"%PDF")
    with pytest.raises(StoreError, match="is not empty"):
        Store.create(folder, "pass", kdf=FAST_KDF)
    assert receipt.read_bytes() == b"%PDF"
    assert sorted(p.name for p in folder.iterdir()) == ["store-receipts.pdf"]


def test_a_name_that_cannot_be_used_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="name cannot be used"):
        Store.create(tmp_path / "me", "pass", name="x" * 80, kdf=FAST_KDF)
    assert not (tmp_path / "me").exists()


def test_closing_leaves_no_process_named_as_holder(tmp_path: Path) -> None:
    data_dir = tmp_path / "me"
    Store.create(data_dir, "pass", kdf=FAST_KDF).close()
    assert (data_dir / "kithnet.lock").read_text() == ""


def test_a_reader_does_not_open_a_store_that_needs_upgrading(tmp_path: Path) -> None:
    data_dir = tmp_path / "me"
    with Store.create(data_dir, "pass", kdf=FAST_KDF) as store:
        store.db.execute("DELETE FROM schema_versions WHERE version = ?", (SCHEMA_VERSION,))
    with pytest.raises(StoreError, match="older Kithnet"):
        Store.open(data_dir, "pass", readonly=True)
