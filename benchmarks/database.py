"""Database connections: a new one per request, persistent ones, or psycopg's pool, measured.

    .venv/bin/python benchmarks/database.py                       # about 3 minutes
    .venv/bin/python benchmarks/database.py --seconds 5 --concurrency 1,10

1. What a connection costs, in this process: psycopg connect + `SELECT 1` + close against `SELECT 1` on
   an open connection; and the queries of one API request (the token lookup, a page of 20
   recordings) through the ORM with a new connection each time against a kept one. Medians.
2. Through Daphne (one process, the production settings): `GET /api/recordings?limit=20` with a token,
   by `hey` at each concurrency, for each way of getting a connection:
   - `DATABASE_CONN_MAX_AGE=0`: a new connection per request (Django's default);
   - `DATABASE_CONN_MAX_AGE=60`: persistent connections (with CONN_HEALTH_CHECKS);
   - `DATABASE_POOL_SIZE=N`: psycopg's pool (Django's OPTIONS["pool"]), N connections at most.
   Requests/s, p50/p95, non-2xx answers, and the connections the server holds for the app's database
   afterwards (pg_stat_activity): under ASGI every request runs its sync code in a thread of its own,
   so a "persistent" connection belongs to a thread that is gone.

PostgreSQL on port 5491 with its data in var/bench/database (started here unless it already listens
there, then stopped at the end), durable like `make run`'s. Needs `hey` (Debian: apt-get install hey).
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_VAR = ROOT / "var" / "bench" / "database"
PORT = 5491
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "assistant_site.settings",
    "VAR_DIR": str(BENCH_VAR),
    "POSTGRES_PORT": str(PORT),
    # Nothing here needs Redis or Neo4j: a closed port makes any use of them fail loudly.
    "REDIS_URL": "redis://127.0.0.1:9/0",
    "REDIS_CACHE_URL": "redis://127.0.0.1:9/0",
    "NEO4J_BOLT_URL": "bolt://neo4j:neo4j@127.0.0.1:9",
    "LOG_LEVEL": "WARNING",
    # This process's own connections (part 1): plain ones, opened and closed as the part says.
    "DATABASE_CONN_MAX_AGE": "0",
    "DATABASE_POOL_SIZE": "0",
}
os.environ.update(BENCH_ENV)
os.environ.pop("DATABASE_URL", None)

CONFIGS = [
    ("new connection per request", {"DATABASE_CONN_MAX_AGE": "0", "DATABASE_POOL_SIZE": "0"}),
    ("persistent (CONN_MAX_AGE=60)", {"DATABASE_CONN_MAX_AGE": "60", "DATABASE_POOL_SIZE": "0"}),
    ("pool, at most 2", {"DATABASE_POOL_SIZE": "2"}),
    ("pool, at most 4", {"DATABASE_POOL_SIZE": "4"}),
    ("pool, at most 8", {"DATABASE_POOL_SIZE": "8"}),
]
RECORDINGS = 200


def median_ms(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def seed() -> str:
    """A user with RECORDINGS recordings and an API token; returns the token."""
    import django

    django.setup()
    from django.contrib.auth.models import User

    from accounts.models import ApiToken
    from transcription.models import Recording

    User.objects.filter(username="bench").delete()
    user = User.objects.create_user("bench", password="unused")
    Recording.objects.bulk_create(
        Recording(owner=user, title=f"Meeting {i}", audio=f"recordings/bench/{i}.wav", status="done")
        for i in range(RECORDINGS)
    )
    _, key = ApiToken.issue(user, "bench")
    return key


def connection_costs(key: str, repeat: int) -> None:
    import psycopg
    from django.db import connection

    from accounts.tokens import user_for_key
    from transcription.models import Recording

    params = {"host": "127.0.0.1", "port": PORT, "user": "assistant", "dbname": "assistant"}

    def connect_and_query():
        with psycopg.connect(**params) as conn:
            conn.execute("SELECT 1").fetchone()

    kept = psycopg.connect(**params)
    connect = median_ms(connect_and_query, repeat)
    reuse = median_ms(lambda: kept.execute("SELECT 1").fetchone(), repeat)
    kept.close()

    def request_queries():
        user = user_for_key(key)
        list(Recording.objects.owned_by(user).newest_first()[:21])

    def new_connection_request():
        connection.close()
        request_queries()

    request_queries()
    fresh = median_ms(new_connection_request, repeat)
    reused = median_ms(request_queries, repeat)
    connection.close()
    print(f"\n1. Connection cost (median of {repeat})")
    print(f"   psycopg connect + SELECT 1 + close   {connect:7.2f} ms")
    print(f"   SELECT 1 on an open connection       {reuse:7.2f} ms")
    print(f"   API request's queries, new connection {fresh:6.2f} ms")
    print(
        f"   API request's queries, kept connection {reused:5.2f} ms   ({fresh - reused:.2f} ms a request for connecting)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daphne(extra_env: dict) -> tuple[subprocess.Popen, str]:
    from tests.services import wait_until_listening

    port = free_port()
    log = BENCH_VAR / "daphne.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "assistant_site.asgi:application"],
        cwd=ROOT,
        env={**os.environ, **extra_env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_until_listening("127.0.0.1", port, process, 60, log)
    return process, f"http://127.0.0.1:{port}"


def hey(url: str, key: str, concurrency: int, seconds: float) -> dict:
    command = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-H", f"Authorization: Bearer {key}", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        return float(match[1]) if match else float("nan")

    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", output))
    errors = sum(int(count) for code, count in codes.items() if not code.startswith("2"))
    errors += sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get ", output))  # connection-level errors
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "p50": number(r"50% in ([\d.]+) secs") * 1000,
        "p95": number(r"95% in ([\d.]+) secs") * 1000,
        "errors": errors,
    }


def app_connections() -> int:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname="postgres") as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'assistant'").fetchone()
        return int(row[0]) if row else 0


def through_daphne(key: str, concurrencies: list[int], seconds: float) -> list[dict]:
    from tests.services import stop

    print(f"\n2. GET /api/recordings?limit=20 through Daphne, {seconds:g} s at each concurrency")
    print(f"   {'connections':<30} {'c':>3} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>8} {'errors':>6} {'held':>5}")
    rows = []
    for name, extra_env in CONFIGS:
        process, base = start_daphne(extra_env)
        try:
            url = f"{base}/api/recordings?limit=20"
            hey(url, key, 2, 2)  # warm-up: imports, first connections
            for concurrency in concurrencies:
                result = hey(url, key, concurrency, seconds)
                held = app_connections()
                rows.append({"config": name, "c": concurrency, **result, "held": held})
                print(
                    f"   {name:<30} {concurrency:>3} {result['rps']:>7.1f} {result['p50']:>7.1f} "
                    f"{result['p95']:>8.1f} {result['errors']:>6} {held:>5}",
                    flush=True,
                )
        finally:
            stop(process)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="hey's duration at each concurrency")
    parser.add_argument("--concurrency", default="1,10,50", help="comma-separated")
    parser.add_argument("--repeat", type=int, default=300, help="samples of each connection cost")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not shutil.which("hey"):
        sys.exit("hey is not installed: apt-get install hey")

    from assistant_site.local_postgres import LocalPostgres

    server = LocalPostgres(BENCH_VAR / "postgres", PORT)
    started = server.start()
    server.ensure_database("assistant", "assistant")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True)
        key = seed()
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; PostgreSQL {server!r}")
        connection_costs(key, args.repeat)
        rows = through_daphne(key, [int(c) for c in args.concurrency.split(",")], args.seconds)
        print(f"\nload average {os.getloadavg()[0]:.2f}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        if started:
            server.stop()


if __name__ == "__main__":
    main()
