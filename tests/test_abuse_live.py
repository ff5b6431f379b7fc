"""Abuse of the live socket, tried for real against a Daphne process of the app: a flood of audio
faster than real time, oversize frames and messages, a session past its length cap, a user past
their daily minutes, and random frames and messages. Each gets a clear close code, the audio
already accepted is saved, the process's memory stays bounded, and other users' sessions go on."""

import asyncio
import os
import random
import time

import orjson
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from common import sockets
from tests.test_live import FRAME_SECONDS, pcm16_frames
from tests.test_live_failover import next_of, open_live, web_processes  # noqa: F401 (a fixture)
from tests.test_progress_socket import session_cookie
from transcription import engine
from transcription.models import Recording

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FLOOD_FRAME = b"\x01\x00" * (32 * 1024)  # 64 KiB: the largest frame allowed, ~2 s of audio
FLOOD_SECONDS = float(os.environ.get("LIVE_FLOOD_SECONDS", "4"))
# As `make run` has it (the other tests here never skip ahead).
DEFAULT_LAG = {"LIVE_MAX_LAG_SECONDS": "4"}


async def start_session(web, user, **start) -> tuple[websockets.ClientConnection, dict]:
    ws = await open_live(web, await database_sync_to_async(session_cookie)(user))
    await ws.send(orjson.dumps({"type": "start", "language": "en", **start}).decode())
    message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    return ws, message


async def close_code(ws, timeout: float = 60) -> int | None:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
    except websockets.ConnectionClosed:
        pass
    await asyncio.wait_for(ws.wait_closed(), 10)
    return ws.close_code


async def saved_recording(user, timeout: float = 120) -> Recording:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recording = await Recording.objects.filter(owner=user).select_related("transcript").afirst()
        if recording is not None and recording.is_finished:
            return recording
        await asyncio.sleep(0.25)
    raise AssertionError(f"no recording saved for {user} within {timeout}s")


async def stream_in_real_time(ws, pcm: bytes, messages: list) -> None:
    step = int(FRAME_SECONDS * engine.SAMPLE_RATE) * 2
    for at in range(0, len(pcm), step):
        await ws.send(pcm[at : at + step])
        await asyncio.sleep(FRAME_SECONDS)


async def test_a_flood_of_audio_is_cut_off_saved_and_costs_others_nothing(alice, bob, speech, web_processes):  # noqa: F811
    web = await asyncio.to_thread(web_processes, **DEFAULT_LAG)
    path, _ = speech
    bobs_pcm = b"".join(pcm16_frames(path))
    bobs, ready = await start_session(web, bob)
    assert ready["type"] == "ready"
    bobs_messages: list = []

    async def listen():
        async for raw in bobs:
            bobs_messages.append(orjson.loads(raw))

    listener = asyncio.create_task(listen())
    bob_streams = asyncio.create_task(stream_in_real_time(bobs, bobs_pcm, bobs_messages))
    while not any(m["type"] == "partial" and m["text"] for m in bobs_messages):  # the model is loaded
        assert not bob_streams.done() or bob_streams.exception() is None
        await asyncio.sleep(0.1)
    rss_before = web.rss_mb()

    alices, ready = await start_session(web, alice)
    assert ready["type"] == "ready"
    started = time.monotonic()
    sent = 0
    try:
        while time.monotonic() - started < FLOOD_SECONDS:
            await alices.send(FLOOD_FRAME)
            sent += len(FLOOD_FRAME)
        await alices.send(orjson.dumps({"type": "stop"}).decode())
    except websockets.ConnectionClosed:
        pass
    flood_seconds = time.monotonic() - started
    code = await close_code(alices, timeout=600)
    recording = await saved_recording(alice, timeout=600)
    peak = web.peak_rss_mb()
    print(
        f"\nFLOOD PROBE: sent {sent / 2**20:.1f} MiB ({sent / 32000:.0f} s of audio) in {flood_seconds:.1f} s;"
        f" close {code}; saved {recording.duration:.1f} s ({recording.size_bytes / 2**20:.1f} MiB);"
        f" RSS before {rss_before:.0f} MiB, peak {peak:.0f} MiB (+{peak - rss_before:.0f})"
    )

    assert code == sockets.CLOSE_AUDIO_TOO_FAST
    # What was accepted is saved, and it is bounded by the burst plus 1.25 × real time.
    cap = settings.LIVE_BURST_SECONDS + settings.LIVE_MAX_REALTIME_RATIO * (time.monotonic() - started)
    assert 0 < recording.duration <= cap
    assert recording.status == Recording.Status.DONE
    assert len(await asyncio.to_thread(engine.decode_audio, recording.audio.path)) == round(recording.duration * 16000)
    assert peak - rss_before < 200, f"the web process grew by {peak - rss_before:.0f} MiB"

    # Bob's session went on meanwhile, and keeps all of his audio.
    await bob_streams
    await bobs.send(orjson.dumps({"type": "stop"}).decode())
    await asyncio.wait_for(listener, 120)
    assert bobs_messages[-1]["type"] == "saved", bobs_messages[-3:]
    bobs_recording = await Recording.objects.aget(pk=bobs_messages[-1]["recording"])
    assert len(await asyncio.to_thread(engine.decode_audio, bobs_recording.audio.path)) == len(bobs_pcm) // 2
    assert bobs.close_code == 1000
