"""python -m deploy.observability [render | run NAME]: Prometheus, Alertmanager and the exporters.

render writes VAR_DIR/prometheus/prometheus.yml and VAR_DIR/alertmanager/alertmanager.yml (and prints
the first); run NAME renders, then becomes that process, in the foreground for honcho (Procfile).
NAME is one of prometheus, alertmanager, node-exporter, redis-exporter, postgres-exporter,
nginx-exporter. Ports come from the environment (README, "Prometheus, alerts and dashboards").
"""

import argparse
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from assistant_site.env import env_int

from .config import ObservabilitySetupError, Ports, Stack, command, names, write


def ports_from_env() -> Ports:
    defaults = Ports()
    return Ports(
        prometheus=env_int("PROMETHEUS_PORT", defaults.prometheus, minimum=1),
        alertmanager=env_int("ALERTMANAGER_PORT", defaults.alertmanager, minimum=1),
        node_exporter=env_int("NODE_EXPORTER_PORT", defaults.node_exporter, minimum=1),
        redis_exporter=env_int("REDIS_EXPORTER_PORT", defaults.redis_exporter, minimum=1),
        postgres_exporter=env_int("POSTGRES_EXPORTER_PORT", defaults.postgres_exporter, minimum=1),
        nginx_exporter=env_int("NGINX_EXPORTER_PORT", defaults.nginx_exporter, minimum=1),
        nginx_status=env_int("NGINX_STATUS_PORT", defaults.nginx_status, minimum=1),
        worker_metrics=env_int("WORKER_METRICS_PORT", defaults.worker_metrics, minimum=1),
        ai_metrics=env_int("AI_METRICS_PORT", defaults.ai_metrics, minimum=1),
    )


def stack_from_settings() -> Stack:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
    from django.conf import settings

    return Stack(
        var_dir=settings.VAR_DIR,
        web_target=f"127.0.0.1:{settings.WEB_PORT}",
        redis_urls={"broker": settings.REDIS_URL, "cache": settings.REDIS_CACHE_URL},
        database_url=_database_url(settings.DATABASES["default"]),
        ports=ports_from_env(),
    )


def _database_url(db: Mapping[str, Any]) -> str:
    """The app's database as a URL for the postgres exporter ("sqlite://" when it is not PostgreSQL)."""
    if "postgresql" not in db["ENGINE"]:
        return "sqlite://"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.observability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["render", "run"])
    parser.add_argument("name", nargs="?", choices=names())
    args = parser.parse_args(argv)
    try:
        stack = stack_from_settings()
        write(stack)
        if args.action == "render":
            print(stack.prometheus_config.read_text())
            return 0
        if args.name is None:
            parser.error("run needs a NAME")
        try:
            argv_run, env = command(stack, args.name)
        except ObservabilitySetupError as error:
            if args.name != "postgres-exporter":
                raise
            # On SQLite there is nothing to export; exiting would make honcho stop everything.
            print(f"deploy.observability: {error}; idle", flush=True)
            signal.pause()
            return 0
        print(f"{args.name}: {' '.join(argv_run[1:])}", flush=True)
        os.execve(argv_run[0], argv_run, {**os.environ, **env})
    except ObservabilitySetupError as error:
        print(f"deploy.observability: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
