-- Schema 4: pictures and small files on posts (blobs), named by BLAKE2b-256 hash.

-- Blobs this member holds, whole or being received. A blob's bytes are in blob_chunks,
-- so a large one is never read or written whole.
-- Invariant: complete = 1 only once every chunk is stored and the BLAKE2b-256 of their
-- concatenation equals `hash` and their total length equals `size`; a blob with
-- complete = 0 is never served or shown as here (a node that stops while receiving one
-- deletes it when it starts again). `size` counts towards the storage limit from the
-- moment a fetch begins.
CREATE TABLE blobs (
    hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
    size       INTEGER NOT NULL CHECK (size >= 0),
    mime       TEXT NOT NULL,
    complete   INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
    created_at INTEGER NOT NULL                  -- ms since the epoch
) STRICT, WITHOUT ROWID;

-- The bytes of a blob in order: chunk `idx` holds bytes [idx * 65536, (idx + 1) * 65536).
-- Invariant: every chunk but the last of a blob is exactly 65,536 bytes; chunks exist only
-- for a row of `blobs`.
CREATE TABLE blob_chunks (
    hash BLOB NOT NULL,
    idx  INTEGER NOT NULL CHECK (idx >= 0),
    data BLOB NOT NULL,
    PRIMARY KEY (hash, idx)
) STRICT, WITHOUT ROWID;

-- The attachments each post record names, in the record's order (idx from 0), written
-- when the record is first stored whatever authority's verdict: a record's attachments
-- never change (an edit changes text and tags only). Whether a blob may be served or is
-- wanted is read through `records` (allowed) and `posts` (not deleted or removed).
-- Invariant: one row per (post, idx) of a stored post record that has attachments.
CREATE TABLE attachments (
    post      BLOB NOT NULL,
    idx       INTEGER NOT NULL CHECK (idx BETWEEN 0 AND 7),
    community BLOB NOT NULL,
    hash      BLOB NOT NULL,
    size      INTEGER NOT NULL,
    mime      TEXT NOT NULL,
    name      TEXT NOT NULL,
    PRIMARY KEY (post, idx)
) STRICT, WITHOUT ROWID;
CREATE INDEX attachments_by_hash ON attachments (hash);
