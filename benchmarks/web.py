"""Web benchmark: nginx (deploy/nginx) in front of Daphne vs Daphne alone, as `make run` served before.

    .venv/bin/python benchmarks/web.py                      # c = 1, 10, 50; 5 s a cell
    .venv/bin/python benchmarks/web.py --concurrency 10 100 --seconds 10
    .venv/bin/python benchmarks/web.py --skip-memory        # throughput only

Starts Redis (6391) and one Daphne on the benchmark settings (var/bench/app, SQLite), and nginx
rendered from the project's template in front of it (its API rate limit raised out of the way).
Requests (hey, `-z` seconds each): a hashed static CSS file, the login page, the recordings list
page (signed in), `GET /api/recordings?limit=20` (token) and a 1 MiB range of a recording's audio.
Targets: Daphne directly (HTTP/1.1), nginx over plain HTTP/1.1, nginx over TLS with HTTP/2.
Memory (peak RSS of the Daphne process above its resting RSS, sampled every 20 ms): an anonymous
POST of --post-mb to the login page, and 10 parallel downloads of a --audio-mb recording, each
through nginx and directly. Compare ratios within one run: the machine is shared and noisy.
"""

import argparse
import json
import os
import re
import shutil
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

from benchmarks.transcription import BENCH_ENV, BENCH_VAR  # noqa: E402

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


def prepare(audio_mb: int):
    """Database, static files, a user with a session, an API token and a recording of audio_mb."""
    os.environ.update(BENCH_ENV)
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    for command in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, check=True)
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
    recording = Recording.objects.filter(owner=user, title="web-bench audio").first()
    if recording is None or recording.audio.size != audio_mb * MIB:
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


def start(data):
    from deploy import nginx
    from tests import services

    settings = data["settings"]
    redis = services.start_redis(BENCH_ENV["REDIS_URL"], BENCH_VAR / "redis")
    port = free_port()
    log = BENCH_VAR / "web-daphne.log"
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "--proxy-headers", "-b", "127.0.0.1", "-p", str(port)]
        + ["assistant_site.asgi:application"],
        cwd=ROOT,
        env=os.environ,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    services.wait_until_listening("127.0.0.1", port, daphne, 60, log)
    site = nginx.Site(
        prefix=BENCH_VAR / "nginx",
        upstreams=[f"127.0.0.1:{port}"],
        static_root=Path(settings.STATIC_ROOT),
        media_root=Path(settings.MEDIA_ROOT),
        http_port=free_port(),
        https_port=free_port(),
        max_upload_bytes=settings.MAX_UPLOAD_BYTES,
        api_rate_per_second=1_000_000,  # measuring the server, not the limit
    )
    nginx.write(site)
    nginx_log = site.prefix / "logs" / "nginx.out"
    proxy = subprocess.Popen(nginx.command(site), stdout=nginx_log.open("w"), stderr=subprocess.STDOUT)
    services.wait_until_listening("127.0.0.1", site.https_port, proxy, 20, nginx_log)
    return port, site, (proxy, daphne, redis)


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


def throughput(port: int, site, data, concurrency: list[int], seconds: int) -> None:
    cookie = {"Cookie": f"sessionid={data['cookie']}"}
    requests = {
        "static css (br)": (f"/static/{data['css']}", {"Accept-Encoding": "br"}),
        "login page": ("/accounts/login/", {}),
        "recordings page": ("/recordings/", cookie),
        "api list (token)": ("/api/recordings?limit=20", {"Authorization": f"Bearer {data['token']}"}),
        "audio 1 MiB range": (f"/recordings/{data['recording']}/audio", {**cookie, "Range": f"bytes=0-{MIB - 1}"}),
    }
    targets = {
        "daphne": (f"http://127.0.0.1:{port}", False),
        "nginx h1": (site.http_url, False),
        "nginx h2": (f"https://127.0.0.1:{site.https_port}", True),
    }
    print(f"\n{'request':20} {'c':>4} " + " ".join(f"{name:>26}" for name in targets))
    print(f"{'':20} {'':>4} " + " ".join(f"{'req/s   p50 ms   p95 ms':>26}" for _ in targets))
    for label, (path, headers) in requests.items():
        for c in concurrency:
            cells = []
            for base, h2 in targets.values():
                result = hey(base + path, c, seconds, headers, h2)
                bad = sum(n for code, n in result["statuses"].items() if not code.startswith("2"))
                cell = f"{result['rate']:8.0f} {result['p50']:8.1f} {result['p95']:8.1f}"
                cells.append(cell + ("!" if bad else " "))
            print(f"{label:20} {c:>4} " + " ".join(f"{cell:>26}" for cell in cells), flush=True)
    print("(! = some answers were not 2xx)")


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--post-mb", type=int, default=800)
    parser.add_argument("--audio-mb", type=int, default=200)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if not shutil.which("hey"):
        sys.exit("hey is not installed: apt-get install hey")
    from tests import services

    data = prepare(args.audio_mb)
    port, site, processes = start(data)
    try:
        print(
            f"nginx {site.http_url} and {site.https_url} in front of Daphne on 127.0.0.1:{port}; {os.cpu_count()} cores"
        )
        if not args.skip_memory:
            memory(port, site, processes[1].pid, data, args.post_mb, args.audio_mb)
        throughput(port, site, data, args.concurrency, args.seconds)
    finally:
        for process in processes:
            services.stop(process)


if __name__ == "__main__":
    main()
