"""Answers from what this member's node already knows: their personal trust (kept
until the references change) and who can do a skill, for `ask` and the app."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from kithnet.core import trust as trust_model
from kithnet.localstore.store import Store


def my_trust(
    store: Store,
) -> tuple[trust_model.Graph, list[bytes], dict[bytes, trust_model.Trusted]]:
    """The references in effect, whom this member vouched for, and the trust that flows
    from their seeds (whom they vouched for or marked as trusted, less anyone they
    blocked)."""
    cached = _trust_cache.get(store)
    if cached is not None and cached[0] == store.graph_generation:
        return cached[1]
    generation = store.graph_generation
    added = store.vouches_since(cached[0]) if cached is not None else None
    if cached is not None and added is not None:
        graph = cached[1][0]  # only references were added: grow the graph in place
        graph.add(added)
    else:
        graph = trust_model.Graph(store.vouches())
    me = store.identity.public_key
    marks = store.marks()
    vouched = {subject for subject in graph.vouched_for.get(me, ())}
    trusted = {member for member, mark in marks.items() if mark == "trust"}
    seeds = sorted((vouched | trusted) - {m for m, mark in marks.items() if mark == "block"})
    result = (graph, sorted(vouched), trust_model.propagate(seeds, graph))
    _trust_cache[store] = (generation, result)
    return result


# Each store's trust, kept until its references change (Store.graph_generation).
_trust_cache: weakref.WeakKeyDictionary[
    Store,
    tuple[int, tuple[trust_model.Graph, list[bytes], dict[bytes, trust_model.Trusted]]],
] = weakref.WeakKeyDictionary()


def rank_answers(
    store: Store, skills: Sequence[str], *, limit: int = 20
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What this member's node already knows about who can do `skills`: providers
    (members with references or offers for them, ranked by the trust of those who
    vouched, then by number of references) and communities whose tags match (joined
    ones, then public ones from the directory), each with the reason for its place."""
    wanted = set(skills)

    def matching(tags: Iterable[str]) -> list[str]:
        return sorted(wanted & set(tags))

    me = store.identity.public_key
    graph, vouched, trust = my_trust(store)
    totals: dict[bytes, list[Any]] = {}  # member -> [score, references, providers]
    for skill in skills:
        ranked = trust_model.rank_providers(
            skill, graph, trust, offering=store.offering(skill), asker=me
        )
        for provider in ranked:
            entry = totals.setdefault(provider.member, [0.0, 0, []])
            entry[0] += provider.score
            entry[1] += provider.references
            entry[2].append((skill, provider))
    best = sorted(totals.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))[:limit]
    # Names and explanations only for what is shown: a skill may have thousands.
    needed = {member for member, _ in best}
    for _, (_, _, found) in best:
        for _, provider in found:
            for entry in provider.trusted_by:
                needed.update(trust_model.chain(entry.member, trust))
    names = store.names(needed)
    providers = [
        {
            "member": member.hex(),
            "name": names.get(member, ""),
            "score": round(score, 4),
            "references": count,
            "reasons": [
                f"{skill}: {trust_model.explain(p, trust, names, vouched=vouched)}"
                for skill, p in found
            ],
        }
        for member, (score, count, found) in best
    ]
    communities: list[dict[str, Any]] = []
    joined = store.communities()
    for c in joined:
        tags = matching(c.tags)
        if tags:
            communities.append(
                {
                    "id": c.id.hex(),
                    "name": c.name,
                    "matches": len(tags),
                    "joined": True,
                    "reason": f"you are in it; its tags: {', '.join(tags)}",
                }
            )
    joined_ids = {c.id for c in joined}
    for cid, name, _description, tags_all, invite in store.directory_entries():
        tags = matching(tags_all)
        if tags and cid not in joined_ids:
            communities.append(
                {
                    "id": cid.hex(),
                    "name": name,
                    "matches": len(tags),
                    "joined": False,
                    "invite": invite,
                    "reason": f"in the directory; its tags: {', '.join(tags)}",
                }
            )
    communities.sort(key=lambda c: (-int(c["matches"]), not c["joined"], str(c["name"])))
    return providers, communities[:limit]
