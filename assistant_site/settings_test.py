"""Settings for the test suite: the base settings, pointed at test-only services and data.

The suite starts its own PostgreSQL, Redis and Neo4j on these ports (tests/services.py), so it never
touches the data of a running app. Any of them can still be overridden from the environment: with
DATABASE_URL=sqlite:///… the suite runs on SQLite.
"""

import os
from pathlib import Path

_VAR = Path(__file__).resolve().parent.parent / "var" / "test"
os.environ.setdefault("VAR_DIR", str(_VAR))
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6390/0")
os.environ.setdefault("REDIS_CACHE_URL", "redis://127.0.0.1:6394/0")
# Small, so the suite can fill it past its limit and watch it evict (tests/test_abuse_data.py).
os.environ.setdefault("REDIS_CACHE_MAXMEMORY", "32mb")
os.environ.setdefault("NEO4J_BOLT_URL", "bolt://neo4j:neo4j@127.0.0.1:7690")
os.environ.setdefault("POSTGRES_PORT", "5490")  # and so the default DATABASE_URL
os.environ.setdefault("CELERY_WORKER_CONCURRENCY", "1")
os.environ.setdefault("WHISPER_CPU_THREADS", "2")
os.environ.setdefault("PROGRESS_INTERVAL_SECONDS", "0")
os.environ.setdefault("LLM_PORT", "8091")
# Each test that wants the built-in workflow after a transcription asks for it.
os.environ.setdefault("WORKFLOWS_AUTO_RUN", "false")
os.environ.setdefault("LLM_RETRY_INITIAL_SECONDS", "0.05")
# Short enough for the fault tests (tests/test_faults.py) to see a dead worker's job taken back in
# seconds; the reaper itself runs only where a test starts beat.
os.environ.setdefault("JOB_HEARTBEAT_SECONDS", "1")
os.environ.setdefault("JOB_HEARTBEAT_TIMEOUT", "15")
os.environ.setdefault("JOB_REAPER_SECONDS", "2")
os.environ.setdefault("JOB_REQUEUE_SECONDS", "10")
# Spans go to the tests' own Zipkin (tests/test_tracing.py starts it; without it they are dropped),
# sent every half second rather than every 5 s (the SDK's batch delay), so a test waits less.
os.environ.setdefault("ZIPKIN_PORT", "9421")
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "500")

from .settings import *
from .settings import DATABASES, VAR_DIR

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker and Daphne run as separate processes in the tests, so the test database must be a
    # file they can open (not SQLite's default in-memory test database).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = True
