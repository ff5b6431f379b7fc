"""Recordings: accepting an upload, transcribing it, storing a transcript (uploads and live sessions
alike), setting what a workflow found in it, deleting it."""

import logging

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone
from opentelemetry import trace

from common import metrics
from common.queueing import enqueue_on_commit
from graph import outbox as graph_outbox
from graph.models import GraphChange
from transcription import engine, jobs, live, live_store, quotas
from transcription.models import Recording
from transcription.progress import publish
from workflows import builtin

from . import workflow_runs

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def accept_upload(
    owner, uploaded_file, title: str, options: engine.Options | None, audio: engine.AudioInfo
) -> Recording:
    """Store an uploaded, probed file as a queued recording; its transcription starts once that is
    committed. quotas.QuotaExceeded (and nothing stored) when it would pass one of the owner's limits.

    The file is written first, so the database's write lock is never held while it is; then one short
    transaction checks the quotas with the owner's row locked and inserts the row. If that fails, the
    file goes again."""
    from .tasks import transcribe_recording

    recording = Recording(
        owner=owner,
        title=title,
        size_bytes=uploaded_file.size,
        options=options.to_dict() if options else {},
        audio_mime=audio.mime,
        duration=round(audio.duration, 3) if audio.duration is not None else None,
    )
    # Named by us (a uuid, the extension of the probed format), never after the user's file.
    recording.audio.save(f"upload{audio.extension}", uploaded_file, save=False)
    try:
        with transaction.atomic():
            get_user_model().objects.select_for_update().only("pk").get(pk=owner.pk)  # one upload at a time
            quotas.check(owner.pk, recording.size_bytes)
            recording.save()
            # On commit, so the worker never looks for a row that is not there yet. With Redis away the
            # upload still stands: the reaper sends the job once Redis is back (JOB_REQUEUE_SECONDS).
            enqueue_on_commit(transcribe_recording, recording.id)
    except BaseException:
        if recording.audio.name:
            recording.audio.storage.delete(recording.audio.name)
        raise
    return recording


def transcribe(recording_id: int) -> bool:
    """The transcription job: claim the recording, transcribe it, store the transcript. True when a
    transcript was stored; whatever goes wrong, the recording ends DONE or FAILED, never stranded:
    a failure here fails it with a reason, and if this process dies the reaper takes it back."""
    recording = jobs.claim(recording_id)
    if recording is None:
        log.info("recording %s is not waiting for transcription; skipped", recording_id)
        return False
    try:
        with jobs.heartbeat(recording) as pulse:
            result = jobs.transcribe_claimed(recording, pulse)
            if result is None:
                metrics.transcription_ended(recording.options, "failed")
                return False
            # The graph write and the summary run are queued in this span: their traces go on from it.
            with (
                tracer.start_as_current_span("transcription.store"),
                metrics.TRANSCRIPTION_STEP.labels(result.model_name, "store").time(),
            ):
                stored = store_transcript(recording, result)
    except SoftTimeLimitExceeded:  # at any stage: decoding, inference, storing (rolled back)
        log.warning("recording %s: time limit reached", recording_id)
        jobs.fail(recording, jobs.time_limit_error())
        metrics.transcription_ended(recording.options, "time_limit")
        return False
    except jobs.JobLost:
        log.warning(
            "recording %s: taken back by the reaper during attempt %s; stopped", recording_id, recording.attempts
        )
        metrics.transcription_ended(recording.options, "lost")
        return False
    except Exception:
        log.exception("transcribing or storing recording %s failed", recording_id)
        jobs.fail(recording, jobs.INTERNAL_ERROR)
        metrics.transcription_ended(recording.options, "failed")
        return False
    metrics.transcription_ended(recording.options, "done" if stored else "lost")
    recording.refresh_from_db()
    publish(recording)
    return stored


def reap_stranded_jobs() -> int:
    """The reaper's round for transcriptions (see jobs.reap): send again the jobs taken back from a
    dead worker, or whose queue message was lost. Returns how many were sent."""
    from .tasks import transcribe_recording

    sent = 0
    for recording_id in jobs.reap():
        try:
            transcribe_recording.delay(recording_id)
            sent += 1
        except Exception:  # Redis away: it stays queued, and a later round sends it
            log.exception("could not queue recording %s again; a later round will", recording_id)
    metrics.JOBS_REQUEUED.labels("transcription").inc(sent)
    return sent


def store_transcript(recording: Recording, result: engine.TranscriptionResult) -> bool:
    """Store a processing recording's transcript and mark it DONE, with its follow-ups: all or nothing.
    The one way a transcript is stored, for uploads and live sessions alike. False if the recording
    was no longer processing (another worker finished or failed it)."""
    with transaction.atomic():
        if not jobs.save_transcript(recording, result):
            return False
        _follow_up_transcript(recording)
    return True


def _follow_up_transcript(recording: Recording) -> None:
    # The graph write's outbox row is a plain insert, as sure as the transcript's own rows: the graph
    # follows in its own time, and a Neo4j outage never costs a transcript.
    graph_outbox.record(GraphChange.Kind.WRITE, recording.pk, recording.owner_id)
    if settings.WORKFLOWS_AUTO_RUN:
        try:
            with transaction.atomic():  # a savepoint: a failing start never undoes the transcript
                workflow_runs.start_builtin(builtin.SUMMARY, recording)
        except Exception:
            log.exception("could not start the summary of recording %s; the transcript stands", recording.pk)


def save_live_session(session: live.LiveSession) -> Recording:
    """A stopped live session as a recording like an upload's: its audio, then its transcript through
    `store_transcript`, so it gets the same follow-ups (graph write, summary run). Saving the same
    session again returns the recording it was saved as: a session is stored once."""
    return _save_live_audio(session, session.result())


def save_failed_live_session(session: live.LiveSession, attempts: int) -> Recording:
    """The last resort for a session that could not be saved LIVE_SAVE_ATTEMPTS times: a FAILED
    recording that still has all of its audio (it can be transcribed again), and no transcript."""
    return _save_live_audio(
        session,
        None,
        error=f"The live session could not be saved ({attempts} attempts); its audio is kept, without a transcript.",
    )


def _save_live_audio(
    session: live.LiveSession, result: engine.TranscriptionResult | None, error: str = ""
) -> Recording:
    existing = Recording.objects.filter(live_session=session.id).first()
    if existing is not None:
        return existing
    now = timezone.localtime()
    recording = Recording(
        owner_id=session.user_id,
        title=f"Live {now:%Y-%m-%d %H:%M}",
        status=Recording.Status.PROCESSING if result else Recording.Status.FAILED,
        error=error,
        duration=round(session.received_seconds, 3),
        size_bytes=session.wav_size(),
        options=session.options.to_dict() | {"pipeline": "live"},
        started_at=now,
        finished_at=None if result else now,
        live_session=session.id,
    )
    # The file is written before the transaction, so the database is not held while it is; it is
    # streamed from the spool (a WAV header, then the PCM), never held in memory.
    with session.wav_file() as wav:
        recording.audio.save(f"live-{session.id}.wav", File(wav, name=f"live-{session.id}.wav"), save=False)
    try:
        with transaction.atomic():
            recording.save()
            if result is not None:
                store_transcript(recording, result)
    except IntegrityError:  # saved meanwhile by another process: that one stands
        recording.audio.delete(save=False)
        return Recording.objects.get(live_session=session.id)
    except Exception:
        recording.audio.delete(save=False)
        raise
    return recording


def save_abandoned_live_sessions() -> int:
    """Save the live sessions whose web process died (or whose save failed) and that nobody resumed
    within LIVE_RESUME_SECONDS: their spooled audio and committed words, the rest transcribed here.
    A session that fails LIVE_SAVE_ATTEMPTS times is stored as a FAILED recording with its audio."""
    saved = 0
    for session_id in live_store.abandoned_sessions(settings.LIVE_RESUME_SECONDS):
        store = live_store.SessionStore(session_id)
        try:
            meta = store.meta()
            attempts = meta["save_attempts"] if meta else 0
            give_up = attempts >= settings.LIVE_SAVE_ATTEMPTS
            with live.LiveSession.abandoned(session_id, save_live_session, transcribe=not give_up) as session:
                if session is None:
                    continue  # another process took it meanwhile
                if session.received_bytes:
                    if give_up:
                        save_failed_live_session(session, attempts)
                    else:
                        save_live_session(session)
                    saved += 1
                session.discard()
            log.info("saved abandoned live session %s", session_id)
        except Exception:  # one that cannot be saved now is tried again next round; the rest go on
            log.exception("could not save abandoned live session %s", session_id)
            try:
                store.count_save_attempt()
            except Exception:
                log.exception("could not count the attempt at saving live session %s", session_id)
    return saved


def set_knowledge(owner_id: int, recording_id: int, entities: list[dict]) -> int:
    """Keep typed entities (a workflow's findings) as the recording's knowledge and have the graph
    follow. Returns how many were kept; LookupError if the recording is not the owner's."""
    with transaction.atomic():
        recording = Recording.objects.select_for_update().filter(owner_id=owner_id, pk=recording_id).first()
        if recording is None:
            raise LookupError(f"recording {recording_id} is not yours, or no longer exists")
        typed = [{"name": e["name"], "type": e.get("type") or "other"} for e in entities if e.get("name")]
        recording.knowledge = {**recording.knowledge, "entities": typed}
        recording.save(update_fields=["knowledge"])
        # Through the outbox like any graph change: the graph follows even if Neo4j is away now.
        graph_outbox.record(GraphChange.Kind.WRITE, recording.pk, owner_id)
    return len(typed)


def delete_recording(recording: Recording) -> None:
    """Remove a recording everywhere: its row (and transcript), its file, its graph nodes."""
    storage, name, recording_id = recording.audio.storage, recording.audio.name, recording.id
    with transaction.atomic():
        recording.delete()
        # The file goes only once the row is gone for good.
        transaction.on_commit(lambda: storage.delete(name) if name else None)
        graph_outbox.record(GraphChange.Kind.DELETE, recording_id, recording.owner_id)
