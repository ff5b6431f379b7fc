"""A running job's heartbeat: a small thread that tells the database, every few seconds, that the job's
worker is alive. The reaper takes back a job whose heartbeat has stopped (its worker died).

A thread rather than the job's progress callback: decoding, voice detection and storing report no
progress, and may each take minutes on a long file.
"""

import logging
import threading
from collections.abc import Callable

from django.db import connections

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls `beat()` every `interval` seconds until stopped. `beat` returns False when the job is no
    longer this worker's (the reaper took it back): `lost` is then set, and the job should stop. A beat
    that fails (the database away for a moment) is only logged: it never fails the job, and a
    heartbeat that stays away long enough lets the reaper decide."""

    def __init__(self, beat: Callable[[], bool], interval: float, name: str = "heartbeat"):
        self._beat, self._interval = beat, interval
        self._stopped = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval + 30)

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self._interval):
                try:
                    if not self._beat():
                        self.lost.set()
                        return
                except Exception:
                    log.warning("heartbeat failed; trying again in %s s", self._interval, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections, back to the pool
