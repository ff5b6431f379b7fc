"""Celery tasks: they take ids, never model instances, and leave the work to plain modules."""

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings

from . import engine, jobs


@worker_process_init.connect
def load_model_at_start(**kwargs):
    # Each worker process loads the model once, before its first job rather than during it
    # (not the workflow worker's, which never transcribes: WHISPER_PRELOAD=false in the Procfile).
    if settings.WHISPER_PRELOAD:
        engine.get_model()


@shared_task(
    time_limit=settings.TRANSCRIPTION_TIME_LIMIT + 60,
    soft_time_limit=settings.TRANSCRIPTION_TIME_LIMIT,
)
def transcribe_recording(recording_id: int) -> bool:
    # The graph write is queued by the job itself, in the transaction that stores the transcript.
    return jobs.run(recording_id)
