"""Batched graph writes: one UNWIND query per transcript, never one round trip per node."""

import neo4j.exceptions
from django.utils import timezone
from neomodel import db

from transcription.models import Recording

# What "Neo4j is away" looks like to a writer; anything else is a bug and should surface.
GRAPH_UNAVAILABLE = (
    neo4j.exceptions.ServiceUnavailable,
    neo4j.exceptions.SessionExpired,
    neo4j.exceptions.TransientError,
    ConnectionError,
    OSError,
)

# Idempotent: MERGE on the unique keys; segments past the new count (a re-transcription that
# came out shorter) are removed, then NEXT links the segments in order.
WRITE_RECORDING = """
MERGE (u:User {uid: $user.uid})
SET u.username = $user.username
MERGE (r:Recording {uid: $recording.uid})
SET r += $recording
MERGE (u)-[:OWNS]->(r)
WITH r
OPTIONAL MATCH (r)-[:HAS_SEGMENT]->(old:Segment)
WHERE old.index >= size($segments)
WITH r, collect(old) AS stale
FOREACH (s IN stale | DETACH DELETE s)
WITH r
UNWIND $segments AS seg
MERGE (s:Segment {uid: seg.uid})
SET s.index = seg.index, s.start = seg.start, s.end = seg.end, s.text = seg.text
MERGE (r)-[:HAS_SEGMENT]->(s)
WITH s ORDER BY s.index
WITH collect(s) AS ordered
UNWIND range(0, size(ordered) - 2) AS i
WITH ordered[i] AS a, ordered[i + 1] AS b
MERGE (a)-[:NEXT]->(b)
"""


def recording_params(recording: Recording) -> dict:
    transcript = recording.transcript
    segments = list(transcript.segments.order_by("index").values("index", "start", "end", "text"))
    return {
        "user": {"uid": str(recording.owner_id), "username": recording.owner.get_username()},
        "recording": {
            "uid": str(recording.id),
            "title": recording.title,
            "duration": recording.duration,
            "language": transcript.language,
            "created_at": recording.created_at.isoformat(),
        },
        "segments": [{**s, "uid": f"{recording.id}:{s['index']}"} for s in segments],
    }


def write_recording(recording_id: int) -> None:
    """Write a transcribed recording, its ordered segments and its owner in one transaction."""
    recording = Recording.objects.select_related("owner", "transcript").get(pk=recording_id)
    params = recording_params(recording)
    with db.write_transaction:
        db.cypher_query(WRITE_RECORDING, params)
    Recording.objects.filter(pk=recording_id).update(graph_synced_at=timezone.now())


# A recording's segments go with it; the user node stays (it may own other recordings).
DELETE_RECORDING = """
MATCH (r:Recording {uid: $uid})
OPTIONAL MATCH (r)-[:HAS_SEGMENT]->(s:Segment)
DETACH DELETE s, r
"""


def delete_recording(recording_id: int) -> None:
    """Remove a deleted recording's nodes; running it again (or for a never-written one) is a no-op."""
    with db.write_transaction:
        db.cypher_query(DELETE_RECORDING, {"uid": str(recording_id)})
