"""Community histories shared by the authority and store tests: records whose outcome
depends on one another, so that arrival order would matter if anything got it wrong."""

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

    def __init__(self, visibility: str = "public", name: str = "Lofts") -> None:
        self.state = MemoryState()
        self.clock = NOW_MS - 100_000
        genesis = self.make(OWNER, kind="community", name=name, visibility=visibility)
        self.id = genesis.id
        assert self.state.apply(genesis).verdict is Verdict.ALLOWED
        self.code = InviteCode.create(OWNER, self.id, "Lofts", [], expires_at=NOW_MS)
        invite = self.make(OWNER, kind="invite", invite_key=self.code.invite_key, expires_at=NOW_MS)
        assert self.state.apply(invite).verdict is Verdict.ALLOWED

    def make(self, who: Identity, **fields: Any) -> Record:
        self.clock += 1
        fields.setdefault("created_at", self.clock)
        if fields["kind"] != "community":
            fields.setdefault("community", self.id)
        record = sign_record(who, fields)
        validate(record, NOW_MS)
        return record

    def join_record(self, who: Identity) -> Record:
        return self.make(
            who,
            kind="join",
            invite_key=self.code.invite_key,
            proof=self.code.prove_join(who.public_key),
        )

    def join(self, *people: Identity) -> None:
        for who in people:
            assert self.state.apply(self.join_record(who)).verdict is Verdict.ALLOWED

    def apply(self, who: Identity, **fields: Any) -> Verdict:
        return self.state.apply(self.make(who, **fields)).verdict


def community_history() -> list[Record]:
    """A busy community's records, including ones whose outcome depends on others."""
    c = Community()
    made = list(c.state.records.values())
    made.append(c.join_record(MEMBER))
    made.append(c.join_record(OTHER))
    made.append(c.make(OWNER, kind="role_grant", subject=MOD.public_key, role="moderator"))
    post = c.make(MEMBER, kind="post", type="question", text="Loft?", tags=["loft"])
    made.append(post)
    made.append(c.make(OTHER, kind="post", type="post", text="Try Alice.", reply_to=post.id))
    made.append(c.make(MEMBER, kind="edit", target=post.id, text="Loft, please?"))
    made.append(c.make(OTHER, kind="edit", target=post.id, text="hijack"))
    made.append(c.make(MOD, kind="moderation", action="ban", target=OTHER.public_key))
    made.append(c.make(OTHER, kind="post", type="post", text="while banned"))
    made.append(c.make(MOD, kind="moderation", action="unban", target=OTHER.public_key))
    made.append(c.make(OTHER, kind="post", type="post", text="back"))
    made.append(c.make(OWNER, kind="role_revoke", subject=MOD.public_key, role="moderator"))
    made.append(c.make(MOD, kind="moderation", action="ban", target=MEMBER.public_key))
    made.append(c.make(MEMBER, kind="post", type="post", text="still here"))
    made.append(c.make(OWNER, kind="delete", target=made[1].id))  # withdraws the invite
    made.append(c.join_record(MOD))  # too late: the invite was withdrawn, but MOD has a role
    # A newcomer whose clock runs slow: their post is dated before their join, and the
    # join before the invite it uses. Both take effect once what they wait for is in.
    newcomer_code = InviteCode.create(OWNER, c.id, "Lofts", [], NOW_MS)
    newcomer_invite = c.make(
        OWNER, kind="invite", invite_key=newcomer_code.invite_key, expires_at=NOW_MS
    )
    made.append(newcomer_invite)
    early = newcomer_invite.created_at - 60_000
    made.append(c.make(NEWCOMER, kind="post", type="post", text="hi all", created_at=early))
    made.append(
        c.make(
            NEWCOMER,
            kind="join",
            invite_key=newcomer_code.invite_key,
            proof=newcomer_code.prove_join(NEWCOMER.public_key),
            created_at=early - 1,
        )
    )
    return made


NEWCOMER = Identity.from_seed(bytes([5]) * 32)
HISTORY = community_history()

CAROL = Identity.from_seed(bytes([6]) * 32)
DAVE = Identity.from_seed(bytes([7]) * 32)


def sign_at(who: Identity, created_at: int, **fields: Any) -> Record:
    record = sign_record(who, {"created_at": created_at, **fields})
    validate(record, NOW_MS)
    return record


def rich_history() -> list[Record]:
    """Two communities with everything the store derives: edits, deletions, reactions,
    removals, references with revocation and hiding, profiles, referrals, an invite with
    a use limit, a reply that can arrive before its parent, and a late ban."""
    made = community_history()
    c = Community(name="Insulators")  # a second community, with the same owner
    made += list(c.state.records.values())
    limited = InviteCode.create(OWNER, c.id, "Lofts", [], NOW_MS)
    made.append(
        c.make(OWNER, kind="invite", invite_key=limited.invite_key, expires_at=NOW_MS, max_uses=2)
    )
    for who in (CAROL, DAVE, MEMBER):  # the third join is one too many
        made.append(
            c.make(
                who,
                kind="join",
                invite_key=limited.invite_key,
                proof=limited.prove_join(who.public_key),
            )
        )
    offer = c.make(CAROL, kind="post", type="offer", text="Loft insulation", tags=["insulation"])
    made.append(offer)
    made.append(c.make(DAVE, kind="post", type="post", text="Thanks Carol", reply_to=offer.id))
    made.append(c.make(CAROL, kind="edit", target=offer.id, text="Loft and wall insulation"))
    made.append(c.make(CAROL, kind="edit", target=offer.id, text="Loft, wall and roof insulation"))
    reaction = c.make(DAVE, kind="reaction", target=offer.id, emoji="👍")
    made.append(reaction)
    made.append(c.make(OWNER, kind="reaction", target=offer.id, emoji="👍"))
    made.append(c.make(DAVE, kind="delete", target=reaction.id))
    spam = c.make(DAVE, kind="post", type="post", text="buy my stuff")
    made.append(spam)
    made.append(c.make(OWNER, kind="moderation", action="remove", target=spam.id))
    vouch = c.make(
        DAVE,
        kind="reference",
        subject=CAROL.public_key,
        skill="insulation",
        text="Insulated our loft.",
        relationship="hired",
    )
    made.append(vouch)
    made.append(c.make(CAROL, kind="reference_hide", target=vouch.id))
    free = sign_at(
        OWNER,
        c.clock + 1,
        kind="reference",
        subject=CAROL.public_key,
        skill="roofing",
        text="Fixed my roof.",
        relationship="worked_with",
    )
    made.append(free)
    made.append(sign_at(OWNER, c.clock + 2, kind="reference_revoke", target=free.id))
    made.append(sign_at(CAROL, c.clock + 3, kind="profile", name="Carol", skills=["insulation"]))
    made.append(sign_at(CAROL, c.clock + 4, kind="profile", name="Carol B.", bio="Insulation"))
    made.append(c.make(DAVE, kind="referral", question=offer.id, to_member=CAROL.public_key))
    made.append(
        c.make(OWNER, kind="announcement", name="Lofts", visibility="public", tags=["loft"])
    )
    # A ban dated before Dave's last post: it arrives whenever, and the post is refused.
    ban_at = c.clock + 10
    made.append(c.make(DAVE, kind="post", type="post", text="after the ban", created_at=ban_at + 5))
    made.append(
        c.make(OWNER, kind="moderation", action="ban", target=DAVE.public_key, created_at=ban_at)
    )
    return made


RICH_HISTORY = rich_history()
