"""Web benchmark: Daphne alone (one process, as `make run` served before) against nginx (deploy/nginx) in
front of P Daphne processes (assistant_site.serve), P = 1, 2 and the number of cores, in one run.

    .venv/bin/python benchmarks/web.py                      # c = 1, 10, 50, 100; 5 s a cell
    .venv/bin/python benchmarks/web.py --concurrency 10 100 --seconds 10 --processes 1 2
    .venv/bin/python benchmarks/web.py --baseline HEAD~3    # also the app at that commit (before/after)
    .venv/bin/python benchmarks/web.py --hold               # start everything, print how to reach it, wait

Starts PostgreSQL (5492, data in var/bench/web/postgres, durable like `make run`'s), Redis (6391) and
Neo4j (7691) unless they listen already, the app on the production settings (var/bench/web), and nginx
rendered from the project's template (its API rate limit raised out of the way).
Requests (hey, `-z` seconds each): a hashed static CSS file, the recordings list page (signed in),
`GET /api/recordings?limit=20` and `GET /api/search?q=…` (cached in Redis after the first), both with a
bearer token; `--requests` adds the login page or a 1 MiB range of a recording's audio.
`--baseline REV` checks REV out into var/bench/web/baseline (a git worktree) and measures its app too
(same database, same nginx), so a change's before/after comes from one run.
Memory (--memory; peak RSS of a Daphne process above its resting RSS, sampled every 20 ms): an
anonymous POST of --post-mb to the login page, and 10 parallel downloads of an --audio-mb recording,
each through nginx and directly. Compare ratios within one run: the machine is shared and noisy.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_VAR = ROOT / "var" / "bench" / "web"
POSTGRES_PORT = 5492
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "assistant_site.settings",
    "VAR_DIR": str(BENCH_VAR),
    "POSTGRES_PORT": str(POSTGRES_PORT),  # the default DATABASE_URL: the bundled server on this port
    "REDIS_URL": "redis://127.0.0.1:6391/0",
    # The cache in another database of the same Redis: the benchmarks never fill it.
    "REDIS_CACHE_URL": "redis://127.0.0.1:6391/1",
    "NEO4J_BOLT_URL": "bolt://neo4j:neo4j@127.0.0.1:7691",
    "LOG_LEVEL": "WARNING",
    "PYTHONUNBUFFERED": "1",
    # It measures serving, not the per-token limit (one token makes thousands of requests a minute).
    "API_REQUESTS_PER_MINUTE": "100000000",
}
RECORDINGS = 50
SEARCH = "budget meeting"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Samples a process's RSS in a thread while the block runs: peak above the RSS at entry."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.base = pid, 0, 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = self.peak = rss_bytes(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / MIB


def start_services() -> list:
    """PostgreSQL, Redis and Neo4j; those started here, to stop at the end."""
    from assistant_site.local_postgres import LocalPostgres
    from tests import services

    os.environ.update(BENCH_ENV)
    os.environ.pop("DATABASE_URL", None)
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    postgres = LocalPostgres(BENCH_VAR / "postgres", POSTGRES_PORT)
    started = [postgres] if postgres.start() else []
    postgres.ensure_database("assistant", "assistant")
    started.append(services.start_redis(BENCH_ENV["REDIS_URL"], BENCH_VAR / "redis"))
    started.append(services.start_neo4j(BENCH_ENV["NEO4J_BOLT_URL"], BENCH_VAR / "neo4j"))
    return started


def prepare(audio_mb: int):
    """Database, static files, graph schema; a user with a session, an API token, RECORDINGS recordings
    (one of audio_mb of audio)."""
    for command in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"], ["graph_schema"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import ApiToken
    from transcription.models import Recording

    user, _ = get_user_model().objects.get_or_create(username="web-bench")
    browser = Client(SERVER_NAME="127.0.0.1")
    browser.force_login(user)
    token = ApiToken.issue(user, "web benchmark")[1]
    missing = RECORDINGS - Recording.objects.filter(owner=user).count()
    Recording.objects.bulk_create(
        Recording(owner=user, title=f"Meeting {i}", audio=f"recordings/bench/{i}.wav", status="done")
        for i in range(max(missing, 0))
    )
    recording = Recording.objects.filter(owner=user, title="web-bench audio").first()
    if recording is None or recording.size_bytes != audio_mb * MIB:
        recording = recording or Recording(owner=user, title="web-bench audio")
        path = Path(settings.MEDIA_ROOT) / "recordings" / "web-bench.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for _ in range(audio_mb):
                out.write(os.urandom(MIB))
        recording.audio.name = str(path.relative_to(settings.MEDIA_ROOT))
        recording.size_bytes = audio_mb * MIB
        recording.status = Recording.Status.DONE
        recording.save()
    manifest = json.loads((Path(settings.STATIC_ROOT) / "staticfiles.json").read_text())["paths"]
    return {
        "cookie": browser.cookies["sessionid"].value,
        "token": token,
        "recording": recording.id,
        "css": manifest["css/app.css"],
        "settings": settings,
    }


def baseline_checkout(revision: str) -> Path:
    """The app at `revision` in a git worktree under var/bench/web (made again at each run)."""
    tree = BENCH_VAR / "baseline"
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True)
    return tree


class App:
    """P Daphne processes (assistant_site.serve) on consecutive ports, and nginx in front of them.

    With `tree`, the processes run that checkout's code (serve.py itself is always this one's); `env`
    is added to their environment."""

    def __init__(self, processes: int, data, tree: Path | None = None, label: str = "", env: dict | None = None):
        from deploy import nginx
        from tests import services

        self.processes, self.label = processes, label or f"x{processes}"
        self.port = free_consecutive_ports(processes)
        name = f"serve-{self.label}"
        log = BENCH_VAR / f"{name}.log"
        # With a tree: serve.py from here (-P: not from the working directory), Daphne from the tree
        # (its working directory comes first on its path).
        env = dict(os.environ, **(env or {}), **({"PYTHONPATH": str(ROOT)} if tree else {}))
        self.serve = subprocess.Popen(
            [sys.executable, *(["-P"] if tree else []), "-m", "assistant_site.serve"]
            + ["--processes", str(processes), "--port", str(self.port)],
            cwd=tree or ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(processes):
            services.wait_until_listening("127.0.0.1", self.port + i, self.serve, 60, log)
        settings = data["settings"]
        self.site = nginx.Site(
            prefix=BENCH_VAR / f"nginx-{self.label}",
            upstreams=[f"127.0.0.1:{self.port + i}" for i in range(processes)],
            static_root=Path(settings.STATIC_ROOT),
            media_root=Path(settings.MEDIA_ROOT),
            http_port=free_port(),
            https_port=free_port(),
            max_upload_bytes=settings.MAX_UPLOAD_BYTES,
            api_rate_per_second=1_000_000,  # measuring the server, not the limit
        )
        nginx.write(self.site)
        nginx_log = self.site.prefix / "logs" / "nginx.out"
        self.nginx = subprocess.Popen(nginx.command(self.site), stdout=nginx_log.open("w"), stderr=subprocess.STDOUT)
        services.wait_until_listening("127.0.0.1", self.site.https_port, self.nginx, 20, nginx_log)

    @property
    def daphne_pids(self) -> list[int]:
        return [int(pid) for pid in Path(f"/proc/{self.serve.pid}/task/{self.serve.pid}/children").read_text().split()]

    def stop(self) -> None:
        from tests import services

        services.stop(self.nginx)
        services.stop(self.serve)


def free_consecutive_ports(n: int) -> int:
    """A port p with p .. p + n - 1 all free."""
    while True:
        port = free_port()
        try:
            for i in range(1, n):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + i))
        except OSError:
            continue
        return port


HEY_LINE = re.compile(r"Requests/sec:\s+([\d.]+)")
HEY_PCT = re.compile(r"(\d+)% in ([\d.]+) secs")
HEY_STATUS = re.compile(r"\[(\d{3})\]\s+(\d+) responses")


def hey(url: str, concurrency: int, seconds: int, headers: dict[str, str], h2: bool) -> dict:
    command = ["hey", "-z", f"{seconds}s", "-c", str(concurrency)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if h2:
        command.append("-h2")
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = HEY_LINE.search(output)
    percentiles = dict(HEY_PCT.findall(output))
    statuses = {code: int(n) for code, n in HEY_STATUS.findall(output)}
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "p50": float(percentiles.get("50", "nan")) * 1000,
        "p95": float(percentiles.get("95", "nan")) * 1000,
        "statuses": statuses,
    }


REQUESTS = {
    "static": ("static css (br)", lambda d: (f"/static/{d['css']}", {"Accept-Encoding": "br"})),
    "login": ("login page", lambda d: ("/accounts/login/", {})),
    "page": ("recordings page", lambda d: ("/recordings/", {"Cookie": f"sessionid={d['cookie']}"})),
    "api": ("api list (token)", lambda d: ("/api/recordings?limit=20", {"Authorization": f"Bearer {d['token']}"})),
    "search": (
        "api search (cached)",
        lambda d: (f"/api/search?q={SEARCH.replace(' ', '+')}", {"Authorization": f"Bearer {d['token']}"}),
    ),
    "audio": (
        "audio 1 MiB range",
        lambda d: (
            f"/recordings/{d['recording']}/audio",
            {"Cookie": f"sessionid={d['cookie']}", "Range": f"bytes=0-{MIB - 1}"},
        ),
    ),
}


def throughput(targets: dict, data, requests: list[str], concurrency: list[int], seconds: int) -> list[dict]:
    """Each request at each concurrency against each target (label: (base URL, HTTP/2?))."""
    rows = []
    width = 24
    print(f"\n{'request':20} {'c':>4} " + " ".join(f"{name:>{width}}" for name in targets))
    print(f"{'':20} {'':>4} " + " ".join(f"{'req/s  p50 ms  p95 ms':>{width}}" for _ in targets))
    for key in requests:
        label, make = REQUESTS[key]
        path, headers = make(data)
        for base, h2 in targets.values():
            hey(base + path, 2, 1, headers, h2)  # warm-up: imports, pooled connections, the cached answer
        for c in concurrency:
            cells = []
            for name, (base, h2) in targets.items():
                result = hey(base + path, c, seconds, headers, h2)
                bad = sum(n for code, n in result["statuses"].items() if not code.startswith("2"))
                rows.append({"request": key, "c": c, "target": name, **result, "bad": bad})
                cell = f"{result['rate']:7.0f} {result['p50']:7.1f} {result['p95']:7.1f}"
                cells.append(cell + ("!" if bad or not result["statuses"] else " "))
            print(f"{label:20} {c:>4} " + " ".join(f"{cell:>{width}}" for cell in cells), flush=True)
    print("(! = some answers were not 2xx)")
    return rows


def post_body(port: int, n_bytes: int) -> str:
    """An anonymous POST of n_bytes to the login page, streamed (never held here); the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(
            f"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {n_bytes}\r\nConnection: close\r\n\r\n".encode()
        )
        chunk = bytes(MIB)
        try:
            for _ in range(n_bytes // MIB):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the answer is waiting
        try:
            return sock.recv(200).split(b"\r\n", 1)[0].decode()
        except ConnectionResetError:
            return "connection reset"


def download(url: str, cookie: str) -> int:
    received = 0
    with urlopen(Request(url, headers={"Cookie": f"sessionid={cookie}"}), timeout=600) as response:
        while block := response.read(MIB):
            received += len(block)
    return received


def memory(port: int, site, daphne_pid: int, data, post_mb: int, audio_mb: int) -> None:
    print(f"\nDaphne's peak RSS growth (MB; resting {rss_bytes(daphne_pid) / MIB:.0f} MB)")
    targets = {"nginx": site.http_url, "daphne": f"http://127.0.0.1:{port}"}
    for name, base in targets.items():
        with PeakRss(daphne_pid) as peak:
            status = post_body(int(base.rsplit(":", 1)[1]), post_mb * MIB)
        print(f"  {name:7} anonymous POST of {post_mb} MB to the login page: +{peak.growth_mb:.0f} MB ({status})")
    for name, base in targets.items():
        url = f"{base}/recordings/{data['recording']}/audio"
        started = time.monotonic()
        with PeakRss(daphne_pid) as peak, ThreadPoolExecutor(10) as pool:
            sizes = list(pool.map(download, [url] * 10, [data["cookie"]] * 10))
        elapsed = time.monotonic() - started
        ok = all(size == audio_mb * MIB for size in sizes)
        print(
            f"  {name:7} 10 parallel downloads of a {audio_mb} MB recording: +{peak.growth_mb:.0f} MB, "
            f"{elapsed:.1f} s{'' if ok else ' (incomplete!)'}"
        )


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--processes", type=int, nargs="+", default=sorted({1, 2, cores}), help="P behind nginx")
    parser.add_argument("--requests", nargs="+", choices=REQUESTS, default=["api", "search", "page", "static"])
    parser.add_argument("--baseline", metavar="REV", help="also measure the app at this git revision")
    parser.add_argument("--h2", action="store_true", help="also nginx over TLS with HTTP/2, largest P")
    parser.add_argument("--post-mb", type=int, default=800)
    parser.add_argument("--audio-mb", type=int, default=200)
    parser.add_argument("--memory", action="store_true", help="also the memory part (POST and downloads)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--hold", action="store_true", help="start everything, print how to reach it, wait")
    args = parser.parse_args()
    if not shutil.which("hey"):
        sys.exit("hey is not installed: apt-get install hey")
    from tests import services

    started = start_services()
    apps: list[App] = []
    try:
        data = prepare(args.audio_mb)
        largest = max(args.processes)
        apps = [App(p, data) for p in sorted(set(args.processes) | {1})]
        single = apps[0]
        targets = {"daphne x1": (f"http://127.0.0.1:{single.port}", False)}
        targets |= {
            f"nginx x{app.processes}": (app.site.http_url, False) for app in apps if app.processes in args.processes
        }
        if args.h2:
            targets[f"nginx h2 x{largest}"] = (f"https://127.0.0.1:{apps[-1].site.https_port}", True)
        if args.baseline:
            tree = baseline_checkout(args.baseline)
            before = [App(1, data, tree, "before-x1"), App(largest, data, tree, f"before-x{largest}")]
            apps += before
            targets["before: daphne x1"] = (f"http://127.0.0.1:{before[0].port}", False)
            targets[f"before: nginx x{largest}"] = (before[1].site.http_url, False)
        print(f"{cores} cores; " + "; ".join(f"{name} {base}" for name, (base, _) in targets.items()))
        if args.hold:
            pids = {app.label: app.daphne_pids for app in apps}
            print(f"token {data['token']}, session {data['cookie']}, Daphne pids {pids}; Ctrl-C stops", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # so `kill` cleans up too
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return
        if args.memory:
            memory(single.port, single.site, single.daphne_pids[0], data, args.post_mb, args.audio_mb)
        rows = throughput(targets, data, args.requests, args.concurrency, args.seconds)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    finally:
        for app in apps:
            app.stop()
        for process in started:
            services.stop(process)


if __name__ == "__main__":
    main()
