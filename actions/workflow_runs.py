"""Workflow runs: starting one (a person's, or the built-in summary after a transcript) and carrying
it out in the workflows worker with the actions its nodes may take."""

import logging

from django.db import transaction

from common import metrics
from common.queueing import enqueue_on_commit
from workflows import engine, runs
from workflows.models import Workflow, WorkflowRun

log = logging.getLogger(__name__)


def start_run(
    workflow: Workflow, owner, recording=None, inputs: dict | None = None, overrides: dict | None = None
) -> WorkflowRun:
    """Queue a run, validated first: an invalid workflow raises engine.WorkflowInvalid naming every
    problem. `overrides` = {node id: {setting: value}} for this run only (e.g. the ask page's scope).
    The run is queued once the transaction commits."""
    from .tasks import run_workflow

    engine.validate(runs.with_overrides(workflow.definition, overrides or {}))
    with transaction.atomic():
        run = WorkflowRun.objects.create(
            workflow=workflow, owner=owner, recording=recording, inputs=inputs or {}, overrides=overrides or {}
        )
        enqueue_on_commit(run_workflow, run.id)
    return run


def start_builtin(key: str, recording) -> WorkflowRun | None:
    """Queue a built-in workflow (e.g. the summary) on a recording for its owner."""
    workflow = Workflow.objects.filter(owner__isnull=True, key=key).first()
    if workflow is None:
        log.warning("built-in workflow %r is not installed (run migrate)", key)
        return None
    return start_run(workflow, recording.owner, recording)


async def execute(run_id: int) -> WorkflowRun | None:
    """Carry out a queued run; its graph_write nodes keep what they find through `set_knowledge`."""
    from .recordings import set_knowledge

    return await runs.execute(run_id, set_knowledge=set_knowledge)


def fail_run(run_id: int, reason: str) -> bool:
    """Fail a running run with a reason the person can read (e.g. its time limit reached)."""
    return runs.fail(run_id, reason)


def reap_stranded_runs() -> int:
    """The reaper's round for workflow runs (see runs.reap): send again the runs taken back from a
    dead worker, or whose queue message was lost. Returns how many were sent."""
    from .tasks import run_workflow

    sent = 0
    for run_id in runs.reap():
        try:
            run_workflow.delay(run_id)
            sent += 1
        except Exception:  # Redis away: it stays queued, and a later round sends it
            log.exception("could not queue workflow run %s again; a later round will", run_id)
    metrics.JOBS_REQUEUED.labels("workflow_run").inc(sent)
    return sent
