"""The production profile (DJANGO_ENV=production): `manage.py check --deploy` has nothing to say, the
headers it promises are on real responses, and the proxy's HTTPS header is trusted only when told.
Each in a fresh process, since settings are read once at start."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(code_or_args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DJANGO_ENV", "DEBUG", "TRUST_PROXY_HEADERS"}}
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "DJANGO_SETTINGS_MODULE": "assistant_site.settings", "VAR_DIR": str(tmp_path), **env},
    )


def test_check_deploy_is_clean_in_production(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, DJANGO_ENV="production")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_in_development(tmp_path):
    # The same check can fail: without the profile it names what is missing (HSTS, SSL redirect,
    # secure cookies), which the project's own middleware check brings back (accounts/checks.py).
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W010", "security.W016"):
        assert warning in result.stdout + result.stderr


def test_debug_cannot_be_on_in_production(tmp_path):
    result = run(["manage.py", "check"], tmp_path, DJANGO_ENV="production", DEBUG="true")
    assert result.returncode != 0 and "DEBUG must be false" in result.stderr


# Requests through Django's test client in a fresh process: status and the headers that matter.
PROBE = """
import json, django
django.setup()
from django.test import Client
from django.test.utils import override_settings, setup_test_environment
setup_test_environment()
# No collectstatic here: static URLs without the manifest.
override_settings(STORAGES={"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}).enable()
client, out = Client(), {}
def seen(response):
    return {"status": response.status_code, "location": response.get("Location"),
            "hsts": response.get("Strict-Transport-Security"), "csp": response.get("Content-Security-Policy"),
            "frame": response.get("X-Frame-Options"),
            "csrf_cookie_secure": bool(response.cookies.get("csrftoken") and response.cookies["csrftoken"]["secure"])}
out["http_login"] = seen(client.get("/accounts/login/"))
out["https_login"] = seen(client.get("/accounts/login/", secure=True))
out["http_healthz"] = seen(client.get("/healthz"))
out["forwarded_https_login"] = seen(client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https"))
print(json.dumps(out))
"""


def probe(tmp_path, **env) -> dict:
    result = run(["-c", PROBE], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_redirects_to_https_and_sends_its_headers(tmp_path):
    seen = probe(tmp_path, DJANGO_ENV="production")
    assert seen["http_login"]["status"] == 301
    assert seen["http_login"]["location"].startswith("https://")
    login = seen["https_login"]
    assert login["status"] == 200
    assert "max-age=31536000" in login["hsts"] and "includeSubDomains" in login["hsts"] and "preload" in login["hsts"]
    assert "script-src 'self'" in login["csp"] and "frame-ancestors 'none'" in login["csp"]
    assert login["frame"] == "DENY" and login["csrf_cookie_secure"]
    # Probes come over plain HTTP: liveness is not redirected.
    assert seen["http_healthz"]["status"] == 200
    # The proxy's X-Forwarded-Proto is not believed unless TRUST_PROXY_HEADERS says so.
    assert seen["forwarded_https_login"]["status"] == 301


def test_the_proxys_https_header_is_trusted_when_told(tmp_path):
    seen = probe(tmp_path, DJANGO_ENV="production", TRUST_PROXY_HEADERS="true")
    assert seen["forwarded_https_login"]["status"] == 200
    assert seen["http_login"]["status"] == 301


def test_development_serves_plain_http(tmp_path):
    seen = probe(tmp_path)
    assert seen["http_login"]["status"] == 200 and seen["http_login"]["hsts"] is None
    assert "script-src 'self'" in seen["http_login"]["csp"]  # the CSP holds in development too
