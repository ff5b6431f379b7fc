"""The transcription job's steps: claim a queued recording, decode and transcribe it, save the
transcript, or fail it with a reason; and the reaper that takes back the jobs whose worker died. The
actions layer (actions/recordings.py) strings them together and adds what follows a stored transcript.

State changes are conditional updates, so two workers handed the same job (a broker redelivery, a
copy sent by the reaper) can never both process it. Each claim counts an attempt, and the attempt
number is the claim's token: only the worker holding the current attempt may store or fail the job,
so a worker the reaper gave up on (stalled, not dead) can never store a second transcript.
"""

import logging
import os
import socket
import time
from contextlib import contextmanager
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone
from opentelemetry import trace

from common import metrics
from common.heartbeat import Heartbeat

from . import engine
from .models import Recording, Segment, Transcript
from .progress import ProgressReporter, publish

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# The one failure that is ours, not the file's: callers (the OpenAI endpoint) answer it with a 500.
INTERNAL_ERROR = "Transcription failed because of an internal error; please try again."


def time_limit_error() -> str:
    return (
        f"Transcription was stopped: it took longer than the {settings.TRANSCRIPTION_TIME_LIMIT} s limit "
        "(TRANSCRIPTION_TIME_LIMIT). A shorter recording, or a smaller model, will fit."
    )


def worker_lost_error(attempts: int) -> str:
    return (
        f"Transcription failed: the worker stopped while transcribing this recording, {attempts} times "
        "(it was restarted, or ran out of memory); it was not tried again."
    )


class JobLost(Exception):
    """The reaper took this job back (this worker's heartbeat was late): stop, and store nothing."""


def _current_attempt(recording: Recording) -> Q:
    return Q(pk=recording.pk, status=Recording.Status.PROCESSING, attempts=recording.attempts)


def claim(recording_id: int) -> Recording | None:
    """Move a recording from QUEUED to PROCESSING, as a new attempt; None if it was not queued
    (another worker has it, it is finished, or it is gone)."""
    now = timezone.now()
    updated = Recording.objects.filter(pk=recording_id, status=Recording.Status.QUEUED).update(
        status=Recording.Status.PROCESSING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        worker=f"{socket.gethostname()} {os.getpid()}",
        progress=0.0,
        error="",
    )
    return Recording.objects.get(pk=recording_id) if updated else None


def beat(recording: Recording) -> bool:
    """Refresh the heartbeat of the recording's current attempt; False if the attempt is no longer current."""
    return bool(Recording.objects.filter(_current_attempt(recording)).update(heartbeat_at=timezone.now()))


@contextmanager
def heartbeat(recording: Recording):
    """While the block runs, the job's heartbeat is kept fresh (a thread, every JOB_HEARTBEAT_SECONDS).
    Not for a job run inside a transaction (a test's): no other connection could see its row."""
    if connection.in_atomic_block:
        yield None
        return
    with Heartbeat(lambda: beat(recording), settings.JOB_HEARTBEAT_SECONDS, f"heartbeat-{recording.pk}") as pulse:
        yield pulse


def fail(recording: Recording, reason: str) -> None:
    Recording.objects.filter(_current_attempt(recording)).update(
        status=Recording.Status.FAILED, error=reason, finished_at=timezone.now()
    )
    recording.refresh_from_db()
    publish(recording)


def transcribe_claimed(recording: Recording, pulse: Heartbeat | None = None) -> engine.TranscriptionResult | None:
    """Decode and transcribe a claimed recording, reporting progress. None when it failed: the
    recording is then FAILED with a reason the user can read. SoftTimeLimitExceeded (the task's time
    limit) and JobLost (`pulse` found the job taken back) are the caller's to handle."""
    publish(recording)
    reporter = ProgressReporter(recording)

    def on_progress(fraction: float) -> None:
        if pulse is not None and pulse.lost.is_set():
            raise JobLost(f"recording {recording.pk}, attempt {recording.attempts}")
        reporter(fraction)

    started = time.perf_counter()
    try:
        with tracer.start_as_current_span("transcription.decode") as span:
            audio = engine.decode_audio(recording.audio.path)
            span.set_attribute("audio.seconds", round(len(audio) / engine.SAMPLE_RATE, 3))
    except (engine.AudioDecodeError, FileNotFoundError) as exc:
        reason = str(exc) if isinstance(exc, engine.AudioDecodeError) else "The uploaded file is missing."
        fail(recording, reason)
        return None
    decoded = time.perf_counter() - started
    recording.duration = round(len(audio) / engine.SAMPLE_RATE, 3)
    Recording.objects.filter(pk=recording.pk).update(duration=recording.duration)
    try:
        options = engine.Options.from_dict(recording.options)
        with tracer.start_as_current_span("transcription.inference") as span:
            result = engine.transcribe(audio, options, on_progress=on_progress)
            span.set_attributes(
                {
                    "whisper.model": result.model_name,
                    "whisper.compute_type": result.compute_type,
                    "whisper.pipeline": result.pipeline,
                    "whisper.segments": len(result.segments),
                }
            )
        metrics.transcribed(result.model_name, result.duration, decoded, result.processing_seconds)
        return result
    except (SoftTimeLimitExceeded, JobLost):
        raise
    except engine.OptionError as exc:
        fail(recording, str(exc))  # e.g. a model removed from the settings since the upload
    except Exception:
        log.exception("transcription of recording %s failed", recording.pk)
        fail(recording, INTERNAL_ERROR)
    return None


def save_transcript(recording: Recording, result: engine.TranscriptionResult) -> bool:
    """Replace the recording's transcript and segments with `result` and mark it DONE, in the caller's
    transaction. False (nothing written) if the recording is no longer PROCESSING in this attempt:
    someone else finished, failed or took it back meanwhile."""
    finished = Recording.objects.filter(_current_attempt(recording)).update(
        status=Recording.Status.DONE, progress=1.0, finished_at=timezone.now()
    )
    if not finished:
        return False
    Transcript.objects.filter(recording=recording).delete()
    transcript = Transcript.objects.create(
        recording=recording,
        text=result.text,
        language=result.language,
        language_probability=result.language_probability,
        model_name=result.model_name,
        compute_type=result.compute_type,
        pipeline=result.pipeline,
        processing_seconds=result.processing_seconds,
    )
    Segment.objects.bulk_create(
        Segment(
            transcript=transcript,
            index=s.index,
            start=s.start,
            end=s.end,
            text=s.text,
            avg_logprob=s.avg_logprob,
            no_speech_prob=s.no_speech_prob,
            compression_ratio=s.compression_ratio,
            words=[[w.start, w.end, w.word, w.probability] for w in s.words] if s.words else None,
        )
        for s in result.segments
    )
    return True


def reap() -> list[int]:
    """Take back the jobs whose worker died, and find those whose queue message was lost. Returns
    the recordings to send to the queue again.

    - PROCESSING with a heartbeat older than JOB_HEARTBEAT_TIMEOUT: its worker died (a hard time
      limit is such a death). Back to QUEUED, unless it has had JOB_MAX_ATTEMPTS attempts or outlived
      the time limit: then FAILED, saying why.
    - QUEUED for longer than JOB_REQUEUE_SECONDS: sent again (the claim makes a copy harmless), and
      its clock restarted, so a long queue gets at most one copy per job per JOB_REQUEUE_SECONDS.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
    too_old = now - timedelta(seconds=settings.TRANSCRIPTION_TIME_LIMIT)
    to_send = []
    dead = Recording.objects.filter(status=Recording.Status.PROCESSING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    )
    for recording in dead.only("pk", "attempts", "heartbeat_at", "started_at", "worker", "options"):
        # Only if nothing moved since we looked (a late heartbeat, another reaper).
        unchanged = Recording.objects.filter(_current_attempt(recording), heartbeat_at=recording.heartbeat_at)
        if recording.started_at and recording.started_at < too_old:
            reason = time_limit_error()
        elif recording.attempts >= settings.JOB_MAX_ATTEMPTS:
            reason = worker_lost_error(recording.attempts)
        else:
            reason = ""
        if reason:
            taken = unchanged.update(status=Recording.Status.FAILED, error=reason, finished_at=now)
        else:
            taken = unchanged.update(
                status=Recording.Status.QUEUED, queued_at=now, heartbeat_at=None, progress=0.0, worker=""
            )
            if taken:
                to_send.append(recording.pk)
        if taken and reason:
            metrics.transcription_ended(recording.options, "time_limit" if reason == time_limit_error() else "failed")
        if taken:
            log.warning(
                "recording %s: worker %r stopped beating at attempt %s; %s",
                recording.pk,
                recording.worker,
                recording.attempts,
                f"failed: {reason}" if reason else "queued again",
            )
            publish(Recording.objects.get(pk=recording.pk))
    waiting = Recording.objects.filter(
        status=Recording.Status.QUEUED, queued_at__lt=now - timedelta(seconds=settings.JOB_REQUEUE_SECONDS)
    )
    for recording_id in waiting.values_list("pk", flat=True):
        # Conditional on the old clock, so two reapers at once send one copy.
        if waiting.filter(pk=recording_id).update(queued_at=now):
            log.warning(
                "recording %s: queued for over %s s and not claimed; sent again",
                recording_id,
                settings.JOB_REQUEUE_SECONDS,
            )
            to_send.append(recording_id)
    return to_send
