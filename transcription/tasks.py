"""Celery tasks: they take ids, never model instances, and leave the work to plain modules."""

import logging

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings

from graph import writes as graph_writes

from . import engine, jobs

log = logging.getLogger(__name__)


@worker_process_init.connect
def load_model_at_start(**kwargs):
    # Each worker process loads the model once, before its first job rather than during it.
    engine.get_model()


@shared_task(
    time_limit=settings.TRANSCRIPTION_TIME_LIMIT + 60,
    soft_time_limit=settings.TRANSCRIPTION_TIME_LIMIT,
)
def transcribe_recording(recording_id: int) -> bool:
    if not jobs.run(recording_id):
        return False
    # The graph is derived data: the transcript is already committed, so a Neo4j outage must
    # not fail the job. Try now; if Neo4j is away, a retrying task fills the graph in later.
    try:
        graph_writes.write_recording(recording_id)
    except graph_writes.GRAPH_UNAVAILABLE:
        log.warning("Neo4j unavailable; graph write for recording %s queued", recording_id)
        sync_recording_graph.delay(recording_id)
    return True


# Graph writes wait out a Neo4j outage: exponential backoff with jitter, up to 10 minutes apart.
GRAPH_RETRY = dict(
    autoretry_for=graph_writes.GRAPH_UNAVAILABLE,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=50,
)


@shared_task(**GRAPH_RETRY)
def sync_recording_graph(recording_id: int) -> None:
    graph_writes.write_recording(recording_id)


@shared_task(**GRAPH_RETRY)
def delete_recording_graph(recording_id: int) -> None:
    graph_writes.delete_recording(recording_id)
