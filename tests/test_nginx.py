"""nginx in front of the app (deploy/nginx), for real: the same template `make run` renders, started
in front of the test Daphne, with static files collected as `make run` collects them."""

import gzip
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlparse

import brotli
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.test import Client
from websockets.sync.client import connect as ws_connect

from deploy import nginx
from tests import services
from tests.factories import PASSWORD
from transcription import media
from transcription.models import Recording

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


# --- The rendered configuration (no service needed) ---------------------------------------------


def test_the_rendered_configuration_is_valid_nginx(tmp_path):
    site = nginx.Site(
        prefix=tmp_path / "nginx",
        upstreams=["127.0.0.1:8001", "127.0.0.1:8002"],
        static_root=tmp_path / "static",
        media_root=tmp_path / "media",
    )
    nginx.write(site)
    result = nginx.check(site)
    assert result.returncode == 0, result.stderr
    text = site.conf.read_text()
    assert "{{" not in text
    assert "server 127.0.0.1:8001;" in text and "server 127.0.0.1:8002;" in text
    assert "listen 127.0.0.1:8443 ssl http2;" in text


def test_only_upload_locations_take_large_bodies(tmp_path):
    site = nginx.Site(
        prefix=tmp_path,
        upstreams=["127.0.0.1:1"],
        static_root=tmp_path,
        media_root=tmp_path,
        max_upload_bytes=500 << 20,
    )
    text = nginx.render(site)
    limits = {
        location: re.search(r"client_max_body_size (\S+);", body).group(1)
        for location, body in re.findall(r"location (= \S+) \{(.*?)\n        \}", text, re.S)
        if "client_max_body_size" in body
    }
    assert limits == {
        "= /recordings/upload": "513024k",
        "= /api/recordings": "513024k",
        "= /v1/audio/transcriptions": "513024k",
        "= /workflows/import": "3072k",
    }
    assert "    client_max_body_size 1024k;" in text


def test_a_self_signed_certificate_for_localhost_is_made_once(tmp_path):
    site = nginx.Site(prefix=tmp_path, upstreams=["127.0.0.1:1"], static_root=tmp_path, media_root=tmp_path)
    nginx.write(site)
    first = site.certificate.read_bytes()
    nginx.write(site)
    assert site.certificate.read_bytes() == first
    assert oct(site.certificate_key.stat().st_mode & 0o777) == "0o600"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(site.certificate), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text


def test_a_placeholder_the_renderer_does_not_know_fails_loudly(tmp_path):
    site = nginx.Site(prefix=tmp_path, upstreams=["127.0.0.1:1"], static_root=tmp_path, media_root=tmp_path)
    with pytest.raises(nginx.NginxSetupError, match="upstream_pool"):
        nginx.render(site, template="upstream app { {{ upstream_pool }} }")


def test_the_app_and_nginx_agree_on_the_protected_location():
    assert media.ACCEL_PREFIX == nginx.PROTECTED_MEDIA


# --- nginx in front of the test Daphne ----------------------------------------------------------


@dataclass
class Proxy:
    site: nginx.Site
    daphne_log: Path

    @property
    def port(self) -> int:
        return self.site.http_port

    def http(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.site.http_port, timeout=30)

    def tls_context(self, alpn: list[str]) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.site.certificate))
        context.set_alpn_protocols(alpn)
        return context

    def negotiated(self, alpn: list[str]) -> str | None:
        """The protocol the TLS port picks from what a client offers (certificate checked for localhost)."""
        raw = socket.create_connection(("127.0.0.1", self.site.https_port), timeout=10)
        with self.tls_context(alpn).wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.selected_alpn_protocol()

    def access_lines(self, needle: str, count: int = 1) -> list[str]:
        """The access log's lines that contain needle, once there are at least count of them (the
        log is written from a buffer flushed every second)."""
        deadline = time.monotonic() + 5
        while True:
            lines = [line for line in self.site.access_log.read_text().splitlines() if needle in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.2)

    def daphne_saw(self, needle: str) -> bool:
        return needle in self.daphne_log.read_text()


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory):
    """Static files collected as `make run` does (production settings: hashed names, .br and .gz)."""
    var = tmp_path_factory.mktemp("nginx-var")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "assistant_site.settings", "VAR_DIR": str(var)},
        check=True,
    )
    return var / "static"


@pytest.fixture(scope="session")
def proxy(daphne_server, collected_static, tmp_path_factory):
    """nginx rendered from the project's template, in front of the test Daphne."""
    upstream = urlparse(daphne_server).netloc
    prefix = tmp_path_factory.mktemp("nginx")
    site = nginx.Site(
        prefix=prefix,
        upstreams=[upstream],
        static_root=collected_static,
        media_root=Path(settings.MEDIA_ROOT),
        http_port=free_port(),
        https_port=free_port(),
        max_upload_bytes=settings.MAX_UPLOAD_BYTES,
        max_rivet_project_bytes=settings.MAX_RIVET_PROJECT_BYTES,
        transcription_time_limit=settings.TRANSCRIPTION_TIME_LIMIT,
        worker_processes="1",
        error_log=str(prefix / "logs" / "error.log"),
    )
    nginx.write(site)
    log = prefix / "logs" / "nginx.out"
    process = subprocess.Popen(nginx.command(site), stdout=log.open("w"), stderr=subprocess.STDOUT)
    services.wait_until_listening("127.0.0.1", site.https_port, process, 20, log)
    services.wait_until_listening("127.0.0.1", site.http_port, process, 20, log)
    # Daphne's access log (stdout at its default verbosity) shows what reached the app.
    daphne_logs = sorted(Path(tmp_path_factory.getbasetemp()).glob("daphne*/daphne.log"))
    assert daphne_logs, "the daphne_server fixture's log was not found"
    yield Proxy(site, daphne_logs[-1])
    services.stop(process)


def test_hashed_static_files_are_served_from_disk_precompressed_and_immutable(proxy, collected_static):
    manifest = json.loads((collected_static / "staticfiles.json").read_text())["paths"]
    hashed = manifest["css/app.css"]
    original = (collected_static / hashed).read_bytes()
    conn = proxy.http()

    answers = {}
    for accept in ("br, gzip", "gzip", "identity"):
        conn.request("GET", f"/static/{hashed}", headers={"Accept-Encoding": accept})
        response = conn.getresponse()
        answers[accept] = (response.status, response.getheader("Content-Encoding"), response.read(), response)
        assert response.getheader("Cache-Control") == "public, max-age=31536000, immutable"
        assert response.getheader("Content-Type").startswith("text/css")
    assert answers["br, gzip"][:2] == (200, "br")
    assert brotli.decompress(answers["br, gzip"][2]) == original
    assert answers["gzip"][:2] == (200, "gzip")
    assert gzip.decompress(answers["gzip"][2]) == original
    assert answers["identity"][:3] == (200, None, original)
    assert "Accept-Encoding" in (answers["gzip"][3].getheader("Vary") or "")

    # An unhashed name may change under the same URL: revalidated every time.
    conn.request("GET", "/static/css/app.css")
    response = conn.getresponse()
    response.read()
    assert response.status == 200 and response.getheader("Cache-Control") == "no-cache"
    # Straight from disk: the app was never asked.
    assert all(" ua=- " in line for line in proxy.access_lines(f"/static/{hashed}"))


def test_https_negotiates_http2_with_the_localhost_certificate(proxy):
    assert proxy.negotiated(["h2", "http/1.1"]) == "h2"
    # A client without HTTP/2 still gets HTTP/1.1 over TLS.
    assert proxy.negotiated(["http/1.1"]) == "http/1.1"


def test_pages_come_through_over_http2(proxy):
    url = f"https://localhost:{proxy.site.https_port}/accounts/login/"
    result = subprocess.run(
        [
            "curl",
            "--http2",
            "--cacert",
            str(proxy.site.certificate),
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout == "2 200", result.stderr
    assert any(
        " proto=HTTP/2.0 " in line and " us=200 " in line
        for line in proxy.access_lines("GET /accounts/login/ HTTP/2.0")
    )


@pytest.fixture
def recording_audio(alice):
    """alice's recording with 64 KiB of known bytes as its audio."""
    data = bytes(range(256)) * 256
    # Its type is the one probed at upload, whatever its extension suggests.
    recording = Recording(owner=alice, title="Served by nginx", size_bytes=len(data), audio_mime="audio/mpeg")
    recording.audio.save("nginx.wav", ContentFile(data), save=True)
    return recording, data


@pytest.mark.django_db(transaction=True)
def test_audio_is_served_by_nginx_with_ranges_after_the_owner_check(proxy, recording_audio, alice, bob):
    recording, data = recording_audio
    path = f"/recordings/{recording.id}/audio"
    conn = proxy.http()
    alice_cookie = f"sessionid={session_cookie(alice)}"

    conn.request(
        "GET", path, headers={"Cookie": alice_cookie, "Range": "bytes=1000-1999", "Accept-Encoding": "br, gzip"}
    )
    response = conn.getresponse()
    assert response.status == 206
    assert response.read() == data[1000:2000]
    assert response.getheader("Content-Range") == f"bytes 1000-1999/{len(data)}"
    assert response.getheader("Content-Encoding") is None
    assert response.getheader("Content-Type") == "audio/mpeg"  # the app's, not nginx's guess
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Content-Disposition") == 'inline; filename="served-by-nginx.wav"'
    assert response.getheader("X-Accel-Redirect") is None

    conn.request("GET", path, headers={"Cookie": alice_cookie, "Range": "bytes=-100"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (206, data[-100:])

    conn.request("GET", path, headers={"Cookie": alice_cookie, "Accept-Encoding": "gzip"})
    response = conn.getresponse()
    assert (response.status, response.read(), response.getheader("Content-Encoding")) == (200, data, None)
    assert response.getheader("Accept-Ranges") == "bytes"

    # The app answered each with an empty 200 naming the file; nginx cut the range itself.
    lines = proxy.access_lines(f"GET {path} ", count=3)[-3:]
    assert [re.search(r" st=(\d+) .* us=(\S+) ", line).groups() for line in lines] == [
        ("206", "200"),
        ("206", "200"),
        ("200", "200"),
    ]

    conn.request("GET", path, headers={"Cookie": f"sessionid={session_cookie(bob)}", "Range": "bytes=0-99"})
    response = conn.getresponse()
    assert response.status == 404 and data[:100] not in response.read()

    conn.request("GET", nginx.PROTECTED_MEDIA + recording.audio.name)
    response = conn.getresponse()
    assert response.status == 404 and data[:100] not in response.read()


def test_a_body_over_the_limit_is_refused_by_nginx_without_reaching_the_app(proxy):
    conn = proxy.http()
    # Anywhere but an upload location, 1 MiB is the most.
    probe = uuid.uuid4().hex
    conn.request("POST", f"/accounts/login/?probe={probe}", body=b"x" * (2 << 20))
    response = conn.getresponse()
    response.read()
    assert response.status == 413
    assert " ua=- " in proxy.access_lines(probe)[0]
    # An upload location declaring more than MAX_UPLOAD_MB + margin is refused from its headers alone.
    big_probe = uuid.uuid4().hex
    declared = settings.MAX_UPLOAD_BYTES + 2 * nginx.MIB
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            f"POST /recordings/upload?probe={big_probe} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 413 ")
    assert " ua=- " in proxy.access_lines(big_probe)[0]

    # The same 2 MiB at an upload location goes through (the app answers: not signed in, no CSRF token).
    passed_probe = uuid.uuid4().hex
    conn = proxy.http()
    conn.request("POST", f"/api/recordings?probe={passed_probe}", body=b"x" * (2 << 20))
    response = conn.getresponse()
    response.read()
    assert response.status in (401, 403)
    assert proxy.daphne_saw(passed_probe)
    assert not proxy.daphne_saw(probe) and not proxy.daphne_saw(big_probe)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_the_progress_socket_works_through_the_proxy(proxy, alice, scheme):
    recording = Recording.objects.create(owner=alice, title="Socket", audio="socket.wav", size_bytes=1)
    port = proxy.site.http_port if scheme == "ws" else proxy.site.https_port
    host = "127.0.0.1" if scheme == "ws" else "localhost"
    with ws_connect(
        f"{scheme}://{host}:{port}/ws/recordings/{recording.id}/",
        origin=f"{'http' if scheme == 'ws' else 'https'}://{host}:{port}",
        additional_headers={"Cookie": f"sessionid={session_cookie(alice)}"},
        ssl=proxy.tls_context(["http/1.1"]) if scheme == "wss" else None,
        proxy=None,
        open_timeout=10,
    ) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["status"] == "queued" and snapshot["progress"] == 0
        ws.send(json.dumps({"type": "hello"}))  # ignored by the server, not fatal
        assert ws.ping().wait(5)


def test_a_login_burst_is_answered_429_by_nginx(proxy):
    conn = proxy.http()
    statuses = []
    for _ in range(3 * proxy.site.login_rate_per_minute):
        conn.request(
            "POST",
            "/accounts/login/",
            body="username=x&password=y",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    assert 429 in statuses and statuses[0] != 429
    # The admin's login is the same guessing game: it shares the limit (30 wrong passwords were all 200).
    conn.request(
        "POST",
        "/admin/login/",
        body="username=x&password=y",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 429
    # Looking at the login pages is not limited.
    for path in ("/accounts/login/", "/admin/login/"):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200


def test_an_api_burst_is_answered_429_per_token(proxy):
    def call(token: str) -> int:
        conn = proxy.http()
        conn.request("GET", "/api/recordings", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    burst = 6 * proxy.site.api_rate_per_second
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, ["burst-token"] * burst))
    assert statuses.count(429) > 0 and statuses.count(401) >= 2 * proxy.site.api_rate_per_second
    # Another token has its own allowance.
    assert call("another-token") == 401


@pytest.mark.django_db(transaction=True)
def test_signing_in_over_https_passes_the_csrf_check(proxy, alice):
    origin = f"https://localhost:{proxy.site.https_port}"
    conn = http.client.HTTPSConnection("localhost", proxy.site.https_port, context=proxy.tls_context(["http/1.1"]))
    conn.request("GET", "/accounts/login/")
    response = conn.getresponse()
    page = response.read().decode()
    csrf_cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    conn.request(
        "POST",
        "/accounts/login/",
        body=urlencode({"csrfmiddlewaretoken": token, "username": "alice", "password": PASSWORD}),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}",
            "Origin": origin,
            "Referer": f"{origin}/accounts/login/",
        },
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 302 and "sessionid=" in response.getheader("Set-Cookie")


def test_a_request_through_nginx_has_one_trace_id_in_the_access_log_and_in_zipkin(proxy, zipkin):
    """nginx starts the trace (from $request_id) when the client sends none, and logs its id; a
    client's well-formed traceparent goes through, so the browser's id is the one logged."""
    conn = proxy.http()
    conn.request("GET", "/accounts/login/?trace-probe=made")
    assert conn.getresponse().read() is not None
    (line,) = proxy.access_lines("trace-probe=made")
    trace_id = re.search(r" trace=([0-9a-f]{32}) ", line)[1]
    spans = services.spans_of(zipkin, trace_id, {"get accounts/login/"})
    assert {(s["name"], s["localEndpoint"]["serviceName"]) for s in spans} >= {("get accounts/login/", "web")}

    client_trace = secrets.token_hex(16)
    traceparent = f"00-{client_trace}-{secrets.token_hex(8)}-01"
    conn.request("GET", "/accounts/login/?trace-probe=given", headers={"traceparent": traceparent})
    conn.getresponse().read()
    (line,) = proxy.access_lines("trace-probe=given")
    assert f" trace={client_trace} " in line
    assert services.spans_of(zipkin, client_trace, {"get accounts/login/"})
