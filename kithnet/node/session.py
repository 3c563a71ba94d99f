"""Opening a member's store for the desktop app, which reaches the store only through
the node layer: make one (first run), restore one from a backup, or unlock one; any
failure is an UnlockError whose message is written for the person at the keyboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kithnet.crypto.errors import CryptoError
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.backup import restore_backup
from kithnet.localstore.errors import StoreError, WrongPassphrase
from kithnet.localstore.files import HEADER_NAME
from kithnet.localstore.store import Store

__all__ = ["Store", "UnlockError", "create_store", "has_store", "open_store", "restore_store"]


class UnlockError(Exception):
    """The store could not be opened, made or restored; `wrong_passphrase` says whether
    trying another passphrase may help."""

    def __init__(self, message: str, *, wrong_passphrase: bool = False) -> None:
        super().__init__(message)
        self.wrong_passphrase = wrong_passphrase


def has_store(data_dir: Path) -> bool:
    return (data_dir / HEADER_NAME).exists()


def open_store(data_dir: Path, passphrase: str) -> Store:
    return _opening(lambda: Store.open(data_dir, passphrase))


def create_store(data_dir: Path, passphrase: str, name: str, kdf: KdfParams | None = None) -> Store:
    return _opening(lambda: Store.create(data_dir, passphrase, name=name, kdf=kdf))


def restore_store(
    backup: Path, passphrase: str, data_dir: Path, kdf: KdfParams | None = None
) -> Store:
    return _opening(lambda: restore_backup(backup, passphrase, data_dir, kdf=kdf))


def _opening(open_it: Callable[[], Store]) -> Store:
    try:
        return open_it()
    except WrongPassphrase as exc:
        raise UnlockError(f"{exc}: try again", wrong_passphrase=True) from exc
    except (StoreError, CryptoError) as exc:
        raise UnlockError(str(exc)) from exc
    except OSError as exc:
        raise UnlockError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from exc
