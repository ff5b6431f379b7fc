"""Profiling: Silk behind SILK_ENABLED (absent when off; staff only, sampled, keeping no bodies or SQL
values when on), and benchmarks/profiling.py (a py-spy flame graph of a named process and its
children; memray of one transcription)."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.test import RequestFactory

from assistant_site import profiling
from tests import services
from tests.factories import PASSWORD, make_user

ROOT = Path(__file__).resolve().parent.parent
PROFILER = ROOT / "benchmarks" / "profiling.py"


# --- Silk off (the default) ---------------------------------------------------------------------------


def test_silk_is_out_of_the_request_path_when_off(client, db):
    assert not settings.SILK_ENABLED
    assert not any("silk" in middleware for middleware in settings.MIDDLEWARE)
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    assert client.get("/silk/").status_code == 404


def test_silk_samples_its_share_and_never_probes_or_large_bodies(settings):
    factory = RequestFactory()
    settings.SILK_SAMPLE_PERCENT = 100
    assert profiling.record_request(factory.get("/recordings/"))
    assert not profiling.record_request(factory.get("/readyz"))
    assert not profiling.record_request(factory.get("/metrics"))
    big = factory.post("/api/recordings", data=b"x", content_type="application/json")
    big.META["CONTENT_LENGTH"] = str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    assert not profiling.record_request(big)
    settings.SILK_SAMPLE_PERCENT = 0
    assert not any(profiling.record_request(factory.get("/recordings/")) for _ in range(50))


# --- Silk on, in a Daphne of its own ------------------------------------------------------------------


class Browser:
    """One visitor's cookies, against the Daphne under test."""

    def __init__(self, base: str, session_key: str = ""):
        self.base, self.cookies = base, {"sessionid": session_key} if session_key else {}

    def request(self, path: str, data: dict | None = None) -> tuple[int, str]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers={"Cookie": cookie})
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return response.status, response.read().decode(errors="replace")


@pytest.fixture
def silk_daphne(tmp_path):
    """Daphne with SILK_ENABLED on, every request sampled, on the test database."""
    env = services.test_process_env() | {"SILK_ENABLED": "true", "SILK_SAMPLE_PERCENT": "100"}
    process, url = services.start_daphne(env, tmp_path / "daphne.log")
    yield url
    services.stop(process)


def session_of(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.mark.services  # sign-ins are throttled in Redis
@pytest.mark.django_db(transaction=True)
def test_silk_when_on_is_for_staff_records_sampled_requests_and_keeps_no_secrets(silk_daphne, alice):
    from silk.models import Request, Response, SQLQuery

    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    alice_key = session_of(alice)

    assert Browser(silk_daphne).request("/silk/")[0] == 403
    assert Browser(silk_daphne, alice_key).request("/silk/")[0] == 403

    # A sampled page view, and a sign-in form post with a password (wrong: it must not sign in).
    status, page = Browser(silk_daphne, alice_key).request("/recordings/")
    assert status == 200 and "alice" in page
    visitor = Browser(silk_daphne)
    visitor.request("/accounts/login/")
    secret = "never-kept-" + "x" * 12
    status, _ = visitor.request(
        "/accounts/login/",
        {"username": "alice", "password": secret, "csrfmiddlewaretoken": visitor.cookies["csrftoken"]},
    )
    assert status == 200  # the form again, with its error

    recorded = Request.objects.filter(path="/recordings/")
    assert recorded.exists() and Request.objects.filter(path="/accounts/login/", method="POST").exists()
    status, listing = Browser(silk_daphne, session_of(staff)).request("/silk/requests/")
    assert status == 200 and "/recordings/" in listing

    # No body, no cookie, no SQL value: not the password, not alice's session key, not her name.
    kept = [
        text
        for request in Request.objects.all()
        for text in (request.body, request.raw_body or "", request.encoded_headers, request.query_params)
    ]
    kept += [text for response in Response.objects.all() for text in (response.body, response.raw_body or "")]
    kept += list(SQLQuery.objects.values_list("query", flat=True))
    assert SQLQuery.objects.filter(request__in=recorded).exists()
    for value in (secret, PASSWORD, alice_key, "'alice'"):
        assert not [text for text in kept if value in text], value


# --- py-spy and memray ---------------------------------------------------------------------------------

BUSY = textwrap.dedent(
    """
    import os
    def parent_spins():
        while True:
            sum(range(1000))
    def child_spins():
        while True:
            sum(range(1000))
    if os.fork() == 0:
        child_spins()
    parent_spins()
    """
)


def test_flamegraph_records_a_procfile_process_and_its_children(tmp_path):
    script = tmp_path / "busy.py"
    script.write_text(BUSY)
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"other: exec sleep 1\nbusy: BUSY=1 exec {sys.executable} {script} --port ${{PORT:-1}}\n")
    busy = subprocess.Popen([sys.executable, str(script), "--port", "7"], start_new_session=True)
    try:
        out = tmp_path / "profiles"
        result = subprocess.run(
            [sys.executable, PROFILER, "flamegraph", "--process", "busy", "--procfile", procfile, "--seconds", "2"]
            + ["--out", out],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert f"pid {busy.pid} " in result.stdout  # the parent, not its forked child
    finally:
        os.killpg(busy.pid, signal.SIGKILL)
        busy.wait()
    (svg,), (speedscope,) = out.glob("*.svg"), out.glob("*.speedscope.json")
    assert re.fullmatch(r"busy-\d{8}T\d{6}Z\.svg", svg.name), svg.name
    assert "parent_spins" in svg.read_text() and "child_spins" in svg.read_text()
    frames = {frame["name"] for frame in json.loads(speedscope.read_text())["shared"]["frames"]}
    assert {"parent_spins", "child_spins"} <= frames


def test_memray_profiles_one_transcription(tmp_path, speech):
    path, _ = speech
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, PROFILER, "memray-job", "--file", path, "--out", tmp_path],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "assistant_site.settings_test"},
    )
    assert result.returncode == 0, result.stderr
    html = next(tmp_path.glob("job-speech-*.html"))
    assert "transcribe" in html.read_text(), f"after {time.monotonic() - started:.0f} s"
