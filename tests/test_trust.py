"""Personal trust (kithnet/core/trust.py): it flows from the asker's seeds along
references for at most three hops, a cluster of new accounts gains nothing unless someone
trusted vouches into it and then never more than that person's trust, and every ranking
explains itself."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from kithnet.core.trust import (
    DECAY,
    MAX_DEPTH,
    Reference,
    Vouch,
    chain,
    explain,
    propagate,
    rank_providers,
)


def m(name: str) -> bytes:
    return name.encode().ljust(32, b"\0")


A, B, C, D, FRESH = m("A"), m("B"), m("C"), m("D"), m("fresh")
NAMES = {A: "A", B: "B", C: "C", D: "D", FRESH: "Fresh"}


def test_the_loft_question_counts_two_of_three_references_and_says_why() -> None:
    """Issue 5's scenario: A trusts B; B vouched for D; B and D vouched for C's
    insulation; an account C made vouches for C too."""
    vouches = [
        Vouch(B, D, "solar"),
        Vouch(B, C, "insulation"),
        Vouch(D, C, "insulation"),
        Vouch(FRESH, C, "insulation"),
    ]
    trust = propagate([B], vouches)
    assert trust[B].trust == 1.0
    assert trust[D].trust == DECAY / 2  # B's half, split between D and C
    assert FRESH not in trust
    references = [Reference(v.author, v.subject, v.skill) for v in vouches]
    [top, *_] = rank_providers("insulation", references, trust, asker=A)
    assert top.member == C
    assert top.references == 3
    assert [t.member for t in top.trusted_by] == [B, D]
    assert explain(top, trust, NAMES, vouched=[B]) == (
        "3 references; 2 from people you trust: B, whom you vouched for, and D, vouched for by B"
    )
    assert explain(top, trust, NAMES).startswith(
        "3 references; 2 from people you trust: B, whom you trust,"
    )
    assert list(chain(D, trust)) == [B, D]


def test_trust_stops_after_three_hops() -> None:
    line = [m(f"n{i}") for i in range(6)]
    vouches = [Vouch(a, b, "x") for a, b in itertools.pairwise(line)]
    trust = propagate([line[0]], vouches)
    assert set(trust) == set(line[: MAX_DEPTH + 1])
    assert [round(trust[n].trust, 4) for n in line[:4]] == [1.0, 0.5, 0.25, 0.125]


def test_unknown_people_and_self_references_count_for_nothing() -> None:
    trust = propagate([B], [Vouch(C, C, "x"), Vouch(FRESH, C, "x")])
    providers = rank_providers("x", [Reference(FRESH, C, "x")], trust, offering=[D])
    assert [(p.member, p.score) for p in providers] == [(C, 0.0), (D, 0.0)]
    assert explain(providers[0], trust, NAMES) == "1 reference: none from people you trust"


honest_ids = st.integers(min_value=0, max_value=19)


@settings(max_examples=150, deadline=None)
@given(
    honest=st.lists(st.tuples(honest_ids, honest_ids), max_size=60),
    seeds=st.lists(honest_ids, min_size=1, max_size=3),
    sybils=st.integers(min_value=1, max_value=60),
    density=st.integers(min_value=1, max_value=8),
    bridge=st.one_of(st.none(), honest_ids),
)
def test_a_cluster_of_any_size_gains_trust_only_through_a_trusted_voucher(
    honest: list[tuple[int, int]],
    seeds: list[int],
    sybils: int,
    density: int,
    bridge: int | None,
) -> None:
    people = [m(f"h{i}") for i in range(20)]
    cluster = [m(f"s{i}") for i in range(sybils)]
    vouches = [Vouch(people[a], people[b], "x") for a, b in honest]
    # The cluster vouches for itself as densely as it likes, and for an honest member.
    for i, account in enumerate(cluster):
        for step in range(1, density + 1):
            vouches.append(Vouch(account, cluster[(i + step) % sybils], "x"))
        vouches.append(Vouch(account, people[0], "x"))
    if bridge is not None:
        vouches.append(Vouch(people[bridge], cluster[0], "x"))
    trust = propagate([people[s] for s in seeds], vouches)
    gained = [trust[s].trust for s in cluster if s in trust]
    if bridge is None or people[bridge] not in trust:
        assert sum(gained) == 0.0
    else:
        voucher = trust[people[bridge]].trust
        assert sum(gained) <= voucher * (DECAY + DECAY**2 + DECAY**3) + 1e-9
        assert all(g < voucher or voucher == 0 for g in gained)
    assert all(0.0 <= t.trust <= 1.0 for t in trust.values())
