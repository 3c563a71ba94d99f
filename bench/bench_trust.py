"""Personal trust over a large graph (issue 5: trust for one skill over 10,000 members
and 100,000 references in under 200 ms).

    .venv/bin/python bench/bench_trust.py [--members N] [--references M]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kithnet.core.trust import Reference, Vouch, propagate, rank_providers

LIMIT_MS = 200.0
SKILLS = [f"skill-{i}" for i in range(50)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--references", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(5)
    members = [i.to_bytes(32, "big") for i in range(args.members)]
    references = []
    for _ in range(args.references):
        author, subject = rng.sample(members, 2)
        references.append(Reference(author, subject, rng.choice(SKILLS)))
    vouches = [Vouch(r.author, r.subject, r.skill) for r in references]
    seeds = rng.sample(members, 20)  # the people the asker vouched for
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        trust = propagate(seeds, vouches)
        providers = rank_providers("skill-7", references, trust)
        times.append((time.perf_counter() - start) * 1000)
    median = statistics.median(times)
    print(
        f"{args.members:,} members, {args.references:,} references: trust from 20 seeds"
        f" (reaching {len(trust):,}) and {len(providers):,} providers of one skill ranked"
    )
    print(
        f"median {median:.0f} ms, worst {max(times):.0f} ms over {args.runs} runs"
        f" (limit {LIMIT_MS:.0f} ms: {median / LIMIT_MS:.2f})"
    )


if __name__ == "__main__":
    main()
