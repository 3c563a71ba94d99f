-- This member's own marks on other members, for themselves alone (no record is sent).
-- Invariant: one row per member. 'trust': a seed of this member's trust, as if they had
-- vouched for them. 'mute': their posts, replies and reactions are hidden from this
-- member's feeds, threads and search. 'block': as mute, and their references count for
-- nothing in this member's trust and their direct messages are not shown.
CREATE TABLE marks (
    member BLOB PRIMARY KEY CHECK (length(member) = 32),
    mark   TEXT NOT NULL CHECK (mark IN ('trust', 'mute', 'block')),
    since  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The trust graph is read whole (author, subject, skill of every reference) when a
-- member asks: this covering index lets that read skip the references' text...
CREATE INDEX refs_graph ON refs (author, subject, skill, community);
-- ... and this one skips revoked references without scanning every record.
CREATE INDEX records_revokes ON records (target)
    WHERE kind = 'reference_revoke' AND status = 'allowed';
-- Asking looks up who offers a skill among offers only, not every post.
CREATE INDEX posts_offers ON posts (author) WHERE type = 'offer' AND deleted = 0 AND removed = 0;
