"""Storing a transcript: one path for uploads and live sessions, and follow-up work (the graph write,
the summary run) recorded with the transcript but started after commit, so it can never undo or
strand a stored transcript."""

import asyncio
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.db import DatabaseError
from kombu.exceptions import OperationalError

from actions import recordings, tasks
from graph.models import GraphChange
from tests.factories import words
from tests.test_live import FRAME_SECONDS, connected, pcm16_frames
from transcription import jobs
from transcription.models import Recording, Transcript
from workflows import builtin
from workflows.models import Workflow, WorkflowRun


def _queued(owner, path) -> Recording:
    recording = Recording(owner=owner, title="meeting", size_bytes=1)
    recording.audio.save("meeting.wav", ContentFile(Path(path).read_bytes()), save=True)
    return recording


def _summary_runs(recording):
    return WorkflowRun.objects.filter(recording=recording, workflow__key=builtin.SUMMARY, workflow__owner__isnull=True)


def test_an_upload_records_its_graph_write_and_summary_run_with_the_transcript(alice, speech, settings):
    settings.WORKFLOWS_AUTO_RUN = True
    recording = _queued(alice, speech[0])
    assert recordings.transcribe(recording.id) is True
    recording.refresh_from_db()
    assert recording.status == Recording.Status.DONE and "fox" in recording.transcript.text.lower()
    assert GraphChange.objects.filter(recording_id=recording.id, kind=GraphChange.Kind.WRITE).count() == 1
    assert _summary_runs(recording).get().status == WorkflowRun.Status.QUEUED


def test_a_summary_that_cannot_start_leaves_the_transcript_stored(alice, speech, settings):
    settings.WORKFLOWS_AUTO_RUN = True
    # A built-in definition broken after an upgrade: starting the run raises WorkflowInvalid.
    Workflow.objects.filter(owner__isnull=True, key=builtin.SUMMARY).update(
        definition={"nodes": [{"id": "x", "type": "no_such_node_type"}]}
    )
    recording = _queued(alice, speech[0])
    assert recordings.transcribe(recording.id) is True
    recording.refresh_from_db()
    assert recording.status == Recording.Status.DONE and recording.transcript.segments.exists()
    assert not _summary_runs(recording).exists()
    # The graph write, recorded before the failed start, is still there.
    assert GraphChange.objects.filter(recording_id=recording.id).exists()


@pytest.mark.services  # the graph write really goes to the broker (Redis)
def test_a_broker_that_refuses_the_summary_run_leaves_the_transcript_stored(
    alice, speech, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.WORKFLOWS_AUTO_RUN = True

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_workflow, "delay", broker_down)
    recording = _queued(alice, speech[0])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert recordings.transcribe(recording.id) is True
    assert len(callbacks) == 2  # the graph write and the summary run, both after commit
    recording.refresh_from_db()
    assert recording.status == Recording.Status.DONE and "fox" in recording.transcript.text.lower()
    assert _summary_runs(recording).exists()  # recorded; queued again by whoever reclaims runs


def test_a_failure_while_storing_fails_the_recording_instead_of_stranding_it(alice, speech, monkeypatch):
    def disk_full(recording, result):
        raise DatabaseError("database or disk is full")

    monkeypatch.setattr(jobs, "save_transcript", disk_full)
    recording = _queued(alice, speech[0])
    assert recordings.transcribe(recording.id) is False
    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED and recording.error == jobs.INTERNAL_ERROR
    assert not Transcript.objects.filter(recording=recording).exists()
    assert not GraphChange.objects.filter(recording_id=recording.id).exists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_live_session_gets_the_summary_run_like_an_upload(
    alice, speech, settings, celery_worker_process, llm_server
):
    """Streamed over the socket, saved through the same store as an upload, summarised by the real
    workflow worker on the real local model."""
    settings.WORKFLOWS_AUTO_RUN = True
    path, _ = speech
    ws = await connected(alice)
    await ws.send_json_to({"type": "start", "language": "en"})
    assert (await ws.receive_json_from(timeout=10))["type"] == "ready"
    for frame in pcm16_frames(path):
        await ws.send_to(bytes_data=frame)
        await asyncio.sleep(FRAME_SECONDS)  # as a microphone would
    await ws.send_json_to({"type": "stop"})
    while (message := await ws.receive_json_from(timeout=60))["type"] != "saved":
        pass
    await ws.disconnect()

    recording = await Recording.objects.select_related("transcript").aget(pk=message["recording"], owner=alice)
    assert recording.status == Recording.Status.DONE and {"fox", "dog"} <= words(recording.transcript.text)
    run = await _summary_runs(recording).aget()
    deadline = time.monotonic() + 240
    while run.status in (WorkflowRun.Status.QUEUED, WorkflowRun.Status.RUNNING) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await run.arefresh_from_db()
    assert run.status == WorkflowRun.Status.DONE, run.error
    assert run.outputs["summary"] and run.outputs["keywords"]
    # The run's entities reach the graph through the outbox, like the transcript did.
    while await GraphChange.objects.filter(recording_id=recording.id).aexists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not await GraphChange.objects.filter(recording_id=recording.id).aexists()
