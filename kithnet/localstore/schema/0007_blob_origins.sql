-- Schema 7: the communities each blob was obtained for, so that a blob is served only
-- where it came from (docs/storage.md, "Blobs").

-- One row per (blob, community) the member obtained the blob for: a community in which
-- the member posted it as their own attachment (written when their post is stored), or
-- the community for which it was fetched from a member of that community (written in the
-- transaction that marks the blob complete). A store written before this schema gets,
-- when its node starts, for each complete blob with no row, the community of the first
-- stored post that names it; so does a blob restored from a backup.
-- Invariant: a blob is served to a peer only for a community that is one of its origins,
-- that names it in an allowed, visible post, and of which the peer is a member, not
-- banned. Rows go with the blob when it is freed; a row for a blob not held means only
-- that it may be shared there once it is held.
CREATE TABLE blob_origins (
    hash      BLOB NOT NULL CHECK (length(hash) = 32),
    community BLOB NOT NULL CHECK (length(community) = 32),
    PRIMARY KEY (hash, community)
) STRICT, WITHOUT ROWID;
