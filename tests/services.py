"""Start the real PostgreSQL, Redis and Neo4j the suite runs against (test ports, test data dirs).

A service already listening on its test port is reused (handy while developing: keep them up
between runs); otherwise it is started here and stopped when the suite ends.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlparse

from assistant_site.local_postgres import LocalPostgres, bundled_database

ROOT = Path(__file__).resolve().parent.parent
NEO4J_CLASSPATH = f"{ROOT}/graph/neo4j/target/classes:{ROOT}/graph/neo4j/target/lib/*"


def is_listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until_listening(
    host: str, port: int, process: subprocess.Popen, timeout: float, log: Path, ready_line: str = ""
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_listening(host, port) and (not ready_line or ready_line in log.read_text()):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited early; see {log}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{process.args[0]} did not listen on {host}:{port} within {timeout}s; see {log}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daphne(env: dict, log: Path, *, proxy_headers: bool = False) -> tuple[subprocess.Popen, str]:
    """The app served by Daphne (HTTP + WebSocket) on a free loopback port with `env`: the process and
    its base URL, once it listens."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", *(["--proxy-headers"] if proxy_headers else [])]
        + ["-b", "127.0.0.1", "-p", str(port), "assistant_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_until_listening("127.0.0.1", port, process, 60, log)
    return process, f"http://127.0.0.1:{port}"


def start_postgres(databases: dict, port: int, data_dir: Path) -> LocalPostgres | None:
    """The suite's PostgreSQL, when the default database is on the bundled server's test port (not with
    SQLite, nor a server of your own): initdb'd once, started with no fsync (its data is thrown away),
    the app's role and database created. None if it was running already (it is then left running)."""
    app_database = bundled_database(databases, port)
    if app_database is None:
        return None
    server = LocalPostgres(data_dir, port, durable=False)
    started = server.start()
    server.ensure_database(*app_database)
    return server if started else None


def start_redis(url: str, data_dir: Path, maxmemory: str | None = None) -> subprocess.Popen | None:
    """A Redis on `url`'s port. Without `maxmemory` it is the broker's kind (never evicts: a write
    past the memory limit fails rather than drop a queued job); with it, the cache's kind (evicts
    the least recently used key of any kind once `maxmemory` is reached)."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or 6379
    if is_listening(host, port):
        return None
    if not shutil.which("redis-server"):
        raise RuntimeError("redis-server is not installed: run `make install`")
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "redis.log"
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "no",
            *(["--maxmemory", maxmemory, "--maxmemory-policy", "allkeys-lru"] if maxmemory else []),
            *([] if maxmemory else ["--maxmemory-policy", "noeviction"]),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_until_listening(host, port, process, 20, log)
    return process


# Redis servers started by restart_redis: the session's Redis from then on, stopped with the session.
RESTARTED: list[subprocess.Popen] = []


def restart_redis(url: str, data_dir: Path, *, between=None) -> None:
    """Stop the Redis on `url` as a crash would (SHUTDOWN NOSAVE: the test Redis keeps nothing on
    disk, so every queued message is lost), call `between()` while it is down, then start a new one
    on the same port."""
    import redis

    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or 6379
    redis.Redis(host=host, port=port).shutdown(nosave=True)
    deadline = time.monotonic() + 20
    while is_listening(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis on {host}:{port} did not stop")
        time.sleep(0.1)
    if between is not None:
        between()
    process = start_redis(url, data_dir)
    if process is not None:
        RESTARTED.append(process)


def start_neo4j(url: str, data_dir: Path) -> subprocess.Popen | None:
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or 7687
    if is_listening(host, port):
        return None
    if not (ROOT / "graph/neo4j/target/lib").is_dir():
        raise RuntimeError("the Neo4j launcher is not built: run `make install`")
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / "neo4j-test.log"
    process = subprocess.Popen(
        [
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-cp",
            NEO4J_CLASSPATH,
            "assistant.neo4j.Launcher",
            str(data_dir),
            host,
            str(port),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_until_listening(host, port, process, 120, log, ready_line="READY")
    return process


def start_llm(url: str, log: Path) -> subprocess.Popen | None:
    """The bundled llama.cpp server (python -m workflows.local_llm) on the test port."""
    parsed = urlparse(url)
    if is_listening(parsed.hostname, parsed.port):
        return None
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="assistant_site.settings_test")
    process = subprocess.Popen(
        [sys.executable, "-m", "workflows.local_llm"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_until_listening(parsed.hostname, parsed.port, process, 120, log)
    return process


def stop(process: subprocess.Popen | LocalPostgres | None) -> None:
    if isinstance(process, LocalPostgres):
        process.stop()
        return
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def database_url(database: dict) -> str:
    """A DATABASES entry back as the DATABASE_URL that gives it (SQLite or PostgreSQL)."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    credentials = quote(database["USER"], safe="")
    if database["PASSWORD"]:
        credentials += ":" + quote(database["PASSWORD"], safe="")
    address = f"{database['HOST']}:{database['PORT'] or 5432}"
    return f"postgres://{credentials}@{address}/{quote(database['NAME'], safe='')}"


# The worker and Daphne of the tests trace (to the tests' Zipkin, ZIPKIN_PORT in settings_test) and
# log JSON lines with trace ids, as a production deployment would: tests/test_tracing.py reads both.
TRACED = {"TRACING_EXPORTER": "zipkin", "TRACING_SAMPLE_RATIO": "1", "LOG_FORMAT": "json"}


def start_zipkin(port: int, log: Path) -> subprocess.Popen | None:
    """Zipkin (the exec jar `make install` fetches, in-memory storage) on the test port; None if one
    listens there already (it is then reused)."""
    if is_listening("127.0.0.1", port):
        return None
    jar = ROOT / "deploy/observability/zipkin/target/zipkin-server.jar"
    if not jar.exists():
        raise RuntimeError("Zipkin is not fetched: run `make install`")
    process = subprocess.Popen(
        ["java", "-Xmx256m", "-jar", str(jar), *zipkin_arguments(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_until_listening("127.0.0.1", port, process, 120, log)
    return process


def spans_of(zipkin: str, trace_id: str, wanted: set[str], timeout: float = 60) -> list[dict]:
    """A trace's spans from Zipkin's API once every `wanted` name is there (processes send in
    batches), or whatever it has at the deadline. Zipkin keeps span names in lower case."""
    import requests

    deadline = time.monotonic() + timeout
    spans: list[dict] = []
    while time.monotonic() < deadline:
        answer = requests.get(f"{zipkin}/api/v2/trace/{trace_id}", timeout=10)
        if answer.status_code == 200:
            spans = answer.json()
            if wanted <= {span["name"] for span in spans}:
                return spans
        time.sleep(0.5)
    return spans


def zipkin_arguments(port: int) -> list[str]:
    # Armeria's own flags: Zipkin's QUERY_PORT cannot bind it to loopback only.
    return [
        "--armeria.ports[0].ip=127.0.0.1",
        f"--armeria.ports[0].port={port}",
        "--armeria.ports[0].protocols[0]=http",
    ]


def test_process_env(database: dict | str | None = None) -> dict:
    """Environment for app processes (worker, Daphne) started by the tests: same settings, same test
    DB. By default the test database (`settings.DATABASES["default"]` once pytest-django has made it:
    its NAME is then the test database's); a str is a database NAME on the same server."""
    from django.conf import settings

    if not isinstance(database, dict):
        database = settings.DATABASES["default"] | ({"NAME": database} if database else {})
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "assistant_site.settings_test"
    env["DATABASE_URL"] = database_url(database)
    env["PYTHONUNBUFFERED"] = "1"
    return env
