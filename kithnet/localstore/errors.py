"""What can go wrong with a member's store, in words for the person at the keyboard."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked; the message says what to do next."""


class StoreMissing(StoreError):
    """No store has been created in the data directory."""


class StoreExists(StoreError):
    """A store already exists where a new one was to be created."""


class WrongPassphrase(StoreError):
    """The passphrase does not unlock this store (or backup)."""


class StoreLocked(StoreError):
    """Another process has the data directory open."""


class StoreDamaged(StoreError):
    """The files are there and the passphrase is right, but they cannot be read."""


class DiskFull(StoreError):
    """The disk (or the database's size limit) is full; nothing of the batch was written."""


class BackupError(StoreError):
    """A backup file is not one, is damaged or cut short; nothing was restored."""
