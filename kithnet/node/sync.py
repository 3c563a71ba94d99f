"""Catch-up sync of one community between two members' stores (the `/kithnet/sync/1`
conversation, docs/protocol.md "Catch-up sync"), as transport-free state machines:
each side takes a decoded message and returns the messages to send back.

The client opens with a Negentropy message over the (created_at, id) of every record it
holds for the community (the genesis included); the two sides reconcile; the client
sends the records the server lacks, and the server sends, with each reply, the records
the client's id lists showed it lacks (so that no id travels twice), never a record
outside the community. Records sent are sorted by
(created_at, id), so that the receiving store only appends, and pass its ingest pipeline
like any record from the network.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import msgpack

from kithnet.core.envelope import decode_stored
from kithnet.core.errors import WireError
from kithnet.p2p.negentropy import Negentropy, NegentropyError, Storage

SYNC_VERSION = 1
MAX_FRAME = 4 * 1024 * 1024  # a frame longer than this ends the conversation
NEGENTROPY_FRAME_LIMIT = 256 * 1024
RECORDS_PER_MESSAGE_BYTES = 512 * 1024
IDS_PER_WANT = 4096

Message = list[Any]


class SyncError(Exception):
    """The other side broke the sync protocol; the conversation ends."""


MAX_WANTS = 64  # `want` messages a server answers in one sync
MAX_WANTED_IDS = 4096  # ids in one `want`


class SyncStore(Protocol):
    """What sync needs of a store (kithnet.localstore.store.Store provides it)."""

    def sync_items(self, community: bytes) -> list[tuple[int, bytes]]: ...

    def envelopes_for(self, community: bytes, ids: Sequence[bytes]) -> list[bytes]: ...

    def ingest(self, envelopes: Sequence[bytes]) -> Sequence[Any]: ...


def encode_frame(message: Message) -> bytes:
    """A length-prefixed msgpack frame."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise SyncError("a sync message is larger than a frame may be")
    return struct.pack(">I", len(body)) + body


class FrameReader:
    """Splits a byte stream into messages; refuses oversized or malformed frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer.extend(data)
        messages = []
        while len(self._buffer) >= 4:
            (size,) = struct.unpack(">I", self._buffer[:4])
            if size > MAX_FRAME:
                raise SyncError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
            if len(self._buffer) < 4 + size:
                break
            body = bytes(self._buffer[4 : 4 + size])
            del self._buffer[: 4 + size]
            messages.append(_decode(body))
        return messages


def _decode(body: bytes) -> Message:
    try:
        message = msgpack.unpackb(body, raw=False, max_bin_len=MAX_FRAME, max_array_len=100_000)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise SyncError(f"a sync frame is not readable: {exc}") from exc
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise SyncError("a sync frame is not a message")
    return message


def _byte_list(value: object, what: str, size: int | None = None) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise SyncError(f"{what} must be a list of byte strings")
    if size is not None and any(len(v) != size for v in value):
        raise SyncError(f"{what} must hold {size}-byte ids")
    return value


def _record_batches(envelopes: list[bytes]) -> Iterator[Message]:
    batch: list[bytes] = []
    size = 0
    for envelope in envelopes:
        if batch and size + len(envelope) > RECORDS_PER_MESSAGE_BYTES:
            yield ["records", batch]
            batch, size = [], 0
        batch.append(envelope)
        size += len(envelope)
    if batch:
        yield ["records", batch]


class SyncClient:
    """The side that opens a sync of `community` (the member who just connected)."""

    def __init__(self, store: SyncStore, community: bytes, wire_id: bytes | None = None) -> None:
        self.store = store
        self.community = community
        self.wire_id = community if wire_id is None else wire_id  # a private one's handle
        self._negentropy = Negentropy(Storage(store.sync_items(community)), NEGENTROPY_FRAME_LIMIT)
        self._reconciled = False
        self._awaited: set[bytes] = set()
        self._got: set[bytes] = set()
        self.done = False
        self.refused = 0  # records that failed decoding or validation
        self.round_trips = 0
        self.sent = 0  # records sent to the server
        self.received = 0  # records received from it
        self.bytes_out = 0  # on the wire, counted by the transport
        self.bytes_in = 0

    @property
    def awaiting(self) -> int:
        """Records the reconciliation showed we lack that have not come yet."""
        return len(self._awaited)

    @property
    def reconciled(self) -> bool:
        """Whether both sides know what the other lacks (so `awaiting` is complete)."""
        return self._reconciled

    def start(self) -> list[Message]:
        return [["open", SYNC_VERSION, self.wire_id, self._negentropy.initiate()]]

    def handle(self, message: Message) -> list[Message]:
        kind = message[0]
        out: list[Message] = []
        if kind == "neg" and not self._reconciled and len(message) == 2:
            try:
                following, have, need = self._negentropy.reconcile_client(message[1])
            except NegentropyError as exc:
                raise SyncError(f"the server's reconciliation message is wrong: {exc}") from exc
            self.round_trips += 1
            if have:
                envelopes = self.store.envelopes_for(self.community, have)
                self.sent += len(envelopes)
                out.extend(_record_batches(envelopes))
            # The server sends what we lack without being asked (it saw our ids); some
            # may have come already, pushed for a range listed again now.
            self._awaited.update(set(need) - self._got)
            if following is not None:
                out.append(["neg", following])
            else:
                self._reconciled = True
                # The server pushes what our id lists showed we lack; what its own id
                # lists showed (ranges we had only fingerprinted) it cannot know we lack:
                # ask for those. It skips any it pushed already, so none comes twice.
                missing = sorted(self._awaited - self._got)
                for start in range(0, len(missing), MAX_WANTED_IDS):
                    out.append(["want", missing[start : start + MAX_WANTED_IDS]])
        elif kind == "records" and len(message) == 2:
            envelopes = _byte_list(message[1], "records")
            self.refused += _refused(self.store.ingest(envelopes))
            self.received += len(envelopes)
            got = _ids_of(envelopes)
            self._got |= got
            self._awaited -= got
        elif kind == "error":
            raise SyncError(f"the server ended the sync: {message[1:]!r}")
        else:
            raise SyncError(f"unexpected {kind!r} message")
        if self._reconciled and not self._awaited and not self.done:
            self.done = True
            out.append(["done"])
        return out


def _refused(outcomes: Sequence[Any]) -> int:
    """Records a peer should not have sent: malformed, forged or invalid (a record
    refused by authority may only look so for want of an earlier one, and one dated
    ahead of our clock may be honest if our clock is behind)."""
    return sum(
        1
        for o in outcomes
        if o.status == "rejected"
        and o.reason not in ("not_authorised", "pending_full", "clock_skew")
    )


def _ids_of(envelopes: list[bytes]) -> set[bytes]:
    ids = set()
    for envelope in envelopes:
        try:
            ids.add(decode_stored(envelope).id)
        except WireError:
            continue  # the store counts it; it simply is not what we awaited
    return ids


class SyncServer:
    """The side that answers (any member serves the history it holds)."""

    def __init__(
        self, store: SyncStore, serves: Callable[[bytes], bytes | None] = lambda c: c
    ) -> None:
        """`serves` maps the id a client names (a private community's handle) to the
        community this server holds, or None if it holds none by that name."""
        self.store = store
        self._serves = serves
        self._wants = 0
        self.refused = 0  # records that failed decoding or validation
        self.community: bytes | None = None
        self._negentropy: Negentropy | None = None
        self._pushed: set[bytes] = set()
        self.done = False
        self.sent = 0
        self.received = 0

    def handle(self, message: Message) -> list[Message]:
        kind = message[0]
        if kind == "open" and self._negentropy is None and len(message) == 4:
            version, community, opening = message[1:]
            if version != SYNC_VERSION:
                return [["error", "version", SYNC_VERSION]]
            if not isinstance(community, bytes) or len(community) != 32:
                raise SyncError("the community id must be 32 bytes")
            served = self._serves(community)
            if served is None:
                self.done = True
                return [["error", "unknown_community"]]
            self.community = community = served
            storage = Storage(self.store.sync_items(community))
            self._negentropy = Negentropy(storage, NEGENTROPY_FRAME_LIMIT)
            return self._reconcile(opening)
        if self._negentropy is None or self.community is None:
            raise SyncError(f"{kind!r} before the sync was opened")
        if kind == "neg" and len(message) == 2:
            return self._reconcile(message[1])
        if kind == "want" and len(message) == 2:
            self._wants += 1
            if self._wants > MAX_WANTS:
                raise SyncError(f"more than {MAX_WANTS} want messages in one sync")
            ids = _byte_list(message[1], "wanted ids", 32)
            if len(ids) > MAX_WANTED_IDS:
                raise SyncError(f"a want of {len(ids)} ids is over the {MAX_WANTED_IDS} limit")
            ids = [i for i in ids if i not in self._pushed]  # sent already: in flight
            self._pushed.update(ids)
            envelopes = self.store.envelopes_for(self.community, ids)
            self.sent += len(envelopes)
            return list(_record_batches(envelopes))
        if kind == "records" and len(message) == 2:
            envelopes = _byte_list(message[1], "records")
            self.refused += _refused(self.store.ingest(envelopes))
            self.received += len(envelopes)
            return []
        if kind == "done":
            self.done = True
            return []
        raise SyncError(f"unexpected {kind!r} message")

    def _reconcile(self, data: object) -> list[Message]:
        """The Negentropy reply, then the records the client showed it lacks."""
        assert self._negentropy is not None
        assert self.community is not None
        if not isinstance(data, bytes):
            raise SyncError("a reconciliation message must be bytes")
        try:
            reply, lacking = self._negentropy.reconcile_server(data)
        except NegentropyError as exc:
            raise SyncError(f"the client's reconciliation message is wrong: {exc}") from exc
        lacking = [i for i in lacking if i not in self._pushed]  # a range can come twice
        self._pushed.update(lacking)
        envelopes = self.store.envelopes_for(self.community, lacking) if lacking else []
        self.sent += len(envelopes)
        return [["neg", reply], *_record_batches(envelopes)]


async def read_one(stream: Any) -> Any:
    """Read exactly one frame from a stream (a request or an answer of one message)."""
    reader = FrameReader()
    while True:
        data = await stream.read(64 * 1024)
        if not data:
            raise SyncError("the stream ended before a whole message")
        messages = reader.feed(data)
        if messages:
            return messages[0]
