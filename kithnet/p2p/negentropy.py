"""Range-based set reconciliation in the Negentropy protocol's V1 message format (as the
hoytech/negentropy repository specifies it and Nostr's NIP-77 uses it).

Pure: bytes in, bytes out, no I/O, so that it can be driven by any transport and checked
against other implementations of the same format. Each side holds a set of
(timestamp, 32-byte id) items; for Kithnet the timestamp is a record's `created_at` and
the id its record id. The client calls `initiate()`, sends the message, and feeds each
reply to `reconcile_client()` until it returns no message; by then it knows the ids it
has that the server lacks ("have") and those the server has that it lacks ("need"). The
server answers each message with `reconcile()`.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

PROTOCOL_VERSION = 0x61
ID_SIZE = 32
FINGERPRINT_SIZE = 16
INFINITY = 2**64 - 1  # the reserved "infinity" timestamp
BUCKETS = 16
MIN_FRAME_SIZE_LIMIT = 4096
_MODE_SKIP, _MODE_FINGERPRINT, _MODE_IDLIST = 0, 1, 2
_MOD = 2**256


class NegentropyError(Exception):
    """A message is malformed or breaks the protocol."""


def encode_varint(value: int) -> bytes:
    """Base-128 digits, most significant first, high bit set on all but the last."""
    if value < 0:
        raise ValueError("varints are unsigned")
    digits = [value & 0x7F]
    value >>= 7
    while value:
        digits.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(digits))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise NegentropyError("the message ends in the middle of a field")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def varint(self) -> int:
        value = 0
        for _ in range(10):  # 64 bits fit in 10 digits
            byte = self.take(1)[0]
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return value
        raise NegentropyError("a varint is longer than 64 bits")


@dataclass(frozen=True, slots=True)
class Bound:
    """An exclusive upper bound: a timestamp and a prefix of an id (zero-padded)."""

    timestamp: int
    prefix: bytes = b""

    def key(self) -> tuple[int, bytes]:
        return (self.timestamp, self.prefix.ljust(ID_SIZE, b"\x00"))


_INFINITE = Bound(INFINITY)


def _minimal_bound(previous: tuple[int, bytes], current: tuple[int, bytes]) -> Bound:
    """The shortest bound that separates `previous` from `current` (which follows it)."""
    if current[0] != previous[0]:
        return Bound(current[0])
    shared = 0
    while shared < ID_SIZE and current[1][shared] == previous[1][shared]:
        shared += 1
    return Bound(current[0], current[1][: shared + 1])


class Storage:
    """A sealed, sorted set of (timestamp, id) items with O(1) range fingerprints."""

    def __init__(self, items: Iterable[tuple[int, bytes]]) -> None:
        keyed = sorted(set(items))
        for timestamp, item_id in keyed:
            if not 0 <= timestamp < INFINITY:
                raise ValueError(f"timestamp {timestamp} is out of range")
            if len(item_id) != ID_SIZE:
                raise ValueError("ids are 32 bytes")
        self.items = keyed
        self._sums = [0]
        total = 0
        for _, item_id in keyed:
            total = (total + int.from_bytes(item_id, "little")) % _MOD
            self._sums.append(total)

    def __len__(self) -> int:
        return len(self.items)

    def lower_bound(self, begin: int, end: int, bound: Bound) -> int:
        """The first index in [begin, end) whose item is not below `bound`."""
        return bisect.bisect_left(self.items, bound.key(), begin, end)

    def fingerprint(self, lower: int, upper: int) -> bytes:
        total = (self._sums[upper] - self._sums[lower]) % _MOD
        digest = hashlib.sha256(total.to_bytes(ID_SIZE, "little") + encode_varint(upper - lower))
        return digest.digest()[:FINGERPRINT_SIZE]


class Negentropy:
    """One side of a reconciliation over `storage`."""

    def __init__(self, storage: Storage, frame_size_limit: int = 0) -> None:
        if frame_size_limit and frame_size_limit < MIN_FRAME_SIZE_LIMIT:
            raise ValueError(f"a frame size limit is 0 or at least {MIN_FRAME_SIZE_LIMIT}")
        self.storage = storage
        self.frame_size_limit = frame_size_limit
        self.is_initiator = False
        self._last_in = 0
        self._last_out = 0

    # The client ---------------------------------------------------------------------

    def initiate(self) -> bytes:
        """The client's first message."""
        if self.is_initiator:
            raise NegentropyError("already initiated")
        self.is_initiator = True
        self._last_out = 0
        out = bytearray([PROTOCOL_VERSION])
        self._split(0, len(self.storage), _INFINITE, out)
        return bytes(out)

    def reconcile_client(self, message: bytes) -> tuple[bytes | None, list[bytes], list[bytes]]:
        """Process the server's reply: (next message or None when done, ids only we
        have, ids only the server has)."""
        if not self.is_initiator:
            raise NegentropyError("only the side that initiated takes replies")
        have: list[bytes] = []
        need: list[bytes] = []
        out = self._reconcile(message, have, need)
        return (None if len(out) == 1 else out), have, need

    # The server ---------------------------------------------------------------------

    def reconcile(self, message: bytes) -> bytes:
        """The server's reply to a client message."""
        return self.reconcile_server(message)[0]

    def reconcile_server(self, message: bytes) -> tuple[bytes, list[bytes]]:
        """The server's reply, and the ids this message showed the client lacks (those in
        ranges the client listed id by id): a server may send those items at once."""
        if self.is_initiator:
            raise NegentropyError("the initiator uses reconcile_client")
        lacking: list[bytes] = []
        return self._reconcile(message, lacking, []), lacking

    # Both ---------------------------------------------------------------------------

    def _bound_bytes(self, bound: Bound) -> bytes:
        if bound.timestamp == INFINITY:
            self._last_out = INFINITY
            encoded = encode_varint(0)
        else:
            encoded = encode_varint(bound.timestamp - self._last_out + 1)
            self._last_out = bound.timestamp
        return encoded + encode_varint(len(bound.prefix)) + bound.prefix

    def _read_bound(self, reader: _Reader) -> Bound:
        encoded = reader.varint()
        offset = INFINITY if encoded == 0 else encoded - 1
        timestamp = min(offset + self._last_in, INFINITY)  # saturates at infinity
        self._last_in = timestamp
        length = reader.varint()
        if length > ID_SIZE:
            raise NegentropyError("a bound's id prefix is longer than an id")
        return Bound(timestamp, reader.take(length))

    def _skip_bytes(self, bound: Bound) -> bytes:
        return self._bound_bytes(bound) + encode_varint(_MODE_SKIP)

    def _exceeds(self, size: int) -> bool:
        return bool(self.frame_size_limit) and size > self.frame_size_limit - 200

    def _reconcile(self, message: bytes, have: list[bytes], need: list[bytes]) -> bytes:
        reader = _Reader(message)
        self._last_in = 0
        self._last_out = 0
        if reader.done():
            raise NegentropyError("an empty message")
        version = reader.take(1)[0]
        if not 0x60 <= version <= 0x6F:
            raise NegentropyError(f"0x{version:02x} is not a Negentropy protocol version")
        if version != PROTOCOL_VERSION:
            if self.is_initiator:
                raise NegentropyError(f"the server speaks only version 0x{version:02x}")
            return bytes([PROTOCOL_VERSION])  # tell the client what we speak
        storage = self.storage
        size = len(storage)
        out = bytearray([PROTOCOL_VERSION])
        previous_bound = Bound(0)
        previous_index = 0
        skip = False

        while not reader.done():
            part = bytearray()

            bound = self._read_bound(reader)
            if bound.key() < previous_bound.key():
                raise NegentropyError("ranges are out of order")
            mode = reader.varint()
            lower = previous_index
            upper = storage.lower_bound(previous_index, size, bound)
            if mode == _MODE_SKIP:
                skip = True
            elif mode == _MODE_FINGERPRINT:
                theirs = reader.take(FINGERPRINT_SIZE)
                if theirs == storage.fingerprint(lower, upper):
                    skip = True
                else:
                    if skip:  # a pending Skip goes out before what follows it
                        skip = False
                        part.extend(self._skip_bytes(previous_bound))
                    self._split(lower, upper, bound, part)
            elif mode == _MODE_IDLIST:
                count = reader.varint()
                if count > (len(message) - reader.pos) // ID_SIZE:
                    raise NegentropyError("an id list is longer than the message")
                their_ids = {reader.take(ID_SIZE) for _ in range(count)}
                for _, item_id in storage.items[lower:upper]:
                    if item_id in their_ids:
                        their_ids.discard(item_id)
                    else:  # ours only: the client's "have", or what it lacks (server)
                        have.append(item_id)
                if self.is_initiator:
                    skip = True
                    need.extend(sorted(their_ids))
                else:
                    if skip:
                        skip = False
                        part.extend(self._skip_bytes(previous_bound))
                    response = bytearray()
                    end_bound = bound
                    for index in range(lower, upper):
                        if self._exceeds(len(out) + len(response)):
                            # Out of room: the rest of the range goes in the fingerprint below.
                            end_bound = Bound(*storage.items[index])
                            upper = index
                            break
                        response.extend(storage.items[index][1])
                    part.extend(self._bound_bytes(end_bound))
                    part.extend(encode_varint(_MODE_IDLIST))
                    part.extend(encode_varint(len(response) // ID_SIZE))
                    part.extend(response)
                    out.extend(part)  # the ids always go out, even if nothing else fits
                    part.clear()
            else:
                raise NegentropyError(f"unknown range mode {mode}")
            if self._exceeds(len(out) + len(part)):
                # Out of room: one fingerprint stands for everything not yet covered.
                out.extend(self._bound_bytes(_INFINITE))
                out.extend(encode_varint(_MODE_FINGERPRINT))
                out.extend(storage.fingerprint(upper, size))
                break
            out.extend(part)
            previous_index = upper
            previous_bound = bound
        return bytes(out)

    def _split(self, lower: int, upper: int, upper_bound: Bound, out: bytearray) -> None:
        """Describe [lower, upper): its ids if few, else 16 bucket fingerprints."""
        storage = self.storage
        count = upper - lower
        if count < BUCKETS * 2:
            out.extend(self._bound_bytes(upper_bound))
            out.extend(encode_varint(_MODE_IDLIST))
            out.extend(encode_varint(count))
            for _, item_id in storage.items[lower:upper]:
                out.extend(item_id)
            return
        per_bucket, extra = divmod(count, BUCKETS)
        current = lower
        for bucket in range(BUCKETS):
            bucket_size = per_bucket + (1 if bucket < extra else 0)
            fingerprint = storage.fingerprint(current, current + bucket_size)
            current += bucket_size
            if current == upper:
                bound = upper_bound
            else:
                bound = _minimal_bound(storage.items[current - 1], storage.items[current])
            out.extend(self._bound_bytes(bound))
            out.extend(encode_varint(_MODE_FINGERPRINT))
            out.extend(fingerprint)
