"""Who may author what, judged against what a member already knows (docs/protocol.md,
"Authority"). A record whose dependency has not arrived yet is PENDING, not refused: the
store keeps it and judges it again when the dependency arrives.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from kithnet.core.envelope import Record


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    PENDING = "pending"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    waiting_for: bytes | None = None


ALLOWED = Decision(Verdict.ALLOWED)


@dataclass(frozen=True, slots=True)
class CommunityFacts:
    visibility: str


@dataclass(frozen=True, slots=True)
class TargetFacts:
    """What authority needs to know of a record another record points at."""

    author: bytes
    kind: str
    community: bytes | None
    subject: bytes | None = None  # for references


@dataclass(frozen=True, slots=True)
class InviteFacts:
    expires_at: int
    withdrawn: bool = False


class KnownState(Protocol):
    """The state authority is judged against; the store implements it over SQL."""

    def community(self, community_id: bytes) -> CommunityFacts | None: ...

    def roles(self, community_id: bytes, member: bytes) -> frozenset[str]: ...

    def is_banned(self, community_id: bytes, member: bytes) -> bool: ...

    def target(self, record_id: bytes) -> TargetFacts | None: ...

    def invite(self, community_id: bytes, invite_key: bytes) -> InviteFacts | None: ...


def _denied(reason: str) -> Decision:
    return Decision(Verdict.DENIED, reason)


def _pending(waiting_for: bytes, reason: str) -> Decision:
    return Decision(Verdict.PENDING, reason, waiting_for)


_OWN_TARGET_KINDS = {
    "edit": ("post",),
    "delete": ("post", "reaction", "invite", "referral"),
    "reference_revoke": ("reference",),
}


def check_authority(record: Record, state: KnownState) -> Decision:
    """Judge whether the author of a (validated) record may make it."""
    kind = record.kind
    fields = record.fields
    author = record.author
    community_id = record.community

    if kind in _OWN_TARGET_KINDS or kind == "reference_hide":
        target = state.target(fields["target"])
        if target is None:
            return _pending(fields["target"], "the record it refers to has not arrived")
        if target.kind not in _OWN_TARGET_KINDS.get(kind, ("reference",)):
            return _denied(f"a {kind} cannot refer to a {target.kind}")
        if kind == "reference_hide":
            if target.subject != author:
                return _denied("only the subject of a reference can hide it")
        elif target.author != author:
            return _denied(f"only the author of a {target.kind} can {kind.split('_')[-1]} it")
        if kind in ("edit", "delete") and target.community != community_id:
            return _denied("the target belongs to another community")

    if community_id is None or kind == "community":
        return ALLOWED
    facts = state.community(community_id)
    if facts is None:
        return _pending(community_id, "the community's genesis record has not arrived")
    roles = state.roles(community_id, author)
    if kind == "leave":
        return ALLOWED
    if "owner" not in roles and state.is_banned(community_id, author):
        return _denied("the author is banned from this community")

    if kind in ("role_grant", "role_revoke", "announcement"):
        if "owner" not in roles:
            return _denied("only owners can do this")
    elif kind in ("moderation", "key_update"):
        if not roles:
            return _denied("only owners and moderators can do this")
        banned = fields["target"] if fields.get("action") == "ban" else None
        if banned is not None and "owner" in state.roles(community_id, banned):
            return _denied("an owner cannot be banned; revoke the role first")
    elif kind == "invite":
        if facts.visibility == "private" and not roles:
            return _denied("only owners and moderators invite to a private community")
    elif kind == "join":
        invite = state.invite(community_id, fields["invite_key"])
        if invite is None:
            return _pending(fields["invite_key"], "the invite record has not arrived")
        if invite.withdrawn:
            return _denied("the invite was withdrawn")
        if record.created_at >= invite.expires_at:
            return _denied("the invite had expired")
    return ALLOWED


@dataclass
class MemoryState:
    """An in-memory KnownState that applies allowed records in the order given.

    A reference model for tests and tools; the store keeps the same facts in SQL and
    makes the result independent of arrival order.
    """

    communities: dict[bytes, CommunityFacts] = field(default_factory=dict)
    role_sets: dict[tuple[bytes, bytes], set[str]] = field(default_factory=dict)
    banned: set[tuple[bytes, bytes]] = field(default_factory=set)
    targets: dict[bytes, TargetFacts] = field(default_factory=dict)
    invites: dict[tuple[bytes, bytes], InviteFacts] = field(default_factory=dict)
    invite_records: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)

    def community(self, community_id: bytes) -> CommunityFacts | None:
        return self.communities.get(community_id)

    def roles(self, community_id: bytes, member: bytes) -> frozenset[str]:
        return frozenset(self.role_sets.get((community_id, member), ()))

    def is_banned(self, community_id: bytes, member: bytes) -> bool:
        return (community_id, member) in self.banned

    def target(self, record_id: bytes) -> TargetFacts | None:
        return self.targets.get(record_id)

    def invite(self, community_id: bytes, invite_key: bytes) -> InviteFacts | None:
        return self.invites.get((community_id, invite_key))

    def apply(self, record: Record) -> Decision:
        """Judge `record` and, if allowed, fold it into the state."""
        decision = check_authority(record, self)
        if decision.verdict is not Verdict.ALLOWED:
            return decision
        fields = record.fields
        community_id = record.community
        self.targets[record.id] = TargetFacts(
            record.author, record.kind, community_id, fields.get("subject")
        )
        if record.kind == "community":
            self.communities[record.id] = CommunityFacts(fields["visibility"])
            self.role_sets[(record.id, record.author)] = {"owner"}
        elif community_id is None:
            pass
        elif record.kind in ("role_grant", "role_revoke"):
            roles = self.role_sets.setdefault((community_id, fields["subject"]), set())
            if record.kind == "role_grant":
                roles.add(fields["role"])
            else:
                roles.discard(fields["role"])
        elif record.kind == "moderation" and fields["action"] in ("ban", "unban"):
            pair = (community_id, fields["target"])
            if fields["action"] == "ban":
                self.banned.add(pair)
            else:
                self.banned.discard(pair)
        elif record.kind == "invite":
            pair = (community_id, fields["invite_key"])
            self.invites[pair] = InviteFacts(fields["expires_at"])
            self.invite_records[record.id] = pair
        elif record.kind == "delete" and fields["target"] in self.invite_records:
            pair = self.invite_records[fields["target"]]
            self.invites[pair] = InviteFacts(self.invites[pair].expires_at, withdrawn=True)
        return decision
