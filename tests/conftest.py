"""Fixtures that start or reach the real parts: PostgreSQL, Redis, Neo4j, a Celery worker, Daphne, Chromium.

The database is PostgreSQL (tests/services.py starts it on the test port before pytest-django makes the
test database in it; about a second), for every test that uses the database, the fast tier's too: the
app runs on PostgreSQL, so its tests do. With DATABASE_URL=sqlite:///… nothing is started.

The other services are opt-in. A test that needs Redis or Neo4j (the cache, the channel layer, Celery, the
graph) is marked `services` (`pytestmark = pytest.mark.services` for a whole module); a test that uses
the worker, Daphne or the LLM server is marked so by its fixture. Only those tests start them: the
others (the fast tier, `make test-fast` = `pytest -m "not services"`) run with nothing else up.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import neomodel
import pytest
from django.conf import settings
from django.core.management import call_command

from tests import services
from tests.factories import make_user, speech_wav

ROOT = Path(__file__).resolve().parent.parent
# Fixtures that are services themselves: a test that uses one is a `services` test.
SERVICE_FIXTURES = {"real_services", "celery_worker_process", "daphne_server", "llm_server", "zipkin"}
# The Celery worker while it runs (celery_worker_process): the only process that applies graph changes.
WORKERS: list[subprocess.Popen] = []


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if SERVICE_FIXTURES & set(item.fixturenames) and item.get_closest_marker("services") is None:
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session", autouse=True)
def empty_media():
    """Uploads of earlier runs are removed once, at the start of the session."""
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """PostgreSQL up before pytest-django creates the test database in it (and after it drops it)."""
    server = services.start_postgres(settings.DATABASES, settings.POSTGRES_PORT, Path(settings.VAR_DIR) / "postgres")
    yield
    services.stop(server)


@pytest.fixture(scope="session")
def real_services():
    """Redis and Neo4j, started once on first use, each emptied of earlier runs' data."""
    var = Path(settings.VAR_DIR)
    redis = services.start_redis(settings.REDIS_URL, var / "redis")
    redis_cache = services.start_redis(settings.REDIS_CACHE_URL, var / "redis-cache", settings.REDIS_CACHE_MAXMEMORY)
    neo4j = services.start_neo4j(settings.NEO4J_BOLT_URL, var / "neo4j")
    import redis as redis_client
    from django_redis import get_redis_connection

    redis_client.Redis.from_url(settings.REDIS_URL).flushdb()
    get_redis_connection("default").flushdb()
    neomodel.db.cypher_query("MATCH (n) DETACH DELETE n")
    call_command("graph_schema", verbosity=0)
    yield
    neomodel.db.close_connection()
    services.stop(neo4j)
    services.stop(redis_cache)
    services.stop(redis)
    for restarted in services.RESTARTED:  # by a fault test
        services.stop(restarted)


@pytest.fixture(autouse=True)
def services_when_marked(request):
    """A `services` test gets Redis and Neo4j, and leaves an empty graph behind it (database ids are
    reused after a rolled-back test). Any other test starts nothing."""
    if request.node.get_closest_marker("services") is None:
        yield
        return
    request.getfixturevalue("real_services")
    yield
    neomodel.db.cypher_query("MATCH (n) DETACH DELETE n")


@pytest.fixture(autouse=True)
def graph_outbox_settled_before_flush(request):
    """A transactional test ends by flushing the database (one TRUNCATE of every table). The worker
    applies a graph change inside a transaction that reads several tables while it writes to Neo4j;
    a TRUNCATE meanwhile can deadlock with it. So the flush waits (up to a deadline) until no change
    is due: the worker has applied what the test left, and its transaction has ended. With no worker
    running (yet) nothing can deadlock, and nothing would apply them: no wait (it was 20 s a test)."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and bool(marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    if not transactional or not WORKERS:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # set up before this, so flushed after it
    yield
    from django.utils import timezone

    from graph.models import GraphChange

    deadline = time.monotonic() + 20
    due = GraphChange.objects.filter(failed_at__isnull=True, next_attempt_at__lte=timezone.now())
    while time.monotonic() < deadline and due.exists():
        time.sleep(0.2)


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """A real spoken clip (espeak-ng) and the words it says."""
    text = "The quick brown fox jumps over the lazy dog. Please call Stella and ask her to bring the plates."
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    speech_wav(text, path)
    return path, text


def _wait_for_log(process, log: Path, needle: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{needle!r} not seen in {log} within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def celery_worker_process(real_services, django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process on the test database and the test Redis."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = services.test_process_env(settings.DATABASES["default"]) | services.TRACED
    # Its pool's metrics, served by its parent on a free port (tests/test_metrics.py reads them).
    metrics_port = services.free_port()
    env["CELERY_METRICS_PORT"] = str(metrics_port)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path_factory.mktemp("worker-metrics"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "assistant_site",
            "worker",
            "--loglevel=INFO",
            "--concurrency=1",
            "-Q",
            "celery,workflows,maintenance",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            "test-worker@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    _wait_for_log(process, log, "ready.", 120)
    WORKERS.append(process)
    process.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    yield process, log
    services.stop(process)
    WORKERS.remove(process)


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """The real local LLM (llama.cpp server, SmolLM2-135M), started once for the tests that talk to it."""
    process = services.start_llm(settings.LLM_BASE_URL, tmp_path_factory.mktemp("llm") / "llm.log")
    yield settings.LLM_BASE_URL
    services.stop(process)


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, celery_worker_process, tmp_path_factory):
    """The app served by Daphne (HTTP + WebSocket) on a free loopback port, with the worker running."""
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    env = services.test_process_env(settings.DATABASES["default"]) | services.TRACED
    process, url = services.start_daphne(env, log, proxy_headers=True)
    yield url
    services.stop(process)


@pytest.fixture(scope="session")
def zipkin(tmp_path_factory):
    """The real Zipkin (about 20 s to start) on the tests' port (settings_test's ZIPKIN_PORT), where the
    test worker and Daphne send their spans; reused if one listens there already."""
    process = services.start_zipkin(settings.ZIPKIN_PORT, tmp_path_factory.mktemp("zipkin") / "zipkin.log")
    yield f"http://127.0.0.1:{settings.ZIPKIN_PORT}"
    services.stop(process)
