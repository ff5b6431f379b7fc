"""Live transcription over WebSocket: real speech in PCM16 frames, partial and final text back,
bad frames refused with specific close codes, the session saved as a recording."""

import asyncio
import time

import numpy as np
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from actions.recordings import save_live_session
from assistant_site.asgi import application
from graph import nodes as g
from tests.factories import words
from tests.test_progress_socket import session_cookie
from transcription import engine, live, live_store
from transcription.models import Recording

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FRAME_SECONDS = 0.2


@pytest.fixture(autouse=True)
def no_leftover_sessions():
    # Sessions live in a per-process registry and in Redis; one a test left waiting for a resume
    # must not count against the next test's stream limit (user ids are reused).
    yield
    live._sessions.clear()
    client = live_store.client()
    for key in client.scan_iter("live:*"):
        client.delete(key)


def live_socket(cookie=None, origin=b"http://127.0.0.1:8000"):
    headers = [(b"origin", origin)]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


def pcm16_frames(path, seconds=FRAME_SECONDS):
    audio = engine.decode_audio(path)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step = int(seconds * engine.SAMPLE_RATE) * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


async def connected(user, **kw):
    ws = live_socket(await database_sync_to_async(session_cookie)(user), **kw)
    ok, _ = await ws.connect()
    assert ok
    return ws


async def drain(ws, until_type, timeout=60):
    """Messages up to the first of `until_type`; after "saved" the socket is also closed."""
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        messages.append(message)
        if message["type"] == until_type:
            if until_type == "saved":
                await ws.disconnect()
            return messages


async def test_speech_streamed_in_real_time_comes_back_as_partial_then_final_text(alice, speech, celery_worker_process):
    path, text = speech
    ws = await connected(alice)
    await ws.send_json_to({"type": "start", "language": "en"})
    ready = await ws.receive_json_from(timeout=10)
    assert ready["type"] == "ready" and ready["sample_rate"] == 16000 and ready["received"] == 0

    messages = []

    async def listen():
        while True:
            messages.append(await ws.receive_json_from(timeout=60))
            if messages[-1]["type"] == "saved":
                return

    listener = asyncio.create_task(listen())
    for frame in pcm16_frames(path):
        await ws.send_to(bytes_data=frame)
        await asyncio.sleep(FRAME_SECONDS)  # as a microphone would
    partials_before_stop = [m for m in messages if m["type"] == "partial" and m["text"]]
    finals_before_stop = [m for m in messages if m["type"] == "final"]
    await ws.send_json_to({"type": "stop"})
    await asyncio.wait_for(listener, 60)
    await ws.disconnect()

    assert partials_before_stop, f"no partial text while speaking: {messages}"
    assert finals_before_stop, "nothing became final while speaking"
    finals = [m for m in messages if m["type"] == "final"]
    said = " ".join(m["text"] for m in finals)
    assert {"fox", "dog"} <= words(said) and len(words(said) & words(text)) >= 0.7 * len(words(text)), said
    # Finals never overlap or go back in time, and carry their words.
    timed = [w for m in finals for w in m["words"]]
    assert all(a["start"] <= b["start"] for a, b in zip(timed, timed[1:], strict=False))
    assert all(m["start"] <= m["end"] and m["words"] for m in finals)

    saved = messages[-1]
    recording = await Recording.objects.select_related("transcript").aget(pk=saved["recording"], owner=alice)
    assert recording.status == Recording.Status.DONE and saved["url"].endswith(f"/recordings/{recording.id}/")
    assert {"fox", "dog"} <= words(recording.transcript.text)
    assert recording.duration == pytest.approx(len(engine.decode_audio(path)) / 16000, abs=0.25)
    assert len(engine.decode_audio(recording.audio.path)) == pytest.approx(recording.duration * 16000, abs=400)
    # The same graph write as an upload's, by the worker.
    for _ in range(100):
        await recording.arefresh_from_db(fields=["graph_synced_at"])
        if recording.graph_synced_at:
            break
        await asyncio.sleep(0.1)
    node = await database_sync_to_async(g.RecordingNode.nodes.get_or_none)(uid=str(recording.id))
    assert node is not None and node.title.startswith("Live")


async def test_silence_keeps_the_session_open_and_costs_no_inference(alice):
    ws = await connected(alice)
    await ws.send_json_to({"type": "start"})
    await ws.receive_json_from(timeout=10)
    session = next(s for s in live._sessions.values() if s.user_id == alice.id)
    calls = []
    original = session.transcriber._transcribe
    session.transcriber._transcribe = lambda: calls.append(1) or original()
    silence = bytes(int(FRAME_SECONDS * 16000) * 2)
    for _ in range(15):  # 3 s of silence
        await ws.send_to(bytes_data=silence)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert calls == []
    await ws.send_json_to({"type": "stop"})
    saved = await drain(ws, "saved")
    assert saved[-1]["recording"]  # silence is still a recording (of nothing said)


@pytest.mark.parametrize(
    "first, frame, code, error",
    [
        (None, b"\x00\x01" * 100, 4409, "not_started"),
        ({"type": "start"}, b"\x00" * 101, 4400, "bad_frame"),
        ({"type": "start"}, b"\x00" * (64 * 1024 + 2), 4413, "frame_too_large"),
    ],
)
async def test_bad_frames_get_an_error_and_a_close_code(alice, first, frame, code, error):
    ws = await connected(alice)
    if first:
        await ws.send_json_to(first)
        assert (await ws.receive_json_from(timeout=10))["type"] == "ready"
    await ws.send_to(bytes_data=frame)
    message = await ws.receive_json_from(timeout=10)
    assert message["type"] == "error" and message["code"] == error
    assert (await ws.receive_output(timeout=10)) == {"type": "websocket.close", "code": code, "reason": error}
    await ws.disconnect()  # as a client would after the close: the consumer can end


async def test_bad_text_messages_get_an_error_and_the_stream_goes_on(alice, speech):
    path, _ = speech
    ws = await connected(alice)
    for bad, code in (
        ("this is not json", "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ("[1, 2]", "unknown_type"),
        ('{"type": "start", "model": "large-v9"}', "bad_option"),
    ):
        await ws.send_to(text_data=bad)
        message = await ws.receive_json_from(timeout=10)
        assert message["type"] == "error" and message["code"] == code
    await ws.send_json_to({"type": "start"})
    assert (await ws.receive_json_from(timeout=10))["type"] == "ready"
    await ws.send_to(bytes_data=pcm16_frames(path)[0])
    await ws.send_json_to({"type": "stop"})
    assert (await drain(ws, "saved"))[-1]["type"] == "saved"


async def test_anonymous_and_foreign_origin_are_refused(alice):
    ws = live_socket()
    assert (await ws.connect()) == (False, 4401)
    cookie = await database_sync_to_async(session_cookie)(alice)
    ws = live_socket(cookie, origin=b"http://evil.example")
    connected_, _ = await ws.connect()
    assert not connected_


async def test_open_streams_per_user_are_limited(alice, bob, settings):
    settings.LIVE_MAX_STREAMS_PER_USER = 1
    first = await connected(alice)
    await first.send_json_to({"type": "start"})
    assert (await first.receive_json_from(timeout=10))["type"] == "ready"
    second = await connected(alice)
    await second.send_json_to({"type": "start"})
    message = await second.receive_json_from(timeout=10)
    assert message["code"] == "too_many_streams"
    assert (await second.receive_output(timeout=10))["code"] == 4429
    await second.disconnect()
    # Bob is not limited by Alice's stream.
    bobs = await connected(bob)
    await bobs.send_json_to({"type": "start"})
    assert (await bobs.receive_json_from(timeout=10))["type"] == "ready"
    for ws in (first, bobs):
        await ws.send_json_to({"type": "stop"})
        await drain(ws, "saved")


async def test_a_dropped_connection_resumes_its_session(alice, speech):
    path, _ = speech
    frames = pcm16_frames(path)
    half = len(frames) // 2
    ws = await connected(alice)
    await ws.send_json_to({"type": "start"})
    session_id = (await ws.receive_json_from(timeout=10))["session"]
    for frame in frames[:half]:
        await ws.send_to(bytes_data=frame)
        await asyncio.sleep(FRAME_SECONDS)
    # While the first socket is still attached, nobody else can feed the session.
    assert await live.LiveSession.resume(alice.id, session_id, save_live_session) is None
    await ws.disconnect()

    again = await connected(alice)
    await again.send_json_to({"type": "start", "resume": session_id})
    ready = await again.receive_json_from(timeout=10)
    assert ready["session"] == session_id and ready["resumed"] is True
    assert ready["received"] == sum(len(f) for f in frames[:half]) // 2
    for frame in frames[half:]:
        await again.send_to(bytes_data=frame)
        await asyncio.sleep(FRAME_SECONDS)
    await again.send_json_to({"type": "stop"})
    messages = await drain(again, "saved")
    recording = await Recording.objects.select_related("transcript").aget(pk=messages[-1]["recording"])
    assert {"fox", "dog"} <= words(recording.transcript.text)

    # Another user cannot take the session over.
    assert await live.LiveSession.resume(alice.id + 1000, session_id, save_live_session) is None


async def test_an_idle_socket_outlives_the_channel_layers_blocking_wait(alice):
    # The consumer's channel-layer read blocks 5 s at a time; redis-py's default read timeout
    # is also 5 s, which used to kill idle consumers.
    ws = await connected(alice)
    await ws.send_json_to({"type": "start"})
    await ws.receive_json_from(timeout=10)
    await asyncio.sleep(7)
    await ws.send_json_to({"type": "stop"})
    assert (await drain(ws, "saved"))[-1]["type"] == "saved"


async def test_a_stream_that_falls_behind_skips_ahead_and_is_told(alice, speech, settings):
    settings.LIVE_MAX_LAG_SECONDS = 1.0
    path, _ = speech
    ws = await connected(alice)
    await ws.send_json_to({"type": "start"})
    await ws.receive_json_from(timeout=10)
    for frame in pcm16_frames(path) * 3:  # ~20 s of audio at once: far more than real time
        await ws.send_to(bytes_data=frame)
    lagging = await drain(ws, "lagging", timeout=30)
    await ws.send_json_to({"type": "stop"})
    messages = lagging + await drain(ws, "saved")
    lagging = [m for m in messages if m["type"] == "lagging"]
    assert lagging and lagging[0]["skipped"] > 0 and lagging[0]["behind"] > 1.0
    assert messages[-1]["recording"]  # the session went on to the end
