"""Ingest of signed posts from the network into a real SQLCipher store: decode, verify,
validate, judge, store and index for search, in batches, next to raw PyNaCl verify of
the same envelopes in the same run (issue 3: at least 8,000 records per second).

    .venv/bin/python bench/bench_ingest.py [--records N] [--batch B] [--rounds R]

`--threads 2` also measures verifying on a second core: a thread verifies the next
batch while the main thread stores the current one (PyNaCl and SQLite release the GIL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nacl.bindings
from nacl.pwhash import argon2id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_records import make_fields
from kithnet.core.envelope import SIGN_DOMAIN, Record, decode, sign_record
from kithnet.crypto.identity import Identity
from kithnet.crypto.invite import InviteCode
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore.store import Store

NOW_MS = 1_764_000_000_000
LIMIT = 8_000
FAST_KDF = KdfParams.new(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


def community_setup(owner: Identity, authors: list[Identity], name: str) -> list[Record]:
    """A community's genesis, an invite and each author's join."""
    start = NOW_MS - 10_000_000
    genesis = sign_record(
        owner, {"kind": "community", "name": name, "visibility": "public", "created_at": start}
    )
    code = InviteCode.create(owner, genesis.id, name, [], expires_at=NOW_MS + 10**9)
    made = [
        genesis,
        sign_record(
            owner,
            {
                "kind": "invite",
                "community": genesis.id,
                "invite_key": code.invite_key,
                "expires_at": NOW_MS + 10**9,
                "created_at": start + 1,
            },
        ),
    ]
    for i, who in enumerate(authors):
        made.append(
            sign_record(
                who,
                {
                    "kind": "join",
                    "community": genesis.id,
                    "invite_key": code.invite_key,
                    "proof": code.prove_join(who.public_key),
                    "created_at": start + 2 + i,
                },
            )
        )
    return made


def make_posts(count: int, authors: list[Identity], community: bytes) -> list[bytes]:
    envelopes = []
    for i, fields in enumerate(make_fields(count)):
        fields["community"] = community
        envelopes.append(sign_record(authors[i % len(authors)], fields).envelope)
    return envelopes


def raw_verify(envelopes: list[bytes]) -> float:
    parts = [decode(e) for e in envelopes]
    start = time.perf_counter()
    for r in parts:
        nacl.bindings.crypto_sign_open(r.signature + SIGN_DOMAIN + r.body, r.author)
    return len(envelopes) / (time.perf_counter() - start)


def ingest_rate(setup: list[bytes], envelopes: list[bytes], batch: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = Store.create(Path(folder) / "data", "bench", kdf=FAST_KDF)
        store.ingest(setup, now=NOW_MS)
        batches = [envelopes[i : i + batch] for i in range(0, len(envelopes), batch)]
        start = time.perf_counter()
        if threads == 1:
            for chunk in batches:
                outcomes = store.ingest(chunk, now=NOW_MS)
                assert outcomes[0].status == "stored", outcomes[0]
        else:
            with ThreadPoolExecutor(threads - 1) as pool:
                ahead = pool.submit(store.check_batch, batches[0], now=NOW_MS)
                for index in range(len(batches)):
                    checked = ahead.result()
                    if index + 1 < len(batches):
                        ahead = pool.submit(store.check_batch, batches[index + 1], now=NOW_MS)
                    outcomes = store.ingest_checked(checked, now=NOW_MS)
                    assert outcomes[0].status == "stored", outcomes[0]
        rate = len(envelopes) / (time.perf_counter() - start)
        assert store.db.execute("SELECT count(*) FROM posts").fetchone()[0] == len(envelopes)
        store.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, choices=(1, 2), default=1)
    args = parser.parse_args()

    owner = Identity.from_seed(bytes([1]) * 32)
    authors = [Identity.from_seed(bytes([10 + i]) * 32) for i in range(20)]
    setup_records = community_setup(owner, authors, "Lofts")
    setup = [r.envelope for r in setup_records]
    envelopes = make_posts(args.records, authors, setup_records[0].id)

    print(f"{args.records} signed posts ({len(envelopes[0])} bytes each), batches of {args.batch},")
    print(f"{os.cpu_count()} cores, {args.threads} thread(s) in the pipeline")
    ratios = []
    for round_no in range(args.rounds):
        raw = raw_verify(envelopes)
        ours = ingest_rate(setup, envelopes, args.batch, args.threads)
        ratios.append(ours / LIMIT)
        print(
            f"round {round_no + 1}: ingest {ours:,.0f} records/s,"
            f" raw PyNaCl verify {raw:,.0f}/s (ingest = {ours / raw:.2f} of raw verify)"
        )
    print(
        f"median ingest / limit of {LIMIT:,}/s: {statistics.median(ratios):.2f}"
        f" ({'meets' if statistics.median(ratios) >= 1 else 'misses'} the limit)"
    )


if __name__ == "__main__":
    main()
