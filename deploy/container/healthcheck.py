"""The image's HEALTHCHECK: is this container's process answering? Exit 0 if so, 1 if not.

The role comes from /tmp/role (entrypoint.sh writes it): a healthcheck runs as a separate process,
without the entrypoint's arguments.
"""

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def url_for(role: str) -> str | None:
    if role == "web":
        # Liveness: the process answers (a constant, no dependency asked). /readyz has each
        # dependency's state (allowed from this machine): assistant_site/views.py.
        return f"http://127.0.0.1:{os.environ.get('APP_PORT', '8000')}/healthz"
    if role == "llm":
        return f"http://127.0.0.1:{os.environ.get('LLM_PORT', '8081')}/v1/models"
    return None  # workers, beat, migrate: no port; the orchestrator restarts them when they exit


def main() -> int:
    role_file = Path("/tmp/role")
    role = role_file.read_text().strip() if role_file.exists() else "web"
    url = url_for(role)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
