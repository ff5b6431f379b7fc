"""The whole job path on a real Celery worker process: upload → queue → transcribe → DB + Neo4j + socket."""

import asyncio
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from actions.tasks import transcribe_recording
from graph import nodes as g
from graph.connection import configure
from graph.models import GraphChange
from tests.test_progress_socket import communicator, session_cookie
from transcription.models import Recording

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def upload(client, name, content):
    return client.post(reverse("recording-upload"), {"audio": SimpleUploadedFile(name, content)})


async def wait_until_finished(ws, timeout=120):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await ws.receive_json_from(timeout=max(0.1, deadline - loop.time()))
        if message["status"] in ("done", "failed"):
            return message


async def test_an_upload_is_transcribed_by_the_worker(celery_worker_process, alice, speech):
    path, _ = speech
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    response = await database_sync_to_async(upload)(client, "fox.m4a", Path(path).read_bytes())
    recording = await Recording.objects.aget(owner=alice)
    assert response.status_code == 302

    ws = communicator(recording.id, await database_sync_to_async(session_cookie)(alice))
    assert (await ws.connect())[0]
    final = await wait_until_finished(ws)
    await ws.disconnect()
    assert final["status"] == "done", final

    recording = await Recording.objects.select_related("transcript").aget(pk=recording.pk)
    assert "fox" in recording.transcript.text.lower()
    assert await recording.transcript.segments.acount() >= 1

    # The same task then writes the recording and its owner to Neo4j.
    for _ in range(100):
        if recording.graph_synced_at:
            break
        await asyncio.sleep(0.1)
        await recording.arefresh_from_db(fields=["graph_synced_at"])
    node = await database_sync_to_async(g.RecordingNode.nodes.get)(uid=str(recording.id))
    owners = await database_sync_to_async(lambda: g.UserNode.nodes.filter(uid=str(alice.id)).all())()
    assert node.title == "fox" and owners


async def test_a_bad_file_does_not_stop_the_worker(celery_worker_process, alice, speech):
    process, _ = celery_worker_process
    path, _ = speech
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    # A WAV header with no audio after it: it passes the upload check, then fails to decode.
    await database_sync_to_async(upload)(client, "junk.wav", Path(path).read_bytes()[:44])
    await database_sync_to_async(upload)(client, "good.wav", Path(path).read_bytes())
    cookie = await database_sync_to_async(session_cookie)(alice)

    results = {}
    async for recording in Recording.objects.filter(owner=alice):
        ws = communicator(recording.id, cookie)
        assert (await ws.connect())[0]
        results[recording.title] = await wait_until_finished(ws)
        await ws.disconnect()

    assert results["junk"]["status"] == "failed" and results["junk"]["error"]
    assert results["good"]["status"] == "done"
    assert process.poll() is None


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_neo4j_down_keeps_the_transcript_and_fills_the_graph_in_later(celery_worker_process, alice, speech, settings):
    path, _ = speech
    recording = Recording(owner=alice, title="outage", size_bytes=1)
    recording.audio.save("outage.wav", ContentFile(Path(path).read_bytes()), save=True)

    # This process sees Neo4j as down (nothing listens on port 1): the job runs here, and its
    # graph change waits in the outbox; the worker (which reaches Neo4j) applies it.
    real_url = settings.NEO4J_BOLT_URL
    settings.NEO4J_BOLT_URL = "bolt://neo4j:neo4j@127.0.0.1:1"
    configure()
    try:
        assert transcribe_recording(recording.id) is True
        recording.refresh_from_db()
        assert recording.status == Recording.Status.DONE and "fox" in recording.transcript.text.lower()
    finally:
        settings.NEO4J_BOLT_URL = real_url
        configure()

    wait_for(lambda: Recording.objects.get(pk=recording.pk).graph_synced_at, 30)
    assert g.RecordingNode.nodes.get(uid=str(recording.id)).title == "outage"
    # The worker removes an applied change just after the graph shows it.
    wait_for(lambda: not GraphChange.objects.exists())


def test_deleting_through_the_api_removes_row_file_and_graph_nodes(celery_worker_process, alice, speech):
    from accounts.models import ApiToken
    from graph import writes as graph_writes

    path, _ = speech
    recording = Recording(owner=alice, title="to delete", size_bytes=1)
    recording.audio.save("del.wav", ContentFile(Path(path).read_bytes()), save=True)
    assert transcribe_recording(recording.id) is True  # transcribed here, graph written by the worker
    audio_path = Path(recording.audio.path)
    wait_for(lambda: g.RecordingNode.nodes.get_or_none(uid=str(recording.id)) is not None)

    key = ApiToken.issue(alice, "t")[1]
    response = Client(headers={"Authorization": f"Bearer {key}"}).delete(f"/api/recordings/{recording.id}")
    assert response.status_code == 204
    assert not Recording.objects.filter(pk=recording.id).exists() and not audio_path.exists()
    # The worker removes the graph nodes (recording and segments); the user node stays.
    wait_for(lambda: g.RecordingNode.nodes.get_or_none(uid=str(recording.id)) is None)
    wait_for(lambda: not GraphChange.objects.exists())  # removed just after the graph shows the change
    assert not g.SegmentNode.nodes.filter(uid__startswith=f"{recording.id}:")
    assert g.UserNode.nodes.get_or_none(uid=str(alice.id)) is not None
    graph_writes.delete_recording(recording.id)  # again: a no-op, not an error
