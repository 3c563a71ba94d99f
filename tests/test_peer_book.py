"""The peer book: where members' nodes can be reached, kept in the encrypted store. What a
node was told by others (peer exchange) never pushes out what it learnt first hand, and
is forgotten first when the book is full."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kithnet.crypto.identity import Identity, peer_id
from kithnet.localstore import store as store_module
from kithnet.localstore.store import Store
from tests.test_store_ingest import FAST_KDF


def _address(peer: str, port: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"


def test_hearsay_never_displaces_first_hand_addresses(tmp_path: Path) -> None:
    ann = peer_id(Identity.generate().public_key)
    with Store.create(tmp_path / "me", "pw", name="Me", kdf=FAST_KDF) as store:
        store.remember_peer(ann, [_address(ann, 4001)], "invite")
        poison = [_address(ann, 9000 + n) for n in range(8)]
        store.remember_peer(ann, poison, "exchange")
        [(_, addresses)] = store.known_peers()
        assert addresses[0] == _address(ann, 4001)
        assert len(addresses) == 8
        # An address that does not name the peer is not kept at all.
        store.remember_peer(ann, [_address("12D3KooWsomeoneelse", 1)], "connected")
        assert all(a.endswith(ann) for a in store.known_peers()[0][1])
        # A node's own word replaces hearsay at the front.
        store.remember_peer(ann, [_address(ann, 5000)], "connected")
        assert store.known_peers()[0][1][0] == _address(ann, 5000)
        assert store.peer_id not in dict(store.known_peers())
        store.remember_peer(store.peer_id, [_address(store.peer_id, 1)], "exchange")
        assert store.peer_id not in dict(store.known_peers())  # never ourselves


def test_a_full_book_forgets_hearsay_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_PEERS", 5)
    peers = [peer_id(Identity.generate().public_key) for _ in range(12)]
    with Store.create(tmp_path / "me", "pw", name="Me", kdf=FAST_KDF) as store:
        for peer in peers[:3]:
            store.remember_peer(peer, [_address(peer, 1)], "invite")
        for peer in peers[3:]:
            store.remember_peer(peer, [_address(peer, 1)], "exchange")
        kept = dict(store.known_peers())
        assert len(kept) == 5
        assert set(peers[:3]) <= set(kept)  # first-hand ones survive a flood of hearsay
        store.peer_failed(peers[0])
        time.sleep(0.002)  # a later millisecond than every entry's learnt_at
        store.peer_connected(peers[1])
        order = [p for p, _ in store.known_peers()]
        assert order[0] == peers[1]  # connected most recently: tried first
        assert order[-1] == peers[0]  # failed: tried last
