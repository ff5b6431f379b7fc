"""The knowledge graph in the REST API: search, entities, a recording's graph, neighbourhoods.

Mounted on the project's API in assistant_site/api.py (same auth: bearer token or session). Every answer is
the caller's own nodes only; Neo4j being away is a 503 with a reason.
"""

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from . import queries
from .connection import GRAPH_UNAVAILABLE

router = Router(tags=["knowledge graph"])


class SearchParams(Schema):
    q: str = Field(..., min_length=1, max_length=200, description="Words spoken, or names")
    cursor: str | None = None
    limit: int = Field(20, ge=1, le=100)


class SegmentHit(Schema):
    recording: int
    title: str
    index: int
    start: float
    end: float
    text: str
    highlighted: str = Field(description="The text, HTML-escaped, matched words in <mark>")
    score: float


class EntityHit(Schema):
    uid: str
    name: str
    type: str | None
    recordings: int


class SearchPage(Schema):
    segments: list[SegmentHit]
    entities: list[EntityHit]
    next_cursor: str | None


def _graph(call, *args):
    try:
        return call(*args)
    except GRAPH_UNAVAILABLE:
        raise HttpError(503, "The knowledge graph is unavailable; try again shortly.") from None
    except queries.BadCursor:
        raise HttpError(400, "The cursor is not one this API gave out.") from None


@router.get("/search", response=SearchPage)
def search(request: HttpRequest, params: Query[SearchParams]):
    """Full-text search over everything said in my recordings and the things mentioned, best first."""
    page = _graph(queries.search, queries.owner_key(request.user), params.q, params.cursor, params.limit)
    return {"segments": page["segments"], "entities": page["entities"], "next_cursor": page["next"]}


@router.get("/entities/{uid}")
def entity(request: HttpRequest, uid: str):
    """An entity: the recordings and segments that mention it, and the entities seen with it."""
    found = _graph(queries.entity, queries.owner_key(request.user), uid)
    if found is None:
        raise HttpError(404, "Not found.")
    return found


@router.get("/recordings/{recording_id}/graph")
def recording_graph(request: HttpRequest, recording_id: int):
    """A recording's entities, topics, speakers and the recordings that share them."""
    found = _graph(queries.recording, queries.owner_key(request.user), recording_id)
    if found is None:
        raise HttpError(404, "Not found (or not in the graph yet).")
    return found


@router.get("/graph/neighbours")
def neighbours(
    request: HttpRequest,
    node: str = Query(..., description='"kind:uid", kind one of recording, entity, topic, speaker'),
):
    """A node and its strongest links: what the graph page draws."""
    if node.partition(":")[0] not in queries.NEIGHBOURS:
        raise HttpError(400, "Unknown node kind.")
    found = _graph(queries.neighbours, queries.owner_key(request.user), node)
    if found is None:
        raise HttpError(404, "Not found.")
    return found
