"""Workflow pages: the list (with Rivet import), one workflow (run it), a run (live), ask."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from actions.workflow_runs import start_run
from transcription.models import Recording

from . import builtin, engine, rivet_import
from .models import Workflow, WorkflowRun


def _recordings(user):
    return Recording.objects.owned_by(user).filter(status=Recording.Status.DONE).newest_first()[:200]


def _run_inputs(workflow: Workflow) -> list[str]:
    """Names of the values a run asks for (input nodes; the main graph's inputs of an imported
    project: a subgraph's are fed by its caller)."""
    names = []
    for node in workflow.definition.get("nodes", []):
        settings = node.get("settings") or {}
        if node.get("type") in ("input", "rivet_graph_input") and not settings.get("inlined"):
            names.append(settings.get("name") or settings.get("id") or node["id"])
    return list(dict.fromkeys(names))


def _render_list(request, import_error: str = "", status: int = 200):
    context = {
        "workflows": Workflow.objects.visible_to(request.user).order_by("owner_id", "name"),
        "runs": WorkflowRun.objects.owned_by(request.user)
        .select_related("workflow", "recording")
        .order_by("-created_at")[:20],
        "import_error": import_error,
    }
    return render(request, "workflows/list.html", context, status=status)


@login_required
@require_GET
def workflow_list(request):
    return _render_list(request)


@login_required
@require_POST
async def import_rivet(request):
    """Async so that the YAML, read by a child process under limits, is awaited without holding a
    thread: the process goes on answering other requests while a large file is read."""
    render_list = sync_to_async(_render_list)
    upload = request.FILES.get("project")
    if upload is None:
        return await render_list(request, "Choose a .rivet-project file.", status=400)
    if upload.size > settings.MAX_RIVET_PROJECT_BYTES:
        return await render_list(
            request, f"The file is larger than {settings.MAX_RIVET_PROJECT_BYTES // 1024} KB.", status=413
        )
    user = await request.auser()
    try:
        document = await rivet_import.aload_yaml(upload.read())
        workflow = await sync_to_async(rivet_import.import_document)(
            user, document, name=request.POST.get("name") or None
        )
    except (rivet_import.RivetImportError, engine.WorkflowInvalid) as exc:
        return await render_list(request, f"Could not import {upload.name}: {exc}", status=400)
    messages.success(request, f"Imported “{workflow.name}”.")
    return redirect("workflow-detail", pk=workflow.pk)


@login_required
@require_http_methods(["GET", "POST"])
def workflow_detail(request, pk: int):
    workflow = get_object_or_404(Workflow.objects.visible_to(request.user), pk=pk)
    inputs = _run_inputs(workflow)
    error = ""
    if request.method == "POST":
        recording = None
        if request.POST.get("recording"):
            recording = Recording.objects.owned_by(request.user).filter(pk=request.POST["recording"]).first()
            if recording is None:
                error = "Choose one of your recordings."
        if not error:
            try:
                # A field left empty is no value: the node's default applies.
                given = {n: request.POST[f"input-{n}"] for n in inputs if request.POST.get(f"input-{n}")}
                run = start_run(workflow, request.user, recording, given)
            except engine.WorkflowInvalid as exc:
                error = f"This workflow cannot run: {exc}"
            else:
                return redirect("workflow-run", pk=run.pk)
    context = {
        "workflow": workflow,
        "inputs": inputs,
        "recordings": _recordings(request.user),
        "error": error,
        "nodes": workflow.definition.get("nodes", []),
    }
    return render(request, "workflows/detail.html", context, status=400 if error else 200)


@login_required
@require_GET
def run_detail(request, pk: int):
    run = get_object_or_404(WorkflowRun.objects.owned_by(request.user).select_related("workflow", "recording"), pk=pk)
    return render(
        request,
        "workflows/run.html",
        {"run": run, "node_runs": run.nodes.all(), "nodes": run.workflow.definition.get("nodes", [])},
    )


@login_required
@require_http_methods(["GET", "POST"])
def ask(request):
    """A question about one recording or all of them: the built-in "ask" workflow, answer streamed."""
    recording_id = request.POST.get("recording") or request.GET.get("recording") or ""
    recording = Recording.objects.owned_by(request.user).filter(pk=recording_id).first() if recording_id else None
    question = request.POST.get("question", "").strip()
    if request.method == "POST":
        if not question:
            messages.error(request, "Type a question.")
        else:
            workflow = get_object_or_404(Workflow, owner__isnull=True, key=builtin.ASK)
            run = start_run(
                workflow,
                request.user,
                recording,
                {"question": question[:500]},
                overrides={"search": {"scope": "recording" if recording else "all"}},
            )
            return redirect("workflow-run", pk=run.pk)
    return render(request, "workflows/ask.html", {"recording": recording, "recordings": _recordings(request.user)})
