"""Fault injection on the real stack: a worker child killed mid-job, Redis restarted with jobs queued
(and away when a job is queued), the LLM server down; time limits that fire mid-job. Nothing is
stranded: each job ends done, or failed with a reason, and a transcript is stored once.

The reaper runs in a real beat process started here (every JOB_REAPER_SECONDS = 2 s in the test
settings, heartbeat timeout 15 s); the waits are generous deadlines, never timings. Neo4j down is
tests/test_worker.py's test_neo4j_down_keeps_the_transcript_and_fills_the_graph_in_later.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from actions import recordings, workflow_runs
from actions.tasks import transcribe_recording
from tests import services
from tests.conftest import ROOT, _wait_for_log
from tests.factories import speech_wav
from transcription import engine, jobs
from transcription.models import Recording, Segment
from transcription.openai_compat import wait_until_finished
from workflows import runs
from workflows.models import Workflow, WorkflowRun

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def beat(celery_worker_process, tmp_path_factory):
    """Celery beat, so the reaper runs (on the test worker, queue `maintenance`) every 2 s."""
    folder = tmp_path_factory.mktemp("beat")
    log = folder / "beat.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "assistant_site",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(folder / "schedule"),
        ],
        cwd=ROOT,
        env=services.test_process_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    _wait_for_log(process, log, "beat: Starting", 60)
    yield process
    services.stop(process)


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory):
    """About three minutes of varied speech (benchmarks/reference.txt, espeak-ng): a job long enough
    to be killed mid-way (transcribed sequentially, so that its progress shows it under way).
    Varied, not one sentence over and over: tiny.en takes a window of repeats for a hallucination
    and decodes it again at each fallback temperature (156 s of a repeated clip took 30 s here,
    70 s of this text 2.6 s), which only made the job after the kill slow."""
    text = " ".join(line.strip() for line in (ROOT / "benchmarks" / "reference.txt").read_text().splitlines())
    return speech_wav(text, tmp_path_factory.mktemp("long") / "long.wav", speed=150)


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)
    return value


def queued_recording(owner, path: Path, title: str, **options) -> Recording:
    recording = Recording(owner=owner, title=title, size_bytes=path.stat().st_size, options=options)
    recording.audio.save(path.name, ContentFile(path.read_bytes()), save=True)
    return recording


def fresh(recording: Recording) -> Recording:
    return Recording.objects.get(pk=recording.pk)


def kill_the_worker_child_of(recording: Recording, attempt: int, worker_pid: int) -> None:
    """SIGKILL the pool process transcribing `recording` in `attempt`, once it is under way."""

    def under_way():
        now = fresh(recording)
        return now.status == "processing" and now.attempts == attempt and now.progress > 0 and now

    running = wait_for(under_way, 120, f"attempt {attempt} to be under way")
    child = int(running.worker.split()[-1])
    assert child != worker_pid  # the pool's child, not the worker itself
    os.kill(child, signal.SIGKILL)


def assert_stored_once(recording: Recording) -> None:
    indexes = list(Segment.objects.filter(transcript__recording=recording).values_list("index", flat=True))
    assert indexes == list(range(len(indexes))) and indexes, indexes  # one set of segments, whole


# --- The worker dies mid-job ------------------------------------------------------------------------


def test_a_job_whose_worker_child_is_killed_is_done_by_the_next_attempt(
    beat, celery_worker_process, alice, long_speech
):
    worker, _ = celery_worker_process
    recording = queued_recording(alice, long_speech, "killed once", pipeline="sequential")
    transcribe_recording.delay(recording.id)

    kill_the_worker_child_of(recording, attempt=1, worker_pid=worker.pid)
    killed_at = time.monotonic()
    done = wait_for(lambda: fresh(recording).is_finished and fresh(recording), 180, "the job to finish")
    print(f"killed mid-job: {done.status} {time.monotonic() - killed_at:.0f} s later, attempts={done.attempts}")

    assert done.status == "done", done.error
    assert done.attempts == 2 and "warehouse" in done.transcript.text.lower()
    assert_stored_once(done)
    assert worker.poll() is None


def test_a_job_that_keeps_killing_its_worker_fails_with_the_reason_after_the_attempt_cap(
    beat, celery_worker_process, alice, long_speech
):
    worker, _ = celery_worker_process
    recording = queued_recording(alice, long_speech, "killed every time", pipeline="sequential")
    transcribe_recording.delay(recording.id)
    for attempt in range(1, settings.JOB_MAX_ATTEMPTS + 1):
        kill_the_worker_child_of(recording, attempt, worker.pid)

    failed = wait_for(lambda: fresh(recording).is_finished and fresh(recording), 120, "the job to fail")
    assert failed.status == "failed" and failed.attempts == settings.JOB_MAX_ATTEMPTS
    assert failed.error == jobs.worker_lost_error(settings.JOB_MAX_ATTEMPTS)
    assert not Segment.objects.filter(transcript__recording=recording).exists()


def test_a_soft_time_limit_mid_job_fails_the_job_with_the_reason(celery_worker_process, alice, long_speech):
    recording = queued_recording(alice, long_speech, "too long")
    # The limit for this one message: it fires wherever the job is (loading, decoding, transcribing).
    transcribe_recording.apply_async((recording.id,), soft_time_limit=1, time_limit=120)
    failed = wait_for(lambda: fresh(recording).is_finished and fresh(recording), 120, "the job to finish")
    assert failed.status == "failed" and failed.error == jobs.time_limit_error()
    assert not Segment.objects.filter(transcript__recording=recording).exists()


# --- Redis lost -------------------------------------------------------------------------------------


def upload(owner, path, title: str) -> Recording:
    """As the upload page does: the file probed, then accepted."""
    audio = SimpleUploadedFile("speech.wav", Path(path).read_bytes())
    return recordings.accept_upload(owner, audio, title, None, engine.probe_audio(audio))


def test_jobs_queued_when_redis_restarts_or_while_it_is_away_are_all_done(beat, celery_worker_process, alice, speech):
    path, _ = speech
    uploads = [upload(alice, path, f"queued {i}") for i in range(4)]
    still_queued = Recording.objects.filter(pk__in=[r.pk for r in uploads], status="queued").count()
    late = []

    def upload_while_redis_is_away():
        # Redis refuses the message: the upload stands (queued), and the reaper sends it later.
        late.append(upload(alice, path, "late"))

    services.restart_redis(settings.REDIS_URL, Path(settings.VAR_DIR) / "redis", between=upload_while_redis_is_away)
    assert still_queued >= 2  # the restart lost messages of jobs no worker had taken

    every = [r.pk for r in [*uploads, *late]]
    wait_for(
        lambda: not Recording.objects.filter(pk__in=every, status__in=("queued", "processing")).exists(),
        240,
        "every job to finish",
    )
    finished = Recording.objects.filter(pk__in=every)
    assert sorted(finished.values_list("status", flat=True)) == ["done"] * 5
    for recording in finished:
        assert_stored_once(recording)


# --- The LLM server down ----------------------------------------------------------------------------


def test_a_run_fails_with_the_reason_while_the_llm_is_down_and_a_later_run_succeeds(
    llm_server, celery_worker_process, alice, settings
):
    definition = {
        "nodes": [
            {"id": "q", "type": "passthrough", "settings": {"value": f"Name one colour. ({time.time()})"}},
            {"id": "chat", "type": "llm_chat", "inputs": {"prompt": "q.value"}, "settings": {"max_tokens": 10}},
            {"id": "out", "type": "output", "inputs": {"answer": "chat.response"}},
        ]
    }
    workflow = Workflow.objects.create(owner=alice, name="colour", definition=definition)

    # Down: the run is carried out here, where the LLM's address answers nothing.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    settings.LLM_BASE_URL = f"http://127.0.0.1:{dead_port}/v1"
    settings.LLM_RETRIES = 2
    down = WorkflowRun.objects.create(workflow=workflow, owner=alice)
    down = asyncio.run(workflow_runs.execute(down.id))
    assert down.status == "failed" and "did not answer" in down.error, down.error

    # Back: a later run, queued to the real worker (which reaches the real server), succeeds.
    later = workflow_runs.start_run(workflow, alice)
    later = wait_for(
        lambda: WorkflowRun.objects.filter(pk=later.pk, status__in=("done", "failed")).first(), 120, "the run"
    )
    assert later.status == "done" and later.outputs["answer"], later.error


# --- The reaper's decisions and the claim token, on the database ------------------------------------


def stranded(recording: Recording, attempts: int, silent_for: float) -> None:
    """As a worker that claimed the job `attempts` times and then died `silent_for` seconds ago."""
    beat_at = timezone.now() - timedelta(seconds=silent_for)
    Recording.objects.filter(pk=recording.pk).update(
        status="processing", attempts=attempts, heartbeat_at=beat_at, started_at=beat_at
    )


def test_a_reaped_attempt_that_was_still_running_cannot_store_its_transcript(alice, speech):
    recording = queued_recording(alice, Path(speech[0]), "slow")
    first = jobs.claim(recording.id)
    assert first is not None and first.attempts == 1
    result = jobs.transcribe_claimed(first)
    assert result is not None
    assert jobs.claim(recording.id) is None  # claimed already: a copy of the message does nothing

    # Its heartbeat went silent (a stalled machine): the reaper hands the job to a second attempt.
    stranded(recording, 1, settings.JOB_HEARTBEAT_TIMEOUT + 5)
    assert jobs.reap() == [recording.id]
    second = jobs.claim(recording.id)
    assert second is not None and second.attempts == 2

    assert not jobs.beat(first)  # the first attempt learns it lost the job
    assert recordings.store_transcript(first, result) is False
    assert recordings.store_transcript(second, result) is True
    assert recordings.store_transcript(second, result) is False  # and only once
    assert_stored_once(recording)


def test_the_reaper_leaves_live_jobs_alone_and_fails_the_too_old_and_the_too_often_tried(alice, speech):
    path = Path(speech[0])
    alive, dying, worn_out, overtime = (queued_recording(alice, path, t) for t in ("a", "b", "c", "d"))
    stranded(alive, 1, 1)
    stranded(dying, 1, settings.JOB_HEARTBEAT_TIMEOUT + 5)
    stranded(worn_out, settings.JOB_MAX_ATTEMPTS, settings.JOB_HEARTBEAT_TIMEOUT + 5)
    stranded(overtime, 1, settings.TRANSCRIPTION_TIME_LIMIT + 5)

    assert jobs.reap() == [dying.id]
    assert fresh(alive).status == "processing"
    assert fresh(dying).status == "queued" and fresh(dying).attempts == 1
    assert fresh(worn_out).status == "failed" and fresh(worn_out).error == jobs.worker_lost_error(3)
    assert fresh(overtime).status == "failed" and fresh(overtime).error == jobs.time_limit_error()

    # A queued job nobody claims (its message lost) is sent again once JOB_REQUEUE_SECONDS passed.
    Recording.objects.filter(pk=alive.pk).update(
        status="queued", queued_at=timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_SECONDS + 1)
    )
    assert jobs.reap() == [alive.id]
    assert jobs.reap() == []  # and not again at once: one copy per JOB_REQUEUE_SECONDS


def test_a_stranded_workflow_run_is_queued_again_then_failed_after_the_attempt_cap(alice):
    workflow = Workflow.objects.create(
        owner=alice, name="w", definition={"nodes": [{"id": "q", "type": "passthrough", "settings": {"value": 1}}]}
    )
    run = WorkflowRun.objects.create(workflow=workflow, owner=alice)
    silent = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT + 5)
    WorkflowRun.objects.filter(pk=run.pk).update(status="running", attempts=1, heartbeat_at=silent, started_at=silent)
    assert runs.reap() == [run.id]
    assert WorkflowRun.objects.get(pk=run.pk).status == "queued"

    WorkflowRun.objects.filter(pk=run.pk).update(
        status="running", attempts=settings.JOB_MAX_ATTEMPTS, heartbeat_at=silent
    )
    assert runs.reap() == []
    failed = WorkflowRun.objects.get(pk=run.pk)
    assert failed.status == "failed" and failed.error == runs.worker_lost_error(settings.JOB_MAX_ATTEMPTS)


# --- The OpenAI endpoint's wait ends with the job ---------------------------------------------------


async def test_the_openai_wait_ends_when_the_reaper_fails_the_job(alice, speech):
    recording = await sync_to_async(queued_recording)(alice, Path(speech[0]), "waited on")
    await sync_to_async(stranded)(recording, settings.JOB_MAX_ATTEMPTS, settings.JOB_HEARTBEAT_TIMEOUT + 5)
    waiting = asyncio.create_task(wait_until_finished(recording.pk))
    await asyncio.sleep(0.5)  # subscribed (not a timing assertion: the wait also polls the database)
    await sync_to_async(jobs.reap)()
    assert await asyncio.wait_for(waiting, 60) == "failed"


async def test_the_openai_wait_is_bounded(alice, speech, settings):
    settings.OPENAI_WAIT_SECONDS = 1
    recording = await sync_to_async(queued_recording)(alice, Path(speech[0]), "never picked up")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wait_until_finished(recording.pk), 60)
