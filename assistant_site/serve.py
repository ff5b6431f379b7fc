"""The web tier's process manager (the seed's "PM2"): WEB_PROCESSES Daphne processes behind nginx.

    python -m assistant_site.serve                        # WEB_PROCESSES processes from WEB_PORT on
    python -m assistant_site.serve --processes 4 --port 9001   # (benchmarks/web.py)

Process i listens on 127.0.0.1:WEB_PORT+i (deploy/nginx renders one upstream `server` line for each).
A process that dies is started again, after a pause that doubles while it keeps dying soon after
its start (1 s up to 30 s), so a broken release does not spin the CPU. SIGTERM or SIGINT is passed to
every process; this one exits when they are all gone (killing any still there after STOP_TIMEOUT s).
A process holds nothing that cannot be lost (live sessions are resumed by any of them), so a restart
costs only the requests in flight.
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from django.conf import settings

from common import metrics_dir

logger = logging.getLogger("assistant_site.serve")

FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0
# A process that ran this long before dying was healthy: its next restart waits FIRST_BACKOFF again.
HEALTHY_AFTER = 30.0
STOP_TIMEOUT = 30.0


def daphne_command(port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "--proxy-headers", "-b", "127.0.0.1", "-p", str(port)] + [
        "assistant_site.asgi:application"
    ]


class Slot:
    """One port and the Daphne process serving it (None while waiting to restart)."""

    def __init__(self, port: int):
        self.port, self.backoff, self.restart_at = port, FIRST_BACKOFF, 0.0
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> None:
        self.process, self.started = subprocess.Popen(daphne_command(self.port)), time.monotonic()
        logger.info("web process %s started on port %s", self.process.pid, self.port)

    def check(self, now: float) -> None:
        """Start the process when due; notice that it died and schedule its restart."""
        if self.process is None:
            if now >= self.restart_at:
                self.start()
            return
        code = self.process.poll()
        if code is None:
            return
        lived = now - self.started
        mark_dead(self.process.pid)
        self.backoff = FIRST_BACKOFF if lived >= HEALTHY_AFTER else min(self.backoff * 2, MAX_BACKOFF)
        logger.warning(
            "web process %s on port %s exited (code %s) after %.1f s; restarting in %.0f s",
            self.process.pid,
            self.port,
            code,
            lived,
            self.backoff,
        )
        self.process, self.restart_at = None, now + self.backoff


def share_metrics_dir() -> None:
    """The Daphne processes write their metrics to one directory (emptied now) that any of them
    reads to answer /metrics: set before they start, as prometheus_client reads it at import."""
    if getattr(settings, "METRICS_ENABLED", True):
        os.environ[metrics_dir.ENV] = metrics_dir.prepare(metrics_dir.var_dir() / "metrics" / "web")


def mark_dead(pid: int) -> None:
    """A dead process's live gauges (its open sockets, its live streams) leave the sum."""
    if path := os.environ.get(metrics_dir.ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)


def serve(processes: int, first_port: int) -> None:
    share_metrics_dir()
    slots = [Slot(first_port + i) for i in range(processes)]
    stopping: list[int] = []

    def forward(signum, frame):
        stopping.append(signum)
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    logger.info("serving with %s web processes on ports %s-%s", processes, first_port, first_port + processes - 1)
    while not stopping:
        now = time.monotonic()
        for slot in slots:
            slot.check(now)
        time.sleep(0.2)
    deadline = time.monotonic() + STOP_TIMEOUT
    for slot in slots:
        if slot.process is None:
            continue
        try:
            slot.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            logger.warning("web process %s did not stop within %.0f s: killed", slot.process.pid, STOP_TIMEOUT)
            slot.process.kill()
            slot.process.wait()
    logger.info("all web processes stopped")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, help="default: the WEB_PROCESSES setting")
    parser.add_argument("--port", type=int, help="the first process's port; default: the WEB_PORT setting")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve %(levelname)s %(message)s")
    serve(
        args.processes or getattr(settings, "WEB_PROCESSES", os.cpu_count() or 1),
        args.port or getattr(settings, "WEB_PORT", 8001),
    )


if __name__ == "__main__":
    main()
