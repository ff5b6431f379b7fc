"""Celery tasks of the graph: they apply the outbox, so they take no arguments at all."""

from celery import shared_task

from . import outbox
from .connection import GRAPH_UNAVAILABLE


# Waits out a Neo4j outage with exponential backoff and jitter, up to 10 minutes apart; if even that
# gives up, the changes stay in the outbox and the periodic run (settings.CELERY_BEAT_SCHEDULE)
# applies them. Several may run at once: each recording is locked while it is applied (outbox.py).
@shared_task(
    autoretry_for=GRAPH_UNAVAILABLE,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=50,
)
def apply_graph_changes() -> int:
    total = 0
    while applied := outbox.apply_pending():
        total += applied
    return total
