"""Blobs on the network: `/kithnet/blob/1` (docs/protocol.md, "Blobs").

A node serves a blob it holds whole to a member of a community for which it obtained
the blob (its origin) and where an allowed post names it; the request names the
community. It fetches by itself the blobs that posts it holds name and that fit its
limits, from connected members of those communities, two at a time, newest first but
paging past blobs nobody online can give; a blob that could not be had is tried again
after a wait that doubles from a minute up to an hour (and at once from a member who
connects). What arrives is hashed as it comes and stored in chunks: the server's size is
taken only if a visible post claims it for that hash (a post can claim a wrong size; that
is no fault of the server); a byte too many or a wrong hash discards it all, and the peer
that sent it loses score. Blobs no post names any more are freed.
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
from kithnet.localstore.blobs import BlobTooBig, WantedBlob
from kithnet.localstore.errors import StoreError
from kithnet.p2p.host import INVALID_PENALTY, P2PError, RateLimiter

if TYPE_CHECKING:
    from kithnet.node.node import Node

log = logging.getLogger(__name__)

BLOB_PROTOCOL = "/kithnet/blob/1"
FETCH_CONCURRENCY = 2  # blobs fetched at once
MAX_WANTED = 100  # blobs per page of the fetcher's look at what is wanted
MAX_PAGES = 10  # pages looked at per pass
RETRY_INTERVAL = 60.0  # the fetcher looks again at least this often; the first retry wait
MAX_RETRY_WAIT = 3600.0  # the longest wait before a blob that could not be had is retried
PASS_INTERVAL = 0.5  # and at most this often
MAX_REMEMBERED = 10_000  # blobs whose failed peers and retry times are remembered
SWEEP_GAP = 2.0  # after records arrive, unnamed blobs are freed at most this often
SWEEP_INTERVAL = 600.0  # and at least this often
REQUESTS_PER_SECOND = 2.0  # blob requests one peer may make (in bursts of REQUEST_BURST)
REQUEST_BURST = 10
MAX_STREAMS_PER_PEER = 2  # blob streams one peer may have open with us at once
MAX_READING = 64  # requests being read at once, from everyone
MAX_SERVING = 8  # blobs we send at once, to everyone
MAX_HEADER = 1024  # a request or header frame longer than this ends the stream
REQUEST_TIMEOUT = 5.0  # for the request, which takes no serving slot while it comes
HEADER_TIMEOUT = 10.0  # for the answer's header
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


def _is_id(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 32


class BlobService:
    """Serves and fetches a node's blobs; `Node` makes one."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = node.store
        self.counts: Counter[str] = Counter()  # fetched, served, refused, mismatch, ...
        self.served: Counter[bytes] = Counter()  # times each blob was served
        self.first_retry = RETRY_INTERVAL  # the first wait before a failed blob is retried
        self._fetching: dict[bytes, trio.Event] = {}  # blob -> set when its fetch ends
        # blob -> the (peer, community) pairs that could not give it since its last wait
        self._tried: dict[bytes, set[tuple[str, bytes]]] = {}
        self._retry: dict[bytes, tuple[float, float]] = {}  # blob -> (when, wait so far)
        self._limiter = trio.CapacityLimiter(FETCH_CONCURRENCY)
        self._kick = trio.Event()
        self._streams: Counter[str] = Counter()  # blob streams each peer has open
        self._reading = 0
        self._sending = 0
        self._rate = RateLimiter(REQUESTS_PER_SECOND, REQUEST_BURST)
        self._swept_at = trio.current_time()
        self._swept_seq = self.store.latest_record_seq()
        self.store.discard_incomplete_blobs()  # left by a node that stopped mid-fetch
        self.store.note_blob_origins()  # blobs kept before origins were, or restored
        self._free_unnamed()
        node.peer.set_stream_handler(BLOB_PROTOCOL, self._serve)
        node.peer.on_connect(self._on_connect)
        node.peer.start_soon(self._fetcher)
        node.peer.start_soon(self._watch_arrivals)

    def kick(self) -> None:
        """Look for blobs to fetch (and to free) now."""
        self._kick.set()

    def fetching(self) -> int:
        return len(self._fetching)

    # Freeing ------------------------------------------------------------------------------

    def _free_unnamed(self) -> int:
        """Free the blobs no post names any more (bounded: 10 rounds of 500)."""
        freed = 0
        for _ in range(10):
            count = self.store.free_unnamed_blobs()
            freed += count
            if count < 500:
                break
        if freed:
            self.counts["freed"] += freed
            log.info("freed %d blob(s) that no post names any more", freed)
        return freed

    def _sweep_due(self, now: float) -> float:
        """Free unnamed blobs if records have arrived (at most every SWEEP_GAP) or
        SWEEP_INTERVAL has passed; returns how long until the next sweep may be due."""
        seq = self.store.latest_record_seq()
        if seq != self._swept_seq and now - self._swept_at < SWEEP_GAP:
            return SWEEP_GAP - (now - self._swept_at)
        if seq != self._swept_seq or now - self._swept_at >= SWEEP_INTERVAL:
            self._swept_seq, self._swept_at = seq, now
            self._free_unnamed()
        return SWEEP_INTERVAL

    # Fetching by itself -----------------------------------------------------------------

    async def _on_connect(self, peer_id: str) -> None:
        for tried in self._tried.values():  # the newcomer is asked at once
            for pair in [pair for pair in tried if pair[0] == peer_id]:
                tried.discard(pair)
        self.kick()

    async def _watch_arrivals(self) -> None:
        while True:
            await self.node.wait_for_arrival()
            self.kick()

    async def _fetcher(self) -> None:
        """Fetch what posts name and the limits allow, whenever records arrive or a
        member connects, and when a blob's wait before a retry is over; free what no
        post names any more."""
        async with trio.open_nursery() as nursery:
            while True:
                self._kick = trio.Event()
                now = trio.current_time()
                wait = min(self._sweep_due(now), self._start_fetches(nursery, now))
                with trio.move_on_after(max(wait, 0.0)):
                    await self._kick.wait()
                # At most one pass per PASS_INTERVAL: a burst of arrivals is one pass.
                await trio.sleep(PASS_INTERVAL)

    def _start_fetches(self, nursery: trio.Nursery, now: float) -> float:
        """Start fetching the wanted blobs someone online may give, page by page so
        that blobs nobody can give do not hide older ones; returns how long until a
        waiting blob may be retried."""
        started = 0
        before: tuple[int, bytes] | None = None
        for _ in range(MAX_PAGES):
            page = self.store.wanted_blobs(limit=MAX_WANTED, before=before)
            for wanted in page:
                if started < MAX_WANTED and self._should_start(wanted, now):
                    self._fetching[wanted.hash] = trio.Event()
                    nursery.start_soon(self._fetch_in_background, wanted)
                    started += 1
            if len(page) < MAX_WANTED or started >= MAX_WANTED:
                break
            before = (page[-1].seq, page[-1].hash)
        waits = [when - now for when, _ in self._retry.values() if when > now]
        return min([RETRY_INTERVAL, *waits])

    def _should_start(self, wanted: WantedBlob, now: float) -> bool:
        if wanted.hash in self._fetching or not wanted.sizes:
            return False
        retry = self._retry.get(wanted.hash)
        if retry is not None and retry[0] <= now:
            self._tried.pop(wanted.hash, None)  # its wait is over: ask everyone again
        # While it waits, only peers not asked yet (a member who just connected).
        return bool(self._candidates(wanted.hash, wanted.communities))

    def _candidates(self, blob: bytes, communities: Sequence[bytes]) -> list[tuple[str, bytes]]:
        """(peer, community) pairs to ask: connected members of each community naming
        the blob (whose wire id we know), not asked for it yet."""
        tried = self._tried.get(blob, set())
        found = []
        for community in communities:
            if self.node.wire_id(community) is None:
                continue
            for peer_id in sorted(self.node.community_peers(community)):
                if (peer_id, community) not in tried:
                    found.append((peer_id, community))
        return found

    async def _fetch_in_background(self, wanted: WantedBlob) -> None:
        blob = wanted.hash
        done = self._fetching[blob]
        try:
            async with self._limiter:
                await self._fetch_from_any(
                    blob, set(wanted.sizes), wanted.mime, wanted.communities, explicit=False
                )
        except (BlobError, StoreError) as exc:
            log.info("could not fetch blob %s: %s", blob.hex()[:12], exc)
            self._wait_before_retry(blob)
        finally:
            del self._fetching[blob]
            done.set()

    def _wait_before_retry(self, blob: bytes) -> None:
        """A blob nobody online could give: retried after first_retry, doubling each
        time up to MAX_RETRY_WAIT (sooner from a member who connects)."""
        _, waited = self._retry.pop(blob, (0.0, 0.0))
        wait = min(MAX_RETRY_WAIT, max(self.first_retry, waited * 2))
        self._retry[blob] = (trio.current_time() + wait, wait)
        self.counts["retry_later"] += 1
        for remembered in (self._retry, self._tried):
            while len(remembered) > MAX_REMEMBERED:  # forget the oldest first
                del remembered[next(iter(remembered))]

    def _succeeded(self, blob: bytes) -> None:
        self._tried.pop(blob, None)
        self._retry.pop(blob, None)

    async def _fetch_from_any(
        self,
        blob: bytes,
        sizes: set[int],
        mime: str,
        communities: Sequence[bytes],
        *,
        explicit: bool,
    ) -> None:
        reasons = []
        for peer_id, community in self._candidates(blob, communities):
            self._tried.setdefault(blob, set()).add((peer_id, community))
            try:
                await self._fetch_one(peer_id, blob, community, sizes, mime, explicit=explicit)
            except BlobTooBig:
                raise
            except (BlobError, StoreError, P2PError) as exc:
                reasons.append(str(exc))
                continue
            self._succeeded(blob)
            return
        raise BlobError("no member online could give it" + (f" ({reasons[-1]})" if reasons else ""))

    async def fetch(
        self, blob: bytes, size: int, mime: str, communities: Sequence[bytes], timeout: float = 120
    ) -> None:
        """Fetch a blob now because the member asked for it (their limit for one blob
        does not apply, the total does): from any connected member of `communities`,
        each tried again, taking any size a visible post claims for it. Raises
        BlobError, or BlobTooBig if it does not fit."""
        with trio.move_on_after(timeout) as scope:
            while blob in self._fetching:  # already on its way: wait for that first
                await self._fetching[blob].wait()
            if self.store.has_blob(blob):
                return
            self.store.check_blob_room(size, explicit=True)
            self._tried.pop(blob, None)
            done = self._fetching[blob] = trio.Event()
            try:
                sizes = self.store.claimed_sizes(blob)
                await self._fetch_from_any(blob, sizes, mime, communities, explicit=True)
            except (BlobError, StoreError):
                self._wait_before_retry(blob)  # everyone was asked: the fetcher waits too
                raise
            finally:
                del self._fetching[blob]
                done.set()
        if scope.cancelled_caught:
            raise BlobError(f"it did not arrive within {timeout:.0f} s")

    async def fetch_from(
        self, peer_id: str, blob: bytes, mime: str, community: bytes | None = None
    ) -> None:
        """Fetch one blob from one peer, for `community` (by default the first whose
        visible posts name it and in which that peer takes part), once any fetch of it
        under way has ended, and only if it is still not here. Raises BlobError if that
        peer cannot give it."""
        while blob in self._fetching:
            await self._fetching[blob].wait()
        if self.store.has_blob(blob):
            return
        if community is None:
            naming = self.store.blob_communities(blob)
            shared = [c for c in naming if peer_id in self.node.community_peers(c)]
            if not naming:
                raise BlobError("no post here names it")
            community = (shared or naming)[0]
        done = self._fetching[blob] = trio.Event()
        try:
            sizes = self.store.claimed_sizes(blob)
            await self._fetch_one(peer_id, blob, community, sizes, mime, explicit=False)
        finally:
            del self._fetching[blob]
            done.set()

    async def _fetch_one(
        self,
        peer_id: str,
        blob: bytes,
        community: bytes,
        sizes: set[int],
        mime: str,
        *,
        explicit: bool,
    ) -> None:
        """Fetch one blob from one peer for one community: its announced size must be
        one a visible post claims, every byte is hashed as it arrives and written in
        chunks, and a byte past the size or a wrong hash discards it all (counted, and
        the peer loses score)."""
        wire = self.node.wire_id(community)
        if wire is None:
            raise BlobError("the community's key is not held here")
        stream = await self.node.peer.open_stream(peer_id, BLOB_PROTOCOL)
        try:
            with trio.fail_after(BLOB_TIMEOUT):
                await self._receive(stream, peer_id, blob, wire, community, sizes, mime, explicit)
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
        self,
        stream: Any,
        peer_id: str,
        blob: bytes,
        wire: bytes,
        community: bytes,
        sizes: set[int],
        mime: str,
        explicit: bool,
    ) -> None:
        await stream.write(_frame(["get", blob, wire]))
        with trio.fail_after(HEADER_TIMEOUT):
            header, rest = await _read_frame(stream)
        if header[0] == "refused":
            self.counts["refused_to_us"] += 1
            reason = header[1] if len(header) > 1 and isinstance(header[1], str) else ""
            raise BlobError(f"{peer_id} refused: {reason[:200]}")
        if header[0] != "blob" or len(header) != 2 or type(header[1]) is not int or header[1] < 0:
            self._blame(peer_id, "bad_header")
            raise BlobError(f"{peer_id} answered with something that is not a blob")
        size = header[1]
        if size not in sizes:
            # Posts claim sizes, and a post can be wrong: not the server's fault.
            self.counts["unclaimed_size"] += 1
            raise BlobError(f"{peer_id} offered {size} bytes, a size no post here claims")
        writer = self.store.begin_blob(blob, size, mime, explicit=explicit, origin=community)
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

    def _limited(self) -> None:
        self.counts["limited"] += 1
        self.node.dropped["blob_limited"] += 1

    async def _serve(self, stream: Any) -> None:
        """Read the request (REQUEST_TIMEOUT, no sending slot taken), check the asker
        may have the blob, and only then take one of MAX_SERVING sending slots."""
        asker = str(stream.muxed_conn.peer_id)
        if (
            self._streams[asker] >= MAX_STREAMS_PER_PEER
            or self._reading >= MAX_READING
            or not self._rate.allow(asker, trio.current_time())
        ):
            self._limited()
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._streams[asker] += 1
        sending = False
        try:
            self._reading += 1
            try:
                with trio.fail_after(REQUEST_TIMEOUT):
                    request, _ = await _read_frame(stream)
            finally:
                self._reading -= 1
            if len(request) != 3 or request[0] != "get" or not all(map(_is_id, request[1:])):
                raise BlobError("a blob request names one blob and one community")
            blob, wire = request[1], request[2]
            member = public_key_of(asker)
            community = self.node._serves_to(asker, wire)
            size = self.store.blob_size(blob)
            if (
                member is None
                or community is None
                or size is None
                or not self.store.may_serve_blob(blob, member, community)
            ):
                self.counts["refused"] += 1
                self.node.dropped["blob_refused"] += 1
                await stream.write(_frame(["refused", REFUSAL]))
                return
            if self._sending >= MAX_SERVING:
                self._limited()
                with contextlib.suppress(Exception):
                    await stream.reset()
                return
            self._sending += 1
            sending = True
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
            if sending:
                self._sending -= 1
            self._streams[asker] -= 1
            if not self._streams[asker]:
                del self._streams[asker]
            with contextlib.suppress(Exception):
                await stream.close()
