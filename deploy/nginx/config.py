"""Render nginx.conf.template for one site, make its self-signed certificate, and start nginx.

Everything nginx needs lives under one prefix directory (VAR_DIR/nginx for `make run`, a temporary
directory in the tests): the rendered configuration, the pid file, logs, request-body temp files
and the certificate. The tests render the same template with their own ports and paths, so what
they check is what `make run` serves.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
MIME_TYPES = Path("/etc/nginx/mime.types")
MODULES_DIR = Path("/usr/lib/nginx/modules")
# Debian's libnginx-mod-http-brotli-filter and -static: brotli_static serves collectstatic's .br files.
MODULES = ("ngx_http_brotli_filter_module.so", "ngx_http_brotli_static_module.so")
# The internal location the app names in X-Accel-Redirect (transcription/media.py says the same).
PROTECTED_MEDIA = "/protected-media/"
MIB = 1024 * 1024
# Multipart framing and the form's other fields ride on top of the file itself.
UPLOAD_MARGIN_BYTES = 1 * MIB

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class NginxSetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Site:
    """What the configuration depends on. Defaults are those of `make run`."""

    prefix: Path
    upstreams: Sequence[str]  # "host:port" of each app process
    static_root: Path
    media_root: Path
    http_port: int = 8000
    https_port: int = 8443
    host: str = "127.0.0.1"
    static_url: str = "/static/"
    max_upload_bytes: int = 500 * MIB
    max_rivet_project_bytes: int = 2 * MIB
    default_body_bytes: int = 1 * MIB
    transcription_time_limit: int = 3 * 3600
    login_rate_per_minute: int = 10
    api_rate_per_second: int = 20
    worker_processes: str = "auto"
    error_log: str = "stderr"
    websocket_timeout: str = "8h"
    # stub_status for the Prometheus nginx exporter, on its own loopback-only server; None: no such server.
    status_port: int | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def certificate(self) -> Path:
        return self.prefix / "tls" / "localhost.crt"

    @property
    def certificate_key(self) -> Path:
        return self.prefix / "tls" / "localhost.key"

    @property
    def http_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def https_url(self) -> str:
        # The certificate names localhost, so that is the name a browser should use.
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::", "::1") else self.host
        return f"https://{_url_host(host)}:{self.https_port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _size(n_bytes: int) -> str:
    """nginx size syntax, rounded up to whole kilobytes (nginx's k is 1024)."""
    return f"{-(-n_bytes // 1024)}k"


def _worker_user(prefix: Path) -> str:
    """Started as root, nginx switches its workers to a user (`nobody` unless told). They must read
    the files the app writes and write request bodies under the prefix, so they run as the user
    that owns the app's data directory. Started unprivileged, nginx stays that user (no directive)."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    status = prefix.parent.stat()
    return f"user {pwd.getpwuid(status.st_uid).pw_name} {grp.getgrgid(status.st_gid).gr_name};"


def _descriptors() -> tuple[int, int]:
    """worker_rlimit_nofile and worker_connections: as many descriptors as the hard limit allows
    (an unprivileged nginx may raise its soft limit up to it), up to 4096 connections a worker."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    return nofile, min(4096, nofile // 2)


def _modules() -> str:
    missing = [name for name in MODULES if not (MODULES_DIR / name).exists()]
    if missing:
        raise NginxSetupError(
            f"nginx brotli modules missing ({', '.join(missing)} in {MODULES_DIR}): "
            "apt-get install libnginx-mod-http-brotli-filter libnginx-mod-http-brotli-static"
        )
    # Absolute paths: `nginx -p PREFIX` would look for modules/ under our prefix.
    return "\n".join(f"load_module {MODULES_DIR / name};" for name in MODULES)


def _status_server(port: int | None) -> str:
    if port is None:
        return ""
    return (
        "    # Connection counts for the Prometheus nginx exporter (deploy/observability): loopback only.\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        access_log off;\n"
        "        location = /stub_status {\n"
        "            stub_status;\n"
        "        }\n"
        "        location / {\n"
        "            return 404;\n"
        "        }\n"
        "    }"
    )


def values(site: Site) -> dict[str, str]:
    if not site.upstreams:
        raise NginxSetupError("at least one upstream (app process) is needed")
    if not MIME_TYPES.exists():
        raise NginxSetupError(f"{MIME_TYPES} not found: apt-get install nginx")
    static_url = "/" + site.static_url.strip("/") + "/"
    api_rate = site.api_rate_per_second
    nofile, connections = _descriptors()
    return {
        "load_modules": _modules(),
        "user": _worker_user(site.prefix),
        "worker_processes": site.worker_processes,
        "worker_rlimit_nofile": str(nofile),
        "worker_connections": str(connections),
        "prefix": str(site.prefix),
        "error_log": site.error_log,
        "access_log": str(site.access_log),
        "mime_types": str(MIME_TYPES),
        "default_body_limit": _size(site.default_body_bytes),
        "upload_body_limit": _size(site.max_upload_bytes + UPLOAD_MARGIN_BYTES),
        "rivet_body_limit": _size(site.max_rivet_project_bytes + UPLOAD_MARGIN_BYTES),
        "login_rate_per_minute": str(site.login_rate_per_minute),
        # A person mistyping a password a few times is not held up; a script guessing is.
        "login_burst": str(max(site.login_rate_per_minute // 2, 1)),
        "api_rate_per_second": str(api_rate),
        "api_burst": str(2 * api_rate),
        # Several tokens behind one address (a team behind NAT) share four times one token's rate.
        "api_address_rate_per_second": str(4 * api_rate),
        "api_address_burst": str(8 * api_rate),
        "upstream_servers": "\n".join(f"        server {upstream};" for upstream in site.upstreams),
        "host": _url_host(site.host),
        "http_port": str(site.http_port),
        "https_port": str(site.https_port),
        "certificate": str(site.certificate),
        "certificate_key": str(site.certificate_key),
        "static_url": static_url,
        "static_root": str(Path(site.static_root).resolve()),
        "protected_media": PROTECTED_MEDIA,
        "media_root": str(Path(site.media_root).resolve()),
        # The app gives up on a job after TRANSCRIPTION_TIME_LIMIT; wait a little longer than it.
        "transcription_timeout": f"{site.transcription_time_limit + 60}s",
        "websocket_timeout": site.websocket_timeout,
        "status_server": _status_server(site.status_port),
    }


def render(site: Site, template: str | None = None) -> str:
    text = TEMPLATE.read_text() if template is None else template
    filled = values(site)
    unknown = sorted({name for name in PLACEHOLDER.findall(text) if name not in filled})
    if unknown:
        raise NginxSetupError(f"{TEMPLATE.name} names values the renderer does not have: {unknown}")
    return PLACEHOLDER.sub(lambda match: filled[match.group(1)], text)


def ensure_certificate(site: Site) -> None:
    """A self-signed certificate for localhost (and 127.0.0.1, ::1), made once with openssl."""
    if site.certificate.exists() and site.certificate_key.exists():
        return
    if not shutil.which("openssl"):
        raise NginxSetupError("openssl not found: apt-get install openssl")
    site.certificate.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the final names and renamed, so an interrupted run never leaves half a pair.
    key_tmp, cert_tmp = site.certificate_key.with_suffix(".key.tmp"), site.certificate.with_suffix(".crt.tmp")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
            "-keyout",
            str(key_tmp),
            "-out",
            str(cert_tmp),
        ],
        check=True,
        capture_output=True,
    )
    key_tmp.chmod(0o600)
    key_tmp.replace(site.certificate_key)
    cert_tmp.replace(site.certificate)


def write(site: Site) -> Path:
    """Render the configuration into the prefix (with its directories and certificate); return its path."""
    for directory in ("logs", "temp", "tls"):
        (site.prefix / directory).mkdir(parents=True, exist_ok=True)
    ensure_certificate(site)
    site.conf.write_text(render(site))
    return site.conf


def command(site: Site, *extra: str) -> list[str]:
    """The nginx command line for this site; `-e stderr` so errors before the config is read go there too."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not nginx:
        raise NginxSetupError("nginx not found: apt-get install nginx")
    return [nginx, "-p", str(site.prefix), "-c", str(site.conf), "-e", "stderr", *extra]


def check(site: Site) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the rendered configuration."""
    return subprocess.run(command(site, "-t"), capture_output=True, text=True)
