"""Knowledge-graph benchmark: batched ingest, reads with and without indexes, the Redis cache.

    .venv/bin/python benchmarks/graph.py                      # CI size: 100 recordings x 50 segments, 2,000 entities
    .venv/bin/python benchmarks/graph.py --scale full         # 1,000 recordings x 200 segments, 20,000 entities
    .venv/bin/python benchmarks/graph.py --recordings 300 --segments 100 --entities 6000 --reads 200

A deterministic synthetic graph (--seed) of a few users (--owners): recordings of 0.5-1.5x --segments
segments, texts of words from a Zipf-ranked vocabulary with entity names inserted, entities of Zipf
popularity (a few in most recordings, a long tail mentioned once), 8 topics per recording, two of
a user's four speakers per recording. The parameters have exactly the shape
`graph.writes.recording_params` gives `write_graph`. Then, in one run, it prints:

1. Ingest: `write_graph` (a few UNWIND queries, one transaction per recording) for every recording:
   recordings/s, segments/s, graph items (nodes + relationships written)/s. Against it, on the same
   few recordings (--baseline-recordings, written to a separate user and removed again), one neomodel
   `.save()` per node and one `.connect()` per relationship, also one transaction per recording:
   batched/per-node speed ratio (target >= 20x).
2. Reads (search, entity, recording, neighbours of each kind) p50/p95 in ms:
   - uncached, with the indexes: the app's query functions, with the user's cache version bumped
     (`cache.graph_changed`) before each call so every call is a miss (the miss path: Redis lookups,
     the Cypher, storing the answer);
   - without the indexes: uid constraints, owner/index range indexes and full-text indexes dropped
     (label lookup indexes kept); search then runs an equivalent unindexed query (`toLower(text)
     CONTAINS term` for each term, so substring rather than word/prefix matching) through
     `queries.rows`; afterwards `graph_schema` reinstalls everything;
   - cached: the same calls again with the cache warm (target p95 <= 2 ms).
   Search p95 uncached is checked against <= 50 ms.
3. PROFILE of each read query once (indexed): total db hits, rows, and the operator with most hits.
   (Procedure calls, i.e. the full-text index lookups, report no db hits of their own.)

Services: Redis on 6392 and Neo4j on 7692, data under var/bench/graph; started here unless already
listening there, and then stopped at the end. The graph and the Redis db are emptied at the start.
Latencies on a shared machine move with its load: the header and the summary print the load average.
"""

import argparse
import gc
import logging
import math
import os
import random
import string
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_VAR = ROOT / "var" / "bench" / "graph"
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "assistant_site.settings_test",
    "VAR_DIR": str(BENCH_VAR),
    "REDIS_URL": "redis://127.0.0.1:6392/0",
    # The cache in another database of the same Redis: the benchmarks never fill it.
    "REDIS_CACHE_URL": "redis://127.0.0.1:6392/1",
    "NEO4J_BOLT_URL": "bolt://neo4j:neo4j@127.0.0.1:7692",
    "DATABASE_URL": f"sqlite:///{BENCH_VAR / 'db.sqlite3'}",
}

SCALES = {
    "ci": {"recordings": 100, "segments": 50, "entities": 2000},
    "full": {"recordings": 1000, "segments": 200, "entities": 20000},
}

TARGET_RATIO = 20.0  # batched ingest vs one save per node
TARGET_CACHED_MS = 2.0  # p95 of any read with the cache warm
TARGET_SEARCH_MS = 50.0  # p95 of search, uncached, with the indexes

# The users the ingest comparison writes to (and then removes): never one of the generated users.
BASELINE_OWNER, PER_NODE_OWNER = "900001", "900002"
BASELINE_RECORDING_OFFSET = 90_000_000


# --- The synthetic graph -------------------------------------------------------------------------

COMMON_WORDS = [
    "the",
    "be",
    "to",
    "of",
    "and",
    "a",
    "in",
    "that",
    "have",
    "i",
    "it",
    "for",
    "not",
    "on",
    "with",
    "he",
    "as",
    "you",
    "do",
    "at",
    "this",
    "but",
    "his",
    "by",
    "from",
    "they",
    "we",
    "say",
    "her",
    "she",
    "or",
    "an",
    "will",
    "my",
    "one",
    "all",
    "would",
    "there",
    "their",
    "what",
    "so",
    "up",
    "out",
    "if",
    "about",
    "who",
    "get",
    "which",
    "go",
    "me",
    "when",
    "make",
    "can",
    "like",
    "time",
    "no",
    "just",
    "him",
    "know",
    "take",
    "people",
    "into",
    "year",
    "your",
    "good",
    "some",
    "could",
    "them",
    "see",
    "other",
    "than",
    "then",
    "now",
    "look",
    "only",
    "come",
    "its",
    "over",
    "think",
    "also",
    "back",
    "after",
    "use",
    "two",
    "how",
    "our",
    "work",
    "first",
    "well",
    "way",
    "even",
    "new",
    "want",
    "because",
    "any",
    "these",
    "give",
    "day",
    "most",
    "us",
    "is",
    "was",
    "are",
    "were",
    "been",
    "has",
    "had",
    "did",
    "said",
    "going",
    "really",
    "very",
    "much",
    "more",
    "need",
    "meeting",
    "project",
    "budget",
    "plan",
    "team",
    "client",
    "report",
    "review",
    "quarter",
    "launch",
    "design",
    "problem",
    "answer",
    "week",
    "month",
    "today",
    "tomorrow",
    "call",
    "email",
    "document",
    "deadline",
    "schedule",
    "price",
    "cost",
    "sales",
    "market",
    "product",
    "feature",
    "release",
    "test",
    "build",
    "data",
    "model",
    "server",
    "update",
    "change",
    "issue",
    "idea",
    "question",
    "decision",
    "agreement",
    "contract",
    "office",
    "travel",
    "trip",
    "family",
    "dinner",
    "lunch",
    "coffee",
    "school",
    "doctor",
    "house",
    "garden",
    "car",
    "train",
    "money",
    "account",
    "bank",
    "payment",
    "invoice",
    "order",
    "delivery",
    "customer",
    "support",
    "service",
    "quality",
    "number",
    "point",
    "part",
    "place",
    "case",
    "group",
    "company",
    "system",
    "program",
    "question",
    "government",
    "night",
    "home",
    "water",
    "room",
    "mother",
    "father",
]

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ren",
    "tu",
    "sa",
    "vel",
    "or",
    "an",
    "dri",
    "po",
    "nel",
    "ta",
    "ri",
    "so",
    "mun",
    "el",
    "ba",
    "cor",
    "fi",
    "ga",
    "lin",
    "tro",
    "ve",
    "zu",
    "ha",
    "pe",
    "qua",
]
NAME_SYLLABLES = [
    "Bra",
    "Kel",
    "Dor",
    "Zan",
    "Mir",
    "Tav",
    "Quen",
    "Xal",
    "Vor",
    "Lys",
    "Grim",
    "Oth",
    "Fen",
    "Jar",
    "Wex",
    "Yor",
    "Cal",
    "Nim",
    "Sar",
    "Ulf",
]
NAME_ENDINGS = [
    "ix",
    "ova",
    "enko",
    "ard",
    "ith",
    "ez",
    "wyn",
    "ux",
    "ara",
    "ok",
    "elle",
    "om",
    "ic",
    "ant",
    "ys",
    "ador",
]


def zipf_cum_weights(n: int, s: float = 1.0) -> list[float]:
    total, cum = 0.0, []
    for rank in range(1, n + 1):
        total += 1.0 / rank**s
        cum.append(total)
    return cum


def pseudo_words(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    words = []
    while len(words) < n:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def entity_names(rng: random.Random, n: int, vocabulary: set[str]) -> list[tuple[str, str]]:
    """(name, type) pairs, unique by normalised name, no word of them in the vocabulary."""
    seen, names = set(), []

    def word():
        return rng.choice(NAME_SYLLABLES) + rng.choice(string.ascii_lowercase[:20]) + rng.choice(NAME_ENDINGS)

    while len(names) < n:
        shape = rng.random()
        if shape < 0.55:
            name, kind = word(), "name"
        elif shape < 0.9:
            name, kind = f"{word()} {word()}", "person"
        else:
            name, kind = f"{word()} of {word()}", "organisation"
        key = name.lower()
        if key in seen or any(w in vocabulary for w in key.split()):
            continue
        seen.add(key)
        names.append((name, kind))
    return names


def generate(args) -> list[dict]:
    """`write_graph` parameters for every recording, deterministic for a seed."""
    from graph.writes import node_uid

    rng = random.Random(args.seed)
    taken = set(COMMON_WORDS)
    vocabulary = list(dict.fromkeys(COMMON_WORDS)) + pseudo_words(rng, args.vocabulary, taken)
    # Common words first: they get the top Zipf ranks, the invented ones the tail.
    vocab_cum = zipf_cum_weights(len(vocabulary), 1.05)
    owners = [str(i + 1) for i in range(args.owners)]
    pool_size = max(1, args.entities // args.owners)
    names = entity_names(rng, max(args.entities, pool_size), set(vocabulary))
    recordings_per_owner = math.ceil(args.recordings / args.owners)
    fresh_per_recording = math.ceil(pool_size / recordings_per_owner)

    per_owner = {}
    for owner in owners:
        pool = rng.sample(names, pool_size)  # owners share some names: the search must keep them apart
        topic_pool = [" ".join(rng.choices(vocabulary[:600], k=2)) for _ in range(300)]
        topic_pool = list(dict.fromkeys(topic_pool))
        speakers = [
            f"{w.capitalize()} {rng.choice(NAME_SYLLABLES)}{rng.choice(NAME_ENDINGS)}"
            for w in pseudo_words(rng, 4, taken)
        ]
        per_owner[owner] = {
            "pool": pool,
            "cum": zipf_cum_weights(len(pool), 1.0),
            "fresh": 0,
            "topics": topic_pool,
            "topic_cum": zipf_cum_weights(len(topic_pool), 1.0),
            "speakers": speakers,
        }

    all_params = []
    for number in range(1, args.recordings + 1):
        owner = owners[(number - 1) % len(owners)]
        state = per_owner[owner]
        pool = state["pool"]
        # Lengths vary (half to one and a half times --segments), as recordings do.
        n_segments = rng.randint(max(2, args.segments // 2), max(2, args.segments * 3 // 2))
        words = [rng.choices(vocabulary, cum_weights=vocab_cum, k=rng.randint(12, 24)) for _ in range(n_segments)]

        # Entities: a quota of not yet mentioned ones (so every entity is mentioned at least once
        # over the corpus), the rest drawn by popularity; capped at extraction's 50 per recording.
        chosen: dict[int, None] = {}
        for _ in range(fresh_per_recording):
            if state["fresh"] < len(pool):
                chosen[state["fresh"]] = None
                state["fresh"] += 1
        target = min(50, len(chosen) + rng.randint(5, 25))
        while len(chosen) < min(target, len(pool)):
            chosen[rng.choices(range(len(pool)), cum_weights=state["cum"])[0]] = None
        entities = []
        for rank in chosen:
            name, kind = pool[rank]
            popular = rank < 50
            count = min(n_segments, int(rng.paretovariate(1.3 if popular else 2.0)) + (2 if popular else 0))
            segments = sorted(rng.sample(range(n_segments), count))
            for index in segments:
                sentence = words[index]
                sentence.insert(rng.randint(1, len(sentence)), name)
            key = name.lower()
            entities.append(
                {
                    "uid": node_uid(owner, "entity", key),
                    "name": name,
                    "key": key,
                    "type": kind,
                    "count": count,
                    "segments": segments,
                }
            )
        entities.sort(key=lambda e: e["segments"][0])  # as extraction.entities orders them

        topics, weight = {}, 1.0
        while len(topics) < 8:
            name = rng.choices(state["topics"], cum_weights=state["topic_cum"])[0]
            if name not in topics:
                topics[name] = round(weight, 4)
                weight *= rng.uniform(0.7, 0.95)

        # Two speakers per recording, the user (speaker 0) always one of them, taking turns.
        voices = [state["speakers"][0], rng.choice(state["speakers"][1:])]
        speaker_segments = {v: [] for v in voices}
        segments, clock, voice = [], 0.0, 0
        for index, sentence in enumerate(words):
            duration = round(rng.uniform(2.0, 9.0), 2)
            text = " ".join(sentence)
            segments.append(
                {
                    "index": index,
                    "start": round(clock, 2),
                    "end": round(clock + duration, 2),
                    "text": text[0].upper() + text[1:] + ".",
                    "uid": f"{number}:{index}",
                }
            )
            clock += duration
            if rng.random() < 0.3:
                voice = 1 - voice
            speaker_segments[voices[voice]].append(f"{number}:{index}")

        all_params.append(
            {
                "user": {"uid": owner, "username": f"user{owner}"},
                "recording": {
                    "uid": str(number),
                    "owner": owner,
                    "title": f"{rng.choice(list(topics)).capitalize()} ({number})",
                    "duration": round(clock, 2),
                    "language": "en",
                    "created_at": f"2025-{1 + number % 12:02d}-{1 + number % 28:02d}T{number % 24:02d}:00:00+00:00",
                },
                "segments": segments,
                "entities": entities,
                "topics": [{"uid": node_uid(owner, "topic", n), "name": n, "weight": w} for n, w in topics.items()],
                "speakers": [
                    {"uid": node_uid(owner, "speaker", v.lower()), "name": v, "segments": uids}
                    for v, uids in speaker_segments.items()
                    if uids
                ],
            }
        )
    return all_params


def items_written(params: dict) -> int:
    """Nodes and relationships a recording's write creates or merges (the same for both writers)."""
    from graph.writes import MAX_LINKED_ENTITIES

    s, e, t = len(params["segments"]), len(params["entities"]), len(params["topics"])
    linked = min(e, MAX_LINKED_ENTITIES)
    pairs = linked * (linked - 1) // 2
    spoken = sum(len(p["segments"]) for p in params["speakers"])
    nodes = 2 + s + e + t + len(params["speakers"])  # user, recording, ...
    rels = 1 + s + max(0, s - 1) + spoken + e + t + pairs  # OWNS, HAS_SEGMENT, NEXT, SPOKEN_BY, ...
    return nodes + rels


# --- Services and an empty graph -----------------------------------------------------------------


def start_services():
    from tests import services

    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    os.environ.update(BENCH_ENV)
    redis = services.start_redis(BENCH_ENV["REDIS_URL"], BENCH_VAR / "redis")
    neo4j = services.start_neo4j(BENCH_ENV["NEO4J_BOLT_URL"], BENCH_VAR / "neo4j")
    return redis, neo4j


def stop_services(redis, neo4j) -> None:
    from neomodel import db

    from tests import services

    if db.driver is not None:
        db.close_connection()
    services.stop(neo4j)
    services.stop(redis)


def empty_everything() -> None:
    from django.core.management import call_command
    from django_redis import get_redis_connection
    from neomodel import db

    call_command("graph_schema", wait=60, verbosity=0)  # also after a run that stopped with indexes dropped
    # Relationships first: a batch of DETACH DELETEs that takes in a few dense nodes (a speaker of
    # every segment, a popular entity) goes past the transaction memory limit on a large graph.
    db.cypher_query("MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 20000 ROWS")
    db.cypher_query("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS")
    get_redis_connection("default").flushdb()


def count_graph() -> dict:
    from neomodel import db

    nodes, _ = db.cypher_query("MATCH (n) RETURN labels(n)[0] AS label, count(*) ORDER BY label")
    rels, _ = db.cypher_query("MATCH ()-[r]->() RETURN type(r), count(*) ORDER BY type(r)")
    return {"nodes": dict(nodes), "relationships": dict(rels)}


# --- Part 1. Ingest: batched vs one save per node ------------------------------------------------


def write_per_node(params: dict) -> None:
    """The same recording with neomodel objects: one save per node, one connect per relationship."""
    from neomodel import db

    from graph import nodes
    from graph.writes import MAX_LINKED_ENTITIES

    owner = params["recording"]["owner"]
    with db.write_transaction:
        user = nodes.UserNode.nodes.get_or_none(uid=params["user"]["uid"])
        if user is None:
            user = nodes.UserNode(**params["user"]).save()
        recording = nodes.RecordingNode(**params["recording"]).save()
        user.recordings.connect(recording)

        speaker_of = {}
        for item in params["speakers"]:
            speaker = nodes.SpeakerNode.nodes.get_or_none(uid=item["uid"])
            if speaker is None:
                speaker = nodes.SpeakerNode(uid=item["uid"], owner=owner, name=item["name"]).save()
            speaker_of.update(dict.fromkeys(item["segments"], speaker))

        previous = None
        for item in params["segments"]:
            segment = nodes.SegmentNode(owner=owner, recording=recording.uid, **item).save()
            recording.segments.connect(segment)
            if previous is not None:
                previous.next.connect(segment)
            if item["uid"] in speaker_of:
                segment.speaker.connect(speaker_of[item["uid"]])
            previous = segment

        entity_of = {}
        for item in params["entities"]:
            entity = nodes.EntityNode.nodes.get_or_none(uid=item["uid"])
            if entity is None:
                entity = nodes.EntityNode(
                    uid=item["uid"], owner=owner, name=item["name"], key=item["key"], type=item["type"]
                ).save()
            recording.entities.connect(entity, {"count": item["count"], "segments": item["segments"]})
            entity_of[item["uid"]] = entity

        for item in params["topics"]:
            topic = nodes.TopicNode.nodes.get_or_none(uid=item["uid"])
            if topic is None:
                topic = nodes.TopicNode(uid=item["uid"], owner=owner, name=item["name"]).save()
            recording.topics.connect(topic, {"weight": item["weight"]})

        linked = sorted(e["uid"] for e in params["entities"][:MAX_LINKED_ENTITIES])
        for a, b in combinations(linked, 2):
            rel = entity_of[a].co_occurs.relationship(entity_of[b])
            if rel is None:
                entity_of[a].co_occurs.connect(entity_of[b], {"weight": 1})
            else:
                rel.weight += 1
                rel.save()


def as_baseline(params: dict, tag: int, owner: str = BASELINE_OWNER) -> dict:
    """A copy of a recording's parameters under another user (ids that collide with nothing)."""
    from graph.writes import node_uid

    number = BASELINE_RECORDING_OFFSET + tag * 10_000 + int(params["recording"]["uid"])
    return {
        "user": {"uid": owner, "username": f"baseline{owner}"},
        "recording": params["recording"] | {"uid": str(number), "owner": owner},
        "segments": [s | {"uid": f"{number}:{s['index']}"} for s in params["segments"]],
        "entities": [e | {"uid": node_uid(owner, "entity", e["key"])} for e in params["entities"]],
        "topics": [t | {"uid": node_uid(owner, "topic", t["name"])} for t in params["topics"]],
        "speakers": [
            p
            | {
                "uid": node_uid(owner, "speaker", p["name"].lower()),
                "segments": [f"{number}:{u.split(':')[1]}" for u in p["segments"]],
            }
            for p in params["speakers"]
        ],
    }


def drop_baseline() -> None:
    from neomodel import db

    from graph.writes import delete_user_graph

    for owner in (BASELINE_OWNER, PER_NODE_OWNER):
        delete_user_graph(owner)
        db.cypher_query("MATCH (u:User {uid: $uid}) DETACH DELETE u", {"uid": owner})


def ingest(all_params: list[dict], args) -> dict:
    from graph.writes import write_graph

    print("\n## 1. Ingest\n", flush=True)
    # Warm-up (JIT, query plans) on a few recordings under the baseline user, removed again.
    for params in all_params[:3]:
        write_graph(as_baseline(params, 0))
    drop_baseline()
    latencies, started = [], time.perf_counter()
    for i, params in enumerate(all_params, 1):
        t0 = time.perf_counter()
        write_graph(params)
        latencies.append(time.perf_counter() - t0)
        if i % max(1, len(all_params) // 10) == 0:
            print(f"  ... {i}/{len(all_params)} recordings, {time.perf_counter() - started:.0f} s", flush=True)
    total = time.perf_counter() - started
    segments = sum(len(p["segments"]) for p in all_params)
    items = sum(items_written(p) for p in all_params)
    counts = count_graph()
    print(f"\nGraph: {sum(counts['nodes'].values()):,} nodes {counts['nodes']}")
    print(f"       {sum(counts['relationships'].values()):,} relationships {counts['relationships']}")
    print(
        f"\nwrite_graph, all {len(all_params)} recordings: {total:.1f} s = "
        f"{len(all_params) / total:.1f} recordings/s, "
        f"{segments / total:,.0f} segments/s, {items / total:,.0f} graph items/s; "
        f"per recording p50 {pct(latencies, 50) * 1000:.0f} ms, p95 {pct(latencies, 95) * 1000:.0f} ms"
    )

    # The same few recordings both ways, on the full graph, each way under a fresh user of its own;
    # alternating, so a slow spell of this shared machine hits both alike.
    subset = all_params[: args.baseline_recordings]
    sub_items = sum(items_written(p) for p in subset)
    batched = per_node = 0.0
    for params in subset:
        t0 = time.perf_counter()
        write_graph(as_baseline(params, 1, BASELINE_OWNER))
        batched += time.perf_counter() - t0
        t0 = time.perf_counter()
        write_per_node(as_baseline(params, 2, PER_NODE_OWNER))
        per_node += time.perf_counter() - t0
    drop_baseline()
    ratio = per_node / batched
    print(f"\nSame {len(subset)} recordings ({sub_items:,} graph items), alternating, each way into a fresh user:")
    print("| writer | time | per recording | graph items/s |")
    print("|---|---|---|---|")
    for name, seconds in (("batched UNWIND (write_graph)", batched), ("one neomodel save/connect per item", per_node)):
        print(f"| {name} | {seconds:.2f} s | {seconds / len(subset) * 1000:.0f} ms | {sub_items / seconds:,.0f} |")
    print(
        f"\nbatched / per-node: {ratio:.1f}x  (target >= {TARGET_RATIO:.0f}x) {verdict(ratio >= TARGET_RATIO)}",
        flush=True,
    )
    return {"ratio": ratio}


# --- Part 2. Reads -------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


UNINDEXED_SEARCH_SEGMENTS = """
MATCH (node:Segment) WHERE node.owner = $owner AND all(t IN $terms WHERE toLower(node.text) CONTAINS t)
WITH node ORDER BY node.uid LIMIT $limit
MATCH (r:Recording {uid: node.recording})
RETURN node.uid AS uid, node.index AS index, node.start AS start, node.end AS end,
       node.text AS text, r.uid AS recording, r.title AS title
"""

UNINDEXED_SEARCH_ENTITIES = """
MATCH (node:Entity) WHERE node.owner = $owner AND all(t IN $terms WHERE toLower(node.name) CONTAINS t)
WITH node LIMIT $limit
RETURN node.uid AS uid, node.name AS name, node.type AS type,
       COUNT { (node)<-[:MENTIONS]-() } AS recordings
"""


def unindexed_search(owner: str, text: str) -> dict:
    from django.conf import settings

    from graph import queries

    terms = list(queries.SearchQuery.parse(text).terms)
    limit = settings.GRAPH_SEARCH_PAGE_SIZE
    return {
        "segments": queries.rows(
            "unindexed_search_segments", UNINDEXED_SEARCH_SEGMENTS, {"owner": owner, "terms": terms, "limit": limit + 1}
        ),
        "entities": queries.rows(
            "unindexed_search_entities", UNINDEXED_SEARCH_ENTITIES, {"owner": owner, "terms": terms, "limit": 10}
        ),
    }


def read_samples(all_params: list[dict], args) -> list[dict]:
    """Each read with the arguments it is called with: popular and rare things, several users."""
    from graph import queries

    rng = random.Random(args.seed + 1)
    owners = sorted({p["recording"]["owner"] for p in all_params})
    mentions = Counter()
    names, word_counts = {}, {o: Counter() for o in owners}
    topics, speakers = Counter(), {}
    for p in all_params:
        owner = p["recording"]["owner"]
        for e in p["entities"]:
            mentions[(owner, e["uid"])] += 1
            names[(owner, e["uid"])] = e["name"]
        for t in p["topics"]:
            topics[(owner, t["uid"])] += 1
        for s in p["speakers"]:
            speakers[(owner, s["uid"])] = s["name"]
        for s in p["segments"][::5]:
            word_counts[owner].update(w for w in queries.TERM.findall(s["text"].lower()))
    entity_name_words = {w.lower() for name in names.values() for w in name.split()}

    def pick(items, k):
        items = list(items)
        return rng.sample(items, min(k, len(items)))

    popular = [k for k, _ in mentions.most_common(3 * len(owners))]
    tail = pick([k for k, n in mentions.items() if n == 1], 10)
    recordings = [(p["recording"]["owner"], p["recording"]["uid"]) for p in pick(all_params, 10)]
    top_topics = [k for k, _ in topics.most_common(2 * len(owners))]

    searches = {"frequent word": [], "mid word": [], "rare word": [], "two words": [], "entity name": [], "prefix": []}
    for owner in owners:
        ranked = [w for w, _ in word_counts[owner].most_common() if w not in entity_name_words and len(w) > 2]
        searches["frequent word"] += [(owner, w) for w in ranked[:3]]
        searches["mid word"] += [(owner, w) for w in ranked[100:400:100]]
        searches["rare word"] += [(owner, w) for w in ranked[-3:]]
        searches["two words"] += [(owner, f"{a} {b}") for a, b in zip(ranked[20:23], ranked[200:203], strict=False)]
        own_popular = [names[k] for k in popular if k[0] == owner][:2]
        own_tail = [names[k] for k in mentions if k[0] == owner and mentions[k] == 1][:1]
        searches["entity name"] += [(owner, n) for n in own_popular + own_tail]
        searches["prefix"] += [(owner, w[:3]) for w in ranked[50:350:100] if len(w) >= 5]

    reads = []
    for kind, samples in searches.items():
        reads.append({"name": f"search: {kind}", "fn": "search", "args": samples})
    reads += [
        {"name": "entity: popular", "fn": "entity", "args": popular},
        {"name": "entity: tail", "fn": "entity", "args": tail},
        {"name": "recording", "fn": "recording", "args": recordings},
        {"name": "neighbours: recording", "fn": "neighbours", "args": [(o, f"recording:{u}") for o, u in recordings]},
        {"name": "neighbours: entity (popular)", "fn": "neighbours", "args": [(o, f"entity:{u}") for o, u in popular]},
        {"name": "neighbours: entity (tail)", "fn": "neighbours", "args": [(o, f"entity:{u}") for o, u in tail]},
        {"name": "neighbours: topic (popular)", "fn": "neighbours", "args": [(o, f"topic:{u}") for o, u in top_topics]},
        {"name": "neighbours: speaker", "fn": "neighbours", "args": [(o, f"speaker:{u}") for o, u in speakers]},
    ]
    return reads


def call(read: dict, owner: str, arg: str, unindexed: bool = False):
    from graph import queries

    fn = read["fn"]
    if fn == "search":
        return unindexed_search(owner, arg) if unindexed else queries.search(owner, arg)
    if fn == "entity":
        return queries.entity(owner, arg)
    if fn == "recording":
        return queries.recording(owner, int(arg))
    return queries.neighbours(owner, arg)


def measure(read: dict, calls: int, mode: str, budget: float = 30.0) -> list[float]:
    """Latencies (s) of `calls` calls cycling through the read's arguments. mode: "uncached" (the
    user's cache version bumped before each call), "cached" (warm), "unindexed" (uncached, no indexes;
    stops after `budget` seconds but takes at least 3 calls)."""
    from graph import cache

    samples = read["args"]
    # Warm-up: query plans compiled, pages in memory, and for "cached" every answer in Redis.
    for owner, arg in samples if mode != "unindexed" else samples[:1]:
        call(read, owner, arg, unindexed=mode == "unindexed")
    times, started = [], time.perf_counter()
    for i in range(calls):
        owner, arg = samples[i % len(samples)]
        if mode != "cached":
            cache.graph_changed(owner)
        t0 = time.perf_counter()
        call(read, owner, arg, unindexed=mode == "unindexed")
        times.append(time.perf_counter() - t0)
        if mode == "unindexed" and i >= 2 and time.perf_counter() - started > budget:
            break
    return times


def drop_indexes() -> list[str]:
    from neomodel import db

    dropped = []
    for (name,) in db.cypher_query("SHOW CONSTRAINTS YIELD name")[0]:
        db.cypher_query(f"DROP CONSTRAINT `{name}`")
        dropped.append(name)
    for name, kind in db.cypher_query("SHOW INDEXES YIELD name, type")[0]:
        if kind != "LOOKUP":
            db.cypher_query(f"DROP INDEX `{name}`")
            dropped.append(name)
    db.cypher_query("CALL db.clearQueryCaches()")
    return dropped


def reinstall_indexes() -> float:
    from django.core.management import call_command
    from neomodel import db

    t0 = time.perf_counter()
    call_command("graph_schema", verbosity=0)  # ends with db.awaitIndexes
    db.cypher_query("CALL db.clearQueryCaches()")
    return time.perf_counter() - t0


def reads(all_params: list[dict], args) -> dict:
    print("\n## 2. Reads (ms)\n", flush=True)
    samples = read_samples(all_params, args)
    for read in samples:
        if read["fn"] == "search":
            print(f"{read['name']}: " + ", ".join(repr(arg) for _, arg in read["args"][:6]))
    results = {}
    for read in samples:
        results[read["name"]] = {
            "uncached": measure(read, args.reads, "uncached"),
            "cached": measure(read, args.reads, "cached"),
        }
    if not args.skip_unindexed:
        dropped = drop_indexes()
        print(f"dropped {len(dropped)} constraints and indexes: {', '.join(sorted(dropped))}", flush=True)
        try:
            for read in samples:
                t0 = time.perf_counter()
                results[read["name"]]["unindexed"] = measure(
                    read, args.unindexed_reads, "unindexed", budget=args.unindexed_budget
                )
                print(
                    f"  ... {read['name']} unindexed: {len(results[read['name']]['unindexed'])} calls, "
                    f"{time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
        finally:
            print(f"indexes reinstalled (graph_schema) in {reinstall_indexes():.1f} s", flush=True)

    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
    print(
        "\n| read | args | indexed uncached p50 / p95 | unindexed p50 / p95 (n) | p50 ratio "
        "| cached p50 / p95 | targets |"
    )
    print("|---|---|---|---|---|---|---|")
    all_search, worst_cached = [], 0.0
    failures = []
    for read in samples:
        r = results[read["name"]]
        u, c = r["uncached"], r["cached"]
        checks = []
        cached_ok = pct(c, 95) * 1000 <= TARGET_CACHED_MS
        checks.append(f"cached {verdict(cached_ok)}")
        worst_cached = max(worst_cached, pct(c, 95))
        if not cached_ok:
            failures.append(f"{read['name']}: cached p95 {ms(pct(c, 95))} ms")
        if read["fn"] == "search":
            all_search += u
            ok = pct(u, 95) * 1000 <= TARGET_SEARCH_MS
            checks.append(f"search {verdict(ok)}")
            if not ok:
                failures.append(f"{read['name']}: search p95 {ms(pct(u, 95))} ms")
        if "unindexed" in r:
            n = r["unindexed"]
            unindexed = f"{ms(pct(n, 50))} / {ms(pct(n, 95))} ({len(n)})"
            ratio = f"{pct(n, 50) / pct(u, 50):.1f}x"
        else:
            unindexed, ratio = "-", "-"
        print(
            f"| {read['name']} | {len(read['args'])} | {ms(pct(u, 50))} / {ms(pct(u, 95))} | {unindexed} | {ratio} "
            f"| {ms(pct(c, 50))} / {ms(pct(c, 95))} | {', '.join(checks)} |"
        )
    search_p95 = pct(all_search, 95)
    print(
        f"\nsearch p95, all kinds, uncached: {ms(search_p95)} ms (target <= {TARGET_SEARCH_MS:.0f} ms) "
        f"{verdict(search_p95 * 1000 <= TARGET_SEARCH_MS)}"
    )
    print(
        f"worst cached p95: {ms(worst_cached)} ms (target <= {TARGET_CACHED_MS:.0f} ms) "
        f"{verdict(worst_cached * 1000 <= TARGET_CACHED_MS)}",
        flush=True,
    )
    return {"samples": samples, "search_p95": search_p95, "worst_cached": worst_cached, "failures": failures}


# --- Part 3. PROFILE -----------------------------------------------------------------------------


def sent_queries(read: dict, owner: str, arg: str) -> list[tuple[str, str, dict]]:
    """(label, Cypher, params) of the queries one read call sends, caught on their way to
    `queries.rows` (a cache miss forced), so they are exactly what the app runs."""
    import re

    from graph import cache, queries

    sent, original = [], queries.rows

    def spy(name, query, params):
        sent.append((query, params))
        return original(name, query, params)

    queries.rows = spy
    try:
        cache.graph_changed(owner)
        call(read, owner, arg)
    finally:
        queries.rows = original
    labelled = []
    for i, (query, params) in enumerate(sent, 1):
        index = re.search(r"queryNodes\('(\w+)'", query)
        labelled.append((index.group(1) if index else (str(i) if len(sent) > 1 else "-"), query, params))
    return labelled


def walk(plan: dict):
    yield plan
    for child in plan.get("children", []):
        yield from walk(child)


def profiles(samples: list[dict]) -> None:
    from neomodel import db

    print("\n## 3. PROFILE, first argument of each read (indexed)\n")
    print("| read | query | db hits | rows out | ms (profiled) | operator with most db hits |")
    print("|---|---|---|---|---|---|")
    with db.driver.session() as session:
        for read in samples:
            owner, arg = read["args"][0]
            for label, query, params in sent_queries(read, owner, arg):
                session.run("PROFILE " + query, params).consume()  # planned and warm
                t0 = time.perf_counter()
                summary = session.run("PROFILE " + query, params).consume()
                elapsed = (time.perf_counter() - t0) * 1000
                plan = summary.profile or {}
                ops = list(walk(plan))
                hits = sum(op.get("dbHits", 0) for op in ops)
                top = max(ops, key=lambda op: op.get("dbHits", 0)) if ops else {}
                top_name = top.get("operatorType", "?").split("@")[0]
                detail = str(top.get("args", {}).get("Details", ""))[:70]
                print(
                    f"| {read['name']} | {label} | {hits:,} | {plan.get('rows', '?')} | {elapsed:.1f} "
                    f"| {top_name} ({top.get('dbHits', 0):,}) {detail} |"
                )


# --- Main ----------------------------------------------------------------------------------------


def load() -> str:
    """The 1/5/15-minute load averages: other work on the machine shows up in the p95s."""
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="ci", help="preset sizes (flags below override)")
    parser.add_argument("--recordings", type=int)
    parser.add_argument("--segments", type=int, help="segments per recording, on average")
    parser.add_argument("--entities", type=int, help="entities in all (split between the users)")
    parser.add_argument("--owners", type=int, default=3, help="users the recordings are spread over")
    parser.add_argument("--vocabulary", type=int, default=3000, help="invented words besides the common ones")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reads", type=int, default=100, help="timed calls per read (uncached and cached)")
    parser.add_argument("--unindexed-reads", type=int, default=10, help="timed calls per read without indexes")
    parser.add_argument(
        "--unindexed-budget",
        type=float,
        default=30,
        help="stop an unindexed read's calls after this many seconds (after 3 calls at least)",
    )
    parser.add_argument("--baseline-recordings", type=int, default=8, help="recordings written one save per node")
    parser.add_argument("--skip-unindexed", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args()
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse_args()
    redis, neo4j = start_services()
    try:
        import django

        django.setup()
        # The driver logs every server notification (neomodel's connect() is a "cartesian product",
        # hinted indexes are missing while they are dropped): not what this measures.
        logging.getLogger("neo4j.notifications").setLevel(logging.ERROR)
        t0 = time.perf_counter()
        all_params = generate(args)
        gc.collect()
        gc.freeze()  # the generated corpus is millions of objects: keep it out of the timed calls' GC
        segments = sum(len(p["segments"]) for p in all_params)
        mentions = sum(len(p["entities"]) for p in all_params)
        distinct = len({e["uid"] for p in all_params for e in p["entities"]})
        per_entity = Counter(e["uid"] for p in all_params for e in p["entities"])
        top = per_entity.most_common(1)[0][1]
        once = sum(1 for n in per_entity.values() if n == 1)
        print(
            f"# Graph benchmark: {args.recordings} recordings x {args.segments} segments, "
            f"{args.entities} entities, {args.owners} users (seed {args.seed}); "
            f"{os.cpu_count()} CPUs, load average {load()}\n"
        )
        print(
            f"generated in {time.perf_counter() - t0:.1f} s: {segments:,} segments, {distinct:,} entities, "
            f"{mentions:,} mentions (entity in most recordings: {top}; mentioned in one recording only: "
            f"{once:,}); services: Redis {'started' if redis else 'reused'}, "
            f"Neo4j {'started' if neo4j else 'reused'}",
            flush=True,
        )
        t0 = time.perf_counter()
        empty_everything()
        print(f"emptied the graph and the Redis db in {time.perf_counter() - t0:.1f} s", flush=True)
        summary = ingest(all_params, args)
        summary.update(reads(all_params, args))
        if not args.skip_profile:
            profiles(summary["samples"])
        print(f"\n## Summary (load average now {load()})\n")
        print(
            f"- ingest batched/per-node: {summary['ratio']:.1f}x (>= {TARGET_RATIO:.0f}x) "
            f"{verdict(summary['ratio'] >= TARGET_RATIO)}"
        )
        print(
            f"- search p95 uncached: {summary['search_p95'] * 1000:.1f} ms (<= {TARGET_SEARCH_MS:.0f} ms) "
            f"{verdict(summary['search_p95'] * 1000 <= TARGET_SEARCH_MS)}"
        )
        print(
            f"- worst cached p95: {summary['worst_cached'] * 1000:.2f} ms (<= {TARGET_CACHED_MS:.0f} ms) "
            f"{verdict(summary['worst_cached'] * 1000 <= TARGET_CACHED_MS)}"
        )
        for failure in summary["failures"]:
            print(f"  - missed: {failure}")
    finally:
        stop_services(redis, neo4j)


if __name__ == "__main__":
    main()
