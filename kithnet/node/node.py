"""The running node: wires a member's store to their libp2p host. Records from the
network are checked before they are stored or forwarded; records this member writes are
stored (durably) and then gossiped; catch-up sync runs over `/kithnet/sync/1`.

First step of issue 4: gossip per community and sync with a known member. The daemon,
the control socket, discovery and flow control come next.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import msgpack
import trio

from kithnet.core.envelope import Record
from kithnet.core.validation import accept
from kithnet.localstore.store import Store, now_ms
from kithnet.node.sync import FrameReader, SyncClient, SyncError, SyncServer, encode_frame
from kithnet.p2p.host import Peer, community_topic

SYNC_PROTOCOL = "/kithnet/sync/1"
MAX_ENVELOPES_PER_MESSAGE = 64
OUTBOX_SIZE = 1024  # records waiting to be gossiped; `post` waits when it is full
PUBLISH_INTERVAL = 0.02  # at most 50 gossip messages a second, of up to 64 records each
READ_SIZE = 64 * 1024

log = logging.getLogger(__name__)


def pack_message(envelopes: list[bytes]) -> bytes:
    """A gossip message: a msgpack array of record envelopes (several under load)."""
    packed: bytes = msgpack.packb(envelopes, use_bin_type=True)
    return packed


def unpack_message(data: bytes) -> list[bytes] | None:
    """The envelopes of a gossip message, or None if it is not one."""
    try:
        envelopes = msgpack.unpackb(
            data, raw=False, max_array_len=MAX_ENVELOPES_PER_MESSAGE, max_bin_len=1 << 17
        )
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not isinstance(envelopes, list) or not envelopes:
        return None
    if not all(isinstance(e, bytes) for e in envelopes):
        return None
    return envelopes


class Node:
    """A member's store and host, working together."""

    def __init__(self, store: Store, peer: Peer) -> None:
        self.store = store
        self.peer = peer
        self.dropped: Counter[str] = Counter()
        self._arrival = trio.Event()
        self._outbox, self._outgoing = trio.open_memory_channel[tuple[str, bytes]](OUTBOX_SIZE)
        peer.set_stream_handler(SYNC_PROTOCOL, self._serve_sync)
        peer.start_soon(self._publisher)

    # Gossip ---------------------------------------------------------------------------

    def _validate(self, data: bytes) -> bool:
        """Runs before a message is delivered or forwarded: every record in it must
        decode, verify and validate, or the whole message is dropped and counted."""
        envelopes = unpack_message(data)
        if envelopes is None:
            self.dropped["malformed"] += 1
            return False
        now = now_ms()
        return all(accept(envelope, now, self.dropped) is not None for envelope in envelopes)

    async def _on_message(self, data: bytes, author: str) -> None:
        envelopes = unpack_message(data)
        if envelopes is None:  # the validator let it through: cannot happen
            return
        self.store.ingest(envelopes)
        self._arrival.set()
        self._arrival = trio.Event()

    async def follow(self, community: bytes) -> None:
        """Take part in a community's gossip."""
        await self.peer.subscribe(community_topic(community), self._validate, self._on_message)

    async def post(self, fields: Mapping[str, Any]) -> Record:
        """Store a record as this member (durable when this returns), then queue it for
        gossip; waits while the queue is full rather than drop anything."""
        record = self.store.publish(fields)
        community = record.id if record.kind == "community" else record.community
        if community is not None:
            await self._outbox.send((community_topic(community), record.envelope))
        return record

    async def _publisher(self) -> None:
        """Gossip queued records: a record alone at once when the network is idle; under
        load, what queues meanwhile in messages of up to 64 records, no more often than
        every PUBLISH_INTERVAL. py-libp2p drops messages beyond 32 queued per peer, so
        pacing keeps a burst from being lost; sync repairs what gossip still misses."""
        async for topic, envelope in self._outgoing:
            batches: dict[str, list[bytes]] = {topic: [envelope]}
            deadline = trio.current_time() + PUBLISH_INTERVAL
            while sum(len(b) for b in batches.values()) < MAX_ENVELOPES_PER_MESSAGE:
                try:
                    more_topic, more = self._outgoing.receive_nowait()
                except trio.WouldBlock:
                    if len(batches[topic]) == 1 and len(batches) == 1:
                        break  # idle: send the single record now
                    with trio.move_on_at(deadline):
                        more_topic, more = await self._outgoing.receive()
                        batches.setdefault(more_topic, []).append(more)
                        continue
                    break
                batches.setdefault(more_topic, []).append(more)
            for batch_topic, envelopes in batches.items():
                for start in range(0, len(envelopes), MAX_ENVELOPES_PER_MESSAGE):
                    chunk = envelopes[start : start + MAX_ENVELOPES_PER_MESSAGE]
                    await self.peer.publish(batch_topic, pack_message(chunk))
            await trio.sleep_until(deadline)

    async def wait_for_record(self, record_id: bytes, timeout: float = 10) -> None:
        """Return once the store holds `record_id`; raises trio.TooSlowError after
        `timeout` seconds."""
        with trio.fail_after(timeout):
            while not self.store.has_record(record_id):
                await self._arrival.wait()

    # Catch-up sync --------------------------------------------------------------------

    async def sync(self, peer_id: str, community: bytes, timeout: float = 300) -> SyncClient:
        """Reconcile a community with a member and exchange what each lacks; raises
        SyncError if the member breaks the protocol or it takes over `timeout` s."""
        stream = await self.peer.open_stream(peer_id, SYNC_PROTOCOL)
        client = SyncClient(self.store, community)
        reader = FrameReader()
        try:
            with trio.fail_after(timeout):
                await self._converse(stream, client, reader)
        except trio.TooSlowError:
            raise SyncError(f"the sync with {peer_id} took over {timeout} s") from None
        finally:
            await stream.close()
        return client

    async def _converse(self, stream: Any, client: SyncClient, reader: FrameReader) -> None:
        opening = b"".join(encode_frame(m) for m in client.start())
        client.bytes_out += len(opening)
        await stream.write(opening)
        while not client.done:
            data = await stream.read(READ_SIZE)
            if not data:
                raise SyncError("the member closed the sync before it ended")
            client.bytes_in += len(data)
            replies = []
            for message in reader.feed(data):
                replies += client.handle(message)
            if replies:
                frames = b"".join(encode_frame(m) for m in replies)
                client.bytes_out += len(frames)
                await stream.write(frames)

    async def _serve_sync(self, stream: Any) -> None:
        server = SyncServer(self.store)
        reader = FrameReader()
        try:
            while not server.done:
                try:
                    data = await stream.read(READ_SIZE)
                except Exception:  # the other side reset or closed the stream
                    return
                if not data:
                    return
                replies = []
                for message in reader.feed(data):
                    replies += server.handle(message)
                if replies:
                    await stream.write(b"".join(encode_frame(m) for m in replies))
        except SyncError as exc:
            log.info("sync with %s refused: %s", stream.muxed_conn.peer_id, exc)
            self.dropped["bad_sync"] += 1
        finally:
            await stream.close()
