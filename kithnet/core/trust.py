"""Personal trust: how much one member (the asker) trusts others, computed from the
asker's own point of view out of signed references, and how providers of a skill rank.

Algorithm: bounded spreading activation in the manner of Appleseed (Ziegler and Lausen),
with energy conservation and at most three hops. The asker's seeds (people they vouched
for or explicitly trust) start with trust 1. At each hop, every member who received trust
passes on `DECAY` of what they received, split equally among the members they vouched for;
what a member receives adds up, capped at 1. Chosen over personalised PageRank because
conservation gives the Sybil bound directly and the hop limit is exact, not a tail:

- trust only enters a group of accounts through references written by members who hold
  trust; whatever their number, the accounts of a cluster together receive at most
  DECAY * (1 + DECAY + DECAY**2) < 1 times the trust of the member who vouched into it
  (each hop passes on only part of what arrived), so no member of it can outrank them;
- a cluster nobody trusted vouches into receives nothing, however densely it vouches for
  itself.

Pure: no I/O. The store supplies the references; this module ranks and explains.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

DECAY = 0.5  # the share of received trust a member passes on
MAX_DEPTH = 3  # hops from a seed


# (author, subject, skill): what trust and ranking need of a reference. A Vouch, or a
# plain tuple as a store reads it (100,000 of them for one question).
Edge = tuple[bytes, bytes, str]


class Vouch(NamedTuple):
    """A reference in effect: `author` vouches for `subject`'s `skill` (a named tuple:
    a store builds 100,000 of them for one question)."""

    author: bytes
    subject: bytes
    skill: str


class Graph:
    """References indexed for trust (whom each author vouched for) and, per skill on
    first use, for ranking (who vouched for each subject). Built once, used for many
    questions until the references change."""

    __slots__ = ("_skills", "references", "vouched_for")

    def __init__(self, references: Iterable[Edge]) -> None:
        self.references = list(references)
        out: defaultdict[bytes, set[bytes]] = defaultdict(set)
        for author, subject, _skill in self.references:
            if author != subject:
                out[author].add(subject)
        self.vouched_for: dict[bytes, set[bytes]] = dict(out)
        self._skills: dict[str, dict[bytes, set[bytes]]] = {}

    def add(self, references: Iterable[Edge]) -> None:
        """References that took effect since the graph was built."""
        for author, subject, skill in references:
            self.references.append((author, subject, skill))
            if author == subject:
                continue
            self.vouched_for.setdefault(author, set()).add(subject)
            index = self._skills.get(skill)
            if index is not None:
                index.setdefault(subject, set()).add(author)

    @classmethod
    def of(cls, references: Iterable[Edge] | Graph) -> Graph:
        return references if isinstance(references, Graph) else cls(references)

    def vouchers(self, skill: str) -> dict[bytes, set[bytes]]:
        """subject -> the authors of their references for `skill`."""
        found = self._skills.get(skill)
        if found is None:
            index: defaultdict[bytes, set[bytes]] = defaultdict(set)
            for author, subject, about in self.references:
                if about == skill and author != subject:
                    index[subject].add(author)
            found = self._skills[skill] = dict(index)
        return found


@dataclass(slots=True)
class Trusted:
    """How much the asker trusts a member, and the strongest way that trust came."""

    member: bytes
    trust: float
    depth: int  # 0: a seed; 1: vouched for by a seed; ...
    via: bytes | None = None  # who passed the largest share of it (None for a seed)


def propagate(
    seeds: Iterable[bytes],
    vouches: Iterable[Edge] | Graph,
    *,
    decay: float = DECAY,
    max_depth: int = MAX_DEPTH,
) -> dict[bytes, Trusted]:
    """The asker's trust in every member it reaches, seeds included."""
    edges = Graph.of(vouches).vouched_for
    trusted: dict[bytes, Trusted] = {}
    frontier: dict[bytes, float] = {}
    for seed in seeds:
        trusted[seed] = Trusted(seed, 1.0, 0)
        frontier[seed] = 1.0
    for depth in range(1, max_depth + 1):
        received: dict[bytes, float] = defaultdict(float)
        best: dict[bytes, tuple[float, bytes]] = {}
        for member, energy in frontier.items():
            subjects = edges.get(member)
            if not subjects or energy <= 0:
                continue
            share = decay * energy / len(subjects)
            for subject in subjects:
                received[subject] += share
                if share > best.get(subject, (0.0, b""))[0]:
                    best[subject] = (share, member)
        frontier = {}
        for member, energy in received.items():
            entry = trusted.get(member)
            if entry is None:
                entry = trusted[member] = Trusted(member, 0.0, depth, best[member][1])
            room = 1.0 - entry.trust
            if room <= 0:
                continue
            gained = min(room, energy)
            entry.trust += gained
            frontier[member] = gained  # only new trust travels on: no loop amplifies
    return trusted


# What ranking needs of a reference is what trust needs of it.
Reference = Vouch


@dataclass(slots=True)
class Provider:
    """A member who offers or is vouched for a skill, with why they rank where they do."""

    member: bytes
    score: float  # the summed trust of the distinct authors of their references
    references: int  # all references for the skill, trusted or not
    trusted_by: list[Trusted] = field(default_factory=list)  # authors the asker trusts


def rank_providers(
    skill: str,
    references: Iterable[Edge] | Graph,
    trust: Mapping[bytes, Trusted],
    *,
    offering: Iterable[bytes] = (),
    asker: bytes | None = None,
) -> list[Provider]:
    """Providers of `skill` (members with references for it, and those offering it),
    by score, then by number of references, then by id (a stable order)."""
    authors = dict(Graph.of(references).vouchers(skill))
    for member in offering:
        authors.setdefault(member, set())
    providers = []
    for member, by in authors.items():
        if member == asker:
            continue
        trusted_by = sorted(
            (trust[a] for a in by if a in trust and trust[a].trust > 0),
            key=lambda t: (-t.trust, t.member),
        )
        score = sum(t.trust for t in trusted_by)
        providers.append(Provider(member, score, len(by), trusted_by))
    providers.sort(key=lambda p: (-p.score, -p.references, p.member))
    return providers


def explain(
    provider: Provider,
    trust: Mapping[bytes, Trusted],
    names: Mapping[bytes, str],
    vouched: Iterable[bytes] = (),
) -> str:
    """Why a provider ranks where it does, in words: "3 references; 2 from people you
    trust: B, whom you vouched for, and D, vouched for by B". `vouched`: the seeds the
    asker vouched for (the others they trust explicitly)."""
    vouched_for = set(vouched)

    def name(member: bytes) -> str:
        return names.get(member) or member.hex()[:12]

    def how(entry: Trusted) -> str:
        if entry.via is None:
            why = "whom you vouched for" if entry.member in vouched_for else "whom you trust"
            return f"{name(entry.member)}, {why}"
        return f"{name(entry.member)}, vouched for by {name(entry.via)}"

    count = provider.references
    head = f"{count} reference{'s' if count != 1 else ''}"
    if not provider.trusted_by:
        return head + (": none from people you trust" if count else "")
    trusted = len(provider.trusted_by)
    whom = [how(t) for t in provider.trusted_by]
    listed = whom[0] if len(whom) == 1 else ", ".join(whom[:-1]) + ", and " + whom[-1]
    return f"{head}; {trusted} from people you trust: {listed}"


def chain(member: bytes, trust: Mapping[bytes, Trusted]) -> Sequence[bytes]:
    """The strongest path by which trust reached `member`, from a seed to it."""
    path: list[bytes] = []
    current: bytes | None = member
    while current is not None and current in trust and len(path) <= MAX_DEPTH:
        path.append(current)
        current = trust[current].via
    return list(reversed(path))
