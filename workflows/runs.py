"""Carrying out a queued workflow run: the engine's results recorded as they come, and streamed to
the run's page over the channel layer. Runs are started by actions/workflow_runs.py."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from common import metrics

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


def _current_attempt(run: WorkflowRun) -> Q:
    return Q(pk=run.pk, status=WorkflowRun.Status.RUNNING, attempts=run.attempts)


def _claim(run_id: int) -> WorkflowRun | None:
    """QUEUED to RUNNING as a new attempt (its number is the claim's token: only this attempt may
    finish the run). The node records of an attempt whose worker died are dropped: this one redoes them."""
    now = timezone.now()
    claimed = WorkflowRun.objects.filter(pk=run_id, status=WorkflowRun.Status.QUEUED).update(
        status=WorkflowRun.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    NodeRun.objects.filter(run_id=run_id).delete()
    return WorkflowRun.objects.select_related("workflow").get(pk=run_id)


async def _keep_beating(run: WorkflowRun) -> None:
    """The run's heartbeat while it runs (as common/heartbeat.py's, here a task on the run's event
    loop). A failed beat is only logged: the reaper judges a heartbeat that stays away."""
    while True:
        await asyncio.sleep(settings.JOB_HEARTBEAT_SECONDS)
        try:
            await WorkflowRun.objects.filter(_current_attempt(run)).aupdate(heartbeat_at=timezone.now())
        except DatabaseError:
            log.warning("heartbeat of workflow run %s failed", run.pk, exc_info=True)


async def execute(run_id: int, llm: LLM | None = None, set_knowledge: SetKnowledge | None = None) -> WorkflowRun | None:
    """Carry out a queued run. None if it was not waiting (another worker has it, or it is done).
    `set_knowledge` is how graph_write nodes keep what they find (the actions layer's; without it
    they fail with a reason)."""
    run = await sync_to_async(_claim)(run_id)
    if run is None:
        return None
    heartbeat = asyncio.create_task(_keep_beating(run))
    try:
        return await _carry_out(run, llm, set_knowledge)
    finally:
        heartbeat.cancel()


async def _carry_out(run: WorkflowRun, llm: LLM | None, set_knowledge: SetKnowledge | None) -> WorkflowRun:
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
    finished_at = timezone.now()
    # Only the current attempt may finish it: a worker the reaper gave up on stores nothing.
    if not await WorkflowRun.objects.filter(_current_attempt(run)).aupdate(
        status=status, outputs=outputs, error=error, finished_at=finished_at
    ):
        log.warning("workflow run %s was taken back during attempt %s; its result is dropped", run.pk, run.attempts)
        await run.arefresh_from_db()
        return run
    run.status, run.outputs, run.error, run.finished_at = status, outputs, error, finished_at
    metrics.workflow_finished(status, (finished_at - run.started_at).total_seconds() if run.started_at else None)
    await emit("", {"type": "finished", "status": status, "error": error, "outputs": outputs})
    return run


def fail(run_id: int, reason: str) -> bool:
    """Fail a running run with a reason (e.g. its time limit reached), and tell its page. False if
    it was not running."""
    failed = WorkflowRun.objects.filter(pk=run_id, status=WorkflowRun.Status.RUNNING).update(
        status=WorkflowRun.Status.FAILED, error=reason, finished_at=timezone.now()
    )
    if failed:
        metrics.workflow_finished(WorkflowRun.Status.FAILED)
        _tell_page(run_id, WorkflowRun.Status.FAILED, reason)
    return bool(failed)


def _tell_page(run_id: int, status: str, error: str) -> None:
    try:
        layer = get_channel_layer()
        if layer is not None:
            message = {"type": "finished", "status": status, "error": error, "outputs": {}, "node": ""}
            async_to_sync(layer.group_send)(run_group(run_id), {"type": "run.event", "data": message})
    except Exception:  # best effort: the page reads the run's state when it (re)connects
        log.warning("could not tell the page of workflow run %s", run_id, exc_info=True)


def time_limit_error() -> str:
    return f"The run was stopped: it took longer than the {settings.WORKFLOW_TIME_LIMIT} s limit (WORKFLOW_TIME_LIMIT)."


def worker_lost_error(attempts: int) -> str:
    return (
        f"The run failed: the worker stopped while running it, {attempts} times (it was restarted, or ran "
        "out of memory); it was not tried again."
    )


def reap() -> list[int]:
    """Take back the runs whose worker died (heartbeat older than JOB_HEARTBEAT_TIMEOUT): queued again,
    or FAILED after JOB_MAX_ATTEMPTS attempts or past the time limit; and find runs queued for over
    JOB_REQUEUE_SECONDS (their message lost). Returns the runs to send to the queue (again). As
    transcription.jobs.reap, for runs."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
    too_old = now - timedelta(seconds=settings.WORKFLOW_TIME_LIMIT)
    to_send = []
    dead = WorkflowRun.objects.filter(status=WorkflowRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    )
    for run in dead.only("pk", "attempts", "heartbeat_at", "started_at"):
        unchanged = WorkflowRun.objects.filter(_current_attempt(run), heartbeat_at=run.heartbeat_at)
        if run.started_at and run.started_at < too_old:
            reason = time_limit_error()
        elif run.attempts >= settings.JOB_MAX_ATTEMPTS:
            reason = worker_lost_error(run.attempts)
        else:
            reason = ""
        if reason:
            taken = unchanged.update(status=WorkflowRun.Status.FAILED, error=reason, finished_at=now)
        else:
            taken = unchanged.update(status=WorkflowRun.Status.QUEUED, queued_at=now, heartbeat_at=None)
            if taken:
                to_send.append(run.pk)
        if taken:
            log.warning(
                "workflow run %s: worker stopped at attempt %s; %s", run.pk, run.attempts, reason or "queued again"
            )
            if reason:
                _tell_page(run.pk, WorkflowRun.Status.FAILED, reason)
    waiting = WorkflowRun.objects.filter(
        status=WorkflowRun.Status.QUEUED, queued_at__lt=now - timedelta(seconds=settings.JOB_REQUEUE_SECONDS)
    )
    for run_id in waiting.values_list("pk", flat=True):
        if waiting.filter(pk=run_id).update(queued_at=now):  # one copy, even with two reapers at once
            to_send.append(run_id)
    return to_send
