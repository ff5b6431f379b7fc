"""Screenshots of the console dashboards, in headless Chromium: python -m deploy.observability.screenshots.

    python -m deploy.observability.screenshots [--url http://127.0.0.1:9090] [--out var/screenshots]

Takes one PNG per dashboard (dashboards.py) from a running Prometheus (`make run`'s by default) with
Debian's chromium. The graphs load their data after the page: Chromium's virtual time budget lets
those requests finish before the picture is taken.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from assistant_site.env import env_int

from .dashboards import DASHBOARDS

ROOT = Path(__file__).resolve().parent.parent.parent
# Without the background-networking flags Chromium keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def screenshot(chromium: str, url: str, out: Path, height: int, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size=1400,{height}",
                f"--virtual-time-budget={wait_ms}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def seconds(duration: str) -> int:
    """30m, 1h, 2d -> seconds."""
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    if not match:
        raise argparse.ArgumentTypeError(f"a duration like 30m, 1h or 2d, not {duration!r}")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def main(argv: list[str] | None = None) -> int:
    port = env_int("PROMETHEUS_PORT", 9090, minimum=1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"http://127.0.0.1:{port}", help="the Prometheus serving the consoles")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "screenshots")
    parser.add_argument("--range", type=seconds, default="1h", help="the graphs' time range (e.g. 30m, 1h, 1d)")
    parser.add_argument("--wait-ms", type=int, default=15000, help="virtual time for the graphs to load")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for dashboard in DASHBOARDS:
        out = args.out / f"{dashboard.slug}.png"
        # About 330 pixels a graph, one under the other.
        height = 260 + 330 * len(dashboard.panels)
        # The consoles' time control reads its range from the URL's fragment (prom_console.js).
        view = "#pctc" + json.dumps({"duration": args.range, "endTime": 0}, separators=(",", ":"))
        screenshot(chromium, f"{args.url}/consoles/{dashboard.slug}.html{view}", out, height, args.wait_ms)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
