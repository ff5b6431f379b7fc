"""Every Prometheus metric the app exposes (README "Metrics"), and the small helpers that feed them.

Instrumented code calls one helper or one metric here, so the logic (labels kept to bounded values,
what is measured when) lives in this one place. Processes that share a PROMETHEUS_MULTIPROC_DIR
(the Daphne processes of `assistant_site.serve`, a Celery worker's pool) write their values to
files there, and whoever serves /metrics or a worker's port adds them up; without that directory
(tests, `runserver`) the values stay in the process. Labels are route templates, model, queue and
node-type names and outcome words: never a user, an id, a title, a file name or transcript text.
"""

import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import metrics_dir

QUEUES = ("celery", "workflows", "maintenance")
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

# --- HTTP and WebSockets (web processes)
HTTP_DURATION = Histogram(
    "assistant_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response object is ready), by URL pattern",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBSOCKETS = Gauge(
    "assistant_websocket_connections", "Open WebSocket connections", ["kind"], multiprocess_mode="livesum"
)
# A counter in all but type: as a Counter its family name would be the gauge's above (the client
# strips `_total`), a clash. Summed over every process that ever ran, so it only goes up; rate() works.
WEBSOCKETS_TOTAL = Gauge(
    "assistant_websocket_connections_total", "WebSocket connections accepted", ["kind"], multiprocess_mode="sum"
)
UPLOAD_SIZE = Histogram(
    "assistant_upload_size_bytes",
    "Size of accepted uploads, by endpoint (form, api, openai)",
    ["endpoint"],
    buckets=(1e4, 1e5, 1e6, 1e7, 5e7, 1e8, 2.5e8, 5e8, 1e9),
)

# --- Live transcription (web processes)
_LIVE_LATENCY = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
LIVE_FIRST_SEEN = Histogram(
    "assistant_live_first_seen_latency_seconds",
    "Wall time from a word's audio arriving to the word first showing (partial or final)",
    buckets=_LIVE_LATENCY,
)
LIVE_FINAL = Histogram(
    "assistant_live_final_latency_seconds",
    "Wall time from a word's audio arriving to the word becoming final",
    buckets=_LIVE_LATENCY,
)
LIVE_LAG = Histogram(
    "assistant_live_lag_seconds",
    "Audio received but not yet transcribed, seen at each inference step",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 15, 30),
)
LIVE_SKIPPED = Counter("assistant_live_skipped_audio_seconds_total", "Live audio skipped to catch up (seconds)")
LIVE_AUDIO = Counter("assistant_live_audio_seconds_total", "Live audio received (seconds)")
LIVE_STREAMS = Gauge("assistant_live_streams", "Live sessions served", multiprocess_mode="livesum")
LIVE_INFERENCE = Histogram(
    "assistant_live_inference_seconds",
    "One live inference step (the model's call on the stream's buffer)",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)

# --- Jobs (Celery workers)
JOB_WAIT = Histogram(
    "assistant_job_wait_seconds",
    "Time from a job's message being sent to a worker starting it",
    ["queue"],
    buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 10800),
)
TRANSCRIPTION_STEP = Histogram(
    "assistant_transcription_step_seconds",
    "Time of one step of a transcription job (decode, inference, store)",
    ["model", "step"],
    buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 10800),
)
TRANSCRIPTION_SPEED = Histogram(
    "assistant_transcription_speed_ratio",
    "Audio seconds transcribed per wall second of inference",
    ["model"],
    buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)
TRANSCRIPTION_AUDIO = Counter("assistant_transcription_audio_seconds_total", "Audio transcribed (seconds)", ["model"])
TRANSCRIPTIONS = Counter(
    "assistant_transcriptions_total",
    "Transcription jobs ended, by outcome (done, failed, time_limit, lost)",
    ["model", "outcome"],
)
MODEL_LOAD = Histogram(
    "assistant_model_load_seconds",
    "Time to load a Whisper model",
    ["model"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
JOBS_REQUEUED = Counter("assistant_jobs_requeued_total", "Jobs the reaper sent to the queue again", ["kind"])

# --- Workflows and the LLM (the ai worker)
WORKFLOW_RUNS = Counter("assistant_workflow_runs_total", "Workflow runs ended, by outcome", ["outcome"])
WORKFLOW_RUN_SECONDS = Histogram(
    "assistant_workflow_run_seconds", "Time of a workflow run", buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
)
LLM_TTFT = Histogram(
    "assistant_llm_time_to_first_token_seconds",
    "Time from sending an LLM request to its first token",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
LLM_TOKENS_PER_SECOND = Histogram(
    "assistant_llm_tokens_per_second",
    "Completion tokens per second after the first",
    ["model"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
LLM_TOKENS = Counter("assistant_llm_tokens_total", "LLM tokens, by kind (prompt, completion)", ["model", "kind"])
LLM_REQUESTS = Counter(
    "assistant_llm_requests_total", "LLM requests (each attempt), by outcome (ok, error)", ["model", "outcome"]
)
AI_CACHE = Counter(
    "assistant_ai_cache_requests_total", "AI node result cache look-ups, by result (hit, miss)", ["node", "result"]
)

# --- The knowledge graph
NEO4J_QUERY = Histogram(
    "assistant_neo4j_query_seconds",
    "Time of a named Neo4j query",
    ["query"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
NEO4J_ERRORS = Counter("assistant_neo4j_query_errors_total", "Named Neo4j queries that raised", ["query"])
# Read at scrape time by the worker's exporter (OutboxCollector); not stored per process.
OUTBOX_BACKLOG = "assistant_graph_outbox_backlog"
OUTBOX_OLDEST = "assistant_graph_outbox_oldest_seconds"
OUTBOX_FAILED = "assistant_graph_outbox_failed"
QUEUE_LENGTH = "assistant_job_queue_length"


# --- Helpers -----------------------------------------------------------------------------------------


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    HTTP_DURATION.labels(method if method in METHODS else "other", route or "unmatched", str(status)).observe(seconds)


def websocket_opened(kind: str) -> None:
    WEBSOCKETS.labels(kind).inc()
    WEBSOCKETS_TOTAL.labels(kind).inc()


def websocket_closed(kind: str) -> None:
    WEBSOCKETS.labels(kind).dec()


@contextmanager
def neo4j_query(name: str) -> Iterator[None]:
    """Time a named query; count it as an error if it raises."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        NEO4J_ERRORS.labels(name).inc()
        raise
    finally:
        NEO4J_QUERY.labels(name).observe(time.perf_counter() - started)


def job_started(queue: str | None, enqueued_at: Any) -> None:
    """A worker started a job whose message was sent at `enqueued_at` (time.time(), a message header)."""
    try:
        waited = time.time() - float(enqueued_at)
    except (TypeError, ValueError):
        return
    JOB_WAIT.labels(queue if queue in QUEUES else "other").observe(max(waited, 0.0))


def transcribed(model: str, audio_seconds: float, decode_seconds: float, inference_seconds: float) -> None:
    TRANSCRIPTION_STEP.labels(model, "decode").observe(decode_seconds)
    TRANSCRIPTION_STEP.labels(model, "inference").observe(inference_seconds)
    TRANSCRIPTION_AUDIO.labels(model).inc(audio_seconds)
    if inference_seconds > 0:
        TRANSCRIPTION_SPEED.labels(model).observe(audio_seconds / inference_seconds)


def transcription_ended(options: dict | None, outcome: str) -> None:
    """A transcription job ended (done, failed, time_limit, lost); `options` are its recording's
    (validated at upload: its model is one of WHISPER_MODELS, or the default)."""
    from django.conf import settings

    TRANSCRIPTIONS.labels((options or {}).get("model") or settings.WHISPER_MODEL, outcome).inc()


def workflow_finished(outcome: str, seconds: float | None = None) -> None:
    WORKFLOW_RUNS.labels(outcome).inc()
    if seconds is not None:
        WORKFLOW_RUN_SECONDS.observe(max(seconds, 0.0))


async def llm_stream(request: Awaitable[AsyncIterator[Any]], model: str) -> AsyncIterator[Any]:
    """Pass an OpenAI streaming chat completion through, measuring it: time to the first token,
    tokens per second after it, tokens (the server's usage figures when it sends them, else one
    token per streamed piece, as llama.cpp sends them), and the request's outcome."""
    started = time.perf_counter()
    first = last = None
    pieces, usage = 0, None
    try:
        async for chunk in await request:
            usage = getattr(chunk, "usage", None) or usage
            if chunk.choices and chunk.choices[0].delta.content:
                last = time.perf_counter()
                first = first or last
                pieces += 1
            yield chunk
    except BaseException:
        LLM_REQUESTS.labels(model, "error").inc()
        raise
    LLM_REQUESTS.labels(model, "ok").inc()
    completion = getattr(usage, "completion_tokens", None) or pieces
    LLM_TOKENS.labels(model, "completion").inc(completion)
    if usage is not None and getattr(usage, "prompt_tokens", None):
        LLM_TOKENS.labels(model, "prompt").inc(usage.prompt_tokens)
    if first is not None and last is not None:
        LLM_TTFT.labels(model).observe(first - started)
        if last > first and completion > 1:
            LLM_TOKENS_PER_SECOND.labels(model).observe((completion - 1) / (last - first))


class LiveLatency:
    """One live stream's word latencies: when the audio up to each stream time arrived (wall clock),
    and how far words were already shown, so each word counts once as first seen and once as final."""

    def __init__(self) -> None:
        self.arrivals: deque[tuple[float, float]] = deque()  # (stream seconds received, monotonic time)
        self.shown_until = 0.0

    def arrived(self, received_seconds: float, seconds: float) -> None:
        LIVE_AUDIO.inc(seconds)
        self.arrivals.append((received_seconds, time.monotonic()))

    def _arrival(self, stream_time: float) -> float | None:
        """When the audio up to `stream_time` had all arrived (None if from before this process)."""
        for received, at in self.arrivals:
            if received >= stream_time:
                return at
        return None

    def step(self, words_committed: Iterable[Any], words_partial: Iterable[Any], lag: float, skipped: float) -> None:
        """After an inference step: its lag, what it skipped, and the words it showed or made final
        (anything with an `end` in stream seconds)."""
        LIVE_LAG.observe(max(lag, 0.0))
        if skipped:
            LIVE_SKIPPED.inc(skipped)
        now = time.monotonic()
        committed, partial = list(words_committed), list(words_partial)
        for word in committed:
            if (at := self._arrival(word.end)) is not None:
                LIVE_FINAL.observe(now - at)
        for word in committed + partial:
            if word.end > self.shown_until and (at := self._arrival(word.end)) is not None:
                LIVE_FIRST_SEEN.observe(now - at)
        ends = [w.end for w in committed + partial]
        self.shown_until = max([self.shown_until, *ends])
        # What is final will not be looked up again: keep the arrivals from there on only.
        done = max((w.end for w in committed), default=0.0)
        while len(self.arrivals) > 1 and self.arrivals[1][0] < done:
            self.arrivals.popleft()


# --- Exposition ------------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(metrics_dir.ENV) or None


def process_is_dead(pid: int) -> None:
    """Drop a dead process's live gauges (open sockets, live streams) from the aggregate."""
    if (path := multiprocess_dir()) is not None:
        multiprocess.mark_process_dead(pid, path)


class _DeadProcessSweep(Collector):
    """Before each scrape: drop the live gauges of processes that died without saying so (a pool
    child killed by the kernel or by a hard time limit)."""

    def __init__(self, path: str):
        self.path = path

    def collect(self):
        for file in Path(self.path).glob("gauge_live*_*.db"):
            pid = int(file.stem.rsplit("_", 1)[1])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(pid, self.path)
            except PermissionError:
                pass
        return iter(())


def registry(*extra: Collector) -> CollectorRegistry:
    """What a scrape returns: every process of this group (or this process alone), plus `extra`."""
    from prometheus_client import REGISTRY

    path = multiprocess_dir()
    if path is None and not extra:
        return REGISTRY
    registry = CollectorRegistry()
    if path is None:
        registry.register(_Forward(REGISTRY))
    else:
        registry.register(_DeadProcessSweep(path))
        multiprocess.MultiProcessCollector(registry, path)
    for collector in extra:
        registry.register(collector)
    return registry


class _Forward(Collector):
    """The in-process registry's metrics, inside another registry."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        return self.source.collect()


class ScrapeCollector(Collector):
    """Gauges read when scraped (the worker's exporter): queue lengths and the graph outbox.
    `queue_lengths()` gives {queue: length}; `outbox()` gives (backlog, oldest seconds, failed)."""

    def __init__(self, queue_lengths: Callable[[], dict[str, int]], outbox: Callable[[], tuple[int, float, int]]):
        self.queue_lengths, self.outbox = queue_lengths, outbox

    def collect(self):
        queues = GaugeMetricFamily(QUEUE_LENGTH, "Jobs waiting in a Celery queue", labels=["queue"])
        try:
            for queue, length in self.queue_lengths().items():
                queues.add_metric([queue], length)
            yield queues
        except Exception:  # Redis away: the series go missing, and the redis exporter's alert says why
            pass
        try:
            backlog, oldest, failed = self.outbox()
        except Exception:  # the database away: likewise
            return
        yield GaugeMetricFamily(
            OUTBOX_BACKLOG, "Graph changes waiting to be applied (due or waiting to retry)", value=backlog
        )
        yield GaugeMetricFamily(OUTBOX_OLDEST, "Age of the oldest graph change waiting", value=oldest)
        yield GaugeMetricFamily(OUTBOX_FAILED, "Graph changes failed for good (an admin may retry them)", value=failed)

    def describe(self):
        return iter(())  # collected only when scraped, never at registration
