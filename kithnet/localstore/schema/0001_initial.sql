-- Schema version 1: the member's identity, every record they hold, and the state derived
-- from the allowed ones. Everything here lives inside the SQLCipher-encrypted database.
--
-- Invariants the code keeps (docs/storage.md explains them):
-- * `records` is the source of truth; every other table except `identity`, `counters` and
--   `reads.read_seq` can be rebuilt from it by judging its rows in (created_at, id) order.
-- * A "position" is the pair (created_at, id); the judge processes a community's records
--   in position order, as kithnet.core.authority.fold does.

-- The member this store belongs to. Exactly one row; the seed never leaves the database.
CREATE TABLE identity (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    seed       BLOB NOT NULL CHECK (length(seed) = 32),
    public_key BLOB NOT NULL CHECK (length(public_key) = 32),
    created_at INTEGER NOT NULL
) STRICT;

-- Every record that passed decode, signature check and stateless validation, whatever
-- authority said. Denied and pending records are kept because a record that arrives
-- later (dated earlier) can change their outcome.
-- status: 'allowed' (in effect), 'pending' (waiting for `waiting_for`), 'denied'.
-- target: the record id the record depends on or points at (edit/delete/reaction/
--   reference_revoke/reference_hide target, a reply's parent, a referral's question).
-- seq: arrival order in this store (for unread counts); never sent anywhere.
CREATE TABLE records (
    seq         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    envelope    BLOB NOT NULL,
    kind        TEXT NOT NULL,
    author      BLOB NOT NULL CHECK (length(author) = 32),
    community   BLOB CHECK (community IS NULL OR length(community) = 32),
    created_at  INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    target      BLOB,
    status      TEXT NOT NULL CHECK (status IN ('allowed', 'pending', 'denied')),
    reason      TEXT NOT NULL DEFAULT '',
    waiting_for BLOB
) STRICT;
CREATE INDEX records_by_community ON records (community, created_at, id);
CREATE INDEX records_by_target ON records (target) WHERE target IS NOT NULL;
CREATE INDEX records_pending ON records (community, author) WHERE status = 'pending';
CREATE INDEX records_waiting ON records (waiting_for) WHERE status = 'pending';

-- Per community: how far the judge has got. `judged_*` is the greatest position judged
-- (a record arriving before it may need the community judged again); `genesis_*` is the
-- position at which the genesis took effect.
CREATE TABLE judge_marks (
    community  BLOB PRIMARY KEY,
    judged_at  INTEGER NOT NULL,
    judged_id  BLOB NOT NULL,
    genesis_at INTEGER,
    genesis_id BLOB
) STRICT, WITHOUT ROWID;

-- Communities whose genesis is allowed. id = the genesis record id.
CREATE TABLE communities (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    tags        TEXT NOT NULL,  -- space-separated normalised tags
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    creator     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Membership facts per (community, member). changed_* is the position at which these
-- facts last changed; a record judged out of order is exact only if it is later.
CREATE TABLE members (
    community  BLOB NOT NULL,
    member     BLOB NOT NULL,
    joined     INTEGER NOT NULL DEFAULT 0 CHECK (joined IN (0, 1)),
    banned     INTEGER NOT NULL DEFAULT 0 CHECK (banned IN (0, 1)),
    changed_at INTEGER NOT NULL,
    changed_id BLOB NOT NULL,
    PRIMARY KEY (community, member)
) STRICT, WITHOUT ROWID;

-- Roles held; holding a role makes a member.
CREATE TABLE roles (
    community BLOB NOT NULL,
    member    BLOB NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('owner', 'moderator')),
    PRIMARY KEY (community, member, role)
) STRICT, WITHOUT ROWID;

-- Invites published in a community; uses counts allowed joins in judging order.
CREATE TABLE invites (
    community  BLOB NOT NULL,
    invite_key BLOB NOT NULL,
    record_id  BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    withdrawn  INTEGER NOT NULL DEFAULT 0 CHECK (withdrawn IN (0, 1)),
    changed_at INTEGER NOT NULL,
    changed_id BLOB NOT NULL,
    PRIMARY KEY (community, invite_key)
) STRICT, WITHOUT ROWID;

-- Posts, questions and offers, with edits and deletions applied. A post is visible when
-- neither deleted by its author nor removed by a moderator; only visible posts are in
-- posts_fts. text/tags are the newest allowed edit's (edit_at/edit_id) or the original.
-- rowid = records.seq of the post, so that a post is found by id through records.
CREATE TABLE posts (
    rowid      INTEGER PRIMARY KEY,
    id         BLOB NOT NULL,
    community  BLOB NOT NULL,
    author     BLOB NOT NULL,
    type       TEXT NOT NULL CHECK (type IN ('post', 'question', 'offer')),
    text       TEXT NOT NULL,
    tags       TEXT NOT NULL,
    area       TEXT NOT NULL,
    terms      TEXT NOT NULL,
    reply_to   BLOB,
    created_at INTEGER NOT NULL,
    edit_at    INTEGER,
    edit_id    BLOB,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    removed    INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1))
) STRICT;
CREATE INDEX posts_feed ON posts (community, created_at, id)
    WHERE reply_to IS NULL AND deleted = 0 AND removed = 0;
CREATE INDEX posts_replies ON posts (reply_to, created_at) WHERE reply_to IS NOT NULL;

-- Full-text index of visible posts (rowid = posts.rowid). Contentless: the text lives
-- once, in posts. `scope` holds the community id in hex, a single token, so that a search
-- within a community is one index query.
CREATE VIRTUAL TABLE posts_fts USING fts5 (
    text, tags, area, scope,
    content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);

-- Reactions; deleted when their author deletes them.
CREATE TABLE reactions (
    id         BLOB PRIMARY KEY,
    community  BLOB NOT NULL,
    target     BLOB NOT NULL,
    author     BLOB NOT NULL,
    emoji      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
) STRICT, WITHOUT ROWID;
CREATE INDEX reactions_by_target ON reactions (target) WHERE deleted = 0;

-- Records a moderator removed (the record itself may arrive later).
CREATE TABLE removed (
    community  BLOB NOT NULL,
    record_id  BLOB NOT NULL,
    PRIMARY KEY (community, record_id)
) STRICT, WITHOUT ROWID;

-- Every allowed moderation action, the community's moderation log.
CREATE TABLE moderation_log (
    id         BLOB PRIMARY KEY,
    community  BLOB NOT NULL,
    moderator  BLOB NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('remove', 'ban', 'unban')),
    target     BLOB NOT NULL,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX moderation_by_community ON moderation_log (community, created_at);

-- References (signed vouches). Revocation and hiding are read from the allowed
-- reference_revoke / reference_hide records that target them, so they need no copy here.
CREATE TABLE refs (
    id           BLOB PRIMARY KEY,
    community    BLOB,
    author       BLOB NOT NULL,
    subject      BLOB NOT NULL,
    skill        TEXT NOT NULL,
    text         TEXT NOT NULL,
    relationship TEXT NOT NULL,
    evidence     BLOB,
    created_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX refs_by_subject ON refs (subject, skill);
CREATE INDEX refs_by_community ON refs (community);

-- Referrals answering questions.
CREATE TABLE referrals (
    id           BLOB PRIMARY KEY,
    community    BLOB NOT NULL,
    author       BLOB NOT NULL,
    question     BLOB NOT NULL,
    to_community BLOB,
    to_member    BLOB,
    invite       TEXT NOT NULL,
    note         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1))
) STRICT, WITHOUT ROWID;
CREATE INDEX referrals_by_question ON referrals (question);

-- The public directory: each community's newest allowed announcement.
CREATE TABLE directory (
    community   BLOB PRIMARY KEY,
    record_id   BLOB NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    tags        TEXT NOT NULL,
    invite      TEXT NOT NULL,
    members     INTEGER,
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Each member's newest profile (by position).
CREATE TABLE profiles (
    rowid      INTEGER PRIMARY KEY,
    member     BLOB NOT NULL UNIQUE,
    record_id  BLOB NOT NULL,
    name       TEXT NOT NULL,
    bio        TEXT NOT NULL,
    skills     TEXT NOT NULL,
    services   TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE VIRTUAL TABLE profiles_fts USING fts5 (
    name, bio, skills, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);

-- What this member has read: posts that arrived after read_seq are unread.
-- unread = the number of visible posts by others in the community whose arrival (rowid)
-- is after read_seq; kept up to date as posts arrive, are hidden and are read, so that
-- the sidebar never counts.
CREATE TABLE reads (
    community BLOB PRIMARY KEY,
    read_seq  INTEGER NOT NULL DEFAULT 0,
    unread    INTEGER NOT NULL DEFAULT 0 CHECK (unread >= 0)
) STRICT, WITHOUT ROWID;

-- Records refused before storage, by reason code (malformed, bad_signature, ...).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
