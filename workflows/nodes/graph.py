"""Nodes over the knowledge graph: search the user's transcripts, write entities, read the graph.

Everything is scoped to the run's owner through graph.queries; no node takes Cypher from a user.
"""

from asgiref.sync import sync_to_async

from graph import queries

from .base import NodeError, node_type
from .text import as_text


def _timecode(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


@node_type("semantic_search", inputs=("query",), outputs=("segments", "context"))
async def semantic_search(ctx, inputs, settings):
    """The segments of the user's transcripts that best match the query (Neo4j's full-text index;
    any of its words), in the whole library or only the run's recording (settings.scope). `context`
    is them as text for a prompt, each with its recording and time."""
    scope = settings.get("scope", "all")
    recording = ctx.recording_id if scope == "recording" else None
    if scope == "recording" and not recording:
        raise NodeError("scope is 'recording' but the run has no recording")
    page = await sync_to_async(queries.search)(
        str(ctx.owner_id),
        as_text(inputs["query"]),
        None,
        int(settings.get("k", 5)),
        match_all=False,
        recording=recording,
    )
    segments = [{k: s[k] for k in ("recording", "title", "index", "start", "end", "text")} for s in page["segments"]]
    context = "\n".join(f"[{s['title']} {_timecode(s['start'])}] {s['text']}" for s in segments)
    return {"segments": segments, "context": context}


@node_type("graph_write", inputs=("entities",), outputs=("written",))
async def graph_write(ctx, inputs, settings):
    """Stores the entities (with their types) as the recording's knowledge and queues the graph
    write: the relational database stays the source of truth, and a rebuild keeps them."""
    if not ctx.recording_id:
        raise NodeError("graph_write needs the run's recording")
    entities = inputs["entities"]
    if not isinstance(entities, list):
        raise NodeError("entities must be a list of {name, type}")
    if ctx.set_knowledge is None:
        raise NodeError("graph_write cannot store entities in this run")
    try:
        written = await sync_to_async(ctx.set_knowledge)(ctx.owner_id, ctx.recording_id, entities)
    except LookupError as exc:
        raise NodeError(str(exc)) from None
    return {"written": written}


@node_type("graph_query", optional=("value",), outputs=("result",))
async def graph_query(ctx, inputs, settings):
    """One of the graph's read queries for the run's user: settings.query = "recording" (the run's
    recording, or `value`), "entity" (uid in `value`) or "search" (words in `value`)."""
    owner, value, query = str(ctx.owner_id), inputs.get("value"), settings.get("query", "recording")
    if query == "recording":
        found = await sync_to_async(queries.recording)(owner, int(value or ctx.recording_id or 0))
    elif query == "entity":
        found = await sync_to_async(queries.entity)(owner, as_text(value))
    elif query == "search":
        found = await sync_to_async(queries.search)(owner, as_text(value))
        for segment in found["segments"]:
            segment["highlighted"] = str(segment["highlighted"])
    else:
        raise NodeError(f"unknown graph query {query!r}: recording, entity or search")
    return {"result": found}
