"""Authority against known state: owners, moderators, members, authors, bans, invites,
and the same outcome whatever order the records arrive in."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from kithnet.core.authority import MemoryState, Verdict, fold
from kithnet.crypto.invite import InviteCode
from tests.histories import HISTORY, MEMBER, MOD, OTHER, OWNER, Community


def test_only_owners_grant_roles() -> None:
    c = Community()
    c.join(MEMBER)
    grant = dict(kind="role_grant", subject=MEMBER.public_key, role="owner")
    assert c.apply(MEMBER, **grant) is Verdict.DENIED
    assert c.apply(OWNER, kind="role_grant", subject=MOD.public_key, role="moderator") is (
        Verdict.ALLOWED
    )
    assert c.state.facts.roles(c.id, MOD.public_key) == {"moderator"}
    assert c.state.facts.is_member(c.id, MOD.public_key)
    # A moderator is not an owner.
    moderator_grant = dict(kind="role_grant", subject=OTHER.public_key, role="moderator")
    assert c.apply(MOD, **moderator_grant) is Verdict.DENIED


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
    assert c.apply(OWNER, kind="role_grant", subject=OWNER.public_key, role="owner") is (
        Verdict.DENIED
    )


def test_only_members_post_and_a_post_waits_for_its_authors_join() -> None:
    c = Community()
    post = c.make(OTHER, kind="post", type="post", text="hello")
    decision = c.state.apply(post)
    assert decision.verdict is Verdict.PENDING
    assert decision.waiting_for == OTHER.public_key
    c.join(OTHER)
    assert c.state.decisions[post.id].verdict is Verdict.ALLOWED
    assert c.apply(OTHER, kind="leave") is Verdict.ALLOWED
    assert c.apply(OTHER, kind="post", type="post", text="after leaving") is Verdict.PENDING


def test_moderators_ban_members_but_not_owners_and_banned_members_cannot_post() -> None:
    c = Community()
    c.join(MEMBER, OTHER)
    c.apply(OWNER, kind="role_grant", subject=MOD.public_key, role="moderator")
    ban = dict(kind="moderation", action="ban")
    assert c.apply(MEMBER, **ban, target=OTHER.public_key) is Verdict.DENIED
    assert c.apply(MOD, **ban, target=OWNER.public_key) is Verdict.DENIED
    assert c.apply(MEMBER, kind="post", type="post", text="before") is Verdict.ALLOWED
    assert c.apply(MOD, **ban, target=MEMBER.public_key) is Verdict.ALLOWED
    assert c.apply(MEMBER, kind="post", type="post", text="after") is Verdict.DENIED
    assert c.apply(MOD, kind="moderation", action="unban", target=MEMBER.public_key) is (
        Verdict.ALLOWED
    )
    assert c.apply(MEMBER, kind="post", type="post", text="again") is Verdict.ALLOWED


def test_a_banned_member_made_owner_is_still_banned() -> None:
    c = Community()
    c.join(MEMBER)
    c.apply(OWNER, kind="moderation", action="ban", target=MEMBER.public_key)
    c.apply(OWNER, kind="role_grant", subject=MEMBER.public_key, role="owner")
    assert c.apply(MEMBER, kind="post", type="post", text="I own this now") is Verdict.DENIED


def test_only_the_author_edits_or_deletes_and_a_missing_target_is_pending() -> None:
    c = Community()
    c.join(MEMBER, OTHER)
    post = c.make(MEMBER, kind="post", type="post", text="mine")
    edit = c.make(OTHER, kind="edit", target=post.id, text="hijacked")
    decision = c.state.apply(edit)
    assert decision.verdict is Verdict.PENDING
    assert decision.waiting_for == post.id
    c.state.apply(post)
    assert c.state.decisions[edit.id].verdict is Verdict.DENIED
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
    c.join(MEMBER, OTHER)
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
    c.join(MEMBER)
    code = InviteCode.create(MEMBER, c.id, "Lofts", [], expires_at=c.clock + 50)
    # A plain member cannot invite to a private community.
    invite_fields = dict(kind="invite", invite_key=code.invite_key, expires_at=code.expires_at)
    assert c.apply(MEMBER, **invite_fields) is Verdict.DENIED
    invite = c.make(OWNER, **invite_fields)
    join = dict(kind="join", invite_key=code.invite_key, proof=code.prove_join(OTHER.public_key))
    early_join = c.make(OTHER, **join)
    assert c.state.apply(early_join).verdict is Verdict.PENDING
    assert c.state.apply(invite).verdict is Verdict.ALLOWED
    assert c.state.decisions[early_join.id].verdict is Verdict.ALLOWED
    assert c.apply(OWNER, kind="delete", target=invite.id) is Verdict.ALLOWED
    assert c.apply(OTHER, **join) is Verdict.DENIED  # withdrawn
    late = InviteCode.create(OWNER, c.id, "Lofts", [], expires_at=c.clock + 2)
    c.apply(OWNER, kind="invite", invite_key=late.invite_key, expires_at=late.expires_at)
    c.clock += 5
    late_join = dict(kind="join", invite_key=late.invite_key)
    assert c.apply(OTHER, **late_join, proof=late.prove_join(OTHER.public_key)) is (Verdict.DENIED)


def test_only_owners_announce_and_only_public_communities() -> None:
    public = Community()
    public.join(MEMBER)
    fields = dict(kind="announcement", name="Lofts", visibility="public")
    assert public.apply(MEMBER, **fields) is Verdict.DENIED
    assert public.apply(OWNER, **fields) is Verdict.ALLOWED
    private = Community(visibility="private")
    assert private.apply(OWNER, **fields) is Verdict.DENIED


@given(st.randoms(use_true_random=False))
def test_arrival_order_never_changes_the_outcome(rng: random.Random) -> None:
    """The contract for any implementation of authority (the store meets it against
    `fold`): records applied one by one, in any order, end as `fold` of the set."""
    expected_facts, expected = fold(HISTORY)
    arrivals = list(HISTORY)
    rng.shuffle(arrivals)
    state = MemoryState()
    for record in arrivals:
        state.apply(record)
    assert state.decisions == expected
    assert state.facts == expected_facts


def test_the_busy_community_ends_as_its_members_would_expect() -> None:
    facts, decisions = fold(HISTORY)
    verdicts = {record.fields.get("text"): decisions[record.id].verdict for record in HISTORY}
    assert verdicts["Loft, please?"] is Verdict.ALLOWED
    assert verdicts["hijack"] is Verdict.DENIED
    assert verdicts["while banned"] is Verdict.DENIED
    assert verdicts["back"] is Verdict.ALLOWED
    assert verdicts["still here"] is Verdict.ALLOWED  # the ban came after the role was revoked
    assert verdicts["hi all"] is Verdict.ALLOWED  # dated before its join, allowed once in
    assert all(d.verdict is not Verdict.PENDING for d in decisions.values())
    community = HISTORY[0].id
    assert not facts.is_banned(community, MEMBER.public_key)
    assert facts.roles(community, MOD.public_key) == frozenset()
