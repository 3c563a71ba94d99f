"""Queries on a big store: a feed page, a full-text search and the unread counts over
1,000,000 records in 50 communities, next to their limits; the database size per million
records; and the time to unlock (the Argon2id KDF) reported apart from the rest of
opening the store.

    .venv/bin/python bench/bench_store_queries.py [--records N] [--data-dir DIR]

Limits: feed page of 50 under 5 ms median, search under 50 ms median, unread counts of
all communities under 20 ms median. The store is built through the real pipeline
(signed records, Store.ingest in batches of 1000) with the fast KDF; `--kdf` names the
Argon2id profile whose unlock time is measured separately (default: the store's own,
moderate). Given a `--data-dir` that holds a store this script built with the same
parameters, it reuses it; without one, it builds in a temporary directory and deletes it.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import functools
import itertools
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.pwhash import argon2id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ingest import FAST_KDF, NOW_MS, community_setup
from kithnet.core.envelope import Record, sign_record
from kithnet.crypto.identity import Identity
from kithnet.crypto.kdf import KdfParams
from kithnet.localstore import views
from kithnet.localstore.files import HEADER_NAME, LOCK_NAME, derive_keys
from kithnet.localstore.store import DATABASE_PREFIX, Store

PASSPHRASE = "correct horse battery staple"
MARKER = "bench-store-queries.json"
GENERATOR = 1  # bump when the generated data changes, so old stores are not reused
BATCH = 1000
PAGE = 50
FEED_LIMIT_MS = 5.0
SEARCH_LIMIT_MS = 50.0
UNREAD_LIMIT_MS = 20.0
KDF_PROFILES = {
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "sensitive": (argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE),
}

# The vocabulary posts are written from -------------------------------------------------

# (who does it, their skill tag, what people ask them to do)
TRADES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "plumber",
        "plumbing",
        (
            "fix a leaking tap",
            "replace the kitchen sink",
            "sort out a blocked drain",
            "move a radiator",
            "fit a new shower",
        ),
    ),
    (
        "electrician",
        "electrical",
        (
            "rewire the kitchen",
            "add sockets in the garage",
            "fit outdoor lights",
            "replace the fuse box",
            "install an EV charger",
        ),
    ),
    (
        "roofer",
        "roofing",
        (
            "repair slipped roof tiles",
            "fix a leaking flat roof",
            "replace the flashing round the chimney",
            "clear moss off the roof",
        ),
    ),
    (
        "insulation installer",
        "loft-insulation",
        (
            "insulate the loft",
            "top up the loft insulation",
            "insulate under the floorboards",
            "fit cavity wall insulation",
        ),
    ),
    (
        "solar installer",
        "solar-pv",
        (
            "fit solar panels",
            "add a battery to our solar panels",
            "check why the solar inverter keeps tripping",
        ),
    ),
    (
        "heating engineer",
        "heat-pumps",
        (
            "service the boiler",
            "fit an air source heat pump",
            "balance the radiators",
            "replace an old combi boiler",
        ),
    ),
    (
        "carpenter",
        "carpentry",
        (
            "build fitted wardrobes",
            "hang two internal doors",
            "make bookshelves for the alcoves",
            "repair a rotten sash window",
        ),
    ),
    (
        "joiner",
        "joinery",
        ("replace the skirting boards", "fit a new staircase banister", "make a garden gate"),
    ),
    (
        "plasterer",
        "plastering",
        (
            "skim the living room ceiling",
            "patch the plaster after rewiring",
            "render the back wall",
        ),
    ),
    (
        "tiler",
        "tiling",
        ("tile the bathroom", "regrout the shower", "lay floor tiles in the kitchen"),
    ),
    (
        "bricklayer",
        "bricklaying",
        ("repoint the front wall", "build a garden wall", "rebuild the chimney stack"),
    ),
    (
        "gardener",
        "gardening",
        (
            "cut back an overgrown hedge",
            "lay a new lawn",
            "plant a vegetable patch",
            "prune the apple trees",
        ),
    ),
    (
        "painter and decorator",
        "decorating",
        (
            "paint the hallway and stairs",
            "hang wallpaper in the bedroom",
            "paint the outside window frames",
        ),
    ),
    (
        "locksmith",
        "locks",
        ("change the locks", "open a jammed front door", "fit window locks"),
    ),
    (
        "glazier",
        "glazing",
        ("replace a cracked window pane", "fix misted double glazing"),
    ),
    (
        "mechanic",
        "car-repair",
        ("look at a noisy gearbox", "do a check before the MOT", "replace the brake pads"),
    ),
    (
        "bike mechanic",
        "bike-repair",
        ("service a road bike", "true a buckled wheel", "fix the gears on an electric bike"),
    ),
    (
        "cleaner",
        "cleaning",
        ("do a weekly clean", "deep clean after the builders", "clean the oven"),
    ),
    (
        "childminder",
        "childcare",
        ("look after a toddler two days a week", "do the school pickups"),
    ),
    (
        "tutor",
        "tutoring",
        ("help with GCSE maths", "teach beginner French", "prepare for A level chemistry"),
    ),
    (
        "bookkeeper",
        "bookkeeping",
        ("do a self assessment tax return", "sort out the accounts for a small business"),
    ),
    (
        "damp specialist",
        "damp-proofing",
        ("treat rising damp in the cellar", "fix condensation in the bedroom"),
    ),
    (
        "floor fitter",
        "flooring",
        (
            "sand and varnish the floorboards",
            "lay laminate in the lounge",
            "fit carpet on the stairs",
        ),
    ),
    (
        "fencer",
        "fencing",
        ("replace a storm damaged fence panel", "put up a new fence"),
    ),
    (
        "gutter cleaner",
        "guttering",
        ("clear the gutters", "fix a leaking downpipe"),
    ),
    (
        "stonemason",
        "dry-stone-walling",
        ("rebuild a collapsed dry stone wall", "repair the stone steps"),
    ),
    (
        "tailor",
        "sewing",
        ("take up some trousers", "alter a wedding dress", "make curtains for a bay window"),
    ),
    (
        "computer repairer",
        "computer-repair",
        (
            "fix a slow laptop",
            "recover photos from a broken hard drive",
            "set up the home wifi",
        ),
    ),
    (
        "chimney sweep",
        "chimney-sweeping",
        ("sweep the chimney", "check the wood burner flue"),
    ),
    (
        "handyman",
        "odd-jobs",
        (
            "put up some shelves",
            "assemble flat pack furniture",
            "mount the telly on the wall",
            "fix a dripping outside tap",
        ),
    ),
    (
        "upholsterer",
        "upholstery",
        ("reupholster a pair of armchairs", "recover the dining chair seats"),
    ),
    (
        "tree surgeon",
        "tree-surgery",
        ("take down a dead ash tree", "crown reduce an oak"),
    ),
    (
        "dog walker",
        "dog-walking",
        ("walk our spaniel at lunchtime", "look after a dog for the weekend"),
    ),
    (
        "photographer",
        "photography",
        ("photograph a small wedding", "take product photos for a shop"),
    ),
    (
        "piano teacher",
        "music-lessons",
        ("teach piano to a seven year old", "give beginner guitar lessons"),
    ),
    (
        "translator",
        "translation",
        ("translate some documents from Polish", "help with a letter in Urdu"),
    ),
]
PLACES = [
    "Leeds",
    "Bradford",
    "York",
    "Halifax",
    "Huddersfield",
    "Sheffield",
    "Manchester",
    "Wakefield",
    "Harrogate",
    "Otley",
    "Ilkley",
    "Skipton",
    "Hebden Bridge",
    "Todmorden",
    "Keighley",
    "Barnsley",
    "Doncaster",
    "Rotherham",
    "Salford",
    "Stockport",
    "Oldham",
    "Rochdale",
    "Bolton",
    "Wigan",
    "Preston",
    "Lancaster",
    "Kendal",
    "Hull",
    "Beverley",
    "Scarborough",
    "Whitby",
    "Durham",
    "Newcastle",
    "Sunderland",
    "Headingley",
    "Chapel Allerton",
    "Meanwood",
    "Kirkstall",
    "Horsforth",
    "Roundhay",
    "Armley",
    "Saltaire",
    "Shipley",
    "Pudsey",
    "Morley",
]
THEMES = [
    "Repair Café",
    "Skills Swap",
    "Neighbours",
    "Tradespeople",
    "Home Energy Group",
    "Allotments",
    "Parents",
    "Makers",
]
WHEN = (
    "",
    "",
    " this week",
    " before Christmas",
    " next month",
    " as soon as possible",
    " at the weekend",
    " before the winter",
)
EXTRAS = (
    "",
    "",
    "Happy to pay a fair price.",
    "Quotes welcome.",
    "No rush, sometime in the spring is fine.",
    "It's a Victorian terrace.",
    "Ground floor flat, easy parking.",
    "Thanks in advance!",
    "We've been let down twice already.",
    "Recommendations from people you've actually used please.",
    "We have a friendly dog.",
)
OFFER_EXTRAS = (
    "",
    "Fully insured.",
    "References from neighbours on request.",
    "Evenings and weekends only.",
    "Happy to give advice for free.",
    "Retired, so I have plenty of time.",
)
TERMS = (
    "£{n} an hour",
    "free quote, £{n} an hour after that",
    "£{n}0 a day plus materials",
    "pay what you can",
    "swap for a few hours of your help with something",
)
VENUES = ("library", "community centre", "church hall", "market", "pub", "school")
TIPS = (
    "the council gives grants to {task}",
    "get three quotes before you let anyone {task}",
    "the tool library lends what you need to {task} yourself",
    "ask for a written quote before anyone starts to {task}",
)
REPLIES = (
    "I used a {trade} from {place} last year, very good. Will message you their number.",
    "Try asking at the {venue} in {place}, they have a noticeboard.",
    "Following, we need someone to {task} too.",
    "Seconded, they were great.",
    "How much did they charge in the end?",
    "I can {task} if you're still stuck, I'm in {place}.",
    "My neighbour is a {trade}, I'll ask if they have time.",
    "Thanks, sorted now!",
)
EMOJI = ("👍", "❤️", "🙏", "😂", "🎉", "👀")
# fmt: off
STOPWORDS = frozenset({
    "a", "an", "the", "and", "to", "of", "in", "on", "for", "some", "two", "our", "my",
    "after", "from", "under", "round", "off", "why", "keeps", "at", "with", "up", "or", "new",
    "old", "small", "pair", "set", "do", "look", "you",
})
# fmt: on


def zipf_cumulative(count: int, exponent: float = 0.9) -> list[float]:
    """Cumulative Zipf weights: the first items are picked much more often."""
    return list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(count)))


def pick(rng: random.Random, items: Sequence[Any], cumulative: list[float]) -> Any:
    return items[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


TRADE_CUM = zipf_cumulative(len(TRADES), 0.8)
PLACE_CUM = zipf_cumulative(len(PLACES), 1.0)


# The data -------------------------------------------------------------------------------


@dataclass(slots=True)
class Recent:
    """A post of a community that later records may reply to, react to or edit."""

    id: bytes
    author: int
    trade: int


@dataclass(slots=True)
class Community:
    id: bytes
    name: str
    home: str
    owner: int
    members: list[int]  # indexes into the author pool, busiest first
    members_cum: list[float]
    recent: collections.deque[Recent] = field(default_factory=lambda: collections.deque(maxlen=300))


@dataclass(frozen=True, slots=True)
class Plan:
    records: int
    communities: int
    members: int
    pool: int
    seed: int

    def as_dict(self) -> dict[str, int]:
        return {
            "generator": GENERATOR,
            "records": self.records,
            "communities": self.communities,
            "members": self.members,
            "pool": self.pool,
            "seed": self.seed,
            "batch": BATCH,
        }


class Writer:
    """Writes posts, questions, offers, replies, reactions, edits and a few moderator
    removals, from the vocabulary above, with Zipf-like choices of trades, places and
    authors (some words are everywhere, most are rare, as in real text)."""

    def __init__(self, rng: random.Random, communities: list[Community]) -> None:
        self.rng = rng
        self.communities = communities
        self.activity = list(itertools.accumulate(rng.uniform(0.4, 1.6) for _ in communities))

    def place(self, community: Community) -> str:
        if self.rng.random() < 0.5:
            return community.home
        place: str = pick(self.rng, PLACES, PLACE_CUM)
        return place

    def trade(self) -> int:
        return bisect.bisect_right(TRADE_CUM, self.rng.random() * TRADE_CUM[-1])

    def author(self, community: Community) -> int:
        member: int = pick(self.rng, community.members, community.members_cum)
        return member

    def top_level(self, community: Community) -> tuple[int, dict[str, Any], int]:
        """A question, an offer or a post: (author, fields, trade)."""
        rng = self.rng
        trade_no = self.trade()
        trade, tag, tasks = TRADES[trade_no]
        task = rng.choice(tasks)
        place = self.place(community)
        roll = rng.random()
        fields: dict[str, Any]
        if roll < 0.40:
            text = rng.choice(
                (
                    "Does anyone know a good {trade} in {place}? I need someone to {task}{when}.",
                    "Can anybody recommend a {trade} who could {task}? We're in {place}.",
                    "Looking for a {trade} near {place} to {task}{when}.",
                    "Who would you use to {task} around {place}?",
                )
            ).format(trade=trade, place=place, task=task, when=rng.choice(WHEN))
            fields = {"type": "question", "text": f"{text} {rng.choice(EXTRAS)}".strip()}
            if rng.random() < 0.6:
                fields["tags"] = [tag]
        elif roll < 0.65:
            second = rng.choice(tasks)
            also = f" or {second}" if second != task else ""
            text = (
                f"{trade.capitalize()} based in {place}, {rng.randint(2, 35)} years of"
                f" experience. I can {task}{also}. {rng.choice(OFFER_EXTRAS)}"
            ).strip()
            terms = rng.choice(TERMS).format(n=rng.randint(15, 60))
            fields = {"type": "offer", "text": text, "tags": [tag], "area": place, "terms": terms}
        else:
            template = rng.choice(
                (
                    "Big thanks to the {trade} from {place} who came out to {task} at short"
                    " notice.",
                    "Tip for anyone in {place}: {tip}.",
                    "The repair café is on at the {venue} in {place} this Saturday; bring"
                    " anything that needs a {trade}.",
                    "We finally managed to {task}. If you're in {place} and need a {trade},"
                    " ask me for their details.",
                )
            )
            text = template.format(
                trade=trade,
                place=place,
                task=task,
                tip=rng.choice(TIPS).format(task=task),
                venue=rng.choice(VENUES),
            )
            fields = {"type": "post", "text": text}
            if rng.random() < 0.3:
                fields["tags"] = [tag]
        return self.author(community), fields, trade_no

    def reply(self, community: Community, parent: Recent) -> tuple[int, dict[str, Any]]:
        trade, _, tasks = TRADES[parent.trade]
        text = self.rng.choice(REPLIES).format(
            trade=trade,
            place=self.place(community),
            task=self.rng.choice(tasks),
            venue=self.rng.choice(VENUES),
        )
        return self.author(community), {"type": "post", "text": text, "reply_to": parent.id}

    def records(
        self, count: int, start: int, end: int
    ) -> Iterator[tuple[Community, int, dict[str, Any], int | None]]:
        """`count` records dated evenly from `start` to `end`, across the communities:
        (community, author, fields, the trade of a post or None for other kinds)."""
        rng = self.rng
        step = (end - start) / max(count, 1)
        for index in range(count):
            community: Community = pick(rng, self.communities, self.activity)
            recent = community.recent
            body: dict[str, Any] = {
                "community": community.id,
                "created_at": start + int(index * step),
            }
            trade: int | None = None
            roll = rng.random()
            if not recent:
                roll = 1.0
                target = None
            else:  # mostly the newest posts get the answers
                target = recent[-1 - min(int(rng.expovariate(1 / 20)), len(recent) - 1)]
            if target is not None and roll < 0.26:
                author = self.author(community)
                body |= {"kind": "reaction", "target": target.id, "emoji": rng.choice(EMOJI)}
            elif target is not None and roll < 0.51:
                author, fields = self.reply(community, target)
                body |= {"kind": "post", **fields}
                trade = target.trade
            elif target is not None and roll < 0.54:
                name, tag, tasks = TRADES[target.trade]
                author = target.author
                body |= {
                    "kind": "edit",
                    "target": target.id,
                    "text": f"Edited: still looking for a {name} to {rng.choice(tasks)}.",
                    "tags": [tag],
                }
            elif target is not None and roll < 0.542 and target.author != community.owner:
                author = community.owner
                body |= {
                    "kind": "moderation",
                    "action": "remove",
                    "target": target.id,
                    "reason": "advertising outside the offers rules",
                }
            else:
                author, fields, trade = self.top_level(community)
                body |= {"kind": "post", **fields}
            yield community, author, body, trade


def plan_records(plan: Plan) -> tuple[Identity, int, Iterator[Record]]:
    """The member whose store it is, the number of records, and the signed records in
    the order they arrive: profiles, each community's genesis, invite and joins, then
    posts and the rest, interleaved across communities and dated in order."""
    rng = random.Random(plan.seed)
    pool = [Identity.from_seed(rng.randbytes(32)) for _ in range(plan.pool)]
    me = 0  # the store's owner, a member of every community
    communities = []
    for number in range(plan.communities):
        home = PLACES[number % len(PLACES)]
        name = f"{home} {THEMES[number % len(THEMES)]}"
        members = [me, *rng.sample(range(1, plan.pool), plan.members - 1)]
        rng.shuffle(members)  # busiest first; the first one founded it
        cumulative = zipf_cumulative(len(members), 0.7)
        communities.append(Community(b"", name, home, members[0], members, cumulative))
    setup = plan.pool + sum(1 + len(c.members) for c in communities)  # + invite - owner
    content = plan.records - setup
    if content < 10 * plan.communities:
        raise SystemExit(f"--records must be well above {setup} (the set-up records)")
    first = NOW_MS - 10_000_000  # community_setup dates genesis, invite and joins from here
    start, end = first + 10_000, NOW_MS - 60_000
    if end - start < content:
        raise SystemExit("too many records for one a millisecond; use fewer --records")

    def generate() -> Iterator[Record]:
        for number, who in enumerate(pool):
            trades = rng.sample(range(len(TRADES)), 2)
            yield sign_record(
                who,
                {
                    "kind": "profile",
                    "name": f"Member {number}",
                    "bio": f"Lives near {rng.choice(PLACES)}; {TRADES[trades[0]][0]} by trade.",
                    "skills": sorted({TRADES[t][1] for t in trades}),
                    "created_at": first - 100_000 + number,
                },
            )
        for community in communities:
            joiners = [pool[m] for m in community.members if m != community.owner]
            made = community_setup(pool[community.owner], joiners, community.name)
            community.id = made[0].id
            yield from made
        writer = Writer(rng, communities)
        for community, author, body, trade in writer.records(content, start, end):
            record = sign_record(pool[author], body)
            if trade is not None:
                community.recent.append(Recent(record.id, author, trade))
            yield record

    return pool[me], setup + content, generate()


# Building the store ---------------------------------------------------------------------


def build(data_dir: Path, plan: Plan) -> dict[str, Any]:
    me, total, records = plan_records(plan)
    marker = data_dir / MARKER
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"params": plan.as_dict(), "complete": False}))
    print(f"building a store of {total:,} records in {data_dir} (fast KDF)", flush=True)
    statuses: collections.Counter[str] = collections.Counter()
    odd: list[str] = []
    sign_s = ingest_s = 0.0
    done, report_at = 0, 100_000
    started = time.perf_counter()
    store = Store.create(data_dir, PASSPHRASE, identity=me, kdf=FAST_KDF)
    try:
        while True:
            t0 = time.perf_counter()
            batch = [record.envelope for record in itertools.islice(records, BATCH)]
            t1 = time.perf_counter()
            if not batch:
                break
            outcomes = store.ingest(batch, now=NOW_MS)
            t2 = time.perf_counter()
            sign_s += t1 - t0
            ingest_s += t2 - t1
            for outcome in outcomes:
                statuses[outcome.status] += 1
                if outcome.status != "stored" and len(odd) < 5:
                    odd.append(f"{outcome.status} {outcome.reason}: {outcome.message}")
            done += len(batch)
            if done >= report_at or done == total:
                print(
                    f"  {done:>9,} records  generate+sign {sign_s:6.1f} s"
                    f"  ingest {ingest_s:6.1f} s ({done / ingest_s:,.0f}/s)",
                    flush=True,
                )
                report_at += 100_000
        held = store.record_count()
    finally:
        store.close()
    info = {
        "records": held,
        "outcomes": dict(statuses),
        "odd": odd,
        "sign_s": round(sign_s, 1),
        "ingest_s": round(ingest_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }
    marker.write_text(json.dumps({"params": plan.as_dict(), "complete": True, "build": info}))
    return info


def prepare(data_dir: Path, plan: Plan) -> tuple[dict[str, Any], bool]:
    """Reuse the store in `data_dir` if this script built it with `plan`, else build it."""
    marker = data_dir / MARKER
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("params") != plan.as_dict():
            raise SystemExit(
                f"{data_dir} holds a store built with other parameters ({saved.get('params')});"
                " choose another --data-dir or delete it"
            )
        if saved.get("complete"):
            return saved["build"], True
        print(f"{data_dir} holds an interrupted build; building again")
        for path in data_dir.iterdir():
            if path.name.startswith((HEADER_NAME, LOCK_NAME, MARKER, DATABASE_PREFIX)):
                path.unlink()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise SystemExit(f"{data_dir} is not empty and this script did not build a store there")
    return build(data_dir, plan), False


# Measuring ------------------------------------------------------------------------------


def clock(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@dataclass(slots=True)
class Row:
    name: str
    times: list[float]
    first: float | None = None
    limit_ms: float | None = None
    plans: list[str] = field(default_factory=list)  # what one call runs, and how

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000

    @property
    def misses(self) -> bool:
        return self.limit_ms is not None and self.median_ms >= self.limit_ms


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'measure':<50}{'n':>5}{'first':>9}{'median':>9}{'p95':>9}{'limit':>8}"
        f"{'med/lim':>9}  verdict"
    )
    print(f"{'':<50}{'':>5}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>8}")
    for row in rows:
        first = f"{row.first * 1000:9.2f}" if row.first is not None else f"{'':>9}"
        limit = ratio = verdict = ""
        if row.limit_ms is not None:
            limit = f"{row.limit_ms:g}"
            ratio = f"{row.median_ms / row.limit_ms:.2f}"
            verdict = "MISSES" if row.misses else "meets"
        print(
            f"{row.name:<50}{len(row.times):>5}{first}{row.median_ms:9.2f}{row.p95_ms:9.2f}"
            f"{limit:>8}{ratio:>9}  {verdict}"
        )
    print(
        "first: the first call after reopening the store (SQLCipher's page cache empty, the"
        " OS's warm); limits apply to the median"
    )


def make_queries(rng: random.Random, count: int) -> list[str]:
    """Searches of one to three words from the vocabulary, as people type them."""
    queries = ["loft insulation", "roof", "plumber leeds"]
    for _ in range(100 * count):
        if len(queries) >= count:
            break
        trade, _, tasks = TRADES[bisect.bisect_right(TRADE_CUM, rng.random() * TRADE_CUM[-1])]
        trade_words = [w for w in trade.split() if w not in STOPWORDS]
        task_words = [
            w
            for w in re.findall(r"[a-z]+", rng.choice(tasks).lower())
            if w not in STOPWORDS and len(w) > 2
        ]
        word = rng.choice(trade_words + task_words)
        place: str = pick(rng, PLACES, PLACE_CUM).lower()
        roll = rng.random()
        if roll < 0.3 or len(task_words) < 2:
            query = word
        elif roll < 0.55:
            at = rng.randrange(len(task_words) - 1)
            query = " ".join(task_words[at : at + 2])
        elif roll < 0.85:
            query = f"{word} {place}"
        else:
            query = " ".join(task_words[:2] + place.split()[:1])
        if query not in queries:  # each query typed once
            queries.append(query)
    return queries


def plan_lines(db: Any, sql: str) -> list[str]:
    rows = db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
    depth = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("    " + "  " * depth[node] + detail)
    return lines


def explain(store: Store, call: Callable[[], object]) -> list[str]:
    """The statements one `call` runs, each with its query plan and the time all of its
    executions take when run again on their own."""
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    try:
        call()
    finally:
        store.db.set_trace_callback(None)
    # Statements a virtual table runs inside another (FTS5 reading its segments) are
    # traced with a leading comment; they are counted, not run again.
    nested = [sql for sql in statements if sql.startswith("--")]
    statements = [sql for sql in statements if not sql.startswith("--")]
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for sql in statements:
        groups[_template(sql)].append(sql)
    inside = f" (and {len(nested)} run inside them by FTS5)" if nested else ""
    out = [f"{len(statements)} statements per call{inside}:"]

    def run(sql: str) -> None:
        store.db.execute(sql).fetchall()

    for template, instances in groups.items():
        spent = sum(clock(functools.partial(run, sql)) for sql in instances)
        out.append(
            f"  {len(instances)} x, {spent * 1000:.2f} ms in all: {' '.join(template.split())}"
        )
        out.extend(plan_lines(store.db, instances[0]))
    inner = collections.Counter(
        " ".join(re.sub(r"\b\d+\b", "?", sql.removeprefix("-- ")).split()) for sql in nested
    )
    for template, count in inner.most_common():
        out.append(f"  {count} x, inside FTS5: {template}")
    return out


def _template(sql: str) -> str:
    """A statement with its literal values replaced by ?, spaces collapsed."""
    sql = re.sub(r"[xX]'[0-9a-fA-F]*'", "?", sql)
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    return " ".join(re.sub(r"\b\d+\b", "?", sql).split())


def unlock_timings(data_dir: Path, profile: str, rounds: int, opens: int) -> None:
    ops, mem = KDF_PROFILES[profile]
    params = KdfParams.new(ops, mem)
    slow = [clock(lambda: derive_keys(PASSPHRASE, params)) for _ in range(rounds)]
    with Store.open(data_dir, PASSPHRASE) as store:
        fast_params = store.header.kdf
    fast = [clock(lambda: derive_keys(PASSPHRASE, fast_params)) for _ in range(max(opens, 3))]
    opened = []
    for _ in range(opens):
        start = time.perf_counter()
        store = Store.open(data_dir, PASSPHRASE)
        opened.append(time.perf_counter() - start)
        store.close()
    kdf_ms = statistics.median(slow) * 1000
    rest_ms = (statistics.median(opened) - statistics.median(fast)) * 1000
    print(
        f"unlock KDF, Argon2id {profile} (opslimit {ops}, memlimit {mem // 2**20} MiB):"
        f" median {kdf_ms:.0f} ms of {rounds} (min {min(slow) * 1000:.0f}, max"
        f" {max(slow) * 1000:.0f})"
    )
    print(
        f"Store.open with the fast KDF: median {statistics.median(opened) * 1000:.1f} ms of"
        f" {opens}; its KDF {statistics.median(fast) * 1000:.1f} ms; open minus KDF"
        f" {rest_ms:.1f} ms"
    )
    print(f"so unlocking with the {profile} KDF takes about {kdf_ms + rest_ms:.0f} ms")


def measure(store: Store, args: argparse.Namespace) -> list[Row]:
    rng = random.Random(args.seed + 1)
    ids = [community.id for community in store.communities()]
    rows = []

    # First calls after opening, with SQLCipher's page cache empty (the OS's is warm).
    first_feed = clock(functools.partial(store.feed, ids[0]))
    first_search = clock(functools.partial(store.search, "plumber leeds"))
    read = len(ids) // 5
    for community in rng.sample(ids, read):
        store.mark_read(community)
    first_unread = clock(store.unread_counts)

    times = [clock(functools.partial(store.feed, rng.choice(ids))) for _ in range(args.feed_reps)]
    row = Row(f"feed page of {PAGE}, first page, random community", times, first_feed)
    row.limit_ms = FEED_LIMIT_MS
    row.plans = explain(store, functools.partial(store.feed, ids[1]))
    rows.append(row)

    cursors: list[tuple[bytes, views.Cursor, int]] = []
    for community in rng.sample(ids, min(10, len(ids))):
        page = store.feed(community)
        depth = 1
        while page.next is not None and depth < 400:
            cursors.append((community, page.next, depth + 1))
            page = store.feed(community, before=page.next)
            depth += 1
    if cursors:
        chosen = [rng.choice(cursors) for _ in range(args.feed_reps)]
        times = [clock(functools.partial(store.feed, c, before=at)) for c, at, _ in chosen]
        depths = sorted(depth for _, _, depth in chosen)
        row = Row(
            f"feed page via cursor (pages 2-{depths[-1]}, median {depths[len(depths) // 2]})",
            times,
        )
        row.limit_ms = FEED_LIMIT_MS
        deep = cursors[len(cursors) // 2]
        row.plans = explain(store, functools.partial(store.feed, deep[0], before=deep[1]))
        rows.append(row)

    queries = make_queries(rng, args.search_reps)
    times = [clock(functools.partial(store.search, q)) for q in queries]
    slowest = sorted(zip(times, queries, strict=True), reverse=True)[:5]
    row = Row("search, 1-3 words, all communities (1st run)", times, first_search)
    row.limit_ms = SEARCH_LIMIT_MS
    row.plans = explain(store, functools.partial(store.search, slowest[0][1]))
    rows.append(row)
    times = [clock(functools.partial(store.search, q)) for q in queries]
    rows.append(Row("search, same queries again", times, None, SEARCH_LIMIT_MS))
    scoped = [(q, rng.choice(ids)) for q in queries]
    times = [clock(functools.partial(store.search, q, community=c)) for q, c in scoped]
    row = Row("search within one community", times, None, SEARCH_LIMIT_MS)
    row.plans = explain(store, functools.partial(store.search, slowest[0][1], community=ids[0]))
    rows.append(row)
    matches = {
        query: store.db.execute(
            "SELECT count(*) FROM posts_fts WHERE posts_fts MATCH ?",
            (f"{{text tags area}} : ({views._fts_terms(query)})",),
        ).fetchone()[0]
        for query in queries
    }

    times = [clock(store.unread_counts) for _ in range(args.unread_reps)]
    unread = sum(store.unread_counts().values())
    row = Row(f"unread counts, {len(ids)} communities, {read} read", times, first_unread)
    row.limit_ms = UNREAD_LIMIT_MS
    row.plans = explain(store, store.unread_counts)
    rows.append(row)
    store.mark_all_read()
    times = [clock(store.unread_counts) for _ in range(args.unread_reps)]
    recent_unread = sum(store.unread_counts().values())
    rows.append(Row("unread counts, all read", times, None, UNREAD_LIMIT_MS))

    print_rows(rows)
    counts = sorted(matches.values())
    print(
        f"\nsearch: {len(queries)} queries, matching {counts[0]:,} to {counts[-1]:,} posts"
        f" (median {counts[len(counts) // 2]:,}); slowest:"
    )
    for spent, query in slowest:
        print(f"  {spent * 1000:8.1f} ms  {query!r} ({matches[query]:,} matches)")
    print(
        f"unread: {unread:,} posts unread with {read} of {len(ids)} communities read;"
        f" {recent_unread:,} when all are read"
    )
    return rows


def contents(store: Store) -> dict[str, Any]:
    kinds = store.db.execute(
        "SELECT kind, count(*), sum(length(envelope)) FROM records GROUP BY kind"
        " ORDER BY count(*) DESC"
    ).fetchall()
    posts, visible = store.db.execute(
        "SELECT count(*), sum(deleted = 0 AND removed = 0) FROM posts"
    ).fetchone()
    return {
        "kinds": kinds,
        "records": sum(row[1] for row in kinds),
        "envelopes": sum(row[2] for row in kinds),
        "posts": posts,
        "visible": visible,
        "page_size": store.db.execute("PRAGMA page_size").fetchone()[0],
        "pages": store.db.execute("PRAGMA page_count").fetchone()[0],
        "free": store.db.execute("PRAGMA freelist_count").fetchone()[0],
    }


def size_report(held: dict[str, Any], data_dir: Path) -> None:
    """Sizes once the store is closed (its write-ahead log checkpointed and gone)."""
    files = {path.name: path.stat().st_size for path in data_dir.iterdir() if path.is_file()}
    size = sum(files.values())
    records, envelopes = held["records"], held["envelopes"]
    print(
        f"\nrecords: {records:,} ("
        + ", ".join(f"{kind} {count:,}" for kind, count, _ in held["kinds"])
        + f"); posts {held['posts']:,}, {held['visible']:,} visible"
    )
    print(
        f"data dir: {size / 1e6:,.1f} MB in {len(files)} files"
        f" ({', '.join(sorted(files))}); database {held['pages']:,} pages of"
        f" {held['page_size']} B, {held['free']:,} free"
    )
    print(
        f"{size / records:,.0f} B per record = {size / records * 1e6 / 1e9:.2f} GB per million"
        f" records; the signed envelopes alone are {envelopes / records:.0f} B per record"
        f" (the store is {size / envelopes:.2f} x them)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--communities", type=int, default=50)
    parser.add_argument("--members", type=int, default=40, help="authors per community")
    parser.add_argument("--pool", type=int, default=300, help="authors in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="build here, or reuse what is here")
    parser.add_argument("--kdf", choices=sorted(KDF_PROFILES), default="moderate")
    parser.add_argument("--kdf-rounds", type=int, default=3)
    parser.add_argument("--open-rounds", type=int, default=5)
    parser.add_argument("--feed-reps", type=int, default=200)
    parser.add_argument("--search-reps", type=int, default=100)
    parser.add_argument("--unread-reps", type=int, default=100)
    parser.add_argument("--plans", action="store_true", help="plans of every query, not only slow")
    args = parser.parse_args()
    if not 2 <= args.members <= args.pool:
        parser.error("--members must be from 2 to --pool")
    plan = Plan(args.records, args.communities, args.members, args.pool, args.seed)

    with contextlib.ExitStack() as stack:
        if args.data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "data"
        else:
            data_dir = args.data_dir.resolve()
        info, reused = prepare(data_dir, plan)
        print(
            f"{'reusing' if reused else 'built'} {data_dir}: {info['records']:,} records;"
            f" generate+sign {info['sign_s']} s, ingest {info['ingest_s']} s"
            f" ({info['records'] / info['ingest_s']:,.0f}/s) through Store.ingest in batches"
            f" of {BATCH}; outcomes {info['outcomes']}"
        )
        for line in info["odd"]:
            print(f"  e.g. {line}")

        print()
        unlock_timings(data_dir, args.kdf, args.kdf_rounds, args.open_rounds)
        print()
        with Store.open(data_dir, PASSPHRASE) as store:
            rows = measure(store, args)
            held = contents(store)
        for row in rows:
            if row.plans and (row.misses or args.plans):
                print(f"\n{row.name}: " + "\n".join(row.plans))
        size_report(held, data_dir)
        missed = [row.name for row in rows if row.misses]
        print(f"\n{'MISSED: ' + '; '.join(missed) if missed else 'every median meets its limit'}")


if __name__ == "__main__":
    main()
