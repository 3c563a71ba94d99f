"""Direct messages between members' nodes: `/kithnet/dm/1` (docs/protocol.md, "Direct
messages").

A message goes straight to the recipient's node when it is connected or can be dialled;
otherwise it is handed, sealed, to up to three connected members who share a community
with both sender and recipient, who hold it and hand it over when the recipient's node
connects to them. The sender's node also sends it again itself whenever it meets the
recipient's node, until that node answers that it has it.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from kithnet.core.direct import DirectMessageError, open_message, sign_message
from kithnet.core.envelope import MAX_ENVELOPE_SIZE, Record, decode
from kithnet.core.errors import RecordError
from kithnet.core.validation import validate
from kithnet.crypto.identity import public_key_of_peer
from kithnet.localstore.errors import StoreError
from kithnet.localstore.messages import RELAY_LIFETIME_MS
from kithnet.localstore.store import now_ms
from kithnet.node.sync import encode_frame
from kithnet.p2p.host import INVALID_PENALTY, P2PError, RateLimiter

if TYPE_CHECKING:
    from kithnet.node.node import Node

DM_PROTOCOL = "/kithnet/dm/1"
MAX_DM_FRAME = MAX_ENVELOPE_SIZE + 64  # one envelope and its frame's few bytes
MAX_DMS_PER_STREAM = 256
MAX_STREAMS_PER_PEER = 4  # as many as sync allows
DMS_PER_SECOND = 5.0  # messages one peer may hand us, in bursts of DM_BURST
DM_BURST = 300.0  # room for a forwarder's whole queue for us (200) and more
DM_IDLE = 10.0  # a stream silent this long is closed
DM_STREAM_TIMEOUT = 120.0
MAX_FORWARDERS = 3
DIAL_TIMEOUT = 5.0
DELIVER_TIMEOUT = 30.0  # a batch handed over on connecting
SEND_TIMEOUT = 10.0  # one message, to one node
READ_SIZE = 64 * 1024
# Refusals that only a broken or hostile sender causes: they cost it score.
_BLAMED = frozenset(
    {
        "malformed",
        "oversize",
        "unsupported_version",
        "bad_author_key",
        "bad_signature",
        "unknown_kind",
        "missing_field",
        "bad_field",
        "self_reference",
        "not_a_dm",
    }
)
MAX_BOX_BYTES = 16_384  # the box of the longest text (16,000 bytes) and its keys
STRANGER_MESSAGES = 20  # kept from one sender who shares no community with this member
# Refusals after which a sender (or a forwarder) keeps the message to try again later.
_RETRY = frozenset({"rate_limited", "clock_skew", "store_error"})

log = logging.getLogger(__name__)


class DmProtocolError(Exception):
    """The other side broke `/kithnet/dm/1`; the stream is reset."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a message just written."""

    record: Record
    status: str  # 'delivered', 'forwarded' or 'waiting'
    forwarders: int


class _Frames:
    """Reads length-prefixed msgpack frames (as catch-up sync frames them) from a
    stream, at most MAX_DM_FRAME bytes each."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> list[Any] | None:
        """The next message, or None when the other side closed between messages."""
        while True:
            if len(self._buffer) >= 4:
                (size,) = struct.unpack(">I", self._buffer[:4])
                if size > MAX_DM_FRAME:
                    raise DmProtocolError(f"a frame of {size} bytes is too long", "oversize")
                if len(self._buffer) >= 4 + size:
                    body = bytes(self._buffer[4 : 4 + size])
                    del self._buffer[: 4 + size]
                    return _decode(body)
            data = await self._stream.read(READ_SIZE)
            if not data:
                if self._buffer:
                    raise DmProtocolError("the stream ended inside a frame")
                return None
            self._buffer.extend(data)


def _decode(body: bytes) -> list[Any]:
    try:
        message = msgpack.unpackb(
            body,
            raw=False,
            max_bin_len=MAX_ENVELOPE_SIZE,
            max_str_len=256,
            max_array_len=4,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DmProtocolError(f"a frame is not readable: {exc}") from exc
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise DmProtocolError("a frame is not a message")
    return message


class DirectMessages:
    """A node's direct messages: sending, receiving, holding for others, handing over."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = node.store
        self.messages = node.store.messages
        self.dropped: Counter[str] = Counter()  # refused messages and frames, by reason
        self._limiter = RateLimiter(DMS_PER_SECOND, DM_BURST)
        self._streams: Counter[str] = Counter()  # dm streams open, per peer
        self._in_flight: set[bytes] = set()  # messages being sent right now
        self._pushing: dict[str, bool] = {}  # peer -> asked to push again meanwhile
        self._arrival = trio.Event()
        node.peer.set_stream_handler(DM_PROTOCOL, self._serve)
        node.peer.on_connect(self._on_connect)

    # Sending ---------------------------------------------------------------------------

    async def send(self, recipient: bytes, text: str) -> Sent:
        """Write a message (kept before anything goes out), then deliver it directly,
        or hand it to members who can pass it on, or leave it waiting."""
        now = now_ms()
        record = sign_message(self.store.identity, recipient, text, now)
        self.messages.add_sent(record, text, now)
        self._in_flight.add(record.id)
        try:
            if await self._reach(recipient):
                peer_id = self.store.peer_id_of(recipient)
                delivered = await self.deliver(peer_id, [record.envelope], timeout=SEND_TIMEOUT)
                [verdict] = delivered or [("", "")]
                if verdict[0] == "delivered":
                    self.messages.mark_delivered(record.id)
                    return Sent(record, "delivered", 0)
            handed = await self._hand_over(record, limit=MAX_FORWARDERS)
        finally:
            self._in_flight.discard(record.id)
        return Sent(record, "forwarded" if handed else "waiting", handed)

    async def _reach(self, member: bytes) -> bool:
        """Connect to a member's node if the peer book knows where it is."""
        peer_id = self.store.peer_id_of(member)
        peer = self.node.peer
        if peer_id in peer.connected_peers():
            return True
        addresses = dict(self.store.known_peers(limit=1000)).get(peer_id, [])
        for address in addresses:
            try:
                await peer.connect(address, timeout=DIAL_TIMEOUT)
            except P2PError as exc:
                log.debug("could not dial %s: %s", address, exc)
                continue
            return True
        return False

    def _forwarders_for(self, recipient: bytes) -> list[str]:
        """Connected peers whose members share a community with this member and the
        recipient (the recipient's own node excluded)."""
        shared = self.messages.shared_communities(recipient, self.store.identity.public_key)
        found = []
        for peer_id in sorted(self.node.peer.connected_peers()):
            member = public_key_of_peer(peer_id)
            if member is None or member == recipient:
                continue
            if any(self.store.is_member(c, member) for c in shared):
                found.append(peer_id)
        return found

    async def _hand_over(self, record: Record, *, limit: int, only: str | None = None) -> int:
        """Hand a sealed message to up to `limit` members who can pass it on (only to
        `only`, if given); returns how many hold it now."""
        candidates = self._forwarders_for(record.fields["recipient"])
        if only is not None:
            candidates = [p for p in candidates if p == only]
        handed = 0
        for peer_id in candidates:
            if handed >= limit:
                break
            verdicts = await self.deliver(peer_id, [record.envelope], timeout=SEND_TIMEOUT)
            if verdicts and verdicts[0][0] == "held":
                handed += 1
        self.messages.mark_forwarded(record.id, handed)
        return handed

    async def deliver(
        self, peer_id: str, envelopes: list[bytes], timeout: float = DELIVER_TIMEOUT
    ) -> list[tuple[str, str]]:
        """Send dm envelopes to a peer; its verdict for each, in order, as (word,
        reason): ('delivered', ''), ('held', '') or ('refused', reason). Fewer verdicts
        than envelopes if the stream broke off; never raises for network trouble."""
        verdicts: list[tuple[str, str]] = []
        try:
            with trio.fail_after(timeout):
                for start in range(0, len(envelopes), MAX_DMS_PER_STREAM):
                    stream = await self.node.peer.open_stream(peer_id, DM_PROTOCOL)
                    try:
                        frames = _Frames(stream)
                        for envelope in envelopes[start : start + MAX_DMS_PER_STREAM]:
                            await stream.write(encode_frame(["dm", envelope]))
                            reply = await frames.next()
                            if reply is None:
                                return verdicts
                            verdicts.append(_verdict(reply))
                    finally:
                        with contextlib.suppress(Exception):
                            await stream.close()
        except trio.TooSlowError:
            log.info("direct messages to %s: no answer within %s s", peer_id, timeout)
        except (P2PError, DmProtocolError) as exc:
            log.info("direct messages to %s failed: %s", peer_id, exc)
        except Exception as exc:  # the stream was reset, or the connection went away
            log.info("direct messages to %s broke off: %s", peer_id, exc)
        return verdicts

    # Handing over when a member's node connects --------------------------------------

    async def _on_connect(self, peer_id: str) -> None:
        self.push_soon(peer_id)

    def push_soon(self, peer_id: str) -> None:
        """Hand a connected member's node what waits for it (in a task; once at a
        time per peer, again at the end if more arrived meanwhile)."""
        member = public_key_of_peer(peer_id)
        if member is None or member == self.store.identity.public_key:
            return
        if peer_id in self._pushing:
            self._pushing[peer_id] = True
            return
        self._pushing[peer_id] = False

        async def push() -> None:
            try:
                while True:
                    await self.hand_over_to(peer_id, member)
                    if not self._pushing.get(peer_id):
                        return
                    self._pushing[peer_id] = False
            except Exception as exc:  # a full disk, say: never take the node down
                log.warning("could not hand direct messages to %s: %s", peer_id, exc)
                self.node.dropped["dm_handover_failed"] += 1
            finally:
                self._pushing.pop(peer_id, None)

        self.node.peer.start_soon(push)

    async def hand_over_to(self, peer_id: str, member: bytes) -> None:
        """Give a member's node what waits for it here: the messages held for it and
        this member's own undelivered ones; and hand it, to pass on, this member's
        messages nobody holds yet for recipients it shares a community with."""
        now = now_ms()
        held = [(i, e) for i, e in self.messages.held_for(member, now) if i not in self._in_flight]
        own = [(i, e) for i, e, _ in self.messages.undelivered(member) if i not in self._in_flight]
        items = list({i: e for i, e in [*held, *own]}.items())
        if items:
            held_ids = {i for i, _ in held}
            verdicts = await self.deliver(peer_id, [e for _, e in items])
            done = []
            for (record_id, _), (word, reason) in zip(items, verdicts, strict=False):
                if word == "delivered":
                    self.messages.mark_delivered(record_id)
                if record_id in held_ids and (word == "delivered" or reason not in _RETRY):
                    done.append(record_id)  # it has it, or will never take it
            self.messages.release(done)
            if verdicts:
                log.info("handed %d direct messages to %s", len(verdicts), peer_id)
        # This member's messages nobody holds yet, for recipients this node shares a
        # community with: all in one stream.
        me = self.store.identity.public_key
        shared = self.messages.shared_communities(member, me)
        if not shared:
            return
        can_hold: dict[bytes, bool] = {}
        waiting = []
        for record_id, envelope, recipient in self.messages.waiting_unheld():
            if record_id in self._in_flight or recipient == member:
                continue
            if recipient not in can_hold:
                can_hold[recipient] = any(self.store.is_member(c, recipient) for c in shared)
            if can_hold[recipient]:
                waiting.append((record_id, envelope))
        if waiting:
            verdicts = await self.deliver(peer_id, [e for _, e in waiting])
            for (record_id, _), (word, _reason) in zip(waiting, verdicts, strict=False):
                if word == "held":
                    self.messages.mark_forwarded(record_id, 1)

    # Receiving -------------------------------------------------------------------------

    async def wait_for_message(self, record_id: bytes, timeout: float = 10) -> None:
        """Return once this member's store holds message `record_id`."""
        with trio.fail_after(timeout):
            while self.messages.message(record_id) is None and not self.messages.is_held(record_id):
                await self._arrival.wait()

    async def wait_for_arrival(self) -> None:
        """Return when a message next arrives (for this member, or to hold for another)."""
        await self._arrival.wait()

    def receive(self, envelope: bytes, sender: str) -> list[Any]:
        """Judge one dm handed over by `sender`; the verdict to answer with."""
        now = now_ms()
        try:
            record = decode(envelope)
            validate(record, now)
        except RecordError as exc:
            return self._refuse(exc.reason, sender)
        if record.kind != "dm":
            return self._refuse("not_a_dm", sender)
        if len(record.fields["box"]) > MAX_BOX_BYTES:
            # The kind allows more; what this protocol carries is one message's text.
            return self._refuse("oversize", sender)
        recipient = record.fields["recipient"]
        me = self.store.identity.public_key
        by_author = public_key_of_peer(sender) == record.author
        try:
            if recipient == me:
                if self.messages.message(record.id) is not None:
                    return ["delivered"]
                mark = self.store.marks().get(record.author)
                if mark == "block":  # dropped unread; the sender is not told
                    self.dropped["blocked"] += 1
                    self.node.dropped["dm_blocked"] += 1
                    return ["delivered"]
                if (
                    not self.messages.shared_communities(record.author, me)
                    and self.messages.received_from(record.author) >= STRANGER_MESSAGES
                    and not self.messages.has_written_to(record.author)
                ):
                    return self._refuse("too_many", sender)
                try:
                    message = open_message(self.store.identity, record)
                except DirectMessageError as exc:
                    return self._refuse(exc.reason, sender, blame=by_author)  # the box
                self.messages.add_received(message, envelope, now)
                self._arrived()
                return ["delivered"]
            if record.author == me:
                return self._refuse("own_message", sender)
            if self.messages.is_held(record.id):
                return ["held"]
            if now - record.created_at > RELAY_LIFETIME_MS:
                return self._refuse("expired", sender)
            if not self.messages.shared_communities(record.author, recipient):
                return self._refuse("no_shared_community", sender)
            self.messages.hold(record, now)
            recipient_peer = self.store.peer_id_of(recipient)
            if recipient_peer in self.node.peer.connected_peers():
                self.push_soon(recipient_peer)  # the recipient is here: pass it on now
        except StoreError as exc:  # a full disk, say: the sender keeps it and tries later
            log.warning("could not keep a direct message: %s", exc)
            return self._refuse("store_error", sender)
        self._arrived()
        return ["held"]

    def _arrived(self) -> None:
        self._arrival.set()
        self._arrival = trio.Event()

    def _refuse(self, reason: str, sender: str, *, blame: bool | None = None) -> list[Any]:
        """Count a refusal; it costs the peer score if only it can have caused it: a
        broken record it handed over (`blame` None: by the reason), or a bad box only
        when it sealed the box itself (`blame` given)."""
        self.dropped[reason] += 1
        self.node.dropped[f"dm_{reason}"] += 1
        if blame if blame is not None else reason in _BLAMED:
            self.node.peer.penalise(sender, INVALID_PENALTY)
        return ["refused", reason]

    async def _serve(self, stream: Any) -> None:
        asker = str(stream.muxed_conn.peer_id)
        if self._streams[asker] >= MAX_STREAMS_PER_PEER:
            self.node.dropped["dm_too_many_streams"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        self._streams[asker] += 1
        frames = _Frames(stream)
        try:
            with trio.fail_after(DM_STREAM_TIMEOUT):
                for _ in range(MAX_DMS_PER_STREAM):
                    with trio.fail_after(DM_IDLE):
                        message = await frames.next()
                    if message is None:
                        return
                    if message[0] != "dm" or len(message) != 2 or not isinstance(message[1], bytes):
                        raise DmProtocolError("a direct message frame carries one envelope")
                    if self._limiter.allow(asker, trio.current_time()):
                        verdict = self.receive(message[1], asker)
                    else:
                        verdict = self._refuse("rate_limited", asker)
                    await stream.write(encode_frame(verdict))
        except DmProtocolError as exc:
            log.info("direct messages from %s refused: %s", asker, exc)
            self._refuse(exc.reason, asker)
            with contextlib.suppress(Exception):
                await stream.reset()
        except trio.TooSlowError:
            self.node.dropped["dm_stalled"] += 1
        except Exception as exc:  # reset by the other side
            log.debug("direct messages from %s ended: %s", asker, exc)
        finally:
            self._streams[asker] -= 1
            if not self._streams[asker]:
                del self._streams[asker]
            with contextlib.suppress(Exception):
                await stream.close()


def _verdict(reply: list[Any]) -> tuple[str, str]:
    word = reply[0]
    if word in ("delivered", "held") and len(reply) == 1:
        return word, ""
    if word == "refused" and len(reply) == 2 and isinstance(reply[1], str):
        return "refused", reply[1][:64]
    raise DmProtocolError("the answer to a direct message is not a verdict")
