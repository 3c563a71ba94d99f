"""Blobs on the network: `/kithnet/blob/1` (docs/protocol.md, "Blobs").

A node serves a blob it holds whole to a member of a community where an allowed post
names it, and fetches by itself the blobs that posts it holds name and that fit its
limits, from connected members of those communities, two at a time; a blob that no
connected member could give is tried again when another connects. What arrives is
hashed as it comes and stored in chunks; a wrong size, a byte too many or a wrong hash
discards it, and the peer that sent it loses score.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from kithnet.crypto.identity import public_key_of
from kithnet.localstore.blobs import BlobTooBig
from kithnet.localstore.errors import StoreError
from kithnet.p2p.host import INVALID_PENALTY, P2PError, RateLimiter

if TYPE_CHECKING:
    from kithnet.node.node import Node

log = logging.getLogger(__name__)

BLOB_PROTOCOL = "/kithnet/blob/1"
FETCH_CONCURRENCY = 2  # blobs fetched at once
MAX_WANTED = 100  # blobs looked at per pass of the fetcher
RETRY_INTERVAL = 60.0  # the fetcher looks again at least this often
PASS_INTERVAL = 0.5  # and at most this often
MAX_REMEMBERED = 1000  # blobs whose failed peers are remembered
REQUESTS_PER_SECOND = 2.0  # blob requests one peer may make (in bursts of REQUEST_BURST)
REQUEST_BURST = 10
MAX_STREAMS_PER_PEER = 2  # blob streams one peer may have open with us at once
MAX_SERVING = 8  # blob streams we serve at once, to everyone
MAX_HEADER = 1024  # a request or header frame longer than this ends the stream
HEADER_TIMEOUT = 10.0  # for the request, and for the answer's header
IDLE_TIMEOUT = 30.0  # no byte for this long: give up
BLOB_TIMEOUT = 600.0  # a whole blob, either side (64 MiB at about 110 KiB/s)
READ_SIZE = 256 * 1024
REFUSAL = "not available to you here"


class BlobError(Exception):
    """A blob could not be had from a peer; the message says why."""


def _frame(message: list[Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


async def _read_frame(stream: Any) -> tuple[list[Any], bytes]:
    """One length-prefixed msgpack frame of at most MAX_HEADER bytes, and whatever
    bytes came after it."""
    buffer = bytearray()
    while True:
        if len(buffer) >= 4:
            (size,) = struct.unpack(">I", buffer[:4])
            if size > MAX_HEADER:
                raise BlobError(f"a frame of {size} bytes is over the limit")
            if len(buffer) >= 4 + size:
                break
        data = await stream.read(MAX_HEADER + 4 - len(buffer) if len(buffer) < 4 else READ_SIZE)
        if not data:
            raise BlobError("the stream ended before a whole message")
        buffer += data
    try:
        message = msgpack.unpackb(bytes(buffer[4 : 4 + size]), raw=False, max_bin_len=MAX_HEADER)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BlobError(f"an unreadable frame: {exc}") from exc
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise BlobError("a frame that is not a message")
    return message, bytes(buffer[4 + size :])


class BlobService:
    """Serves and fetches a node's blobs; `Node` makes one."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = node.store
        self.counts: Counter[str] = Counter()  # fetched, served, refused, mismatch, ...
        self.served: Counter[bytes] = Counter()  # times each blob was served
        self._fetching: dict[bytes, trio.Event] = {}  # blob -> set when its fetch ends
        self._tried: dict[bytes, set[str]] = {}  # blob -> peers that could not give it
        self._limiter = trio.CapacityLimiter(FETCH_CONCURRENCY)
        self._kick = trio.Event()
        self._serving: Counter[str] = Counter()
        self._rate = RateLimiter(REQUESTS_PER_SECOND, REQUEST_BURST)
        self.store.discard_incomplete_blobs()  # left by a node that stopped mid-fetch
        node.peer.set_stream_handler(BLOB_PROTOCOL, self._serve)
        node.peer.on_connect(self._on_connect)
        node.peer.start_soon(self._fetcher)
        node.peer.start_soon(self._watch_arrivals)

    def kick(self) -> None:
        """Look for blobs to fetch now."""
        self._kick.set()

    def fetching(self) -> int:
        return len(self._fetching)

    # Fetching by itself -----------------------------------------------------------------

    async def _on_connect(self, peer_id: str) -> None:
        for tried in self._tried.values():
            tried.discard(peer_id)
        self.kick()

    async def _watch_arrivals(self) -> None:
        while True:
            await self.node.wait_for_arrival()
            self.kick()

    async def _fetcher(self) -> None:
        """Fetch what posts name and the limits allow, whenever records arrive or a
        member connects, and every RETRY_INTERVAL."""
        async with trio.open_nursery() as nursery:
            while True:
                self._kick = trio.Event()
                for wanted in self.store.wanted_blobs(limit=MAX_WANTED):
                    if wanted.hash in self._fetching:
                        continue
                    peers = self._candidates(wanted.hash, wanted.communities)
                    if peers:
                        self._fetching[wanted.hash] = trio.Event()
                        nursery.start_soon(
                            self._fetch_in_background,
                            wanted.hash,
                            wanted.size,
                            wanted.mime,
                            wanted.communities,
                        )
                if len(self._tried) > MAX_REMEMBERED:
                    self._tried.clear()  # try everyone again rather than remember more
                with trio.move_on_after(RETRY_INTERVAL):
                    await self._kick.wait()
                # At most one pass per PASS_INTERVAL: a burst of arrivals is one pass.
                await trio.sleep(PASS_INTERVAL)

    def _candidates(self, blob: bytes, communities: Sequence[bytes]) -> list[str]:
        tried = self._tried.get(blob, set())
        found: set[str] = set()
        for community in communities:
            found |= self.node.community_peers(community)
        return sorted(found - tried)

    async def _fetch_in_background(
        self, blob: bytes, size: int, mime: str, communities: Sequence[bytes]
    ) -> None:
        done = self._fetching[blob]
        try:
            async with self._limiter:
                await self._fetch_from_any(blob, size, mime, communities, explicit=False)
        except (BlobError, StoreError) as exc:
            log.info("could not fetch blob %s: %s", blob.hex()[:12], exc)
        finally:
            del self._fetching[blob]
            done.set()

    async def _fetch_from_any(
        self, blob: bytes, size: int, mime: str, communities: Sequence[bytes], *, explicit: bool
    ) -> None:
        reasons = []
        for peer_id in self._candidates(blob, communities):
            self._tried.setdefault(blob, set()).add(peer_id)
            try:
                await self._fetch_one(peer_id, blob, size, mime, explicit=explicit)
            except BlobTooBig:
                raise
            except (BlobError, StoreError, P2PError) as exc:
                reasons.append(str(exc))
                continue
            self._tried.pop(blob, None)
            return
        raise BlobError("no member online could give it" + (f" ({reasons[-1]})" if reasons else ""))

    async def fetch(
        self, blob: bytes, size: int, mime: str, communities: Sequence[bytes], timeout: float = 120
    ) -> None:
        """Fetch a blob now because the member asked for it (their limit for one blob
        does not apply, the total does): from any connected member of `communities`,
        each tried again. Raises BlobError, or BlobTooBig if it does not fit."""
        with trio.move_on_after(timeout) as scope:
            while blob in self._fetching:  # already on its way: wait for that first
                await self._fetching[blob].wait()
            if self.store.has_blob(blob):
                return
            self.store.check_blob_room(size, explicit=True)
            self._tried.pop(blob, None)
            done = self._fetching[blob] = trio.Event()
            try:
                await self._fetch_from_any(blob, size, mime, communities, explicit=True)
            finally:
                del self._fetching[blob]
                done.set()
        if scope.cancelled_caught:
            raise BlobError(f"it did not arrive within {timeout:.0f} s")

    async def fetch_from(self, peer_id: str, blob: bytes, size: int, mime: str) -> None:
        """Fetch one blob from one peer (once any fetch of it under way has ended, and
        only if it is still not here). Raises BlobError if that peer cannot give it."""
        while blob in self._fetching:
            await self._fetching[blob].wait()
        if self.store.has_blob(blob):
            return
        done = self._fetching[blob] = trio.Event()
        try:
            await self._fetch_one(peer_id, blob, size, mime, explicit=False)
        finally:
            del self._fetching[blob]
            done.set()

    async def _fetch_one(
        self, peer_id: str, blob: bytes, size: int, mime: str, *, explicit: bool
    ) -> None:
        """Fetch one blob from one peer: its announced size must be the size the post
        gives, every byte is hashed as it arrives and written in chunks, and a byte past
        the size or a wrong hash discards it all (counted, and the peer loses score)."""
        stream = await self.node.peer.open_stream(peer_id, BLOB_PROTOCOL)
        try:
            with trio.fail_after(BLOB_TIMEOUT):
                await self._receive(stream, peer_id, blob, size, mime, explicit)
        except trio.TooSlowError:
            self.counts["stalled"] += 1
            raise BlobError(f"{peer_id} stalled") from None
        except (BlobError, StoreError):
            raise
        except Exception as exc:  # the stream was reset, or the connection went away
            raise BlobError(f"the transfer from {peer_id} broke off: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def _receive(
        self, stream: Any, peer_id: str, blob: bytes, size: int, mime: str, explicit: bool
    ) -> None:
        await stream.write(_frame(["get", blob]))
        with trio.fail_after(HEADER_TIMEOUT):
            header, rest = await _read_frame(stream)
        if header[0] == "refused":
            self.counts["refused_to_us"] += 1
            reason = header[1] if len(header) > 1 and isinstance(header[1], str) else ""
            raise BlobError(f"{peer_id} refused: {reason[:200]}")
        if header[0] != "blob" or len(header) != 2 or type(header[1]) is not int:
            self._blame(peer_id, "bad_header")
            raise BlobError(f"{peer_id} answered with something that is not a blob")
        if header[1] != size:
            self._blame(peer_id, "wrong_size")
            raise BlobError(f"{peer_id} offered {header[1]} bytes where the post says {size}")
        writer = self.store.begin_blob(blob, size, mime, explicit=explicit)
        try:
            if rest:
                self._write(writer, rest, peer_id)
            while writer.received < size:
                with trio.fail_after(IDLE_TIMEOUT):
                    data = await stream.read(READ_SIZE)
                if not data:
                    self.counts["short"] += 1
                    raise BlobError(f"{peer_id} stopped after {writer.received} of {size} bytes")
                self._write(writer, data, peer_id)
            try:
                writer.finish()
            except StoreError:
                self._blame(peer_id, "mismatch")
                raise BlobError(f"{peer_id} sent bytes that do not match the hash") from None
        except BaseException:
            writer.discard()
            raise
        self.counts["fetched"] += 1
        log.info("fetched blob %s (%d bytes) from %s", blob.hex()[:12], size, peer_id)

    def _write(self, writer: Any, data: bytes, peer_id: str) -> None:
        try:
            writer.write(data)
        except StoreError:
            self._blame(peer_id, "oversent")
            raise BlobError(f"{peer_id} sent more bytes than the blob has") from None

    def _blame(self, peer_id: str, reason: str) -> None:
        self.counts[reason] += 1
        self.node.dropped[f"blob_{reason}"] += 1
        self.node.peer.penalise(peer_id, INVALID_PENALTY)

    # Serving ------------------------------------------------------------------------------

    async def _serve(self, stream: Any) -> None:
        asker = str(stream.muxed_conn.peer_id)
        if (
            self._serving[asker] >= MAX_STREAMS_PER_PEER
            or sum(self._serving.values()) >= MAX_SERVING
            or not self._rate.allow(asker, trio.current_time())
        ):
            self.counts["limited"] += 1
            self.node.dropped["blob_limited"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._serving[asker] += 1
        try:
            with trio.fail_after(HEADER_TIMEOUT):
                request, _ = await _read_frame(stream)
            if (
                request[0] != "get"
                or len(request) != 2
                or not isinstance(request[1], bytes)
                or len(request[1]) != 32
            ):
                raise BlobError("a blob request names one 32-byte hash")
            blob = request[1]
            member = public_key_of(asker)
            size = self.store.blob_size(blob)
            if member is None or size is None or not self.store.may_serve_blob(blob, member):
                self.counts["refused"] += 1
                self.node.dropped["blob_refused"] += 1
                await stream.write(_frame(["refused", REFUSAL]))
                return
            await stream.write(_frame(["blob", size]))
            with trio.fail_after(BLOB_TIMEOUT):
                for chunk in self.store.blob_chunks(blob):
                    with trio.fail_after(IDLE_TIMEOUT):
                        await stream.write(chunk)
            self.counts["served"] += 1
            self.served[blob] += 1
        except (BlobError, trio.TooSlowError) as exc:
            log.info("blob request from %s refused: %s", asker, exc)
            self.node.dropped["bad_blob_request"] += 1
        except Exception as exc:  # reset by the asker
            log.debug("blob request from %s ended: %s", asker, exc)
        finally:
            self._serving[asker] -= 1
            if not self._serving[asker]:
                del self._serving[asker]
            with contextlib.suppress(Exception):
                await stream.close()
