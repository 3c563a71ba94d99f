"""Real libp2p hosts on 127.0.0.1 running the community DHT: a member who knows only one
peer finds another member of a community and reaches them; a lookup never returns the
member's own address and gives [] instead of an error or a hang when nothing answers."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID

from kithnet.crypto.identity import Identity
from kithnet.p2p.dht import CommunityDht, provider_key
from kithnet.p2p.host import P2PError, Peer

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
LOFTS = b"\x01" * 32  # a community id
GARDEN = b"\x02" * 32


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            await scenario()

    trio.run(main)


@asynccontextmanager
async def members(count: int) -> AsyncIterator[list[tuple[Peer, CommunityDht]]]:
    """`count` running members, each with its DHT, none connected yet."""
    async with AsyncExitStack() as stack:
        result = []
        for _ in range(count):
            peer = await stack.enter_async_context(Peer.running(Identity.generate(), LOOPBACK))
            dht = await stack.enter_async_context(CommunityDht.running(peer))
            result.append((peer, dht))
        yield result


def owners(addresses: list[str]) -> set[str]:
    return {address.rsplit("/p2p/", 1)[1] for address in addresses}


async def wait_for_member(
    dht: CommunityDht, community: bytes, peer_id: str, within: float = 8
) -> list[str]:
    """Look `community` up until `peer_id` is among the answers (for announcements made
    in the background, whose moment the test does not know)."""
    with trio.fail_after(within):
        while True:
            addresses = await dht.find_members(community, timeout=2)
            if peer_id in owners(addresses):
                return addresses
            await trio.sleep(0.05)


def test_a_member_who_knows_one_peer_finds_and_reaches_another_member() -> None:
    async def scenario() -> None:
        async with members(3) as [(ann, ann_dht), (bob, _), (cat, cat_dht)]:
            await ann.connect(bob.addresses()[0])
            assert await ann_dht.provide(LOFTS)

            # Cat knows only Bob, who is not a member of Lofts.
            await cat.connect(bob.addresses()[0])
            found = await cat_dht.find_members(LOFTS)
            assert owners(found) == {ann.peer_id}
            assert set(found) <= set(ann.addresses())

            # The address works: Cat dials it afresh and Ann sees Cat connected.
            await cat.host.disconnect(ann.host.get_id())
            assert await cat.connect(found[0]) == ann.peer_id
            with trio.fail_after(5):
                while cat.peer_id not in ann.connected_peers():
                    await trio.sleep(0.01)

    run(scenario)


def test_a_lookup_never_returns_the_members_own_address() -> None:
    async def scenario() -> None:
        async with members(2) as [(ann, ann_dht), (bob, bob_dht)]:
            await ann.connect(bob.addresses()[0])
            # Announcing first must not hide the others behind one's own record.
            assert await ann_dht.provide(LOFTS)
            assert await bob_dht.provide(LOFTS)

            assert owners(await ann_dht.find_members(LOFTS)) == {bob.peer_id}
            assert owners(await bob_dht.find_members(LOFTS)) == {ann.peer_id}

    run(scenario)


def test_an_unknown_community_has_no_members() -> None:
    async def scenario() -> None:
        async with members(3) as [(ann, ann_dht), (bob, _), (cat, cat_dht)]:
            await ann.connect(bob.addresses()[0])
            await cat.connect(bob.addresses()[0])
            assert await ann_dht.provide(LOFTS)
            assert owners(await cat_dht.find_members(LOFTS)) == {ann.peer_id}

            with trio.fail_after(4):  # the lookup's own timeout plus a margin
                assert await cat_dht.find_members(GARDEN, timeout=2) == []

    run(scenario)


def test_keep_providing_announces_every_community_and_ends_with_the_dht() -> None:
    async def scenario() -> None:
        async with members(2) as [(bob, _), (cat, cat_dht)]:
            await cat.connect(bob.addresses()[0])
            async with Peer.running(Identity.generate(), LOOPBACK) as ann:
                await ann.connect(bob.addresses()[0])
                finished = trio.Event()

                async def announce(dht: CommunityDht) -> None:
                    await dht.keep_providing(lambda: [LOFTS, GARDEN])
                    finished.set()

                async with CommunityDht.running(ann) as ann_dht:
                    ann.start_soon(functools.partial(announce, ann_dht))
                    await wait_for_member(cat_dht, LOFTS, ann.peer_id)
                    await wait_for_member(cat_dht, GARDEN, ann.peer_id)
                # Ann's DHT has stopped (say, she went offline): the loop ends quietly
                # instead of failing on her still running host.
                with trio.fail_after(5):
                    await finished.wait()

    run(scenario)


def test_a_member_whose_peers_are_gone_gets_no_live_members_and_no_error() -> None:
    async def scenario() -> None:
        async with members(1) as [(cat, cat_dht)]:
            async with members(2) as [(ann, ann_dht), (bob, _)]:
                await ann.connect(bob.addresses()[0])
                await cat.connect(bob.addresses()[0])
                assert await ann_dht.provide(LOFTS)
                assert owners(await cat_dht.find_members(LOFTS)) == {ann.peer_id}
            # Ann and Bob have shut down; Cat still remembers their addresses. The lookup
            # ends within its timeout, with no error; at most it repeats Ann's stale
            # record, and dialling that fails with a clear error.
            assert cat.connected_peers() == []
            with trio.fail_after(4):
                found = await cat_dht.find_members(LOFTS, timeout=2)
            assert owners(found) <= {ann.peer_id}
            for address in found:
                with pytest.raises(P2PError, match="could not reach"):
                    await cat.connect(address, timeout=2)

    run(scenario)


def test_a_peer_that_never_answers_does_not_hold_up_a_lookup() -> None:
    async def scenario() -> None:
        async def silent(stream: trio.SocketStream) -> None:
            await trio.sleep_forever()  # accepts the connection, never speaks

        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1")
            )
            port = listener.socket.getsockname()[1]
            private = Ed25519PrivateKey(Identity.generate().signing_key)
            gone = ID.from_pubkey(private.get_public_key())
            async with members(1) as [(cat, cat_dht)]:
                # Cat remembers a member at an address that now swallows every packet.
                address = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
                cat.host.get_peerstore().add_addrs(gone, [address], 3600)
                with trio.fail_after(4):
                    assert await cat_dht.find_members(LOFTS, timeout=1) == []
            nursery.cancel_scope.cancel()

    run(scenario)


def test_misuse_is_a_p2p_error() -> None:
    async def scenario() -> None:
        async with members(1) as [(_, dht)]:
            with pytest.raises(P2PError, match="community id"):
                await dht.find_members(b"")
            with pytest.raises(P2PError, match="limit"):
                await dht.find_members(LOFTS, limit=0)
            with pytest.raises(P2PError, match="timeout"):
                await dht.find_members(LOFTS, timeout=0)
        with pytest.raises(P2PError, match="stopped"):
            await dht.find_members(LOFTS)
        with pytest.raises(P2PError, match="stopped"):
            await dht.provide(LOFTS)

    run(scenario)


def test_the_provider_key_is_fixed_and_apart_from_other_uses() -> None:
    # Members on different versions must derive the same key, or they never meet.
    key = provider_key(LOFTS)
    assert key.hex() == (
        "12202993aaf855be5185d56a84d7a968f5e5e576ee69e47f21a0d3aac7c39a7b25a5"
    )  # a SHA-256 multihash of b"kithnet/community-provider/1\x00" + the community id
    assert key[2:] == hashlib.sha256(b"kithnet/community-provider/1\x00" + LOFTS).digest()
    assert key[2:] != hashlib.sha256(LOFTS).digest()
    assert provider_key(GARDEN) != key
