"""Circuit relay v2 and hole punching (DCUtR) for members behind NAT (issue 4).

A member with a reachable address may opt in to relay for others (`RelayService`). A
member behind NAT reserves a slot on such a relay and hands out the circuit addresses
it gets back (`RelayClient.reserve`); anyone can then reach it through the relay
(`RelayClient.connect`). Once two members share a relayed connection, DCUtR tries to
replace it with a direct one.

What py-libp2p 0.8.1 does and does not do here, found by reading its source:
- its swarm never dials a `/p2p-circuit` address (network/swarm.py: "Skip relay
  (p2p-circuit) addresses"), so `Peer.connect` cannot reach one by itself:
  `RelayClient.connect` dials it through `CircuitV2Transport.dial`, which registers the
  relayed connection with the swarm; streams then open on it as on any other. Nothing
  redials a relayed connection that drops.
- its relay discovery waits for Identify; we reserve ourselves right after connecting.
- a relay enforces the reservation count, circuits per reserved member, and a data and
  time budget per circuit; the time budget is only checked when bytes flow, so an idle
  circuit outlives it. Per-IP limits (`HopConfig`) exist but nothing enforces them. Its
  book of open circuits is keyed by the dialing peer alone, so one circuit's end could
  cut another (fixed here, see `_HopProtocol`).
- DCUtR first dials the peer's known direct addresses (spec step 0), then runs the
  CONNECT/SYNC exchange over the relayed connection and both sides dial from their
  listen ports. On 127.0.0.1 either gives a direct connection: that proves the exchange
  and the wiring, and nothing about real NATs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import multiaddr
import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID
from libp2p.protocol_muxer.exceptions import MultiselectClientError, ProtocolNotSupportedError
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.exceptions import RelayConnectionError
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service

from kithnet.p2p.host import P2PError, Peer

logger = logging.getLogger(__name__)

CIRCUIT = "/p2p-circuit"
# Refresh a reservation when this share of its lifetime is left, and retry a failed
# refresh this often until it has run out.
REFRESH_WHEN_LEFT = 0.2
REFRESH_RETRY_SECONDS = 5.0


class RelayError(P2PError):
    """A relay refused or failed a reservation or a circuit; the message says why."""


@dataclass(frozen=True)
class RelayPolicy:
    """What a member who relays for others gives away.

    The defaults let a small community's members behind NAT stay reachable and sync
    through one member's machine, while capping what any one circuit can cost it.
    """

    max_reservations: int = 32  # members that can hold a slot at once
    reservation_ttl: int = 3600  # seconds; clients refresh before it runs out
    max_circuits_per_member: int = 4  # open circuits to one reserved member
    max_circuit_seconds: int = 30 * 60  # per circuit (checked when data flows)
    max_circuit_bytes: int = 32 * 1024 * 1024  # per circuit, both directions together

    def __post_init__(self) -> None:
        # py-libp2p reads a zero duration or data budget as "no limit".
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"RelayPolicy.{name} must be positive, not {value}")

    def limits(self) -> RelayLimits:
        """The same, as py-libp2p's relay takes it."""
        return RelayLimits(
            duration=self.max_circuit_seconds,
            data=self.max_circuit_bytes,
            max_circuit_conns=self.max_circuits_per_member,
            max_reservations=self.max_reservations,
            reservation_ttl=self.reservation_ttl,
        )


class _Unkept(dict[ID, tuple[INetStream, INetStream | None]]):
    """A book that keeps nothing (see _HopProtocol)."""

    def __setitem__(self, key: ID, value: tuple[INetStream, INetStream | None]) -> None:
        pass


class _HopProtocol(CircuitV2Protocol):
    """py-libp2p's relay, keeping track of each circuit by its own streams.

    py-libp2p books open circuits by the dialing peer alone (protocol.py,
    `_active_relays[source_addr]`) and, when any circuit ends, closes the one booked
    under its dialer: so when a member who has opened circuits to two others through
    this relay closes the first, the second is cut too. Here that book stays empty and
    each circuit closes its own two streams.
    """

    def __init__(self, host: Any, limits: RelayLimits) -> None:
        super().__init__(host, limits=limits, allow_hop=True)
        self._active_relays = _Unkept()
        # both streams of a circuit -> (streams, dialing peer, target peer)
        self.circuits: dict[frozenset[int], tuple[tuple[INetStream, INetStream], str, str]] = {}

    async def _relay_data(
        self,
        src_stream: INetStream,
        dst_stream: INetStream,
        peer_id: ID,
        deadline: float | None = None,
        circuit_data_limit: list[int] | None = None,
    ) -> None:
        # Called once for each direction of a circuit, in either order. The dialer's
        # stream is the one that came in on the hop protocol.
        key = frozenset((id(src_stream), id(dst_stream)))
        if src_stream.get_protocol() == HOP_PROTOCOL:
            dialer, target = src_stream, dst_stream
        else:
            dialer, target = dst_stream, src_stream
        self.circuits[key] = (
            (dialer, target),
            str(dialer.muxed_conn.peer_id),
            str(target.muxed_conn.peer_id),
        )
        try:
            await super()._relay_data(src_stream, dst_stream, peer_id, deadline, circuit_data_limit)
        finally:
            self.circuits.pop(key, None)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._close_stream(src_stream)
                await self._close_stream(dst_stream)

    async def close_circuits(self) -> None:
        for (first, second), _, _ in list(self.circuits.values()):
            await self._close_stream(first)
            await self._close_stream(second)


class RelayService:
    """This member relays for others (circuit relay v2 "hop"); opt-in.

    A peer that relays needs no RelayClient to be reached; if it runs one too, stop
    them together: each removes the shared handler for incoming circuits when it stops.
    """

    def __init__(self, peer: Peer, protocol: _HopProtocol, policy: RelayPolicy) -> None:
        self.peer = peer
        self.policy = policy
        self._protocol = protocol

    @classmethod
    @asynccontextmanager
    async def running(
        cls, peer: Peer, policy: RelayPolicy | None = None
    ) -> AsyncIterator[RelayService]:
        """Serve reservations and circuits on `peer` for as long as the block runs;
        circuits still open when it ends are closed."""
        policy = policy or RelayPolicy()
        protocol = _HopProtocol(peer.host, policy.limits())
        body_error: BaseException | None = None
        try:
            async with background_trio_service(protocol):
                await protocol.event_started.wait()
                try:
                    yield cls(peer, protocol, policy)
                except BaseException as exc:
                    body_error = exc
                    raise
        except BaseExceptionGroup as group:
            _raise_if_only(group, body_error)
            raise
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await protocol.close_circuits()

    def reserved_members(self) -> list[str]:
        """Peer ids holding a live reservation (connected and not expired)."""
        manager = self._protocol.resource_manager
        return [
            str(peer_id)
            for peer_id in list(manager._reservations)
            if manager.get_reservation(peer_id) is not None
        ]

    def circuits(self) -> list[tuple[str, str]]:
        """The circuits open through this relay, as (dialing peer, target peer)."""
        return [(source, target) for _, source, target in self._protocol.circuits.values()]


@dataclass(frozen=True)
class Reservation:
    """A slot on a relay: where others can dial us, and until when (Unix seconds)."""

    relay_id: str
    relay_address: str
    expires_at: float
    addresses: tuple[str, ...]  # circuit addresses ending in /p2p-circuit/p2p/<our id>


class _DCUtR(DCUtRProtocol):
    """DCUtR that may leave initiating to explicit `upgrade_to_direct` calls."""

    def __init__(self, host: Any, *, drive: bool) -> None:
        super().__init__(host)
        self._drive = drive

    async def _auto_drive_loop(self) -> None:
        if self._drive:
            await super()._auto_drive_loop()


class RelayClient:
    """Reserve slots on relays, accept relayed connections, dial circuit addresses, and
    upgrade relayed connections to direct ones with DCUtR."""

    def __init__(
        self,
        peer: Peer,
        transport: CircuitV2Transport,
        dcutr: DCUtRProtocol | None,
        nursery: trio.Nursery,
    ) -> None:
        self.peer = peer
        self.dcutr = dcutr
        self.reservations: dict[str, Reservation] = {}  # by relay peer id
        self._transport = transport
        self._nursery = nursery
        self._refreshers: dict[str, trio.CancelScope] = {}

    @classmethod
    @asynccontextmanager
    async def running(
        cls, peer: Peer, *, hole_punching: bool = True, upgrade_automatically: bool = True
    ) -> AsyncIterator[RelayClient]:
        """Accept relayed connections on `peer`. With `hole_punching`, answer peers'
        DCUtR requests and, with `upgrade_automatically`, also try to upgrade each
        relayed connection to a direct one (checked every 2 s, 3 attempts per peer)."""
        # The "stop" side: the relay opens a stream to us for each circuit.
        protocol = CircuitV2Protocol(peer.host, allow_hop=False)
        # Without the CLIENT role the transport does not first reserve a slot on every
        # relay it dials through (transport.py, dial_peer_info).
        transport = CircuitV2Transport(peer.host, protocol, RelayConfig(roles=RelayRole.STOP))
        dcutr = _DCUtR(peer.host, drive=upgrade_automatically) if hole_punching else None
        body_error: BaseException | None = None
        try:
            async with (
                background_trio_service(protocol),
                background_trio_service(dcutr) if dcutr else nullcontext(),
                trio.open_nursery() as nursery,
                _circuit_dialer_installed(peer, cls(peer, transport, dcutr, nursery)) as client,
            ):
                await protocol.event_started.wait()
                if dcutr is not None:
                    await dcutr.event_started.wait()
                try:
                    yield client
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    nursery.cancel_scope.cancel()  # the reservation refreshers
        except BaseExceptionGroup as group:
            _raise_if_only(group, body_error)
            raise

    async def reserve(self, relay_address: str, timeout: float = 15) -> list[str]:
        """Connect to the relay at `relay_address` (ending in /p2p/<relay id>), reserve a
        slot, keep it refreshed, and return the circuit addresses others can dial us on."""
        reservation = await self._reserve(relay_address, timeout)
        relay_id = reservation.relay_id
        old = self._refreshers.pop(relay_id, None)
        if old is not None:
            old.cancel()
        scope = trio.CancelScope()
        self._refreshers[relay_id] = scope
        self._nursery.start_soon(self._keep_refreshed, relay_id, relay_address, scope)
        return list(reservation.addresses)

    async def _reserve(self, relay_address: str, timeout: float) -> Reservation:
        relay_id = await self.peer.connect(relay_address)
        try:
            with trio.fail_after(timeout):
                stream = await self.peer.host.new_stream(ID.from_base58(relay_id), [HOP_PROTOCOL])
        except trio.TooSlowError as exc:
            raise RelayError(f"relay {relay_id} did not answer within {timeout} s") from exc
        except Exception as exc:
            if _protocol_refused(exc):
                raise RelayError(
                    f"{relay_id} does not relay for others: it has not opted in"
                ) from exc
            raise RelayError(f"could not ask {relay_id} for a reservation: {exc}") from exc
        try:
            with trio.fail_after(timeout):
                await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
                response = await read_delimited_msg(stream, HopMessage)
        except trio.TooSlowError as exc:
            raise RelayError(f"relay {relay_id} did not answer within {timeout} s") from exc
        except Exception as exc:
            raise RelayError(f"relay {relay_id} broke off the reservation: {exc}") from exc
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await stream.close()
        status = response.status if response.HasField("status") else StatusCode.UNUSED
        if status != StatusCode.OK:
            raise RelayError(f"relay {relay_id} refused the reservation: {_status_name(status)}")
        expires_at = float(response.reservation.expire)
        if expires_at <= time.time():
            raise RelayError(f"relay {relay_id} granted a reservation that has already expired")
        reservation = Reservation(
            relay_id=relay_id,
            relay_address=relay_address,
            expires_at=expires_at,
            addresses=self._circuit_addresses(relay_address, relay_id, response),
        )
        self.reservations[relay_id] = reservation
        logger.info("reserved on relay %s until %s", relay_id, expires_at)
        return reservation

    def _circuit_addresses(
        self, relay_address: str, relay_id: str, response: HopMessage
    ) -> tuple[str, ...]:
        """The address we reached the relay on first, then those the relay announced."""
        relay_addresses = [relay_address]
        for raw in response.reservation.addrs:
            try:
                address = str(multiaddr.Multiaddr(bytes(raw)))
            except Exception as exc:  # a relay's bad address costs only that address
                logger.debug("relay %s announced a bad address: %s", relay_id, exc)
                continue
            if CIRCUIT not in address and address.endswith(f"/p2p/{relay_id}"):
                relay_addresses.append(address)
        suffix = f"{CIRCUIT}/p2p/{self.peer.peer_id}"
        return tuple(dict.fromkeys(address + suffix for address in relay_addresses))

    async def _keep_refreshed(
        self, relay_id: str, relay_address: str, scope: trio.CancelScope
    ) -> None:
        """Renew the reservation on `relay_id` before it runs out, for as long as we run;
        drop it once it has run out and the relay cannot be reached."""
        with scope:
            while (reservation := self.reservations.get(relay_id)) is not None:
                left = reservation.expires_at - time.time()
                # Expiry travels in whole seconds: refresh at least a second early.
                await trio.sleep(max(0.5, left - max(1.0, left * REFRESH_WHEN_LEFT)))
                while True:
                    try:
                        await self._reserve(relay_address, timeout=15)
                        break
                    except P2PError as exc:
                        logger.warning("could not renew reservation on %s: %s", relay_id, exc)
                    if time.time() >= reservation.expires_at:
                        self.reservations.pop(relay_id, None)
                        return
                    await trio.sleep(REFRESH_RETRY_SECONDS)

    async def connect(self, address: str, timeout: float = 20) -> str:
        """Connect to a member at a full multiaddr, through a relay if it contains
        /p2p-circuit; returns their peer id."""
        if CIRCUIT not in address:
            return await self.peer.connect(address)
        try:
            target = multiaddr.Multiaddr(address)
            _, peer_id = self._transport.parse_circuit_ma(target)
        except Exception as exc:  # multiaddr raises several unrelated types
            raise RelayError(f"{address!r} is not a circuit address: {exc}") from exc
        if self.peer.host.get_network().connections.get(peer_id):
            return str(peer_id)
        try:
            with trio.fail_after(timeout):
                await self._transport.dial(target)
        except trio.TooSlowError as exc:
            raise RelayError(f"could not reach {address} within {timeout} s") from exc
        except Exception as exc:
            if _protocol_refused(exc):
                raise RelayError(f"could not reach {address}: the relay does not relay") from exc
            status = _relay_status(exc)
            why = f"the relay answered {_status_name(status)}" if status is not None else exc
            raise RelayError(f"could not reach {address}: {why}") from exc
        return str(peer_id)

    async def upgrade_to_direct(self, peer_id: str) -> bool:
        """Try now to replace the relayed connection to `peer_id` with a direct one
        (DCUtR); True if a direct connection exists afterwards."""
        if self.dcutr is None:
            raise RelayError("hole punching is off for this client")
        return bool(await self.dcutr.initiate_hole_punch(ID.from_base58(peer_id)))


@asynccontextmanager
async def _circuit_dialer_installed(peer: Peer, client: RelayClient) -> AsyncIterator[RelayClient]:
    """Let `peer.connect` dial circuit addresses through `client` while it runs."""
    peer.circuit_dialer = client.connect
    try:
        yield client
    finally:
        peer.circuit_dialer = None


def connection_kinds(peer: Peer, peer_id: str) -> set[Literal["direct", "relayed"]]:
    """How `peer` is connected to `peer_id` right now: directly, through a relay, both."""
    kinds: set[Literal["direct", "relayed"]] = set()
    for conn in peer.host.get_network().connections.get(ID.from_base58(peer_id), []):
        addresses = [str(a) for a in conn.get_transport_addresses()]
        if any(CIRCUIT in a for a in addresses):
            kinds.add("relayed")
        elif addresses:
            kinds.add("direct")
    return kinds


def _raise_if_only(group: BaseExceptionGroup[BaseException], error: BaseException | None) -> None:
    """Raise `error` itself if `group` is nothing but trio's nurseries wrapping it, so a
    caller sees the exception its own block raised."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        if inner is error:
            break
        inner = inner.exceptions[0]
    if isinstance(error, Exception) and inner is error:
        raise error from None


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or while handling."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _protocol_refused(exc: BaseException) -> bool:
    """Whether the other side answered "na" to the relay protocol: it does not relay.
    (py-libp2p drops the ProtocolNotSupportedError and keeps only its message.)"""
    return any(
        isinstance(e, ProtocolNotSupportedError)
        or (isinstance(e, MultiselectClientError) and "not supported" in str(e))
        for e in _causes(exc)
    )


def _relay_status(exc: BaseException) -> int | None:
    """The status code a relay refused a circuit with, if that is why `exc` happened."""
    for e in _causes(exc):
        if isinstance(e, RelayConnectionError) and e.status_code is not None:
            return int(e.status_code)
    return None


def _status_name(status: int) -> str:
    try:
        return StatusCode(status).name
    except ValueError:
        return f"status {status}"


__all__ = [
    "RelayClient",
    "RelayError",
    "RelayPolicy",
    "RelayService",
    "Reservation",
    "connection_kinds",
]
