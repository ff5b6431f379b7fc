"""Prometheus, Alertmanager and the exporters for `make run`: their configuration and command lines.

Like deploy/nginx, the configuration is rendered from templates next to this file (placeholders in
double braces) into VAR_DIR (VAR_DIR/prometheus, VAR_DIR/alertmanager), with the ports of the
processes it scrapes. The tests render the same templates with their own ports and paths, so what they
check is what `make run` runs. Every process listens on 127.0.0.1 only.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
PROMETHEUS_TEMPLATE = HERE / "prometheus.yml.template"
ALERTMANAGER_TEMPLATE = HERE / "alertmanager.yml.template"
RULES_DIR = HERE / "rules"
CONSOLES_DIR = HERE / "consoles"
# Our navigation bar and menu (replacing the example menu.lib); prom.lib comes from Debian's package.
CONSOLE_LIBRARY = HERE / "console_libraries" / "assistant.lib"
PROM_LIB = Path("/usr/share/doc/prometheus/examples/console_libraries/prom.lib")
HOST = "127.0.0.1"

PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

# The exporters' programs (Debian packages prometheus-*-exporter, prometheus-alertmanager).
PROGRAMS = {
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "node-exporter": "prometheus-node-exporter",
    "redis-exporter": "prometheus-redis-exporter",
    "postgres-exporter": "prometheus-postgres-exporter",
    "nginx-exporter": "prometheus-nginx-exporter",
}


class ObservabilitySetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Ports:
    """Where each process listens. Defaults are those of `make run` (env-overridable: __main__.py)."""

    prometheus: int = 9090
    alertmanager: int = 9093
    node_exporter: int = 9100
    redis_exporter: int = 9121
    postgres_exporter: int = 9187
    nginx_exporter: int = 9113
    # nginx's stub_status, on its own loopback-only server (deploy/nginx renders it).
    nginx_status: int = 8088
    # The Celery processes' exporters (Procfile: worker, ai).
    worker_metrics: int = 9810
    ai_metrics: int = 9811


@dataclass(frozen=True)
class Stack:
    """What the configuration depends on."""

    var_dir: Path
    # host:port of the web process Prometheus scrapes. One is enough: every web process answers
    # /metrics with the aggregate of all of them (one multiprocess directory), so scraping each
    # would count every request once per process.
    web_target: str
    redis_urls: dict[str, str]  # role (broker, cache) -> redis:// URL
    database_url: str
    ports: Ports = field(default_factory=Ports)
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    retention: str = "15d"

    @property
    def prometheus_dir(self) -> Path:
        return self.var_dir / "prometheus"

    @property
    def alertmanager_dir(self) -> Path:
        return self.var_dir / "alertmanager"

    @property
    def prometheus_config(self) -> Path:
        return self.prometheus_dir / "prometheus.yml"

    @property
    def alertmanager_config(self) -> Path:
        return self.alertmanager_dir / "alertmanager.yml"

    @property
    def console_libraries(self) -> Path:
        return self.prometheus_dir / "console_libraries"


def _fill(template: Path, filled: dict[str, str]) -> str:
    text = template.read_text()
    unknown = sorted({name for name in PLACEHOLDER.findall(text) if name not in filled})
    if unknown:
        raise ObservabilitySetupError(f"{template.name} names values the renderer does not have: {unknown}")
    return PLACEHOLDER.sub(lambda match: filled[match.group(1)], text)


def _redis_target(url: str) -> str:
    """The exporter's target: the server's address (scheme, credentials, host, port), no database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _redis_targets(stack: Stack) -> str:
    lines = []
    for role, url in stack.redis_urls.items():
        lines += [f"      - targets: ['{_redis_target(url)}']", f"        labels: {{role: {role}}}"]
    return "\n".join(lines)


def prometheus_values(stack: Stack) -> dict[str, str]:
    p = stack.ports
    return {
        "scrape_interval": stack.scrape_interval,
        "evaluation_interval": stack.evaluation_interval,
        "rules": str(RULES_DIR / "*.yml"),
        "prometheus": f"{HOST}:{p.prometheus}",
        "alertmanager": f"{HOST}:{p.alertmanager}",
        "web": stack.web_target,
        "worker": f"{HOST}:{p.worker_metrics}",
        "ai": f"{HOST}:{p.ai_metrics}",
        "node": f"{HOST}:{p.node_exporter}",
        "redis_exporter": f"{HOST}:{p.redis_exporter}",
        "redis_targets": _redis_targets(stack),
        "postgres": f"{HOST}:{p.postgres_exporter}",
        "nginx": f"{HOST}:{p.nginx_exporter}",
    }


def render_prometheus(stack: Stack) -> str:
    return _fill(PROMETHEUS_TEMPLATE, prometheus_values(stack))


def render_alertmanager(stack: Stack) -> str:
    return _fill(ALERTMANAGER_TEMPLATE, {})


def write(stack: Stack) -> None:
    """Render both configurations and assemble the console libraries under VAR_DIR."""
    for directory in (stack.prometheus_dir / "data", stack.alertmanager_dir / "data", stack.console_libraries):
        directory.mkdir(parents=True, exist_ok=True)
    stack.prometheus_config.write_text(render_prometheus(stack))
    stack.alertmanager_config.write_text(render_alertmanager(stack))
    if not PROM_LIB.exists():
        raise ObservabilitySetupError(f"{PROM_LIB} not found: apt-get install prometheus")
    shutil.copyfile(PROM_LIB, stack.console_libraries / PROM_LIB.name)
    shutil.copyfile(CONSOLE_LIBRARY, stack.console_libraries / CONSOLE_LIBRARY.name)


def program(name: str) -> str:
    found = shutil.which(PROGRAMS[name]) or shutil.which(PROGRAMS[name], path="/usr/sbin:/usr/bin")
    if not found:
        raise ObservabilitySetupError(f"{PROGRAMS[name]} not found: apt-get install {PROGRAMS[name]}")
    return found


def postgres_dsn(database_url: str) -> str | None:
    """The exporter's connection string; None when the app does not run on PostgreSQL."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        return None
    query = parts.query if "sslmode=" in parts.query else "&".join(filter(None, [parts.query, "sslmode=disable"]))
    return urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))


def command(stack: Stack, name: str) -> tuple[list[str], dict[str, str]]:
    """The command line of one process of the stack, and the environment variables it needs."""
    p = stack.ports
    listen = "--web.listen-address"
    if name == "prometheus":
        return [
            program(name),
            f"--config.file={stack.prometheus_config}",
            f"--storage.tsdb.path={stack.prometheus_dir / 'data'}",
            f"--storage.tsdb.retention.time={stack.retention}",
            f"{listen}={HOST}:{p.prometheus}",
            f"--web.console.templates={CONSOLES_DIR}",
            f"--web.console.libraries={stack.console_libraries}",
        ], {}
    if name == "alertmanager":
        return [
            program(name),
            f"--config.file={stack.alertmanager_config}",
            f"--storage.path={stack.alertmanager_dir / 'data'}",
            f"{listen}={HOST}:{p.alertmanager}",
            # One Alertmanager: no gossip port.
            "--cluster.listen-address=",
        ], {}
    if name == "node-exporter":
        # No systemd here (the processes are honcho's): its collector would log an error each scrape.
        return [program(name), f"{listen}={HOST}:{p.node_exporter}", "--no-collector.systemd"], {}
    if name == "redis-exporter":
        # Scraped through /scrape?target= for each Redis (prometheus.yml); its own address is the broker.
        broker = _redis_target(stack.redis_urls["broker"])
        return [program(name), f"--web.listen-address={HOST}:{p.redis_exporter}", f"--redis.addr={broker}"], {}
    if name == "postgres-exporter":
        dsn = postgres_dsn(stack.database_url)
        if dsn is None:
            raise ObservabilitySetupError("DATABASE_URL is not PostgreSQL: no postgres exporter")
        return [program(name), f"{listen}={HOST}:{p.postgres_exporter}"], {"DATA_SOURCE_NAME": dsn}
    if name == "nginx-exporter":
        # This exporter's flags take one dash. It exits when nginx does not answer at its start
        # (and honcho would then stop everything): nginx starts alongside, so it is given 5 minutes.
        return [
            program(name),
            f"-web.listen-address={HOST}:{p.nginx_exporter}",
            f"-nginx.scrape-uri=http://{HOST}:{p.nginx_status}/stub_status",
            "-nginx.retries=60",
            "-nginx.retry-interval=5s",
        ], {}
    raise ObservabilitySetupError(f"unknown process {name!r}: one of {', '.join(PROGRAMS)}")


def names() -> Sequence[str]:
    return tuple(PROGRAMS)
