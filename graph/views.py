"""Pages over the knowledge graph: search, an entity, a recording's graph, the explorer.

Every view passes the signed-in user's id as the owner; the queries never reach other nodes.
Neo4j being away is a page that says so (503), never an error page.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from transcription.models import Recording

from . import queries
from .connection import GRAPH_UNAVAILABLE


def graph_view(view):
    """Signed-in GET only; a Neo4j outage becomes a 503 page instead of a traceback."""

    @login_required
    @require_GET
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except GRAPH_UNAVAILABLE:
            return render(request, "graph/unavailable.html", status=503)

    return wrapper


@graph_view
def search(request):
    text = request.GET.get("q", "").strip()
    try:
        page = queries.search(queries.owner_key(request.user), text, request.GET.get("cursor") or None)
    except queries.BadCursor:
        return HttpResponseBadRequest(
            "This results link is not one this site gave you (its cursor was changed). Search again."
        )
    return render(request, "graph/search.html", {"q": text, "page": page, "first_page": not request.GET.get("cursor")})


@graph_view
def entity(request, uid: str):
    found = queries.entity(queries.owner_key(request.user), uid)
    if found is None:
        raise Http404("No such entity.")
    return render(request, "graph/entity.html", found)


@graph_view
def recording_fragment(request, pk: int):
    """A recording's entities, topics, speakers and related recordings; fetched by its page."""
    get_object_or_404(Recording.objects.owned_by(request.user), pk=pk)
    found = queries.recording(queries.owner_key(request.user), pk)
    return render(request, "graph/_recording.html", {"graph": found, "pk": pk})


@graph_view
def explore(request):
    node = request.GET.get("node", "")
    if node.partition(":")[0] not in queries.NEIGHBOURS:
        return HttpResponseBadRequest("Unknown node.")
    start = queries.neighbours(queries.owner_key(request.user), node)
    if start is None:
        raise Http404("No such node.")
    return render(request, "graph/explore.html", {"node": node, "label": start["nodes"][0]["label"]})


@login_required
@require_GET
def neighbours(request):
    """JSON for the explorer: a node and its strongest links (loaded as the user expands it)."""
    node = request.GET.get("node", "")
    if node.partition(":")[0] not in queries.NEIGHBOURS:
        return JsonResponse({"error": "unknown node kind"}, status=400)
    try:
        found = queries.neighbours(queries.owner_key(request.user), node)
    except GRAPH_UNAVAILABLE:
        return JsonResponse({"error": "the graph database is unavailable"}, status=503)
    if found is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse(found)
