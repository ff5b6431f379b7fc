"""Batched graph writes: a recording and all it says go in one transaction of a few UNWIND queries.

Idempotent: nodes are MERGEd on their unique `uid` (merged nodes on uid and owner, so a uid of
another user's could only ever fail the write, never join their node); a recording's links to entities, topics and
speakers are cleared and made again, and CO_OCCURS weights (the number of recordings that mention
both entities) are taken off for the old links and added for the new ones, so writing the same
recording twice changes nothing. The number of queries does not grow with the transcript.
"""

import hashlib
from itertools import combinations

from django.utils import timezone
from neomodel import db

from transcription.models import Recording

from . import cache, extraction
from .connection import cypher

# Entities per recording that get CO_OCCURS pairs: bounds the pairs at 435 per recording.
MAX_LINKED_ENTITIES = 30


def node_uid(owner: str, kind: str, key: str) -> str:
    """Stable id of a node merged per user by name: the same name is the same node. The whole
    SHA-256 of owner, kind and name: no two users' names can share a node (a truncated 64-bit hash
    could be made to collide), and a URL never carries the name."""
    return hashlib.sha256(f"{owner}\x1f{kind}\x1f{key}".encode()).hexdigest()


# Before: the first 16 hex digits of a SHA-1. Nodes with such uids are rewritten (outbox.requeue_owners).
OLD_UID_LENGTH = 16


# Takes the recording's old links away (and their share of CO_OCCURS weights) and reports which
# nodes they pointed at, so those left with no links can be removed afterwards.
CLEAR_LINKS = """
OPTIONAL MATCH (r:Recording {uid: $uid})-[:MENTIONS]->(a:Entity), (r)-[:MENTIONS]->(b:Entity)
WHERE a.uid < b.uid
OPTIONAL MATCH (a)-[c:CO_OCCURS]->(b)
SET c.weight = c.weight - 1
WITH collect(CASE WHEN c.weight <= 0 THEN c END) AS spent
FOREACH (c IN spent | DELETE c)
WITH 1 AS one
OPTIONAL MATCH (r:Recording {uid: $uid})-[m:MENTIONS]->(e:Entity)
WITH collect(e.uid) AS entities, collect(m) AS mentions
FOREACH (m IN mentions | DELETE m)
WITH entities
OPTIONAL MATCH (:Recording {uid: $uid})-[a:ABOUT]->(t:Topic)
WITH entities, collect(t.uid) AS topics, collect(a) AS abouts
FOREACH (a IN abouts | DELETE a)
WITH entities, topics
OPTIONAL MATCH (:Recording {uid: $uid})-[:HAS_SEGMENT]->(:Segment)-[s:SPOKEN_BY]->(p:Speaker)
WITH entities, topics, collect(DISTINCT p.uid) AS speakers, collect(s) AS spoken
FOREACH (s IN spoken | DELETE s)
WITH entities, topics, speakers
OPTIONAL MATCH (:Recording {uid: $uid})-[h:HAS_SPEAKER]->(:Speaker)
WITH entities, topics, speakers, collect(h) AS heard
FOREACH (h IN heard | DELETE h)
RETURN entities, topics, speakers
"""

# Segments past the new count (a re-transcription that came out shorter) are removed, then NEXT
# links the segments in order.
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
SET s.owner = $recording.owner, s.recording = $recording.uid, s.index = seg.index,
    s.start = seg.start, s.end = seg.end, s.text = seg.text
MERGE (r)-[:HAS_SEGMENT]->(s)
WITH s ORDER BY s.index
WITH collect(s) AS ordered
UNWIND range(0, size(ordered) - 2) AS i
WITH ordered[i] AS a, ordered[i + 1] AS b
MERGE (a)-[:NEXT]->(b)
"""

# What the recording says, in one statement (one round trip): entities and their mentions,
# CO_OCCURS weights for the new pairs, topics, speakers (HAS_SPEAKER spares reads a walk over
# every segment).
WRITE_KNOWLEDGE = """
MATCH (r:Recording {uid: $uid})
CALL (r) {
  UNWIND $entities AS item
  MERGE (e:Entity {uid: item.uid, owner: $owner})
  ON CREATE SET e.name = item.name, e.key = item.key, e.type = item.type
  SET e.type = CASE WHEN item.type <> 'name' THEN item.type ELSE e.type END
  CREATE (r)-[:MENTIONS {count: item.count, segments: item.segments}]->(e)
}
CALL () {
  UNWIND $pairs AS pair
  MATCH (a:Entity {uid: pair[0]})
  WITH a, pair
  MATCH (b:Entity {uid: pair[1]})
  MERGE (a)-[c:CO_OCCURS]->(b)
  SET c.weight = coalesce(c.weight, 0) + 1
}
CALL (r) {
  UNWIND $topics AS item
  MERGE (t:Topic {uid: item.uid, owner: $owner})
  ON CREATE SET t.name = item.name
  CREATE (r)-[:ABOUT {weight: item.weight}]->(t)
}
CALL (r) {
  UNWIND $speakers AS item
  MERGE (p:Speaker {uid: item.uid, owner: $owner})
  ON CREATE SET p.name = item.name
  CREATE (r)-[:HAS_SPEAKER {segments: size(item.segments)}]->(p)
  WITH p, item
  UNWIND item.segments AS segment_uid
  MATCH (s:Segment {uid: segment_uid})
  CREATE (s)-[:SPOKEN_BY]->(p)
}
"""

# Merged nodes that no recording points at any more.
DROP_ORPHANS = """
UNWIND $entities AS uid
MATCH (e:Entity {uid: uid}) WHERE NOT (e)<-[:MENTIONS]-()
DETACH DELETE e
WITH count(*) AS done
UNWIND $topics AS uid
MATCH (t:Topic {uid: uid}) WHERE NOT (t)<-[:ABOUT]-()
DELETE t
WITH count(*) AS done
UNWIND $speakers AS uid
MATCH (p:Speaker {uid: uid}) WHERE NOT (p)<-[:HAS_SPEAKER]-()
DELETE p
"""


def recording_params(recording: Recording) -> dict:
    """Everything the graph holds about a transcribed recording, from the database."""
    transcript = recording.transcript
    owner = str(recording.owner_id)
    segments = list(transcript.segments.order_by("index").values("index", "start", "end", "text", "speaker"))
    texts = [s["text"] for s in segments]
    found = extraction.with_typed(extraction.entities(texts), recording.knowledge.get("entities", []), texts)
    speakers: dict[str, dict] = {}
    for s in segments:
        if s["speaker"]:
            uid = node_uid(owner, "speaker", extraction.normalise(s["speaker"]))
            speaker = speakers.setdefault(uid, {"uid": uid, "name": s["speaker"], "segments": []})
            speaker["segments"].append(f"{recording.id}:{s['index']}")
    return {
        "user": {"uid": owner, "username": recording.owner.get_username()},
        "recording": {
            "uid": str(recording.id),
            "owner": owner,
            "title": recording.title,
            "duration": recording.duration,
            "language": transcript.language,
            "created_at": recording.created_at.isoformat(),
        },
        "segments": [
            {k: s[k] for k in ("index", "start", "end", "text")} | {"uid": f"{recording.id}:{s['index']}"}
            for s in segments
        ],
        "entities": [
            {
                "uid": node_uid(owner, "entity", f.key),
                "name": f.name,
                "key": f.key,
                "type": f.type,
                "count": f.count,
                "segments": f.segments,
            }
            for f in found
        ],
        "topics": [
            {"uid": node_uid(owner, "topic", name), "name": name, "weight": weight}
            for name, weight in extraction.topics(" ".join(texts))
        ],
        "speakers": list(speakers.values()),
    }


def write_graph(params: dict) -> None:
    """Write one recording as `recording_params` describes it, in one transaction."""
    uid, owner = params["recording"]["uid"], params["recording"]["owner"]
    linked = sorted(e["uid"] for e in params["entities"][:MAX_LINKED_ENTITIES])
    with db.write_transaction:
        rows, _ = cypher("clear_links", CLEAR_LINKS, {"uid": uid})
        old_entities, old_topics, old_speakers = rows[0] if rows else ([], [], [])
        cypher("write_recording", WRITE_RECORDING, params)
        cypher(
            "write_knowledge",
            WRITE_KNOWLEDGE,
            {
                "uid": uid,
                "owner": owner,
                "entities": params["entities"],
                "pairs": list(combinations(linked, 2)),
                "topics": params["topics"],
                "speakers": params["speakers"],
            },
        )
        cypher("drop_orphans", DROP_ORPHANS, {"entities": old_entities, "topics": old_topics, "speakers": old_speakers})
    cache.graph_changed(owner)


def write_recording(recording_id: int) -> bool:
    """Write a transcribed recording to the graph. False if it no longer exists or has no transcript
    (deleted, or re-queued meanwhile): there is nothing to write, and nothing is wrong."""
    recording = (
        Recording.objects.select_related("owner", "transcript")
        .filter(pk=recording_id, status=Recording.Status.DONE)
        .first()
    )
    if recording is None or not hasattr(recording, "transcript"):
        return False
    write_graph(recording_params(recording))
    Recording.objects.filter(pk=recording_id).update(graph_synced_at=timezone.now())
    return True


# A recording's segments go with it; merged nodes only when nothing else points at them.
DELETE_RECORDING = """
MATCH (r:Recording {uid: $uid})
OPTIONAL MATCH (r)-[:HAS_SEGMENT]->(s:Segment)
DETACH DELETE s, r
"""


def delete_recording(recording_id: int, owner: str | None = None) -> None:
    """Remove a deleted recording's nodes; running it again (or for a never-written one) is a no-op."""
    uid = str(recording_id)
    with db.write_transaction:
        rows, _ = cypher("clear_links", CLEAR_LINKS, {"uid": uid})
        old_entities, old_topics, old_speakers = rows[0] if rows else ([], [], [])
        cypher("delete_recording", DELETE_RECORDING, {"uid": uid})
        cypher("drop_orphans", DROP_ORPHANS, {"entities": old_entities, "topics": old_topics, "speakers": old_speakers})
    if owner is not None:
        cache.graph_changed(owner)


# Label by label, so each goes through that label's owner index; in batches, so a large graph
# never needs one huge transaction.
DELETE_USER_NODES = """
MATCH (n:{label}) WHERE n.owner = $owner
CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS
"""


OWNERS_WITH_OLD_UIDS = """
CALL () { MATCH (n:Entity) WHERE size(n.uid) = $length RETURN n.owner AS owner
  UNION MATCH (n:Topic) WHERE size(n.uid) = $length RETURN n.owner AS owner
  UNION MATCH (n:Speaker) WHERE size(n.uid) = $length RETURN n.owner AS owner }
RETURN DISTINCT owner
"""


def owners_with_old_uids() -> list[int]:
    """Users whose graph still has merged nodes with the old, truncated uids (OLD_UID_LENGTH)."""
    rows, _ = cypher("owners_with_old_uids", OWNERS_WITH_OLD_UIDS, {"length": OLD_UID_LENGTH})
    return sorted(int(owner) for (owner,) in rows if owner is not None)


def delete_user_graph(owner: str) -> None:
    """Everything derived for one user (their User node stays). Used by the rebuild command."""
    for label in ("Segment", "Recording", "Entity", "Topic", "Speaker"):
        cypher(f"delete_user_{label.lower()}s", DELETE_USER_NODES.format(label=label), {"owner": owner})
    cache.graph_changed(owner)


def delete_owner(owner: str) -> None:
    """A deleted user's whole graph, their User node (with their name) included. Idempotent."""
    delete_user_graph(owner)
    cypher("delete_user", "MATCH (u:User {uid: $uid}) DETACH DELETE u", {"uid": owner})
