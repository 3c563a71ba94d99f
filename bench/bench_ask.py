"""Answering "does anybody know...?" from the store (issue 5: ranking providers for a
question with a graph of 10,000 members and 100,000 references in the store, under
100 ms).

The store is a real SQLCipher file holding signed, ingested records: a profile for each
member, 100,000 references over 50 skills, offers for the asked skill, and the asker's
own references (their seeds). What is timed is what `kithnet ask` does after posting the
question: read the references in effect, spread the asker's trust, rank the providers of
the skills with the reason for each, and match communities.

    .venv/bin/python bench/bench_ask.py [--members N] [--references M] [--runs R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.pwhash import argon2id

from kithnet.core.envelope import sign_record
from kithnet.crypto.identity import Identity
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.store import Store, now_ms
from kithnet.node.answers import rank_answers

LIMIT_MS = 100.0
SKILLS = [f"skill-{i}" for i in range(50)]
RELATIONSHIPS = ("hired", "worked_with", "knows_personally")


def build(store: Store, members: int, references: int, rng: random.Random) -> list[Identity]:
    people = [Identity.from_seed(rng.randbytes(32)) for _ in range(members)]
    created = now_ms() - 10_000_000
    batch: list[bytes] = []

    def add(identity: Identity, fields: dict[str, object]) -> None:
        nonlocal created
        created += 1
        batch.append(sign_record(identity, {**fields, "created_at": created}).envelope)
        if len(batch) >= 2000:
            store.ingest(batch)
            batch.clear()

    for i, person in enumerate(people):
        skills = [SKILLS[7]] if i % 50 == 0 else []  # 200 members offer the asked skill
        add(person, {"kind": "profile", "name": f"Member {i}", "skills": skills})
    for _ in range(references):
        author, subject = rng.sample(people, 2)
        add(
            author,
            {
                "kind": "reference",
                "subject": subject.public_key,
                "skill": rng.choice(SKILLS),
                "text": "Did good work for us",
                "relationship": rng.choice(RELATIONSHIPS),
            },
        )
    store.ingest(batch)
    for seed in rng.sample(people, 20):  # the people the asker vouched for
        store.publish(
            {
                "kind": "reference",
                "subject": seed.public_key,
                "skill": rng.choice(SKILLS),
                "text": "My neighbour",
                "relationship": "knows_personally",
            }
        )
    return people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--references", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(11)
    kdf = KdfParams.new(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
    with tempfile.TemporaryDirectory() as folder:
        store = Store.create(Path(folder) / "asker", "pass", name="Asker", kdf=kdf)
        started = time.perf_counter()
        people = build(store, args.members, args.references, rng)
        print(
            f"store with {store.record_count():,} records built in"
            f" {time.perf_counter() - started:.0f} s"
        )
        for skills in (["skill-7"], ["skill-7", "skill-8"]):
            cases = (
                ("a reference just arrived", "arrived"),
                ("graph read whole (after a revocation, say)", "whole"),
                ("graph unchanged", "same"),
            )
            for label, case in cases:
                times = []
                for _ in range(args.runs):
                    if case == "arrived":  # a new reference is stored, as gossip brings one
                        author, subject = rng.sample(people, 2)
                        record = sign_record(
                            author,
                            {
                                "kind": "reference",
                                "subject": subject.public_key,
                                "skill": rng.choice(skills),
                                "text": "Just now",
                                "relationship": "hired",
                                "created_at": now_ms(),
                            },
                        )
                        assert store.ingest([record.envelope])[0].status == "stored"
                    elif case == "whole":  # nothing cached: as after a change of any kind
                        store.mark(people[0].public_key, None)
                    start = time.perf_counter()
                    providers, _communities = rank_answers(store, skills)
                    times.append((time.perf_counter() - start) * 1000)
                median = statistics.median(times)
                print(
                    f"rank providers of {' + '.join(skills)}, {label}: median {median:.0f} ms,"
                    f" worst {max(times):.0f} ms over {args.runs} runs"
                    f" (limit {LIMIT_MS:.0f} ms: {median / LIMIT_MS:.2f})"
                )
            print(f"  first of {len(providers)}: {providers[0]['reasons'][0][:90]}")
        store.close()


if __name__ == "__main__":
    main()
