"""Who may author what, judged against what a member already knows (docs/protocol.md,
"Authority"). A record whose dependency has not arrived yet is PENDING, not refused: the
store keeps it and judges it again when the dependency arrives.

`MemoryState` is the reference model of the whole rule: records are judged in
(created_at, id) order, pending ones again whenever something new is allowed, so the
outcome depends only on the set of records, never on the order they arrived in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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
    max_uses: int | None = None
    uses: int = 0  # allowed joins with it, counted in judging order
    issuer: bytes | None = None  # the author of the invite record


class KnownState(Protocol):
    """The state authority is judged against; the store implements it over SQL."""

    def community(self, community_id: bytes) -> CommunityFacts | None: ...

    def roles(self, community_id: bytes, member: bytes) -> frozenset[str]: ...

    def is_member(self, community_id: bytes, member: bytes) -> bool: ...

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
    "reference_hide": ("reference",),
}
# Kinds only members may author in a community (roles make their holders members).
_MEMBER_KINDS = frozenset({"post", "reaction", "edit", "referral", "invite", "reference"})
# Kinds about the author's own records, allowed after leaving or without a community.
_OWN_RECORD_KINDS = frozenset({"delete", "reference_revoke", "reference_hide", "leave"})


def _check_target(record: Record, state: KnownState) -> Decision | None:
    kind = record.kind
    target = state.target(record.fields["target"])
    if target is None:
        return _pending(record.fields["target"], "the record it refers to has not arrived")
    if target.kind not in _OWN_TARGET_KINDS[kind]:
        return _denied(f"a {kind} cannot refer to a {target.kind}")
    if kind == "reference_hide":
        if target.subject != record.author:
            return _denied("only the subject of a reference can hide it")
    elif target.author != record.author:
        return _denied(f"only the author of a {target.kind} can {kind.split('_')[-1]} it")
    if kind in ("edit", "delete") and target.community != record.community:
        return _denied("the target belongs to another community")
    return None


def check_authority(record: Record, state: KnownState) -> Decision:
    """Judge whether the author of a (validated) record may make it, given `state`."""
    kind = record.kind
    fields = record.fields
    author = record.author
    community_id = record.community

    if kind in _OWN_TARGET_KINDS:
        refused = _check_target(record, state)
        if refused is not None:
            return refused
    if community_id is None or kind == "community" or kind in _OWN_RECORD_KINDS:
        return ALLOWED
    facts = state.community(community_id)
    if facts is None:
        return _pending(community_id, "the community's genesis record has not arrived")
    if state.is_banned(community_id, author):
        return _denied("the author is banned from this community")
    roles = state.roles(community_id, author)

    if kind in ("role_grant", "role_revoke"):
        if "owner" not in roles:
            return _denied("only owners can grant and revoke roles")
    elif kind == "announcement":
        if "owner" not in roles:
            return _denied("only owners announce a community")
        if facts.visibility != "public":
            return _denied("a private community is not announced")
    elif kind in ("moderation", "key_update"):
        if not roles:
            return _denied("only owners and moderators can do this")
        if kind == "key_update" and any(
            state.is_banned(community_id, entry["member"]) for entry in fields["keys"]
        ):
            return _denied("a key is sealed to a banned member")
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
        if invite.max_uses is not None and invite.uses >= invite.max_uses:
            return _denied("the invite had been used up")
        if invite.issuer is not None and state.is_banned(community_id, invite.issuer):
            return _denied("the invite's issuer is banned")
        if (
            invite.issuer is not None
            and facts.visibility == "private"
            and not state.roles(community_id, invite.issuer)
        ):
            return _denied("the invite's issuer no longer lets people into this community")
    if kind in _MEMBER_KINDS and not state.is_member(community_id, author):
        return _pending(author, "the author's join has not arrived")
    return ALLOWED


@dataclass
class Facts:
    """What authority needs, folded from allowed records; implements KnownState."""

    communities: dict[bytes, CommunityFacts] = field(default_factory=dict)
    role_sets: dict[tuple[bytes, bytes], set[str]] = field(default_factory=dict)
    members: set[tuple[bytes, bytes]] = field(default_factory=set)
    banned: set[tuple[bytes, bytes]] = field(default_factory=set)
    targets: dict[bytes, TargetFacts] = field(default_factory=dict)
    invites: dict[tuple[bytes, bytes], InviteFacts] = field(default_factory=dict)
    invite_records: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)

    def community(self, community_id: bytes) -> CommunityFacts | None:
        return self.communities.get(community_id)

    def roles(self, community_id: bytes, member: bytes) -> frozenset[str]:
        return frozenset(self.role_sets.get((community_id, member), ()))

    def is_member(self, community_id: bytes, member: bytes) -> bool:
        return (community_id, member) in self.members or bool(self.roles(community_id, member))

    def is_banned(self, community_id: bytes, member: bytes) -> bool:
        return (community_id, member) in self.banned

    def target(self, record_id: bytes) -> TargetFacts | None:
        return self.targets.get(record_id)

    def invite(self, community_id: bytes, invite_key: bytes) -> InviteFacts | None:
        return self.invites.get((community_id, invite_key))

    def apply(self, record: Record) -> None:
        """Fold an allowed record in."""
        fields = record.fields
        community_id = record.community
        self.targets[record.id] = TargetFacts(
            record.author, record.kind, community_id, fields.get("subject")
        )
        if record.kind == "community":
            self.communities[record.id] = CommunityFacts(fields["visibility"])
            self.role_sets[(record.id, record.author)] = {"owner"}
            self.members.add((record.id, record.author))
            return
        if community_id is None:
            return
        kind = record.kind
        if kind in ("role_grant", "role_revoke"):
            roles = self.role_sets.setdefault((community_id, fields["subject"]), set())
            if kind == "role_grant":
                roles.add(fields["role"])
                self.members.add((community_id, fields["subject"]))
            else:
                roles.discard(fields["role"])
        elif kind == "join":
            self.members.add((community_id, record.author))
            pair = (community_id, fields["invite_key"])
            used = self.invites[pair]
            self.invites[pair] = replace(used, uses=used.uses + 1)
        elif kind == "leave":
            self.members.discard((community_id, record.author))
        elif kind == "moderation" and fields["action"] in ("ban", "unban"):
            pair = (community_id, fields["target"])
            if fields["action"] == "ban":
                self.banned.add(pair)
            else:
                self.banned.discard(pair)
        elif kind == "invite":
            pair = (community_id, fields["invite_key"])
            self.invites[pair] = InviteFacts(
                fields["expires_at"], max_uses=fields.get("max_uses"), issuer=record.author
            )
            self.invite_records[record.id] = pair
        elif kind == "delete" and fields["target"] in self.invite_records:
            pair = self.invite_records[fields["target"]]
            self.invites[pair] = replace(self.invites[pair], withdrawn=True)


def fold(records: Iterable[Record]) -> tuple[Facts, dict[bytes, Decision]]:
    """Judge a set of records in (created_at, id) order and return the resulting facts
    and each record's decision. A pending record is judged again each time another
    record is allowed; what is still pending at the end stays pending."""
    facts = Facts()
    decisions: dict[bytes, Decision] = {}
    pending: list[Record] = []

    def admit(record: Record) -> bool:
        decision = check_authority(record, facts)
        decisions[record.id] = decision
        if decision.verdict is Verdict.ALLOWED:
            facts.apply(record)
            return True
        return False

    for record in sorted(records, key=lambda r: (r.created_at, r.id)):
        if not admit(record):
            if decisions[record.id].verdict is Verdict.PENDING:
                pending.append(record)
            continue
        progress = True
        while progress and pending:
            progress = False
            for waiting in list(pending):
                if admit(waiting) or decisions[waiting.id].verdict is Verdict.DENIED:
                    pending.remove(waiting)
                    progress = True
    return facts, decisions


@dataclass
class MemoryState:
    """The reference model: every record known so far, judged as `fold` says.

    Slow on purpose (it judges everything again on each arrival) and simple enough to
    trust; the store must reach the same decisions incrementally.
    """

    records: dict[bytes, Record] = field(default_factory=dict)
    facts: Facts = field(default_factory=Facts)
    decisions: dict[bytes, Decision] = field(default_factory=dict)

    def apply(self, record: Record) -> Decision:
        """Add `record` and return its decision in the state of all records known now."""
        self.records[record.id] = record
        self.facts, self.decisions = fold(self.records.values())
        return self.decisions[record.id]
