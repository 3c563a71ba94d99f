"""Circuit relay v2 and DCUtR with real libp2p hosts on 127.0.0.1: a member who opted in
relays for a member "behind NAT" (one whom the dialer knows only by a circuit address),
a member who did not opt in refuses, a relay keeps to its limits, and a relayed
connection is upgraded to a direct one. Loopback proves the protocols and the wiring,
not traversal of a real NAT."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from kithnet.crypto.identity import Identity
from kithnet.p2p.host import P2PError, Peer
from kithnet.p2p.relay import (
    RelayClient,
    RelayError,
    RelayPolicy,
    RelayService,
    connection_kinds,
)

ECHO = "/kithnet-test/echo/1"
TEST_TIMEOUT = 15


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(TEST_TIMEOUT):
            await scenario()

    trio.run(main)


@asynccontextmanager
async def members(count: int) -> AsyncIterator[list[Peer]]:
    """`count` running hosts on 127.0.0.1."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(Peer.running(Identity.generate())) for _ in range(count)
        ]


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll `condition` every 10 ms; fail if it is not true within `timeout` seconds."""
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"condition not met within {timeout} s")


async def echo(stream: Any) -> None:
    """Send back everything received until the other side closes. (py-libp2p's read
    raises at the end of a stream, and an exception escaping a handler stops the host.)"""
    try:
        while data := await stream.read(65536):
            await stream.write(data)
    except Exception:  # end of stream, or the circuit was cut
        pass
    finally:
        await stream.close()


async def round_trip(dialer: Peer, peer_id: str, payload: bytes) -> bytes:
    """Send `payload` on an echo stream and return what came back (less if it broke)."""
    stream = await dialer.open_stream(peer_id, ECHO)
    received = bytearray()

    async def send() -> None:
        for start in range(0, len(payload), 16384):
            await stream.write(payload[start : start + 16384])

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while len(received) < len(payload):
                received += await stream.read(65536)
    except Exception:  # the circuit was cut: what arrived so far is the answer
        return bytes(received)
    await stream.close()
    return bytes(received)


def test_a_member_known_only_by_a_circuit_address_is_reached_through_the_relay() -> None:
    async def scenario() -> None:
        async with (
            members(3) as (relay, bob, cat),
            RelayService.running(relay) as service,
            RelayClient.running(bob, hole_punching=False) as bob_client,
            RelayClient.running(cat, hole_punching=False) as cat_client,
        ):
            bob.set_stream_handler(ECHO, echo)
            addresses = await bob_client.reserve(relay.addresses()[0])
            assert addresses[0] == f"{relay.addresses()[0]}/p2p-circuit/p2p/{bob.peer_id}"
            assert service.reserved_members() == [bob.peer_id]
            assert bob_client.reservations[relay.peer_id].addresses == tuple(addresses)

            # Cat knows nothing of Bob but this address.
            assert await cat_client.connect(addresses[0]) == bob.peer_id
            assert connection_kinds(cat, bob.peer_id) == {"relayed"}
            assert connection_kinds(bob, cat.peer_id) == {"relayed"}
            assert await round_trip(cat, bob.peer_id, b"hello through the relay") == (
                b"hello through the relay"
            )
            payload = bytes(range(256)) * 1024  # 256 KiB, many relayed frames
            assert await round_trip(cat, bob.peer_id, payload) == payload
            # Streams in the other direction ride the same relayed connection.
            cat.set_stream_handler(ECHO, echo)
            assert await round_trip(bob, cat.peer_id, b"and back") == b"and back"

    run(scenario)


def test_a_member_who_did_not_opt_in_refuses_to_relay() -> None:
    async def scenario() -> None:
        async with (
            members(3) as (plain, bob, cat),
            RelayClient.running(bob, hole_punching=False) as bob_client,
            RelayClient.running(cat, hole_punching=False) as cat_client,
        ):
            with pytest.raises(RelayError, match="does not relay for others: it has not opted in"):
                await bob_client.reserve(plain.addresses()[0])
            assert bob_client.reservations == {}
            # Nor does it carry circuits.
            circuit = f"{plain.addresses()[0]}/p2p-circuit/p2p/{bob.peer_id}"
            with pytest.raises(RelayError, match="the relay does not relay"):
                await cat_client.connect(circuit)
            assert connection_kinds(cat, bob.peer_id) == set()

    run(scenario)


def test_a_relay_keeps_to_its_reservation_limit_and_serves_only_reserved_members() -> None:
    async def scenario() -> None:
        async with (
            members(4) as (relay, bob, dan, cat),
            RelayService.running(relay, RelayPolicy(max_reservations=1)),
            RelayClient.running(bob, hole_punching=False) as bob_client,
            RelayClient.running(dan, hole_punching=False) as dan_client,
            RelayClient.running(cat, hole_punching=False) as cat_client,
        ):
            await bob_client.reserve(relay.addresses()[0])
            with pytest.raises(
                RelayError, match="refused the reservation: RESOURCE_LIMIT_EXCEEDED"
            ):
                await dan_client.reserve(relay.addresses()[0])
            # Bob may renew his own slot even though the relay is full.
            await bob_client.reserve(relay.addresses()[0])

            dan_circuit = f"{relay.addresses()[0]}/p2p-circuit/p2p/{dan.peer_id}"
            with pytest.raises(RelayError, match="the relay answered NO_RESERVATION"):
                await cat_client.connect(dan_circuit)
            assert connection_kinds(cat, dan.peer_id) == set()

    run(scenario)


def test_a_circuit_is_cut_once_it_has_carried_its_data_budget() -> None:
    async def scenario() -> None:
        budget = 64 * 1024
        async with (
            members(4) as (relay, bob, cat, dan),
            RelayService.running(relay, RelayPolicy(max_circuit_bytes=budget)),
            RelayClient.running(bob, hole_punching=False) as bob_client,
            RelayClient.running(cat, hole_punching=False) as cat_client,
            RelayClient.running(dan, hole_punching=False) as dan_client,
        ):
            bob.set_stream_handler(ECHO, echo)
            addresses = await bob_client.reserve(relay.addresses()[0])
            await cat_client.connect(addresses[0])
            assert await round_trip(cat, bob.peer_id, b"small") == b"small"

            payload = b"x" * (4 * budget)
            assert len(await round_trip(cat, bob.peer_id, payload)) < len(payload)
            # (On loopback py-libp2p's auto-connector may then dial Bob directly, at the
            # address Identify gave Cat: only the relayed connection is sure to go.)
            await wait_until(lambda: "relayed" not in connection_kinds(cat, bob.peer_id))

            # The budget is per circuit: Bob's reservation still brings others to him.
            await dan_client.connect(addresses[0])
            assert await round_trip(dan, bob.peer_id, b"still reachable") == b"still reachable"

    run(scenario)


def test_closing_one_circuit_leaves_the_others_through_the_same_relay() -> None:
    async def scenario() -> None:
        async with (
            members(4) as (relay, bob, dan, cat),
            RelayService.running(relay) as service,
            RelayClient.running(bob, hole_punching=False) as bob_client,
            RelayClient.running(dan, hole_punching=False) as dan_client,
            RelayClient.running(cat, hole_punching=False) as cat_client,
        ):
            dan.set_stream_handler(ECHO, echo)
            await cat_client.connect((await bob_client.reserve(relay.addresses()[0]))[0])
            await cat_client.connect((await dan_client.reserve(relay.addresses()[0]))[0])
            assert sorted(service.circuits()) == sorted(
                [(cat.peer_id, bob.peer_id), (cat.peer_id, dan.peer_id)]
            )

            await cat.host.disconnect(bob.host.get_id())
            await wait_until(lambda: service.circuits() == [(cat.peer_id, dan.peer_id)])
            # (py-libp2p's auto-connector may add a direct connection to Dan on loopback.)
            assert "relayed" in connection_kinds(cat, dan.peer_id)
            assert await round_trip(cat, dan.peer_id, b"still open") == b"still open"
            assert service.circuits() == [(cat.peer_id, dan.peer_id)]

    run(scenario)


def test_a_reservation_is_renewed_before_it_runs_out() -> None:
    async def scenario() -> None:
        async with (
            members(3) as (relay, bob, cat),
            RelayService.running(relay, RelayPolicy(reservation_ttl=2)) as service,
            RelayClient.running(bob, hole_punching=False) as bob_client,
            RelayClient.running(cat, hole_punching=False) as cat_client,
        ):
            bob.set_stream_handler(ECHO, echo)
            addresses = await bob_client.reserve(relay.addresses()[0])
            first = bob_client.reservations[relay.peer_id].expires_at
            await wait_until(lambda: bob_client.reservations[relay.peer_id].expires_at > first)
            await wait_until(lambda: time.time() > first + 0.5)
            # Past the first expiry, the relay still holds Bob's slot and connects to him.
            assert service.reserved_members() == [bob.peer_id]
            await cat_client.connect(addresses[0])
            assert await round_trip(cat, bob.peer_id, b"still here") == b"still here"

    run(scenario)


def test_hole_punching_replaces_a_relayed_connection_with_a_direct_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        async with (
            members(3) as (relay, bob, cat),
            RelayService.running(relay),
            RelayClient.running(bob, upgrade_automatically=False) as bob_client,
            RelayClient.running(cat, upgrade_automatically=False) as cat_client,
        ):
            bob.set_stream_handler(ECHO, echo)
            addresses = await bob_client.reserve(relay.addresses()[0])
            await cat_client.connect(addresses[0])
            assert connection_kinds(cat, bob.peer_id) == {"relayed"}

            # Identify over the circuit tells Cat Bob's listen address; forget it, so that
            # Cat cannot simply dial it (DCUtR's step 0) and the CONNECT/SYNC exchange
            # over the relay must supply it.
            store = cat.host.get_peerstore()
            bob_id = bob.host.get_id()
            await wait_until(lambda: any("p2p-circuit" not in str(a) for a in store.addrs(bob_id)))
            store.clear_addrs(bob_id)

            # Bob's NAT would drop Cat's hole-punching SYN. On loopback it can reach Bob's
            # listener instead, and as both ends then take the responder role, that
            # handshake stalls: drop it here as the NAT would. Bob's own dial from his
            # listen port, made on receiving SYNC, makes the connection.
            async def dropped_by_nat(*args: object) -> None:
                raise OSError("dropped by the other side's NAT")

            monkeypatch.setattr(cat.host.get_network(), "dial_addr_as_responder", dropped_by_nat)

            assert await cat_client.upgrade_to_direct(bob.peer_id)
            assert cat_client.dcutr is not None
            assert cat_client.dcutr._hole_punch_attempts[bob_id] == 1  # the exchange ran
            assert "direct" in connection_kinds(cat, bob.peer_id)
            assert "direct" in connection_kinds(bob, cat.peer_id)
            assert await round_trip(cat, bob.peer_id, b"direct now") == b"direct now"

    run(scenario)


def test_a_relayed_connection_is_upgraded_without_being_asked() -> None:
    async def scenario() -> None:
        async with (
            members(3) as (relay, bob, cat),
            RelayService.running(relay),
            RelayClient.running(bob) as bob_client,
            RelayClient.running(cat) as cat_client,
        ):
            addresses = await bob_client.reserve(relay.addresses()[0])
            await cat_client.connect(addresses[0])
            # DCUtR looks for relayed connections every 2 s; on loopback the peer's
            # listen address, learned by Identify over the circuit, is dialable.
            await wait_until(lambda: "direct" in connection_kinds(cat, bob.peer_id))

    run(scenario)


def test_a_relay_policy_refuses_a_zero_limit_which_py_libp2p_reads_as_none() -> None:
    with pytest.raises(ValueError, match="max_circuit_bytes must be positive"):
        RelayPolicy(max_circuit_bytes=0)


def test_peer_connect_dials_circuit_addresses_while_a_relay_client_runs() -> None:
    async def scenario() -> None:
        async with (
            members(3) as (relay, bob, cat),
            RelayService.running(relay),
            RelayClient.running(bob, hole_punching=False) as bob_client,
        ):
            bob.set_stream_handler(ECHO, echo)
            addresses = await bob_client.reserve(relay.addresses()[0])
            with pytest.raises(P2PError, match="run a RelayClient"):
                await cat.connect(addresses[0])
            async with RelayClient.running(cat, hole_punching=False):
                assert await cat.connect(addresses[0]) == bob.peer_id
                assert connection_kinds(cat, bob.peer_id) == {"relayed"}
                reply = await round_trip(cat, bob.peer_id, b"via peer.connect")
                assert reply == b"via peer.connect"

    run(scenario)
