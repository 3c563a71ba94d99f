-- Schema 2: the peer book and node settings (issue 4).

-- Where members' nodes can be reached, as learnt from invite codes, from members who
-- connected, from peer exchange and from the DHT. The node dials these when it starts,
-- so a member who was away finds the network again without a new invite.
-- Invariant: every address ends in /p2p/<peer_id>; at most 8 per peer.
CREATE TABLE peers (
    peer_id        TEXT PRIMARY KEY,
    addresses      TEXT NOT NULL,               -- JSON array of multiaddrs
    source         TEXT NOT NULL CHECK (source IN ('invite', 'connected', 'exchange', 'dht', 'manual')),
    learnt_at      INTEGER NOT NULL,            -- ms since the epoch
    last_connected INTEGER,                     -- ms since the epoch; NULL: never
    failures       INTEGER NOT NULL DEFAULT 0   -- failed dials since the last success
) STRICT, WITHOUT ROWID;

-- Small node settings by name (e.g. `listen`: the addresses `kithnet serve` listens on,
-- as a JSON array), so invites made while no node runs can still name them.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Catch-up sync serves only records in effect: a record waiting for what it depends on,
-- or refused, stays with whoever holds it (a post by someone who never joined does not
-- spread). This finds those few quickly.
CREATE INDEX records_not_allowed ON records (community) WHERE status != 'allowed';

-- The content keys of private communities this member holds, by epoch (the newest is in
-- use). Each came from a `key_update` record sealed to this member (or was made here,
-- and sealed to this member too, so a backup restores it).
CREATE TABLE community_keys (
    community BLOB NOT NULL,
    epoch     INTEGER NOT NULL,
    key       BLOB NOT NULL,
    PRIMARY KEY (community, epoch)
) STRICT, WITHOUT ROWID;
