"""Celery tasks of the graph: they apply the outbox, so they take no arguments at all."""

from typing import cast

from celery import shared_task
from django.core.cache import cache
from django_redis.cache import RedisCache  # type: ignore[import-untyped]  # no py.typed marker in django-redis

from . import outbox
from .connection import GRAPH_UNAVAILABLE


# Waits out a Neo4j outage with exponential backoff and jitter, up to 10 minutes apart; if even that
# gives up, the changes stay in the outbox and the periodic run (settings.CELERY_BEAT_SCHEDULE)
# applies them.
@shared_task(
    bind=True,
    autoretry_for=GRAPH_UNAVAILABLE,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=50,
)
def apply_graph_changes(self) -> int:
    # One applier at a time: two transactions rewriting the same recording's links could deadlock.
    # A task that finds the lock taken comes back in a second rather than be lost.
    # The cache is django-redis (settings.CACHES): its lock() is a Redis lock on the prefixed key.
    lock = cast(RedisCache, cache).lock("graph:outbox-lock", timeout=600, blocking=False)
    if not lock.acquire():
        raise self.retry(countdown=1, max_retries=None)
    try:
        total = 0
        while applied := outbox.apply_pending():
            total += applied
        return total
    finally:
        lock.release()
