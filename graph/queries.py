"""Read queries over the knowledge graph: parameterised, scoped to one user, cached.

Each query starts from an index (a unique `uid` or the full-text indexes) and checks `owner`, so a
user only ever reaches their own nodes; tests/test_graph_queries.py EXPLAINs each one to keep it
that way. Answers are plain dicts and lists (they go to Redis, templates and JSON as they are).
"""

import re
from dataclasses import dataclass

from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from common import cursors

from . import cache, extraction
from .connection import cypher

# Only word characters reach Lucene: no operator, quote, wildcard or field name can be smuggled in.
TERM = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 8


BadCursor = cursors.BadCursor


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[str, ...]
    match_all: bool = True

    @classmethod
    def parse(cls, text: str, match_all: bool = True) -> "SearchQuery":
        terms = [t.lower() for t in TERM.findall(text or "")]
        if not match_all:  # a question: its content words, any of which may match
            terms = [t for t in terms if t not in extraction.COMMON and len(t) > 2] or terms
        return cls(tuple(dict.fromkeys(terms))[:MAX_TERMS], match_all)

    def lucene(self, field: str, owner: str) -> str:
        """Every term required (or, for a question, any), the last one also as a prefix (results
        while typing), own nodes only."""
        *whole, last = self.terms
        if not self.match_all:
            return f'+({" ".join(f"{field}:{t}" for t in self.terms)}) +owner:"{int(owner)}"'
        parts = [f"+{field}:{t}" for t in whole] + [f"+({field}:{last} OR {field}:{last}*)"]
        return " ".join(parts) + f' +owner:"{int(owner)}"'

    def highlight(self, text: str) -> SafeString:
        """The text, HTML-escaped, with the matched words in <mark>."""
        if not self.terms:
            return escape(text)
        *whole, last = self.terms
        alternatives = [re.escape(t) + r"\b" for t in whole] + [re.escape(last) + r"\w*"]
        pattern = re.compile(r"\b(?:" + "|".join(alternatives) + ")", re.IGNORECASE)
        pieces: list[str] = []
        at = 0
        for match in pattern.finditer(text):
            pieces.append(escape(text[at : match.start()]))
            pieces.append(f"<mark>{escape(match.group())}</mark>")
            at = match.end()
        pieces.append(escape(text[at:]))
        return mark_safe("".join(pieces))


def owner_key(user) -> str:
    """What every read is scoped by: the user's id as the graph stores it on its nodes."""
    return str(user.pk)


def encode_cursor(owner: str, score: float, uid: str, seen: int) -> str:
    return cursors.make_cursor("graph-search", owner, [score, uid, seen])


def decode_cursor(owner: str, cursor: str) -> tuple[float, str, int]:
    """The last result's score and uid (the keyset), and how many results came before it. Only a
    cursor this server signed for this user is read (common/cursors.py)."""
    try:
        score, uid, seen = cursors.read_cursor("graph-search", owner, cursor, 3)
        return float(score), str(uid), max(0, int(seen))
    except (ValueError, TypeError) as exc:  # BadCursor is a ValueError
        raise BadCursor("invalid cursor") from exc


# Lucene returns hits best first; asking it for only as many as the pages so far need (plus ties
# broken differently: Lucene by document, we by uid) keeps a search for a word said thousands of
# times as fast as a rare one. benchmarks/graph.py: "the" at 196k segments went 153 -> see README.
TIE_SLACK = 64


def rows(name: str, query: str, params: dict) -> list[dict]:
    """A read's rows as dicts; `name` labels its metrics and its span (connection.cypher)."""
    results, columns = cypher(name, query, params)
    return [dict(zip(columns, row, strict=True)) for row in results]


SEARCH_SEGMENTS = """
CALL db.index.fulltext.queryNodes('segment_text', $lucene, {limit: $scan}) YIELD node, score
WHERE node.owner = $owner
  AND ($recording IS NULL OR node.recording = $recording)
  AND ($after_score IS NULL OR score < $after_score OR (score = $after_score AND node.uid > $after_uid))
WITH node, score ORDER BY score DESC, node.uid LIMIT $limit
MATCH (r:Recording {uid: node.recording}) USING INDEX r:Recording(uid)
RETURN node.uid AS uid, node.index AS index, node.start AS start, node.end AS end,
       node.text AS text, r.uid AS recording, r.title AS title, score
"""

SEARCH_ENTITIES = """
CALL db.index.fulltext.queryNodes('entity_name', $lucene, {limit: $limit}) YIELD node, score
WHERE node.owner = $owner
RETURN node.uid AS uid, node.name AS name, node.type AS type,
       COUNT { (node)<-[:MENTIONS]-() } AS recordings, score
ORDER BY score DESC
"""


def search(
    owner: str,
    text: str,
    cursor: str | None = None,
    limit: int | None = None,
    *,
    match_all: bool = True,
    recording: int | None = None,
) -> dict:
    """Segments and entities of this user matching `text`, best first, one page at a time.

    Entities come with the first page only. `match_all=False` finds segments with any of the
    words (for questions); `recording` keeps to one recording. Raises BadCursor for a cursor this
    did not make."""
    query = SearchQuery.parse(text, match_all)
    limit = limit or settings.GRAPH_SEARCH_PAGE_SIZE
    if not query.terms:
        return {"segments": [], "entities": [], "next": None}
    after_score, after_uid, seen = decode_cursor(owner, cursor) if cursor else (None, None, 0)
    # One recording's hits are filtered after Lucene, so they are not counted on.
    scan = 2**31 - 1 if recording else seen + limit + 1 + TIE_SLACK

    def compute():
        segments = rows(
            "search_segments",
            SEARCH_SEGMENTS,
            {
                "lucene": query.lucene("text", owner),
                "owner": owner,
                "limit": limit + 1,
                "recording": str(recording) if recording else None,
                "scan": scan,
                "after_score": after_score,
                "after_uid": after_uid,
            },
        )
        entities = (
            []
            if cursor
            else rows(
                "search_entities", SEARCH_ENTITIES, {"lucene": query.lucene("name", owner), "owner": owner, "limit": 10}
            )
        )
        more = len(segments) > limit
        segments = segments[:limit]
        last = segments[-1] if more else None
        return {
            "segments": segments,
            "entities": entities,
            "next": encode_cursor(owner, last["score"], last["uid"], seen + limit) if last else None,
        }

    # Only first pages are cached: they are what is asked again (typing, the benchmark's search); a
    # cache entry per cursor would grow with every page anyone walks through.
    if cursor:
        page = compute()
    else:
        args = {"q": query.terms, "all": match_all, "recording": recording, "limit": limit}
        page = cache.cached(owner, "search", args, compute)
    for segment in page["segments"]:
        segment["highlighted"] = query.highlight(segment["text"])
    return page


ENTITY = """
MATCH (e:Entity {uid: $uid}) USING INDEX e:Entity(uid) WHERE e.owner = $owner
CALL (e) {
  MATCH (r:Recording)-[m:MENTIONS]->(e)
  WITH r, m ORDER BY m.count DESC, r.created_at DESC LIMIT $limit
  CALL (r, m) {
    UNWIND m.segments[..3] AS i
    MATCH (s:Segment {uid: r.uid + ':' + toString(i)})
    RETURN collect(s {.index, .start, .end, .text}) AS segments
  }
  RETURN collect(r {.uid, .title, .created_at, count: m.count, segments: segments}) AS recordings
}
CALL (e) {
  OPTIONAL MATCH (e)-[c:CO_OCCURS]-(o:Entity)
  WITH o, c ORDER BY c.weight DESC, o.name LIMIT 20
  RETURN collect(o {.uid, .name, .type, weight: c.weight}) AS related
}
RETURN e {.uid, .name, .type} AS entity, recordings, related
"""


def entity(owner: str, uid: str, limit: int = 50) -> dict | None:
    """An entity of this user: the recordings (and segments) that mention it, entities seen with it."""

    def compute():
        found = rows("entity", ENTITY, {"owner": owner, "uid": uid, "limit": limit})
        return found[0] if found else None

    return cache.cached(owner, "entity", {"uid": uid, "limit": limit}, compute)


RECORDING = """
MATCH (r:Recording {uid: $uid}) USING INDEX r:Recording(uid) WHERE r.owner = $owner
CALL (r) {
  OPTIONAL MATCH (r)-[m:MENTIONS]->(e:Entity)
  WITH e, m ORDER BY m.count DESC, e.name LIMIT 30
  RETURN collect(e {.uid, .name, .type, count: m.count}) AS entities
}
CALL (r) {
  OPTIONAL MATCH (r)-[a:ABOUT]->(t:Topic)
  WITH t, a ORDER BY a.weight DESC
  RETURN collect(t {.uid, .name, weight: a.weight}) AS topics
}
CALL (r) {
  OPTIONAL MATCH (r)-[:HAS_SPEAKER]->(p:Speaker)
  RETURN collect(p {.uid, .name}) AS speakers
}
CALL (r) {
  OPTIONAL MATCH (r)-[:MENTIONS|ABOUT]->(x)<-[:MENTIONS|ABOUT]-(o:Recording)
  WITH o, count(x) AS shared, collect(x.name)[..5] AS via
  WHERE o.owner = $owner  // implied (entities and topics are per user), checked all the same
  ORDER BY shared DESC, o.uid LIMIT 10
  RETURN collect(o {.uid, .title, shared: shared, via: via}) AS related
}
RETURN r {.uid, .title} AS recording, entities, topics, speakers, related
"""


def recording(owner: str, recording_id: int) -> dict | None:
    """A recording's entities, topics, speakers, and the user's other recordings that share them."""

    def compute():
        found = rows("recording", RECORDING, {"owner": owner, "uid": str(recording_id)})
        return found[0] if found else None

    return cache.cached(owner, "recording", {"uid": str(recording_id)}, compute)


# The graph page's nodes: recordings, entities, topics, speakers (segments are read, not drawn).
# Each kind's neighbours, strongest links first and capped, so a hub never loads the whole graph.
# The node itself always comes back (with null neighbour columns if it has none).
NEIGHBOURS = {
    "recording": (
        "Recording",
        "title",
        """
        MATCH (n)-[l:MENTIONS]->(m:Entity)
        RETURN m, 'entity' AS kind, m.name AS label, 'MENTIONS' AS rel, l.count AS weight, false AS inbound
        ORDER BY weight DESC LIMIT $limit
        UNION
        MATCH (n)-[l:ABOUT]->(m:Topic)
        RETURN m, 'topic' AS kind, m.name AS label, 'ABOUT' AS rel, l.weight AS weight, false AS inbound
        UNION
        MATCH (n)-[l:HAS_SPEAKER]->(m:Speaker)
        RETURN m, 'speaker' AS kind, m.name AS label, 'HAS_SPEAKER' AS rel, l.segments AS weight, false AS inbound
    """,
    ),
    "entity": (
        "Entity",
        "name",
        """
        MATCH (m:Recording)-[l:MENTIONS]->(n)
        RETURN m, 'recording' AS kind, m.title AS label, 'MENTIONS' AS rel, l.count AS weight, true AS inbound
        ORDER BY weight DESC LIMIT $limit
        UNION
        MATCH (n)-[l:CO_OCCURS]-(m:Entity)
        RETURN m, 'entity' AS kind, m.name AS label, 'CO_OCCURS' AS rel, l.weight AS weight, false AS inbound
        ORDER BY weight DESC LIMIT $limit
    """,
    ),
    "topic": (
        "Topic",
        "name",
        """
        MATCH (m:Recording)-[l:ABOUT]->(n)
        RETURN m, 'recording' AS kind, m.title AS label, 'ABOUT' AS rel, l.weight AS weight, true AS inbound
        ORDER BY weight DESC LIMIT $limit
    """,
    ),
    "speaker": (
        "Speaker",
        "name",
        """
        MATCH (m:Recording)-[l:HAS_SPEAKER]->(n)
        RETURN m, 'recording' AS kind, m.title AS label, 'HAS_SPEAKER' AS rel, l.segments AS weight, true AS inbound
        ORDER BY weight DESC LIMIT $limit
    """,
    ),
}


def neighbours_query(kind: str) -> str:
    """The Cypher for one kind of node (KeyError for an unknown kind: labels never come from input)."""
    label, name, links = NEIGHBOURS[kind]
    return f"""
        MATCH (n:{label} {{uid: $uid}}) USING INDEX n:{label}(uid) WHERE n.owner = $owner
        OPTIONAL CALL (n) {{ {links} }}
        RETURN n.{name} AS self_label, m.uid AS uid, kind, label, rel, weight, inbound
    """


def neighbours(owner: str, node_id: str, limit: int = 25) -> dict | None:
    """A node ("kind:uid") and its strongest links, as the graph page draws them; None if the node
    is not this user's. Unknown kinds raise KeyError."""
    kind, _, uid = node_id.partition(":")
    query = neighbours_query(kind)

    def compute():
        found = rows(f"neighbours_{kind}", query, {"owner": owner, "uid": uid, "limit": limit})
        if not found:
            return None
        nodes = {node_id: {"id": node_id, "kind": kind, "label": found[0]["self_label"]}}
        edges = []
        for row in found:
            if row["uid"] is None:
                continue
            other = f"{row['kind']}:{row['uid']}"
            nodes.setdefault(other, {"id": other, "kind": row["kind"], "label": row["label"]})
            source, target = (other, node_id) if row["inbound"] else (node_id, other)
            edges.append(
                {
                    "id": f"{source}|{row['rel']}|{target}",
                    "source": source,
                    "target": target,
                    "rel": row["rel"],
                    "weight": row["weight"],
                }
            )
        return {"nodes": list(nodes.values()), "edges": edges}

    return cache.cached(owner, "neighbours", {"id": node_id, "limit": limit}, compute)
