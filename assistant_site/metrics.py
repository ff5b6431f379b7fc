"""Where the metrics of common/metrics.py are served: the web processes' `GET /metrics` and its
middleware, and each Celery worker's exporter on CELERY_METRICS_PORT (README "Metrics").

A Celery worker (prefork) serves from its parent process what its whole pool wrote into the group's
multiprocess directory; assistant_site/celery.py makes that directory before anything imports
prometheus_client. Only a worker consuming the `celery` queue (the `worker` process) adds the
gauges read at scrape time: queue lengths (Redis LLEN) and the graph outbox (one database query).
"""

import logging
import time
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from celery import signals
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from common import metrics

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "::1"}


class MetricsMiddleware:
    """Times each request, labelled with the URL pattern it matched (its route template, never the
    path, so ids and names stay out of the labels). Async under ASGI: no hop to a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self.observe(request, response, started)
        return response

    async def __acall__(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        self.observe(request, response, started)
        return response

    @staticmethod
    def observe(request, response, started: float) -> None:
        match = getattr(request, "resolver_match", None)
        metrics.observe_request(
            request.method or "", match.route if match else None, response.status_code, time.perf_counter() - started
        )


@require_GET
async def metrics_view(request):
    """Every web process's metrics (they share a multiprocess directory): for this machine (the
    Prometheus that scrapes it) or staff; nginx refuses /metrics from outside anyway."""
    if not settings.METRICS_ENABLED:
        return HttpResponse(status=404)
    if request.META.get("REMOTE_ADDR") not in LOOPBACK and not (await request.auser()).is_staff:
        return JsonResponse({"detail": "Metrics are for staff or this machine."}, status=403)
    # Reading the files is quick (a few hundred KB at most) and does no network I/O: on the loop.
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)


# --- Celery ------------------------------------------------------------------------------------------


@signals.before_task_publish.connect
def _stamp_enqueued(headers=None, **kwargs):
    # Read back by the worker as task.request.enqueued_at (assistant_job_wait_seconds).
    if headers is not None:
        headers.setdefault("enqueued_at", time.time())


@signals.task_prerun.connect
def _job_started(task=None, **kwargs):
    request = getattr(task, "request", None)
    if request is None or request.is_eager:
        return
    queue = (request.delivery_info or {}).get("routing_key")
    metrics.job_started(queue, getattr(request, "enqueued_at", None))


def queue_lengths() -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in metrics.QUEUES:
                pipe.llen(queue)
            return dict(zip(metrics.QUEUES, pipe.execute(), strict=True))
    finally:
        client.close()


def outbox_state() -> tuple[int, float, int]:
    """(changes waiting, age of the oldest in seconds, changes failed for good)."""
    from django.db import close_old_connections
    from django.db.models import Count, Min, Q

    from graph.models import GraphChange

    try:
        found = GraphChange.objects.aggregate(
            waiting=Count("pk", filter=Q(failed_at__isnull=True)),
            failed=Count("pk", filter=Q(failed_at__isnull=False)),
            oldest=Min("created_at", filter=Q(failed_at__isnull=True)),
        )
    finally:
        close_old_connections()
    oldest = (datetime.now(UTC) - found["oldest"]).total_seconds() if found["oldest"] else 0.0
    return found["waiting"], max(oldest, 0.0), found["failed"]


@signals.celeryd_init.connect
def _start_exporter(sender=None, instance=None, options=None, **kwargs):
    """In the worker's parent, before its pool starts: serve the pool's metrics on CELERY_METRICS_PORT."""
    if not settings.METRICS_ENABLED or not settings.CELERY_METRICS_PORT:
        return
    queues = (options or {}).get("queues") or ""
    consumed = set(queues.split(",") if isinstance(queues, str) else queues)
    extra = [metrics.ScrapeCollector(queue_lengths, outbox_state)] if not consumed or "celery" in consumed else []
    start_http_server(settings.CELERY_METRICS_PORT, addr="127.0.0.1", registry=metrics.registry(*extra))
    log.info("metrics on http://127.0.0.1:%s/metrics", settings.CELERY_METRICS_PORT)


@signals.worker_process_shutdown.connect
def _pool_child_gone(pid=None, **kwargs):
    # A pool child ending (max tasks per child, shutdown): its live gauges leave the sum.
    if pid:
        metrics.process_is_dead(pid)
