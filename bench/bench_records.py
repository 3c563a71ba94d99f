"""Records per second on one core: build+sign, and decode+verify+validate, each next to
raw PyNaCl on the same data in the same run (issue 2: decode+verify+validate should reach
at least 80 % of the raw verify rate).

    .venv/bin/python bench/bench_records.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable

import nacl.bindings
import nacl.signing

from kithnet.core.envelope import SIGN_DOMAIN, Record, sign_record
from kithnet.core.validation import accept
from kithnet.crypto.identity import Identity

NOW_MS = 1_764_000_000_000
TARGET_RATIO = 0.80


def make_fields(count: int) -> list[dict[str, object]]:
    """Posts like real ones: a sentence or two of text, a few skill tags, some replies."""
    community = bytes([0xC0]) * 32
    text = (
        "Does anybody know someone who can insulate a loft and fit solar panels? "
        "We are in Leeds and would like a survey before the winter. "
    )
    fields = []
    for i in range(count):
        item: dict[str, object] = {
            "kind": "post",
            "community": community,
            "created_at": NOW_MS - count + i,
            "type": ("post", "question", "offer")[i % 3],
            "text": f"{text}#{i}",
            "tags": ["loft-insulation", "solar-pv"],
        }
        if i % 4 == 0:
            item["reply_to"] = i.to_bytes(32, "big")
        fields.append(item)
    return fields


def paired_rates(
    count: int, rounds: int, ours: Callable[[], object], raw: Callable[[], object]
) -> tuple[float, float, float]:
    """Median rates of `ours` and `raw`, timed in alternating rounds so that both see the
    same machine, and the median of the per-round ratios ours/raw."""
    ours_rates, raw_rates, ratios = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        raw()
        raw_rate = count / (time.perf_counter() - start)
        start = time.perf_counter()
        ours()
        ours_rate = count / (time.perf_counter() - start)
        raw_rates.append(raw_rate)
        ours_rates.append(ours_rate)
        ratios.append(ours_rate / raw_rate)
    return statistics.median(ours_rates), statistics.median(raw_rates), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    authors = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(16)]
    fields = make_fields(args.records)
    pairs = [(authors[i % len(authors)], f) for i, f in enumerate(fields)]
    records: list[Record] = [sign_record(identity, f) for identity, f in pairs]
    envelopes = [r.envelope for r in records]
    bodies = [SIGN_DOMAIN + r.body for r in records]
    signed = [(r.signature + m, r.author) for r, m in zip(records, bodies, strict=True)]
    keys = [a.signing_key for a in authors]
    raw_sign_jobs = [(keys[i % len(keys)], m) for i, m in enumerate(bodies)]
    mean_body = statistics.mean(len(r.body) for r in records)
    mean_envelope = statistics.mean(len(e) for e in envelopes)

    def build_and_sign() -> None:
        for identity, f in pairs:
            sign_record(identity, f)

    def raw_sign() -> None:
        for key, message in raw_sign_jobs:
            key.sign(message)

    def raw_verify() -> None:
        for smessage, author in signed:
            nacl.bindings.crypto_sign_open(smessage, author)

    def raw_verify_key() -> None:
        for r, message in zip(records, bodies, strict=True):
            nacl.signing.VerifyKey(r.author).verify(message, r.signature)

    rejected: Counter[str] = Counter()

    def pipeline() -> None:
        for data in envelopes:
            if accept(data, NOW_MS, rejected) is None:
                raise AssertionError(f"benchmark record refused: {rejected}")

    n, rounds = args.records, args.rounds
    raw_verify_key()  # warm up
    pipeline()
    rate_sign, rate_raw_sign, sign_ratio = paired_rates(n, rounds, build_and_sign, raw_sign)
    rate_pipeline, rate_raw_verify, ratio = paired_rates(n, rounds, pipeline, raw_verify)
    _, rate_raw_verify_key, _ = paired_rates(n, 3, raw_verify, raw_verify_key)

    print(
        f"{n} posts from {len(authors)} authors, body {mean_body:.0f} B and envelope "
        f"{mean_envelope:.0f} B on average; median of {rounds} alternating rounds; one core"
    )
    print(f"{'build+sign (kithnet)':<34}{rate_sign:>10,.0f} records/s")
    print(f"{'raw PyNaCl sign, same bodies':<34}{rate_raw_sign:>10,.0f} records/s")
    print(f"{'  ratio':<34}{sign_ratio:>10.2f}")
    print(f"{'decode+verify+validate (kithnet)':<34}{rate_pipeline:>10,.0f} records/s")
    print(f"{'raw PyNaCl verify (crypto_sign_open)':<34}{rate_raw_verify:>10,.0f} records/s")
    print(f"{'raw PyNaCl VerifyKey.verify':<34}{rate_raw_verify_key:>10,.0f} records/s")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(
        f"{'  ratio to raw verify':<34}{ratio:>10.2f}   {verdict} the limit of "
        f"{TARGET_RATIO:.2f} ({ratio / TARGET_RATIO:.2f}x the limit)"
    )


if __name__ == "__main__":
    main()
