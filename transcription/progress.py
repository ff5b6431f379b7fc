"""Job progress pushed to the recording page through the channel layer (Redis)."""

import logging
import time

from asgiref.sync import async_to_sync
from celery.exceptions import SoftTimeLimitExceeded
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

log = logging.getLogger(__name__)


def recording_group(recording_id: int) -> str:
    return f"recording-{recording_id}"


def publish(recording) -> None:
    """Send the recording's current state to every page watching it.

    Best effort: the state is in the database too, and a page that (re)connects is sent it, so a
    hiccup of the channel layer must not fail the job.
    """
    try:
        layer = get_channel_layer()
        if layer is None:
            raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer")
        async_to_sync(layer.group_send)(
            recording_group(recording.id),
            {"type": "recording.progress", "data": recording.progress_payload()},
        )
    except SoftTimeLimitExceeded:
        raise  # the job's time is up, wherever it finds it: not a hiccup of the layer
    except Exception:
        log.warning("could not publish progress of recording %s", recording.id, exc_info=True)


class ProgressReporter:
    """Stores and publishes progress, at most once per PROGRESS_INTERVAL_SECONDS.

    Decoding yields a segment every few hundred milliseconds; writing and pushing each one would
    cost more than it tells the user.
    """

    def __init__(self, recording):
        self.recording = recording
        self._last_sent = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self._last_sent < settings.PROGRESS_INTERVAL_SECONDS:
            return
        self._last_sent = now
        self.recording.progress = fraction
        try:
            type(self.recording).objects.filter(pk=self.recording.pk).update(progress=fraction)
        except DatabaseError:
            # Progress is a courtesy: a busy or restarting database ("database is locked") must not
            # cost the transcription. The next update, or the result, brings the row up to date.
            log.warning("could not store progress of recording %s", self.recording.pk, exc_info=True)
        publish(self.recording)
