-- Schema 3: direct messages (docs/protocol.md "Direct messages").
--
-- `dm` records never enter `records`: they belong to no community, are never gossiped
-- or synced, and only their two members (and, sealed, the members who hold them for
-- the recipient) ever see them.

-- This member's conversations: each message they sent or received, one row per `dm`
-- record. Invariants: `peer` is the other member (the recipient of an 'out' message,
-- the sender of an 'in' one), never this member; `text` was read out of `envelope`'s
-- sealed box ('in') or sealed into it ('out'); `envelope` is the signed dm record, kept
-- so an undelivered message can be sent again unchanged.
-- state: 'in' messages are 'unread' or 'read'; 'out' messages are 'waiting' (nobody has
-- it yet), 'forwarded' (handed to `forwarders` members who share a community with the
-- recipient; still sent directly when the recipient's node is met) or 'delivered' (the
-- recipient's node answered that it has it).
CREATE TABLE messages (
    id          BLOB PRIMARY KEY CHECK (length(id) = 32),
    peer        BLOB NOT NULL CHECK (length(peer) = 32),
    direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,   -- the sender's clock, ms since the epoch
    received_at INTEGER NOT NULL,   -- when this store took it in (or wrote it)
    state       TEXT NOT NULL CHECK (
        (direction = 'in' AND state IN ('unread', 'read'))
        OR (direction = 'out' AND state IN ('waiting', 'forwarded', 'delivered'))
    ),
    forwarders  INTEGER NOT NULL DEFAULT 0 CHECK (forwarders >= 0),
    envelope    BLOB NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX messages_by_peer ON messages (peer, created_at);
CREATE INDEX messages_undelivered ON messages (peer) WHERE state IN ('waiting', 'forwarded');

-- Sealed messages this node holds for other members, to hand over when their node
-- connects. Only the envelope is kept: the text is sealed to the recipient and cannot
-- be read here. Invariants: held only when `sender` and `recipient` were both members
-- of a community this member is in; at most 200 rows per recipient, 100 per sender and
-- 10,000 in all (the oldest go first); rows older than 14 days are deleted; a row is
-- deleted once the recipient's node answers that it has the message.
CREATE TABLE dm_relay (
    id          BLOB PRIMARY KEY CHECK (length(id) = 32),
    recipient   BLOB NOT NULL CHECK (length(recipient) = 32),
    sender      BLOB NOT NULL CHECK (length(sender) = 32),
    envelope    BLOB NOT NULL,
    received_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX dm_relay_by_recipient ON dm_relay (recipient, received_at);
CREATE INDEX dm_relay_by_sender ON dm_relay (sender, received_at);
CREATE INDEX dm_relay_by_age ON dm_relay (received_at);
