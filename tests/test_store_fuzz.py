"""Random community histories against the reference model: whatever the history, the
order and the batching, the store's verdicts equal `fold`'s, its tables are the same,
and its unread counters equal a recount.

The histories mix everything whose outcome depends on other records: invites with use
limits, reused and withdrawn invite keys, joins, leaves, role changes, bans and unbans
dated anywhere, removals (also of other communities' posts), edits and deletes by
authors and by others, references revoked and hidden from other communities, key
updates, profiles and announcements. `make test` runs a few; `make test-slow` many.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pytest

from kithnet.core.authority import fold
from kithnet.core.envelope import Record, sign_record
from kithnet.core.errors import RecordError
from kithnet.core.validation import validate
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from kithnet.localstore.store import Store
from tests.strategies import NOW_MS
from tests.test_store_ingest import counted_unread, new_store, snapshot

PEOPLE = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(6)]
BY_KEY = {person.public_key: person for person in PEOPLE}
T0 = NOW_MS - 1_000_000


def history(rng: random.Random, size: int) -> list[Record]:
    """A random history of about `size` records in one to three communities."""
    made: list[Record] = []

    def add(who: Identity, **fields: Any) -> Record | None:
        fields.setdefault("created_at", T0 + rng.randrange(3 * size))
        try:
            record = sign_record(who, fields)
            validate(record, NOW_MS)
        except RecordError:
            return None  # e.g. someone vouching for themselves: not a record at all
        made.append(record)
        return record

    communities: list[tuple[Record, Identity]] = []
    for number in range(rng.choice([1, 2, 2, 3])):
        owner = PEOPLE[number]
        genesis = add(
            owner,
            kind="community",
            name=f"C{number}",
            visibility=rng.choice(["public", "public", "private"]),
            created_at=T0 + rng.choice([0, rng.randrange(3 * size)]),
        )
        assert genesis is not None
        communities.append((genesis, owner))
    codes: dict[bytes, list[InviteCode]] = {g.id: [] for g, _ in communities}
    posts: list[Record] = []
    deletable: list[Record] = []
    references: list[Record] = []
    for _ in range(size):
        genesis, owner = rng.choice(communities)
        community = genesis.id
        who = rng.choice(PEOPLE)
        roll = rng.random()
        if roll < 0.12:
            inviter = owner if rng.random() < 0.6 else who
            if codes[community] and rng.random() < 0.2:  # the same key published again
                code = rng.choice(codes[community])
            else:
                code = InviteCode.create(inviter, community, "C", [], expires_at=NOW_MS)
                codes[community].append(code)
            fields: dict[str, Any] = {
                "kind": "invite",
                "community": community,
                "invite_key": code.invite_key,
                "expires_at": T0 + rng.choice([10**6, rng.randrange(3 * size)]),
            }
            if rng.random() < 0.5:
                fields["max_uses"] = rng.choice([1, 2])
            invite = add(inviter, **fields)
            if invite is not None:
                deletable.append(invite)
        elif roll < 0.30 and codes[community]:
            code = rng.choice(codes[community])
            add(
                who,
                kind="join",
                community=community,
                invite_key=code.invite_key,
                proof=code.prove_join(who.public_key),
            )
        elif roll < 0.32:
            add(who, kind="leave", community=community)
        elif roll < 0.37:
            add(
                rng.choice([owner, who]),
                kind=rng.choice(["role_grant", "role_grant", "role_revoke"]),
                community=community,
                subject=rng.choice(PEOPLE).public_key,
                role=rng.choice(["moderator", "moderator", "owner"]),
            )
        elif roll < 0.44:
            add(
                who,
                kind="moderation",
                community=community,
                action=rng.choice(["ban", "unban"]),
                target=rng.choice([p for p in PEOPLE if p is not who]).public_key,
            )
        elif roll < 0.48 and posts:  # also posts of other communities
            add(
                rng.choice([owner, who]),
                kind="moderation",
                community=community,
                action="remove",
                target=rng.choice(posts).id,
            )
        elif roll < 0.61:
            fields = {"kind": "post", "community": community, "type": "post", "text": "loft"}
            same = [p for p in posts if p.community == community]
            if same and rng.random() < 0.3:
                fields["reply_to"] = rng.choice(same).id
            post = add(who, **fields)
            if post is not None:
                posts.append(post)
                deletable.append(post)
        elif roll < 0.67 and posts:
            post = rng.choice(posts)
            author = BY_KEY[post.author] if rng.random() < 0.8 else who
            add(
                author,
                kind="edit",
                community=post.community,
                target=post.id,
                text=f"loft edited {len(made)}",
            )
        elif roll < 0.74 and deletable:
            target = rng.choice(deletable)
            author = BY_KEY[target.author] if rng.random() < 0.85 else who
            add(author, kind="delete", community=target.community, target=target.id)
        elif roll < 0.79 and posts:
            reaction = add(
                who, kind="reaction", community=community, target=rng.choice(posts).id, emoji="x"
            )
            if reaction is not None:
                deletable.append(reaction)
        elif roll < 0.82 and posts:
            referral = add(
                who,
                kind="referral",
                community=community,
                question=rng.choice(posts).id,
                to_member=rng.choice(PEOPLE).public_key,
            )
            if referral is not None:
                deletable.append(referral)
        elif roll < 0.88:
            fields = {
                "kind": "reference",
                "subject": rng.choice(PEOPLE).public_key,
                "skill": "loft",
                "text": "good",
                "relationship": "hired",
            }
            if rng.random() < 0.6:
                fields["community"] = community
            reference = add(who, **fields)
            if reference is not None:
                references.append(reference)
        elif roll < 0.93 and references:
            reference = rng.choice(references)
            if rng.random() < 0.5:
                fields = {"kind": "reference_revoke", "target": reference.id}
                author = BY_KEY[reference.author]
            else:
                fields = {"kind": "reference_hide", "target": reference.id}
                author = BY_KEY[reference.fields["subject"]]
            if rng.random() < 0.5:
                fields["community"] = rng.choice(communities)[0].id
            add(author, **fields)
        elif roll < 0.95:
            add(who, kind="announcement", community=community, name="A", visibility="public")
        elif roll < 0.97:
            add(
                who,
                kind="key_update",
                community=community,
                epoch=1,
                keys=[{"member": who.public_key, "box": bytes(80)}],
            )
        else:
            add(who, kind="profile", name=f"n{rng.randrange(9)}", bio="loft")
    return list({record.id: record for record in made}.values())


def verdicts(store: Store, records: list[Record]) -> dict[bytes, tuple[Any, ...]]:
    return {
        r.id: tuple(
            store.db.execute(
                "SELECT status, reason, waiting_for FROM records WHERE id = ?", (r.id,)
            ).fetchone()
        )
        for r in records
    }


def run(records: list[Record], batches: list[list[Record]]) -> tuple[dict[Any, Any], Any]:
    with tempfile.TemporaryDirectory() as folder, new_store(Path(folder)) as store:
        for batch in batches:
            store.ingest([r.envelope for r in batch], now=NOW_MS)
            assert store.unread_counts() == counted_unread(store)
        return verdicts(store, records), snapshot(store)


def check_history(seed: int, size: int = 40, shuffles: int = 3) -> None:
    rng = random.Random(seed)
    records = history(rng, size)
    _, decisions = fold(records)
    want = {
        r.id: (decisions[r.id].verdict.value, decisions[r.id].reason, decisions[r.id].waiting_for)
        for r in records
    }
    ordered = sorted(records, key=lambda r: (r.created_at, r.id))
    got, tables = run(records, [[r] for r in ordered])
    assert got == want, f"seed {seed}: in order"
    for shuffle in range(shuffles):
        arrivals = list(records)
        rng.shuffle(arrivals)
        count = rng.choice([0, 1, 3, 8, len(arrivals) - 1])
        cuts = sorted(rng.sample(range(1, len(arrivals)), k=min(len(arrivals) - 1, count)))
        batches = [arrivals[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrivals)], strict=True)]
        shuffled, shuffled_tables = run(records, batches)
        assert shuffled == want, f"seed {seed}: shuffle {shuffle}"
        assert shuffled_tables == tables, f"seed {seed}: shuffle {shuffle}"


@pytest.mark.parametrize("seed", range(40))
def test_random_histories_end_as_fold_says_in_any_order(seed: int) -> None:
    check_history(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 400))
def test_many_random_histories_end_as_fold_says(seed: int) -> None:
    check_history(seed, size=60)


def test_histories_cover_what_they_claim() -> None:
    """The generator really produces the records the property depends on."""
    kinds = {r.kind for seed in range(12) for r in history(random.Random(seed), 40)}
    assert kinds >= {
        "community",
        "invite",
        "join",
        "leave",
        "role_grant",
        "role_revoke",
        "moderation",
        "post",
        "edit",
        "delete",
        "reaction",
        "referral",
        "reference",
        "reference_revoke",
        "reference_hide",
        "announcement",
        "key_update",
    }
