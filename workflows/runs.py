"""Carrying out a queued workflow run: the engine's results recorded as they come, and streamed to
the run's page over the channel layer. Runs are started by actions/workflow_runs.py."""

import logging
from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from . import engine
from .llm import LLM
from .models import NodeRun, WorkflowRun
from .nodes.base import NOT_RAN, Context, SetKnowledge

log = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    return f"workflow-run-{run_id}"


def jsonable(value):
    """Outputs as JSON can hold them: a branch that did not run becomes null."""
    if value is NOT_RAN:
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, str):
        return str(value)  # SafeString and friends become plain strings
    return value


def with_overrides(definition: dict, overrides: dict) -> dict:
    """The definition with some nodes' settings replaced for one run ({node id: {setting: value}})."""
    nodes = [
        node | {"settings": {**(node.get("settings") or {}), **overrides.get(node["id"], {})}}
        if isinstance(node, dict) and node.get("id") in overrides
        else node
        for node in definition.get("nodes", [])
    ]
    return {**definition, "nodes": nodes}


def _claim(run_id: int) -> WorkflowRun | None:
    claimed = WorkflowRun.objects.filter(pk=run_id, status=WorkflowRun.Status.QUEUED).update(
        status=WorkflowRun.Status.RUNNING, started_at=timezone.now()
    )
    return WorkflowRun.objects.select_related("workflow").get(pk=run_id) if claimed else None


async def execute(run_id: int, llm: LLM | None = None, set_knowledge: SetKnowledge | None = None) -> WorkflowRun | None:
    """Carry out a queued run. None if it was not waiting (another worker has it, or it is done).
    `set_knowledge` is how graph_write nodes keep what they find (the actions layer's; without it
    they fail with a reason)."""
    run = await sync_to_async(_claim)(run_id)
    if run is None:
        return None
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer")
    group = run_group(run.pk)

    async def emit(node_id: str, message: dict) -> None:
        await layer.group_send(group, {"type": "run.event", "data": {"node": node_id, **message}})

    async def on_node(node_id: str, result: engine.NodeResult) -> None:
        node = graph.nodes[node_id]
        await NodeRun.objects.acreate(
            run=run,
            node_id=node_id,
            node_type=node.type.name,
            status=result.status,
            started_at=datetime.fromtimestamp(result.started, tz=UTC) if result.started else None,
            duration_ms=result.duration_ms,
            cache_hit=result.cache_hit,
            attempts=result.attempts,
            error=result.error,
            output=jsonable(result.outputs) if result.status == "done" else None,
        )
        await emit(
            node_id,
            {
                "type": "node",
                "status": result.status,
                "cache_hit": result.cache_hit,
                "duration_ms": result.duration_ms,
                "error": result.error,
            },
        )

    try:
        graph = engine.validate(with_overrides(run.workflow.definition, run.overrides))
    except engine.WorkflowInvalid as exc:
        return await _finish(run, "failed", {}, f"invalid workflow: {exc}", emit)
    own_llm = llm is None
    llm = llm or LLM()
    ctx = Context(
        owner_id=run.owner_id,
        recording_id=run.recording_id,
        emit=emit,
        llm=llm,
        inputs=run.inputs,
        set_knowledge=set_knowledge,
    )
    try:
        result = await engine.execute(graph, ctx, on_node)
    finally:
        if own_llm:
            await llm.close()
    return await _finish(run, result.status, jsonable(result.outputs), result.error, emit)


async def _finish(run: WorkflowRun, status: str, outputs: dict, error: str, emit) -> WorkflowRun:
    run.status, run.outputs, run.error, run.finished_at = status, outputs, error, timezone.now()
    await run.asave(update_fields=["status", "outputs", "error", "finished_at"])
    await emit("", {"type": "finished", "status": status, "error": error, "outputs": outputs})
    return run
