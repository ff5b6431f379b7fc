"""The progress WebSocket: owner-only, Origin-checked, pushing the job's state as it runs."""

import asyncio
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.files.base import ContentFile
from django.test import Client

from actions import recordings
from assistant_site.asgi import application
from transcription.models import Recording

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(recording_id, cookie=None, origin=b"http://127.0.0.1:8000"):
    headers = [(b"origin", origin)]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, f"/ws/recordings/{recording_id}/", headers=headers)


@pytest.fixture
def queued(alice, speech):
    path, _ = speech
    recording = Recording(owner=alice, title="Progress", size_bytes=1)
    recording.audio.save("p.wav", ContentFile(Path(path).read_bytes()), save=True)
    return recording


async def test_the_owner_sees_the_job_move_from_queued_to_done(alice, queued):
    ws = communicator(queued.id, await database_sync_to_async(session_cookie)(alice))
    connected, _ = await ws.connect()
    assert connected
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["status"] == "queued" and snapshot["progress"] == 0

    job = asyncio.create_task(database_sync_to_async(recordings.transcribe)(queued.id))
    messages = []
    while not messages or messages[-1]["status"] not in ("done", "failed"):
        messages.append(await ws.receive_json_from(timeout=60))
    assert await job

    statuses = [m["status"] for m in messages]
    assert statuses[0] == "processing" and statuses[-1] == "done"
    progress = [m["progress"] for m in messages]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress), "no progress in between"
    assert messages[-1]["duration"] > 5
    await ws.disconnect()


async def test_another_user_cannot_watch_my_recording(bob, queued):
    ws = communicator(queued.id, await database_sync_to_async(session_cookie)(bob))
    connected, code = await ws.connect()
    assert not connected and code == 4404


async def test_an_anonymous_socket_is_refused(queued):
    connected, code = await communicator(queued.id).connect()
    assert not connected and code == 4401


async def test_a_socket_from_another_site_is_refused(alice, queued):
    cookie = await database_sync_to_async(session_cookie)(alice)
    ws = communicator(queued.id, cookie, origin=b"https://evil.example")
    connected, _ = await ws.connect()
    assert not connected


async def test_what_the_page_sends_is_ignored_not_fatal(alice, queued):
    ws = communicator(queued.id, await database_sync_to_async(session_cookie)(alice))
    assert (await ws.connect())[0]
    await ws.receive_json_from(timeout=5)
    await ws.send_to(text_data="{not json")
    await ws.send_to(bytes_data=b"\x00\x01")
    # Still open and still pushing.
    job = asyncio.create_task(database_sync_to_async(recordings.transcribe)(queued.id))
    assert (await ws.receive_json_from(timeout=30))["status"] == "processing"
    await job
    await ws.disconnect()
