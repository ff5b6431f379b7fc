"""The transcription job's steps: claim a queued recording, decode and transcribe it, save the
transcript, or fail it with a reason. The actions layer (actions/recordings.py) strings them together
and adds what follows a stored transcript.

State changes are conditional updates, so two workers handed the same job (a broker
redelivery) can never both process it.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import engine
from .models import Recording, Segment, Transcript
from .progress import ProgressReporter, publish

log = logging.getLogger(__name__)

# The one failure that is ours, not the file's: callers (the OpenAI endpoint) answer it with a 500.
INTERNAL_ERROR = "Transcription failed because of an internal error; please try again."


def claim(recording_id: int) -> Recording | None:
    """Move a recording to PROCESSING if it is queued (or stuck: its worker died mid-job)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.TRANSCRIPTION_TIME_LIMIT)
    claimable = Q(status=Recording.Status.QUEUED) | Q(status=Recording.Status.PROCESSING, started_at__lt=stale)
    updated = Recording.objects.filter(claimable, pk=recording_id).update(
        status=Recording.Status.PROCESSING, started_at=now, progress=0.0, error=""
    )
    return Recording.objects.get(pk=recording_id) if updated else None


def fail(recording: Recording, reason: str) -> None:
    Recording.objects.filter(pk=recording.pk, status=Recording.Status.PROCESSING).update(
        status=Recording.Status.FAILED, error=reason, finished_at=timezone.now()
    )
    recording.refresh_from_db()
    publish(recording)


def transcribe_claimed(recording: Recording) -> engine.TranscriptionResult | None:
    """Decode and transcribe a claimed recording, reporting progress. None when it failed: the
    recording is then FAILED with a reason the user can read."""
    publish(recording)
    try:
        audio = engine.decode_audio(recording.audio.path)
    except (engine.AudioDecodeError, FileNotFoundError) as exc:
        reason = str(exc) if isinstance(exc, engine.AudioDecodeError) else "The uploaded file is missing."
        fail(recording, reason)
        return None
    recording.duration = round(len(audio) / engine.SAMPLE_RATE, 3)
    Recording.objects.filter(pk=recording.pk).update(duration=recording.duration)
    try:
        options = engine.Options.from_dict(recording.options)
        return engine.transcribe(audio, options, on_progress=ProgressReporter(recording))
    except engine.OptionError as exc:
        fail(recording, str(exc))  # e.g. a model removed from the settings since the upload
    except Exception:
        log.exception("transcription of recording %s failed", recording.pk)
        fail(recording, INTERNAL_ERROR)
    return None


def save_transcript(recording: Recording, result: engine.TranscriptionResult) -> bool:
    """Replace the recording's transcript and segments with `result` and mark it DONE, in the caller's
    transaction. False (nothing written) if the recording is no longer PROCESSING: someone else
    finished or failed it meanwhile."""
    finished = Recording.objects.filter(pk=recording.pk, status=Recording.Status.PROCESSING).update(
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
