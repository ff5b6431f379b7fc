"""The transcription job: claim a queued recording, decode, transcribe, store, report.

State changes are conditional updates, so two workers handed the same job (a broker
redelivery) can never both process it.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from graph import outbox as graph_outbox
from graph.models import GraphChange

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


def store_result(recording: Recording, result: engine.TranscriptionResult) -> bool:
    """Save the transcript and its segments and mark the recording done, all or nothing."""
    with transaction.atomic():
        finished = Recording.objects.filter(pk=recording.pk, status=Recording.Status.PROCESSING).update(
            status=Recording.Status.DONE, progress=1.0, finished_at=timezone.now()
        )
        if not finished:
            return False  # someone else finished or failed it meanwhile
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
        # The graph follows in its own time: a Neo4j outage must never cost a transcript.
        graph_outbox.record(GraphChange.Kind.WRITE, recording.pk, recording.owner_id)
        if settings.WORKFLOWS_AUTO_RUN:
            from workflows import builtin, runs

            runs.start_builtin(builtin.SUMMARY, recording)
    return True


def run(recording_id: int) -> bool:
    """Transcribe one recording. True when a transcript was stored."""
    recording = claim(recording_id)
    if recording is None:
        log.info("recording %s is not waiting for transcription; skipped", recording_id)
        return False
    publish(recording)
    try:
        audio = engine.decode_audio(recording.audio.path)
    except (engine.AudioDecodeError, FileNotFoundError) as exc:
        reason = str(exc) if isinstance(exc, engine.AudioDecodeError) else "The uploaded file is missing."
        fail(recording, reason)
        return False
    recording.duration = round(len(audio) / engine.SAMPLE_RATE, 3)
    Recording.objects.filter(pk=recording.pk).update(duration=recording.duration)
    try:
        options = engine.Options.from_dict(recording.options)
        result = engine.transcribe(audio, options, on_progress=ProgressReporter(recording))
    except engine.OptionError as exc:
        fail(recording, str(exc))  # e.g. a model removed from the settings since the upload
        return False
    except Exception:
        log.exception("transcription of recording %s failed", recording_id)
        fail(recording, INTERNAL_ERROR)
        return False
    stored = store_result(recording, result)
    recording.refresh_from_db()
    publish(recording)
    return stored
