"""OpenTelemetry tracing: the one place it is set up (settings TRACING_*), for every kind of process.

- `web` (Daphne): `instrument_asgi` wraps the whole ASGI app with OpenTelemetry's ASGI middleware,
  which runs on the event loop (Django's own instrumentation is a sync middleware: a thread hop per
  request under ASGI). HTTP requests and WebSocket connections get one server span each, named after
  the route template (`GET api/recordings/<int:recording_id>`), never the raw path; a `traceparent`
  from nginx or the browser continues its trace.
- Celery workers (`worker`, `ai`): set up in each prefork child (`worker_process_init`), so a task's
  spans continue the trace of whoever queued it (the upload's request, the transcription that queued
  the graph write and the summary run).
- Redis commands (redis-py, sync and asyncio) are spans inside whatever request or job sent them;
  the app's own spans (transcription steps, named Neo4j queries, LLM requests, live inference steps)
  use the OpenTelemetry API directly (`trace.get_tracer(__name__)`), which costs nothing while
  tracing is off.

Spans are exported in batches from a background thread: a collector that is away or slow never holds
up a request or a job (its spans are dropped, and that is logged once per outage). Attributes carry
no user data: no transcript text, emails, titles or file names, only sizes, counts, model names.
"""

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

from django.conf import settings
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

log = logging.getLogger(__name__)

# Requests that say nothing about the app's work (probes, scrapes) make no trace.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_configured: str | None = None


def enabled() -> bool:
    return settings.TRACING_EXPORTER != "none"


def _exporter():
    if settings.TRACING_EXPORTER == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.TRACING_ENDPOINT, timeout=5)
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    return ZipkinExporter(endpoint=settings.TRACING_ENDPOINT, timeout=5)


class _Quiet(SpanExporter):
    """An exporter that drops a batch it cannot send, with one warning per outage rather than a
    traceback every few seconds (the batch thread would log each failure)."""

    def __init__(self, exporter):
        self.exporter, self.failing = exporter, False

    def export(self, spans):
        try:
            result = self.exporter.export(spans)
        except Exception as exc:  # connection refused, timeout: the collector is away
            result = SpanExportResult.FAILURE
            if not self.failing:
                log.warning(
                    "trace collector %s unreachable (%s); spans dropped", settings.TRACING_ENDPOINT, type(exc).__name__
                )
        else:
            if self.failing and result == SpanExportResult.SUCCESS:
                log.info("trace collector %s reachable again", settings.TRACING_ENDPOINT)
        self.failing = result != SpanExportResult.SUCCESS
        return result

    def shutdown(self):
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def _sampler():
    """Parent-based, by trace id: a trace is kept with probability TRACING_SAMPLE_RATIO, decided
    from its id wherever it enters the app, so the web process and the worker that continue one
    trace decide alike. A `traceparent` from outside (nginx, a browser) gives the trace id, not the
    decision: a client cannot make the server record every request. Redis commands with no request
    or job around them (the broker's and the channel layer's polling) are never recorded."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    ratio = TraceIdRatioBased(settings.TRACING_SAMPLE_RATIO)
    by_parent = ParentBased(root=ratio, remote_parent_sampled=ratio, remote_parent_not_sampled=ratio)

    class AppSampler(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state=None,
        ) -> SamplingResult:
            orphan = not trace.get_current_span(parent_context).get_span_context().is_valid
            if orphan and kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return by_parent.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"AppSampler({by_parent.get_description()})"

    return AppSampler()


_lock = threading.Lock()


def setup(service: str) -> bool:
    """Install the tracer provider for this process (once) and instrument Redis and Celery.
    `service` is the process's kind (`web`, `worker`); TRACING_SERVICE_NAME overrides it (the `ai`
    worker's). False when tracing is off."""
    global _configured
    if not enabled():
        return False
    with _lock:
        if _configured is not None:
            return True
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = settings.TRACING_SERVICE_NAME or service
        provider = TracerProvider(
            resource=Resource.create({"service.name": name}),
            sampler=_sampler(),
        )
        # A bounded queue: when the collector cannot keep up, spans are dropped, never waited for.
        provider.add_span_processor(BatchSpanProcessor(_Quiet(_exporter()), max_queue_size=4096))
        trace.set_tracer_provider(provider)
        RedisInstrumentor().instrument(tracer_provider=provider)
        CeleryInstrumentor().instrument(tracer_provider=provider)
        _configured = name
        log.info("tracing: %s to %s as %r", settings.TRACING_EXPORTER, settings.TRACING_ENDPOINT, name)
    return True


def flush(timeout_millis: int = 5000) -> None:
    """Send what is queued (a worker child about to exit)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(timeout_millis)


# --- The ASGI app --------------------------------------------------------------------------------


def route_of(scope: dict) -> str:
    """The URL pattern's route template of an HTTP or WebSocket scope, or `unmatched`: a bounded set
    of span names. Resolving is pure CPU; the paths seen last are remembered (a busy API asks for the
    same few again and again)."""
    return _route(scope["type"] == "websocket", scope["path"])


@lru_cache(maxsize=4096)
def _route(websocket: bool, path: str) -> str:
    from django.urls import Resolver404, URLResolver, get_resolver
    from django.urls.resolvers import RegexPattern

    from .routing import websocket_urlpatterns

    resolver = URLResolver(RegexPattern(r"^/"), websocket_urlpatterns) if websocket else get_resolver()
    try:
        return resolver.resolve(path).route or "unmatched"
    except Resolver404:
        return "unmatched"


def span_details(scope: dict) -> tuple[str, dict]:
    route = route_of(scope)
    if scope["type"] == "websocket":
        return f"WebSocket {route}", {"http.route": route}
    return f"{scope.get('method', 'HTTP')} {route}", {"http.route": route}


def without_query(span, scope: dict) -> None:
    """A query string may hold a user's words (a search): the span keeps the path alone."""
    if not span.is_recording():
        return
    span.set_attribute("http.target", scope.get("path", ""))
    url = (getattr(span, "attributes", None) or {}).get("http.url")
    if url:
        span.set_attribute("http.url", str(url).split("?", 1)[0])


def instrument_asgi(application):
    """The ASGI app wrapped in a server span per request / connection (when tracing is on)."""
    if not setup("web"):
        return application
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        application,
        excluded_urls=EXCLUDED_URLS,
        default_span_details=span_details,
        server_request_hook=without_query,
        # Not a span per message sent or received (a live socket carries thousands).
        exclude_spans=["receive", "send"],
    )


# --- Logs ----------------------------------------------------------------------------------------


class TraceIds(logging.Filter):
    """Adds `trace_id` and `span_id` (hex, as Zipkin and nginx's access log show them) to each
    record, empty outside any request or job. A trace that was not sampled still has its id, the
    one nginx logged: the lines of one request stay together. With LOG_FORMAT=json they are fields
    of each line."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return True


def use_json_logs(logger: logging.Logger) -> None:
    """LOG_FORMAT=json for handlers made outside Django's LOGGING (Celery's): the same formatter."""
    if settings.LOG_FORMAT != "json":
        return
    from pythonjsonlogger.json import JsonFormatter

    formatters = cast(dict[str, dict], settings.LOGGING["formatters"])
    options = {k: v for k, v in formatters["json"].items() if k != "()"}
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter(**options))
        handler.addFilter(TraceIds())
