"""Celery tasks that cross apps: they take ids, never model instances, and call the actions.

Every long task has a soft time limit it handles (the job fails, saying so) and a hard one a minute
later (the process is killed; the reaper then fails the job). settings.py's Celery section says why
the broker's visibility timeout is longer than both.
"""

import asyncio

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from workflows.runs import time_limit_error

from . import recordings, workflow_runs


@shared_task(time_limit=settings.TRANSCRIPTION_TIME_LIMIT + 60, soft_time_limit=settings.TRANSCRIPTION_TIME_LIMIT)
def transcribe_recording(recording_id: int) -> bool:
    # The graph write and the summary run are recorded by the action, with the transcript.
    return recordings.transcribe(recording_id)


@shared_task
def save_abandoned_live_sessions() -> int:
    # Periodic (settings.CELERY_BEAT_SCHEDULE), in the transcription worker, which has the model.
    return recordings.save_abandoned_live_sessions()


@shared_task(time_limit=settings.WORKFLOW_TIME_LIMIT + 60, soft_time_limit=settings.WORKFLOW_TIME_LIMIT)
def run_workflow(run_id: int) -> str | None:
    try:
        run = asyncio.run(workflow_runs.execute(run_id))
    except SoftTimeLimitExceeded:
        workflow_runs.fail_run(run_id, time_limit_error())
        return "failed"
    return run.status if run else None


# Periodic (settings.CELERY_BEAT_SCHEDULE, every JOB_REAPER_SECONDS), on its own queue so that it
# never waits behind a backlog of transcriptions (workers take their queues in turn).
@shared_task(time_limit=300, soft_time_limit=240, ignore_result=True)
def reap_stranded_jobs() -> dict[str, int]:
    return {
        "recordings": recordings.reap_stranded_jobs(),
        "workflow_runs": workflow_runs.reap_stranded_runs(),
    }
