-- Members this member has muted or blocked, for themselves alone (no record is sent).
-- Invariant: one row per member; 'mute' hides their posts, replies and reactions from
-- this member's feeds, threads and search; 'block' does that and also keeps their
-- references out of this member's trust and their direct messages out of the inbox.
CREATE TABLE silenced (
    member BLOB PRIMARY KEY CHECK (length(member) = 32),
    level  TEXT NOT NULL CHECK (level IN ('mute', 'block')),
    since  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
