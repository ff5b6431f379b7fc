"""Reading the graph: search, entity, recording graph, neighbourhoods; scoped, indexed, cached."""

from pathlib import Path

import pytest
from django.core.cache import cache as django_cache
from django.core.files.base import ContentFile
from neomodel import db

from actions import recordings
from graph import cache, queries, writes
from tests.factories import make_transcribed
from transcription.models import Recording

pytestmark = pytest.mark.services  # Neo4j, and Redis for the cache


@pytest.fixture
def library(alice, bob):
    """Alice's two recordings and Bob's one, all in the graph."""
    standup = make_transcribed(
        alice,
        "standup",
        [
            "Today Stella met John Smith in Boston.",
            "The budget for the Boston office is late.",
            "Then John Smith flew to Paris.",
        ],
    )
    review = make_transcribed(alice, "review", ["John Smith and Stella reviewed the budget."])
    secret = make_transcribed(bob, "bob's secret", ["Stella sold the Boston budget to Zorro."])
    for recording in (standup, review, secret):
        writes.write_recording(recording.id)
    return standup, review, secret


def owner(user) -> str:
    return str(user.pk)


def entity_uid(user, name: str) -> str:
    return db.cypher_query(
        "MATCH (e:Entity {name: $name}) WHERE e.owner = $owner RETURN e.uid", {"name": name, "owner": owner(user)}
    )[0][0][0]


def test_search_finds_words_spoken_in_a_real_clip(alice, speech):
    path, _ = speech
    recording = Recording(owner=alice, title="Fox report", size_bytes=1)
    recording.audio.save("fox.wav", ContentFile(Path(path).read_bytes()), save=True)
    assert recordings.transcribe(recording.id)
    writes.write_recording(recording.id)

    page = queries.search(owner(alice), "lazy dog")
    hit = page["segments"][0]
    assert hit["recording"] == str(recording.id) and hit["title"] == "Fox report"
    assert "<mark>lazy</mark>" in hit["highlighted"] and "<mark>dog</mark>" in hit["highlighted"]
    segment = recording.transcript.segments.get(index=hit["index"])
    assert hit["start"] == pytest.approx(segment.start)
    # The last word is also a prefix: results while typing.
    assert queries.search(owner(alice), "qui")["segments"]


def test_search_returns_only_my_segments_and_entities(library, alice, bob):
    standup, review, secret = library
    mine = queries.search(owner(alice), "budget")
    assert {s["recording"] for s in mine["segments"]} == {str(standup.id), str(review.id)}
    assert not queries.search(owner(alice), "zorro")["segments"]
    assert [e["name"] for e in queries.search(owner(alice), "stella")["entities"]] == ["Stella"]
    theirs = queries.search(owner(bob), "budget")
    assert [s["recording"] for s in theirs["segments"]] == [str(secret.id)]


def test_search_pages_with_a_cursor_without_gaps_or_repeats(alice):
    for i in range(5):
        make_transcribed(alice, f"take {i}", [f"Stella counted {n} sheep in field {i}." for n in range(7)])
    for recording in Recording.objects.filter(owner=alice):
        writes.write_recording(recording.id)
    seen, cursor = [], None
    while True:
        page = queries.search(owner(alice), "sheep", cursor, limit=4)
        seen += [s["uid"] for s in page["segments"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == 35 and len(set(seen)) == 35
    with pytest.raises(queries.BadCursor):
        queries.search(owner(alice), "sheep", "not-a-cursor")


@pytest.mark.parametrize(
    "attack",
    [
        "owner:*",
        "budget OR owner:*",
        "*:*",
        '"budget" OR owner:"1"',
        "budget) OR (owner:2",
        "x'}) MATCH (n) DETACH DELETE n //",
        '\\" } RETURN 1 //',
        "budget~ AND text:/.*/",
    ],
)
def test_injection_in_search_terms_is_harmless(library, alice, bob, attack):
    nodes_before = db.cypher_query("MATCH (n) RETURN count(n)")[0][0][0]
    page = queries.search(owner(alice), attack)
    assert all(s["recording"] != str(library[2].id) for s in page["segments"])
    assert all(e["name"] != "Zorro" for e in page["entities"])
    assert db.cypher_query("MATCH (n) RETURN count(n)")[0][0][0] == nodes_before


def test_an_entity_page_lists_mentions_and_co_occurring_entities(library, alice, bob):
    standup, review, _ = library
    found = queries.entity(owner(alice), entity_uid(alice, "John Smith"))
    assert found["entity"]["name"] == "John Smith"
    counts = {r["title"]: r["count"] for r in found["recordings"]}
    assert counts == {"standup": 2, "review": 1}
    standup_row = next(r for r in found["recordings"] if r["title"] == "standup")
    assert [s["index"] for s in standup_row["segments"]] == [0, 2]
    related = {o["name"]: o["weight"] for o in found["related"]}
    assert related["Stella"] == 2 and related["Paris"] == 1
    # Bob's Stella is another node: Alice's id means nothing to Bob.
    assert queries.entity(owner(bob), entity_uid(alice, "Stella")) is None


def test_a_recording_graph_shows_what_it_shares_with_others(library, alice, bob):
    standup, review, secret = library
    found = queries.recording(owner(alice), standup.id)
    assert {"John Smith", "Stella", "Boston", "Paris"} <= {e["name"] for e in found["entities"]}
    assert found["topics"]
    related = found["related"]
    assert [r["uid"] for r in related] == [str(review.id)]  # never Bob's, though it says "Stella" too
    assert queries.recording(owner(bob), standup.id) is None


def test_neighbours_load_one_node_at_a_time(library, alice, bob):
    standup, review, _ = library
    around = queries.neighbours(owner(alice), f"recording:{standup.id}")
    kinds = {n["kind"] for n in around["nodes"]}
    assert kinds == {"recording", "entity", "topic"}
    john = next(n["id"] for n in around["nodes"] if n["label"] == "John Smith")
    further = queries.neighbours(owner(alice), john)
    assert f"recording:{review.id}" in {n["id"] for n in further["nodes"]}
    assert {e["rel"] for e in further["edges"]} == {"MENTIONS", "CO_OCCURS"}
    assert queries.neighbours(owner(alice), f"recording:{library[2].id}") is None
    assert queries.neighbours(owner(bob), john) is None
    assert len(queries.neighbours(owner(alice), john, limit=1)["edges"]) <= 2
    with pytest.raises(KeyError):
        queries.neighbours(owner(alice), "segment:1:0")


def test_reads_are_cached_until_the_users_graph_changes(library, alice, bob, monkeypatch):
    standup = library[0]
    calls = []
    real = db.cypher_query
    monkeypatch.setattr(db, "cypher_query", lambda q, p=None, *a, **k: calls.append(q) or real(q, p, *a, **k))
    first = queries.search(owner(alice), "budget")
    assert len(calls) == 2  # segments and entities
    assert queries.search(owner(alice), "budget") == first and len(calls) == 2  # from Redis
    queries.recording(owner(alice), standup.id)
    queries.recording(owner(alice), standup.id)
    assert len(calls) == 3

    version = cache.version(owner(alice))
    bobs_version = cache.version(owner(bob))
    standup.transcript.segments.filter(index=1).update(text="No budget left.")
    writes.write_recording(standup.id)
    assert cache.version(owner(alice)) == version + 1 and cache.version(owner(bob)) == bobs_version
    calls.clear()
    again = queries.search(owner(alice), "budget")
    assert calls and again != first
    assert "No <mark>budget</mark> left." in {str(s["highlighted"]) for s in again["segments"]}

    # The version key evicted (the cache is LRU): the answers stored under the old one are not served.
    django_cache.delete(f"graph:version:{owner(alice)}")
    calls.clear()
    assert queries.search(owner(alice), "budget") == again and calls


# Each read must start from an index: a label scan would read every user's nodes.
READS = {
    "search segments": (
        queries.SEARCH_SEGMENTS,
        {
            "lucene": 'text:x +owner:"1"',
            "owner": "1",
            "limit": 5,
            "after_score": None,
            "after_uid": None,
            "recording": None,
            "scan": 100,
        },
    ),
    "search entities": (queries.SEARCH_ENTITIES, {"lucene": 'name:x +owner:"1"', "owner": "1", "limit": 5}),
    "entity": (queries.ENTITY, {"uid": "x", "owner": "1", "limit": 5}),
    "recording": (queries.RECORDING, {"uid": "1", "owner": "1"}),
    **{
        f"neighbours of {kind}": (queries.neighbours_query(kind), {"uid": "x", "owner": "1", "limit": 5})
        for kind in queries.NEIGHBOURS
    },
}


def _operators(plan) -> set[str]:
    found = {plan["operatorType"].split("@")[0]}
    for child in plan.get("children", []):
        found |= _operators(child)
    return found


@pytest.mark.parametrize("name", READS)
def test_each_read_starts_from_an_index(name):
    from urllib.parse import urlparse

    from django.conf import settings
    from neo4j import GraphDatabase

    query, params = READS[name]
    url = urlparse(settings.NEO4J_BOLT_URL)
    with GraphDatabase.driver(f"bolt://{url.hostname}:{url.port}", auth=None) as driver, driver.session() as session:
        plan = session.run("EXPLAIN " + query, params).consume().plan
    operators = _operators(plan)
    assert not operators & {"AllNodesScan", "NodeByLabelScan", "CartesianProduct", "NodeHashJoin"}, operators
    assert operators & {"NodeUniqueIndexSeek", "ProcedureCall"}, operators
    # The owner index would read all of a user's nodes; it is for rebuilds, not reads.
    assert "(owner)" not in str(plan), plan
