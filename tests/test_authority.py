"""Authority against known state: owners, moderators, authors, bans and invites."""

from __future__ import annotations

from typing import Any

from kithnet.core.authority import MemoryState, Verdict
from kithnet.core.envelope import Record, sign_record
from kithnet.core.validation import validate
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from tests.strategies import NOW_MS

OWNER = Identity.from_seed(bytes([1]) * 32)
MOD = Identity.from_seed(bytes([2]) * 32)
MEMBER = Identity.from_seed(bytes([3]) * 32)
OTHER = Identity.from_seed(bytes([4]) * 32)


class Community:
    """A community built record by record, as a member's node would see it."""

    def __init__(self, visibility: str = "public") -> None:
        self.state = MemoryState()
        self.clock = NOW_MS - 100_000
        genesis = self.make(OWNER, kind="community", name="Lofts", visibility=visibility)
        self.id = genesis.id
        assert self.state.apply(genesis).verdict is Verdict.ALLOWED

    def make(self, who: Identity, **fields: Any) -> Record:
        self.clock += 1
        fields.setdefault("created_at", self.clock)
        if fields["kind"] != "community":
            fields.setdefault("community", self.id)
        record = sign_record(who, fields)
        validate(record, NOW_MS)
        return record

    def apply(self, who: Identity, **fields: Any) -> Verdict:
        return self.state.apply(self.make(who, **fields)).verdict


def test_only_owners_grant_roles() -> None:
    c = Community()
    assert c.apply(MEMBER, kind="role_grant", subject=MEMBER.public_key, role="owner") is (
        Verdict.DENIED
    )
    assert c.apply(OWNER, kind="role_grant", subject=MOD.public_key, role="moderator") is (
        Verdict.ALLOWED
    )
    assert c.state.roles(c.id, MOD.public_key) == {"moderator"}
    # A moderator is not an owner.
    assert c.apply(MOD, kind="role_grant", subject=OTHER.public_key, role="moderator") is (
        Verdict.DENIED
    )


def test_a_second_owner_keeps_the_community_alive() -> None:
    c = Community()
    assert c.apply(OWNER, kind="role_grant", subject=MOD.public_key, role="owner") is (
        Verdict.ALLOWED
    )
    assert c.apply(OWNER, kind="role_revoke", subject=OWNER.public_key, role="owner") is (
        Verdict.ALLOWED
    )
    assert c.apply(MOD, kind="role_grant", subject=OTHER.public_key, role="moderator") is (
        Verdict.ALLOWED
    )


def test_moderators_ban_members_but_not_owners_and_banned_members_cannot_post() -> None:
    c = Community()
    c.apply(OWNER, kind="role_grant", subject=MOD.public_key, role="moderator")
    assert c.apply(MEMBER, kind="moderation", action="ban", target=OTHER.public_key) is (
        Verdict.DENIED
    )
    assert c.apply(MOD, kind="moderation", action="ban", target=OWNER.public_key) is (
        Verdict.DENIED
    )
    assert c.apply(MEMBER, kind="post", type="post", text="before") is Verdict.ALLOWED
    assert c.apply(MOD, kind="moderation", action="ban", target=MEMBER.public_key) is (
        Verdict.ALLOWED
    )
    assert c.apply(MEMBER, kind="post", type="post", text="after") is Verdict.DENIED
    assert c.apply(MOD, kind="moderation", action="unban", target=MEMBER.public_key) is (
        Verdict.ALLOWED
    )
    assert c.apply(MEMBER, kind="post", type="post", text="again") is Verdict.ALLOWED


def test_only_the_author_edits_or_deletes_and_a_missing_target_is_pending() -> None:
    c = Community()
    post = c.make(MEMBER, kind="post", type="post", text="mine")
    edit = c.make(OTHER, kind="edit", target=post.id, text="hijacked")
    decision = c.state.apply(edit)
    assert decision.verdict is Verdict.PENDING
    assert decision.waiting_for == post.id
    c.state.apply(post)
    assert c.state.apply(edit).verdict is Verdict.DENIED
    assert c.apply(MEMBER, kind="edit", target=post.id, text="mine, edited") is Verdict.ALLOWED
    assert c.apply(OTHER, kind="delete", target=post.id) is Verdict.DENIED
    assert c.apply(MEMBER, kind="delete", target=post.id) is Verdict.ALLOWED


def test_a_record_in_an_unknown_community_waits_for_its_genesis() -> None:
    c = Community()
    stranger = MemoryState()
    decision = stranger.apply(c.make(MEMBER, kind="post", type="post", text="hi"))
    assert decision.verdict is Verdict.PENDING
    assert decision.waiting_for == c.id


def test_references_are_revoked_by_their_author_and_hidden_by_their_subject() -> None:
    c = Community()
    ref = c.make(
        MEMBER,
        kind="reference",
        subject=OWNER.public_key,
        skill="plumbing",
        text="fixed our sink",
        relationship="hired",
    )
    assert c.state.apply(ref).verdict is Verdict.ALLOWED
    assert c.apply(OTHER, kind="reference_revoke", target=ref.id) is Verdict.DENIED
    assert c.apply(MEMBER, kind="reference_hide", target=ref.id) is Verdict.DENIED
    assert c.apply(OWNER, kind="reference_hide", target=ref.id) is Verdict.ALLOWED
    assert c.apply(MEMBER, kind="reference_revoke", target=ref.id) is Verdict.ALLOWED


def test_joins_need_a_live_invite() -> None:
    c = Community(visibility="private")
    code = InviteCode.create(MEMBER, c.id, "Lofts", [], expires_at=c.clock + 50)
    # A plain member cannot invite to a private community.
    assert (
        c.apply(MEMBER, kind="invite", invite_key=code.invite_key, expires_at=code.expires_at)
        is Verdict.DENIED
    )
    invite = c.make(OWNER, kind="invite", invite_key=code.invite_key, expires_at=code.expires_at)
    join = dict(kind="join", invite_key=code.invite_key, proof=code.prove_join(OTHER.public_key))
    assert c.state.apply(c.make(OTHER, **join)).verdict is Verdict.PENDING
    assert c.state.apply(invite).verdict is Verdict.ALLOWED
    assert c.apply(OTHER, **join) is Verdict.ALLOWED
    assert c.apply(OWNER, kind="delete", target=invite.id) is Verdict.ALLOWED
    assert c.apply(OTHER, **join) is Verdict.DENIED  # withdrawn
    c.clock += 100
    late = InviteCode.create(OWNER, c.id, "Lofts", [], expires_at=c.clock + 1)
    c.apply(OWNER, kind="invite", invite_key=late.invite_key, expires_at=late.expires_at)
    c.clock += 5
    assert (
        c.apply(
            MEMBER,
            kind="join",
            invite_key=late.invite_key,
            proof=late.prove_join(MEMBER.public_key),
        )
        is Verdict.DENIED
    )  # expired


def test_only_owners_announce_the_community() -> None:
    c = Community()
    fields = dict(kind="announcement", name="Lofts", visibility="public")
    assert c.apply(MEMBER, **fields) is Verdict.DENIED
    assert c.apply(OWNER, **fields) is Verdict.ALLOWED
