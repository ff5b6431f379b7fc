"""The graph write against the launched Neo4j, read back through neomodel."""

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from neomodel import db

from graph import models as g
from graph.writes import write_recording
from transcription import jobs
from transcription.models import Recording


@pytest.fixture
def transcribed(alice, speech):
    path, _ = speech
    recording = Recording(owner=alice, title="Fox report", size_bytes=1)
    recording.audio.save("fox.wav", ContentFile(Path(path).read_bytes()), save=True)
    assert jobs.run(recording.id)
    recording.refresh_from_db()
    return recording


def _ordered_texts(recording_node):
    rows, _ = db.cypher_query(
        "MATCH (r:Recording {uid: $uid})-[:HAS_SEGMENT]->(s:Segment) RETURN s.text ORDER BY s.index",
        {"uid": recording_node.uid},
    )
    return [row[0] for row in rows]


def test_it_writes_owner_recording_and_ordered_segments(transcribed, alice):
    write_recording(transcribed.id)

    user = g.User.nodes.get(uid=str(alice.id))
    assert user.username == "alice"
    node = user.recordings.get(uid=str(transcribed.id))
    assert node.title == "Fox report" and node.duration == pytest.approx(transcribed.duration)
    segments = transcribed.transcript.segments.all()
    assert _ordered_texts(node) == [s.text for s in segments]
    assert "fox" in " ".join(_ordered_texts(node)).lower()

    # NEXT links the segments as one chain in spoken order.
    first = node.segments.get(index=0)
    chain = [first]
    while chain[-1].next.all():
        chain.append(chain[-1].next.all()[0])
    assert [s.index for s in chain] == list(range(len(segments)))

    transcribed.refresh_from_db()
    assert transcribed.graph_synced_at is not None


def test_writing_twice_changes_nothing(transcribed):
    write_recording(transcribed.id)
    count = "MATCH (r:Recording {uid: $uid})-[*0..2]-(n) RETURN count(DISTINCT n), count{ ()-[:NEXT]->() }"
    before, _ = db.cypher_query(count, {"uid": str(transcribed.id)})
    write_recording(transcribed.id)
    after, _ = db.cypher_query(count, {"uid": str(transcribed.id)})
    assert before == after


def test_a_shorter_retranscription_drops_the_extra_segments(transcribed):
    write_recording(transcribed.id)
    transcript = transcribed.transcript
    transcript.segments.exclude(index=0).delete()
    write_recording(transcribed.id)
    node = g.Recording.nodes.get(uid=str(transcribed.id))
    assert len(node.segments.all()) == 1


def test_it_writes_in_one_round_trip(transcribed, monkeypatch):
    calls = []
    real = db.cypher_query

    def counting(query, params=None, *args, **kwargs):
        calls.append(query)
        return real(query, params, *args, **kwargs)

    monkeypatch.setattr(db, "cypher_query", counting)
    write_recording(transcribed.id)
    assert len(calls) == 1 and "UNWIND $segments" in calls[0]


def test_the_schema_has_unique_keys():
    constraints = {tuple(c["labelsOrTypes"]) for c in db.list_constraints()}
    assert {("User",), ("Recording",), ("Segment",)} <= constraints
