"""The member's commands about their node and store as a whole, which the desktop app's
settings and network panel use: changing the passphrase (`passwd`), writing a backup
of the running store (`backup`), the node's settings (`settings`: relaying for
others), and what `status` tells of relays and of a catch-up in progress. Mixed into
`Commands`."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from kithnet.crypto.identity import fingerprint
from kithnet.localstore.backup import write_backup
from kithnet.localstore.errors import StoreError
from kithnet.localstore.files import derive_keys

if TYPE_CHECKING:
    from kithnet.localstore.store import Store
    from kithnet.node.node import Node

RELAY_SETTING = "relay"  # whether the member's node relays for members behind NAT


def _error(message: str) -> Exception:
    from kithnet.node.commands import CommandError

    return CommandError(message)


class SettingsCommands:
    node: Node
    store: Store
    temporary: bool

    async def _check_passphrase(self, passphrase: str, what: str) -> None:
        """Raise a CommandError unless `passphrase` opens this store. The key derivation
        (Argon2id, the slow part) runs in a worker thread: the node goes on meanwhile."""
        if not passphrase:
            raise _error(f"type {what}")
        header = self.store.header
        _, check = await trio.to_thread.run_sync(derive_keys, passphrase, header.kdf)
        if not hmac.compare_digest(check, header.check):
            raise _error(f"{what} is wrong: nothing was changed; type it again")

    async def passwd(self, current: str, new: str) -> dict[str, Any]:
        """Change the store's passphrase, if `current` is the one in force. The store is
        re-encrypted in place (Store.change_passphrase: interrupted anywhere, the old or
        the new passphrase opens it); from then on only `new` unlocks it."""
        if not new:
            raise _error("the new passphrase is empty; an empty one protects nothing")
        await self._check_passphrase(current, "the current passphrase")
        if new == current:
            raise _error("the new passphrase is the one you have: nothing was changed")
        try:
            # In the node's thread, between two of its steps: nothing else uses the
            # database while it is copied under the new key.
            self.store.change_passphrase(new)
        except StoreError as exc:
            raise _error(str(exc)) from None
        return {"data_dir": str(self.store.data_dir), "passphrase_changed": True}

    async def backup(self, file: str, passphrase: str) -> dict[str, Any]:
        """Write the same backup as `kithnet backup` (identity, records, messages,
        settings, pictures), encrypted under the store's passphrase, while the node
        runs. It reads the store in the node's thread between two of its steps, so it
        sees one consistent store and writes nothing to it; the file appears whole or
        not at all."""
        target = Path(file)
        if not target.is_absolute():
            raise _error(f"{file}: give the full path of the backup file to write")
        if target.is_dir():
            raise _error(f"{file} is a folder: give the name of a file to write")
        if not target.parent.is_dir():
            raise _error(f"there is no folder {target.parent} to write the backup into")
        data_dir = self.store.data_dir.resolve()
        if target.resolve() == data_dir or data_dir in target.resolve().parents:
            # It could replace the store's own files (its header, its database), and a
            # backup kept in the data folder is lost with it.
            raise _error(
                f"{file} is inside Kithnet's data folder {self.store.data_dir}: write the "
                "backup somewhere else, best on another disk"
            )
        await self._check_passphrase(passphrase, "the passphrase")
        try:
            count = write_backup(self.store, target, passphrase)
        except StoreError as exc:
            raise _error(str(exc)) from None
        return {
            "file": str(target),
            "records": count,
            "fingerprint": fingerprint(self.store.identity.public_key),
        }

    async def settings(self, relay: bool | None = None) -> dict[str, Any]:
        """The node's settings; `relay`: relay connections for members behind NAT
        (like `kithnet serve --relay`), from the next start of the member's node."""
        if relay is not None:
            if not isinstance(relay, bool):
                raise _error("relay is either true or false")
            self.store.set_setting(RELAY_SETTING, relay)
        return {
            "data_dir": str(self.store.data_dir),
            "relay": bool(self.store.setting(RELAY_SETTING)),
            "relaying": self.node.relay_service is not None,
        }

    # What `status` adds -----------------------------------------------------------------

    def relay_view(self) -> dict[str, Any]:
        """Whether relays are in use: this node relaying for others (and for whom), its
        reservations on other members' relays, and the circuit addresses it announces."""
        service, client = self.node.relay_service, self.node.relay_client
        reservations = list(client.reservations.values()) if client is not None else []
        return {
            "relaying_for_others": service is not None,
            "reserved_members": service.reserved_members() if service is not None else [],
            "circuits": len(service.circuits()) if service is not None else 0,
            "reservations": [
                {
                    "relay_id": r.relay_id,
                    "relay_address": r.relay_address,
                    "expires_at": r.expires_at,
                }
                for r in reservations
            ],
            "circuit_addresses": list(self.node.relayed_addresses),
        }

    def catch_up_view(self, community: bytes) -> dict[str, Any] | None:
        """How far this node's catch-up of `community` is, while one runs: records
        received and wanted (known once the reconciliation has found them), None if
        none runs."""
        running = [
            p for (_, cid), p in self.node.syncs.items() if cid == community and p.finished is None
        ]
        if not running:
            return None
        clients = [p.client for p in running if p.client is not None]
        received = sum(c.received for c in clients)
        return {
            "received": received,
            "wanted": received + sum(c.awaiting for c in clients),
            "reconciling": not clients or not all(c.reconciled for c in clients),
        }
