"""Celery tasks that cross apps: they take ids, never model instances, and call the actions."""

import asyncio

from celery import shared_task
from django.conf import settings

from . import recordings, workflow_runs


@shared_task(time_limit=settings.TRANSCRIPTION_TIME_LIMIT + 60, soft_time_limit=settings.TRANSCRIPTION_TIME_LIMIT)
def transcribe_recording(recording_id: int) -> bool:
    # The graph write and the summary run are recorded by the action, with the transcript.
    return recordings.transcribe(recording_id)


@shared_task
def save_abandoned_live_sessions() -> int:
    # Periodic (settings.CELERY_BEAT_SCHEDULE), in the transcription worker, which has the model.
    return recordings.save_abandoned_live_sessions()


@shared_task(time_limit=1800, soft_time_limit=1700)
def run_workflow(run_id: int) -> str | None:
    run = asyncio.run(workflow_runs.execute(run_id))
    return run.status if run else None
