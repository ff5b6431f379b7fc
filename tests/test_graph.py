"""Graph writes against the launched Neo4j: schema, batched idempotent writes, the outbox, rebuild."""

import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from neomodel import db

from actions import recordings
from actions.recordings import delete_recording
from graph import nodes as g
from graph import outbox, writes
from graph.connection import GRAPH_UNAVAILABLE, configure
from graph.models import GraphChange
from tests.factories import make_transcribed
from transcription.models import Recording

pytestmark = pytest.mark.services  # Neo4j, and Redis for the cache


@pytest.fixture
def transcribed(alice, speech):
    path, _ = speech
    recording = Recording(owner=alice, title="Fox report", size_bytes=1)
    recording.audio.save("fox.wav", ContentFile(Path(path).read_bytes()), save=True)
    assert recordings.transcribe(recording.id)
    recording.refresh_from_db()
    return recording


def one(query: str, **params):
    return db.cypher_query(query, params)[0][0][0]


def graph_shape() -> dict:
    """Every node and relationship with its properties: equal shapes mean nothing changed."""
    nodes = db.cypher_query("MATCH (n) RETURN labels(n)[0], properties(n)")[0]
    rels = db.cypher_query("MATCH (a)-[r]->(b) RETURN labels(a)[0], a.uid, type(r), b.uid, properties(r)")[0]
    return {"nodes": sorted(map(repr, nodes)), "rels": sorted(map(repr, rels))}


def test_it_writes_owner_recording_and_ordered_segments(transcribed, alice):
    writes.write_recording(transcribed.id)

    user = g.UserNode.nodes.get(uid=str(alice.id))
    assert user.username == "alice"
    node = user.recordings.get(uid=str(transcribed.id))
    assert node.title == "Fox report" and node.duration == pytest.approx(transcribed.duration)
    assert node.owner == str(alice.id)
    segments = transcribed.transcript.segments.all()
    texts = db.cypher_query(
        "MATCH (:Recording {uid: $uid})-[:HAS_SEGMENT]->(s) RETURN s.text ORDER BY s.index",
        {"uid": node.uid},
    )[0]
    assert [t[0] for t in texts] == [s.text for s in segments]
    # NEXT links the segments as one chain in spoken order.
    chain = [node.segments.get(index=0)]
    while chain[-1].next.all():
        chain.append(chain[-1].next.all()[0])
    assert [s.index for s in chain] == list(range(len(segments)))
    # What it is about: key phrases of what was said.
    assert any("fox" in t.name or "dog" in t.name for t in node.topics.all())
    transcribed.refresh_from_db()
    assert transcribed.graph_synced_at is not None


def test_entities_topics_speakers_and_co_occurrence(alice):
    first = make_transcribed(
        alice,
        "standup",
        ["Stella met John Smith in Boston.", "Then John Smith flew to Paris with Stella."],
        ["Ann", "Bo"],
    )
    second = make_transcribed(alice, "review", ["John Smith and Stella reviewed the Boston budget."])
    writes.write_recording(first.id)
    writes.write_recording(second.id)

    john = g.EntityNode.nodes.get(name="John Smith")
    stella = g.EntityNode.nodes.get(name="Stella")
    assert john.owner == str(alice.id)
    mention = g.RecordingNode.nodes.get(uid=str(first.id)).entities.relationship(john)
    assert mention.count == 2 and mention.segments == [0, 1]
    # Two recordings mention both: weight 2; Paris only in the first: weight 1.
    assert one("MATCH (:Entity {name: 'John Smith'})-[c:CO_OCCURS]-(:Entity {name: 'Stella'}) RETURN c.weight") == 2
    assert one("MATCH (:Entity {name: 'Paris'})-[c:CO_OCCURS]-(:Entity {name: 'Stella'}) RETURN c.weight") == 1
    assert one("MATCH ()-[c:CO_OCCURS]->() WHERE c.weight < 1 RETURN count(c)") == 0
    speakers = {p.name for p in g.SpeakerNode.nodes.all()}
    assert speakers == {"Ann", "Bo"}
    assert one("MATCH (s:Segment)-[:SPOKEN_BY]->(:Speaker {name: 'Bo'}) RETURN s.uid") == f"{first.id}:1"
    assert {t.name for t in g.RecordingNode.nodes.get(uid=str(second.id)).topics.all()} & {"boston budget", "budget"}
    assert stella.key == "stella"


def test_writing_twice_changes_nothing(alice):
    a = make_transcribed(alice, "a", ["Stella met John Smith in Boston.", "Paris is far."], ["Ann", "Ann"])
    b = make_transcribed(alice, "b", ["John Smith called Stella."])
    writes.write_recording(a.id)
    writes.write_recording(b.id)
    before = graph_shape()
    writes.write_recording(a.id)
    writes.write_recording(b.id)
    writes.write_recording(a.id)
    assert graph_shape() == before


def test_a_rewrite_replaces_what_the_recording_said(alice):
    recording = make_transcribed(alice, "edit", ["Stella met John Smith in Boston."])
    other = make_transcribed(alice, "other", ["Stella waved."])
    writes.write_recording(recording.id)
    writes.write_recording(other.id)
    recording.transcript.segments.update(text="Nobody went to Berlin with Stella.")
    writes.write_recording(recording.id)
    names = {e.name for e in g.EntityNode.nodes.all()}
    assert "Berlin" in names and "John Smith" not in names and "Boston" not in names  # orphans gone
    assert one("MATCH (:Entity {name: 'Berlin'})-[c:CO_OCCURS]-(:Entity {name: 'Stella'}) RETURN c.weight") == 1


def test_a_shorter_retranscription_drops_the_extra_segments(transcribed):
    writes.write_recording(transcribed.id)
    transcribed.transcript.segments.exclude(index=0).delete()
    writes.write_recording(transcribed.id)
    assert len(g.RecordingNode.nodes.get(uid=str(transcribed.id)).segments.all()) == 1


def test_the_number_of_queries_does_not_grow_with_the_transcript(alice, monkeypatch):
    calls = []
    real = db.cypher_query

    def counting(query, params=None, *args, **kwargs):
        calls.append(query)
        return real(query, params, *args, **kwargs)

    monkeypatch.setattr(db, "cypher_query", counting)
    short = make_transcribed(alice, "short", ["Stella spoke."])
    long = make_transcribed(alice, "long", [f"Stella met Person{i} Jones in Town{i}." for i in range(120)])
    writes.write_recording(short.id)
    short_calls = len(calls)
    calls.clear()
    writes.write_recording(long.id)
    assert len(calls) == short_calls <= 6
    assert any("UNWIND $segments" in q for q in calls)
    assert one("MATCH (:Recording {uid: $uid})-[:HAS_SEGMENT]->(s) RETURN count(s)", uid=str(long.id)) == 120


def test_deleting_a_recording_takes_its_share_of_the_graph(alice):
    keep = make_transcribed(alice, "keep", ["Today Stella met John Smith in Boston."])
    gone = make_transcribed(alice, "gone", ["Stella and John Smith went to Oslo."])
    writes.write_recording(keep.id)
    writes.write_recording(gone.id)
    writes.delete_recording(gone.id, str(alice.id))
    names = {e.name for e in g.EntityNode.nodes.all()}
    assert "Oslo" not in names and {"Stella", "John Smith", "Boston"} <= names
    assert one("MATCH (:Entity {name: 'John Smith'})-[c:CO_OCCURS]-(:Entity {name: 'Stella'}) RETURN c.weight") == 1
    assert not g.SegmentNode.nodes.filter(uid__startswith=f"{gone.id}:")
    writes.delete_recording(gone.id, str(alice.id))  # again: a no-op, not an error


def test_the_schema_has_unique_keys_owner_indexes_and_full_text_indexes():
    constraints = {tuple(c["labelsOrTypes"]) for c in db.list_constraints()}
    assert {("User",), ("Recording",), ("Segment",), ("Speaker",), ("Entity",), ("Topic",)} <= constraints
    indexes = db.cypher_query("SHOW INDEXES YIELD name, type, labelsOrTypes, properties, state")[0]
    fulltext = {name: (labels, props) for name, kind, labels, props, state in indexes if kind == "FULLTEXT"}
    assert fulltext["segment_text"] == (["Segment"], ["text", "owner"])
    assert fulltext["entity_name"] == (["Entity"], ["name", "owner"])
    ranged = {(labels[0], props[0]) for _, kind, labels, props, _ in indexes if kind == "RANGE" and labels}
    assert {("Segment", "owner"), ("Entity", "owner"), ("Recording", "owner")} <= ranged
    assert all(state == "ONLINE" for *_, state in indexes)


def test_the_outbox_keeps_a_change_until_neo4j_takes_it(alice, settings, django_capture_on_commit_callbacks):
    recording = make_transcribed(alice, "outage", ["Stella called from Rome."])
    with django_capture_on_commit_callbacks(execute=False):
        outbox.record(GraphChange.Kind.WRITE, recording.id, alice.id)
    real_url = settings.NEO4J_BOLT_URL
    settings.NEO4J_BOLT_URL = "bolt://neo4j:neo4j@127.0.0.1:1"  # nothing listens there
    configure()
    try:
        with pytest.raises(GRAPH_UNAVAILABLE):
            outbox.apply_pending()
    finally:
        settings.NEO4J_BOLT_URL = real_url
        configure()
    change = GraphChange.objects.get()
    # An outage is noted but is not the change's fault: it counts no attempt and never fails it.
    assert change.last_error and change.attempts == 0 and change.failed_at is None
    assert g.RecordingNode.nodes.get_or_none(uid=str(recording.id)) is None

    assert outbox.apply_pending() == 1
    assert g.RecordingNode.nodes.get(uid=str(recording.id)).title == "outage"
    assert not GraphChange.objects.exists()


def test_the_outbox_applies_only_the_latest_change_per_recording(alice, django_capture_on_commit_callbacks):
    recording = make_transcribed(alice, "short-lived", ["Stella called from Rome."])
    writes.write_recording(recording.id)
    with django_capture_on_commit_callbacks(execute=False):
        outbox.record(GraphChange.Kind.WRITE, recording.id, alice.id)
        delete_recording(recording)  # records the delete in its own transaction
    assert GraphChange.objects.count() == 2
    assert outbox.apply_pending() == 1
    assert g.RecordingNode.nodes.get_or_none(uid=str(recording.id)) is None
    assert not g.EntityNode.nodes.filter(name="Rome")


def test_rebuild_restores_a_users_graph_from_the_database(alice, bob):
    mine = make_transcribed(alice, "mine", ["Stella met John Smith in Boston."])
    theirs = make_transcribed(bob, "theirs", ["Bob flew to Lima."])
    writes.write_recording(mine.id)
    writes.write_recording(theirs.id)
    expected = graph_shape()
    db.cypher_query("MATCH (n:Entity) WHERE n.owner = $o DETACH DELETE n", {"o": str(alice.id)})
    db.cypher_query("MATCH (n:Recording {uid: $uid}) SET n.title = 'damaged'", {"uid": str(mine.id)})

    call_command("graph_rebuild", "alice", stdout=io.StringIO())
    assert graph_shape() == expected
