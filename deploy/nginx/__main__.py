"""python -m deploy.nginx [render|check|run]: nginx for `make run`, from the app's settings.

render writes VAR_DIR/nginx/nginx.conf (and the self-signed certificate, the first time); check
renders, then runs `nginx -t`; run renders, then becomes nginx (in the foreground, for honcho).
"""

import argparse
import os
import sys

from assistant_site.env import env_int

from .config import NginxSetupError, Site, check, command, write


def site_from_settings() -> Site:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
    from django.conf import settings

    web_port = settings.WEB_PORT
    processes = settings.WEB_PROCESSES
    return Site(
        prefix=settings.VAR_DIR / "nginx",
        upstreams=[f"127.0.0.1:{web_port + i}" for i in range(processes)],
        static_root=settings.STATIC_ROOT,
        static_url=settings.STATIC_URL,
        media_root=settings.MEDIA_ROOT,
        http_port=settings.APP_PORT,
        https_port=settings.HTTPS_PORT,
        max_upload_bytes=settings.MAX_UPLOAD_BYTES,
        max_rivet_project_bytes=settings.MAX_RIVET_PROJECT_BYTES,
        # What /v1/ waits at most: the OpenAI endpoint answers 504 after OPENAI_WAIT_SECONDS.
        transcription_time_limit=settings.OPENAI_WAIT_SECONDS,
        login_rate_per_minute=settings.NGINX_LOGIN_RATE,
        api_rate_per_second=settings.NGINX_API_RATE,
        # Read by deploy/observability too (the nginx exporter's scrape address).
        status_port=env_int("NGINX_STATUS_PORT", 8088, minimum=1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.nginx", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", nargs="?", choices=["render", "check", "run"], default="render")
    action = parser.parse_args(argv).action
    try:
        site = site_from_settings()
        conf = write(site)
        if action == "check":
            result = check(site)
            sys.stderr.write(result.stderr)
            return result.returncode
        if action == "run":
            argv_nginx = command(site)
            print(f"nginx: {site.https_url} (HTTP/2, self-signed) and {site.http_url}", flush=True)
            os.execv(argv_nginx[0], argv_nginx)
    except NginxSetupError as error:
        print(f"deploy.nginx: {error}", file=sys.stderr)
        return 1
    print(conf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
