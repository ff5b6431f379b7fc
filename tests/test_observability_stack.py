"""Prometheus with the repository's configuration (deploy/observability), for real: the rendered
prometheus.yml, its rules and the console dashboards, served by Debian's prometheus against a small
scrape target that exposes one of the app's histograms. The alert rules themselves are unit tested
by `promtool test rules` (deploy/check.py)."""

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from urllib.error import URLError
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from deploy import nginx
from deploy.observability import dashboards
from deploy.observability.config import Ports, Stack, command, write

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="apt-get install prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except URLError:
        return 0, ""


def query(base: str, promql: str) -> list[dict]:
    status, body = get(f"{base}/api/v1/query?query={quote(promql)}")
    return json.loads(body)["data"]["result"] if status == 200 else []


def wait_for(condition, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout} s")


@pytest.fixture
def web_target():
    """What a web process's /metrics exposes, in miniature: request durations by route and status."""
    registry = CollectorRegistry()
    durations = Histogram(
        "assistant_http_request_duration_seconds", "Request duration", ["method", "route", "status"], registry=registry
    )
    for seconds in (0.01, 0.02, 0.3):
        durations.labels("GET", "api/recordings", "200").observe(seconds)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def prometheus(tmp_path, web_target):
    # Every other target on a port nothing listens on: those jobs are down.
    closed = [free_port() for _ in range(8)]
    ports = Ports(free_port(), *closed)
    stack = Stack(
        var_dir=tmp_path,
        web_target=web_target,
        redis_urls={"broker": f"redis://127.0.0.1:{closed[0]}/0", "cache": f"redis://127.0.0.1:{closed[1]}/0"},
        database_url=f"postgres://assistant@127.0.0.1:{closed[2]}/assistant",
        ports=ports,
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    write(stack)
    argv, env = command(stack, "prometheus")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{ports.prometheus}"
    try:
        wait_for(lambda: process.poll() is not None or get(f"{base}/-/ready")[0] == 200, "Prometheus ready")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_prometheus_scrapes_the_app_evaluates_the_rules_and_serves_the_dashboards(prometheus):
    wait_for(lambda: query(prometheus, 'up{job="web"} == 1'), "the web target scraped")
    # The app's series arrive under the job the rules and dashboards name.
    requests = query(prometheus, 'sum(assistant_http_request_duration_seconds_count{job="web",route="api/recordings"})')
    assert requests and float(requests[0]["value"][1]) == 3

    # Every scrape job of the configuration is there; those with nothing behind them are down.
    expected = {"prometheus", "alertmanager", "web", "worker", "ai", "node", "redis", "postgres", "nginx"}

    def jobs_up() -> dict[str, str]:
        jobs = {r["metric"]["job"]: r["value"][1] for r in query(prometheus, "up")}
        return jobs if set(jobs) == expected else {}

    jobs = wait_for(jobs_up, f"up for each of {sorted(expected)}")
    assert jobs["prometheus"] == "1" and jobs["worker"] == "0"

    # The repository's rules are loaded and evaluated: a down target's alert is pending (it waits 2 minutes).
    def pending_down() -> set[str]:
        status, body = get(f"{prometheus}/api/v1/alerts")
        alerts = json.loads(body)["data"]["alerts"] if status == 200 else []
        return {a["labels"]["job"] for a in alerts if a["labels"]["alertname"] == "AssistantTargetDown"}

    wait_for(lambda: "worker" in pending_down(), "AssistantTargetDown pending for the worker")
    assert "web" not in pending_down()

    # Each console dashboard renders (Go templates against this Prometheus) with all its panels.
    for board in dashboards.DASHBOARDS:
        status, page = get(f"{prometheus}/consoles/{board.slug}.html")
        assert status == 200, board.slug
        for panel in board.panels:
            assert f"<h3>{panel.title}</h3>" in page, (board.slug, panel.title)
    status, page = get(f"{prometheus}/consoles/overview.html")
    assert "<td>web " in page  # the targets table on the side, from a live query


def test_nginx_status_is_on_its_own_loopback_server(tmp_path):
    site = nginx.Site(
        prefix=tmp_path / "nginx",
        upstreams=["127.0.0.1:8001"],
        static_root=tmp_path / "static",
        media_root=tmp_path / "media",
        status_port=18088,
    )
    nginx.write(site)
    assert nginx.check(site).returncode == 0
    text = site.conf.read_text()
    assert text.count("stub_status;") == 1
    status_server = text[text.index("listen 127.0.0.1:18088;") :]
    assert "stub_status;" in status_server and "proxy_pass" not in status_server
    # Without a port (the other tests' sites), there is no such server.
    assert "stub_status" not in nginx.render(
        nginx.Site(prefix=tmp_path, upstreams=["127.0.0.1:1"], static_root=tmp_path, media_root=tmp_path)
    )
