"""Abuse of the live socket, tried for real against a Daphne process of the app: a flood of audio
faster than real time, oversize frames and messages, a session past its length cap, a user past
their daily minutes, and random frames and messages. Each gets a clear close code, the audio
already accepted is saved, the process's memory stays bounded, and other users' sessions go on."""

import asyncio
import contextlib
import os
import random
import time
import tracemalloc
import wave

import orjson
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from actions import recordings
from actions.recordings import save_live_session
from common import sockets
from tests.test_live import FRAME_SECONDS, no_leftover_sessions, pcm16_frames  # noqa: F401 (a fixture)
from tests.test_live_failover import next_of, open_live, web_processes  # noqa: F401 (a fixture)
from tests.test_progress_socket import session_cookie
from transcription import engine, live, live_store
from transcription.live_store import SessionStore
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


async def stream_in_real_time(ws, pcm: bytes) -> None:
    """As a microphone would; until the server closes the socket, if it does."""
    step = int(FRAME_SECONDS * engine.SAMPLE_RATE) * 2
    try:
        for at in range(0, len(pcm), step):
            await ws.send(pcm[at : at + step])
            await asyncio.sleep(FRAME_SECONDS)
    except websockets.ConnectionClosed:
        pass


async def send_quietly(ws, frame: str | bytes) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):  # closed by the server while we sent
        await ws.send(frame)


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
    bob_streams = asyncio.create_task(stream_in_real_time(bobs, bobs_pcm))
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


async def test_oversize_frames_and_messages_are_refused_with_a_close_code(alice, web_processes):  # noqa: F811
    web = await asyncio.to_thread(web_processes, LIVE_MAX_STREAMS_PER_USER="10")
    for frame, code in (
        (b"\x00" * (settings.LIVE_MAX_FRAME_BYTES + 2), sockets.CLOSE_FRAME_TOO_LARGE),  # refused by the app
        # Refused by Daphne (over 1 MiB) before it is read whole: 1009, or the connection dropped.
        (b"\x00" * (8 * 2**20), (1009, 1006)),
        ("x" * (settings.LIVE_MAX_CONTROL_BYTES + 1), sockets.CLOSE_FRAME_TOO_LARGE),
    ):
        ws, ready = await start_session(web, alice)
        assert ready["type"] == "ready"
        await send_quietly(ws, frame)
        assert await close_code(ws) in (code if isinstance(code, tuple) else (code,))
    ws = await open_live(web, await database_sync_to_async(session_cookie)(alice))
    for _ in range(settings.LIVE_MAX_CONTROL_MESSAGES + 1):
        await send_quietly(ws, '{"type": "dance"}')
    assert await close_code(ws) == sockets.CLOSE_TOO_MANY_MESSAGES
    assert web.process.poll() is None


async def test_a_session_at_its_length_cap_is_saved_and_closed(alice, speech, web_processes):  # noqa: F811
    web = await asyncio.to_thread(web_processes, LIVE_MAX_SESSION_SECONDS="2")
    path, _ = speech
    pcm = b"".join(pcm16_frames(path))
    ws, ready = await start_session(web, alice)
    streaming = asyncio.create_task(stream_in_real_time(ws, pcm))
    error = await next_of(ws, "error", timeout=120)
    saved = await next_of(ws, "saved", timeout=120)
    assert error["code"] == "session_too_long" and saved["recording"]
    assert await close_code(ws, timeout=120) == sockets.CLOSE_SESSION_TOO_LONG
    await streaming
    recording = await saved_recording(alice)
    assert recording.status == Recording.Status.DONE and recording.id == saved["recording"]
    # Ended at the cap (of audio or of time: whichever came first), with all it had received.
    assert 0 < recording.duration <= 2
    assert len(await asyncio.to_thread(engine.decode_audio, recording.audio.path)) == round(recording.duration * 16000)


async def test_a_user_past_their_daily_minutes_is_refused_and_a_running_session_saved(alice, bob, web_processes):  # noqa: F811
    web = await asyncio.to_thread(web_processes, LIVE_MINUTES_PER_DAY="1")
    await asyncio.to_thread(live_store.add_live_seconds, alice.id, 59.0)  # one second left today
    second = b"\x00\x00" * 16000
    ws, ready = await start_session(web, alice)
    assert ready["type"] == "ready"
    await ws.send(second[: len(second) // 2])
    await ws.send(second)  # more than is left
    assert (await next_of(ws, "error"))["code"] == "quota_used_up"
    assert (await next_of(ws, "saved"))["recording"]
    assert await close_code(ws) == sockets.CLOSE_QUOTA_USED_UP
    recording = await saved_recording(alice)
    assert recording.duration == pytest.approx(0.5)  # what was accepted is kept
    await asyncio.to_thread(live_store.add_live_seconds, alice.id, 0.5)  # the last half second, elsewhere

    # Counted in Redis: the next start, on any process, is refused with the reason.
    ws, refused = await start_session(web, alice)
    assert refused["type"] == "error" and refused["code"] == "quota_used_up" and "minutes" in refused["message"]
    assert await close_code(ws) == sockets.CLOSE_QUOTA_USED_UP
    ws, ready = await start_session(web, bob)  # others are not affected
    assert ready["type"] == "ready"
    await ws.close()


async def test_saving_a_session_twice_stores_one_recording(alice):
    session = await live.LiveSession.start(alice.id, engine.Options(), "local-agreement", save_live_session)
    await session.feed(b"\x01\x00" * 16000)
    saves = await asyncio.gather(*(asyncio.to_thread(save_live_session, session) for _ in range(3)))
    assert len({r.id for r in saves}) == 1
    assert await Recording.objects.filter(owner=alice).acount() == 1
    again = await session.stop()  # the session's own save finds the recording it was saved as
    assert again is not None and again.id == saves[0].id
    assert await Recording.objects.filter(owner=alice).acount() == 1


async def test_a_session_whose_save_fails_keeps_its_audio_and_is_saved_later(
    alice,
    speech,
    web_processes,  # noqa: F811
    tmp_path,
    settings,
):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    web = await asyncio.to_thread(web_processes, MEDIA_ROOT=str(blocked / "media"))  # every save fails there
    path, _ = speech
    pcm = b"".join(pcm16_frames(path))
    ws, ready = await start_session(web, alice)
    session_id = ready["session"]
    await stream_in_real_time(ws, pcm)
    await ws.send(orjson.dumps({"type": "stop"}).decode())
    error = await next_of(ws, "error")
    saved = await next_of(ws, "saved")
    assert error["code"] == "save_failed" and saved["recording"] is None
    await ws.close()
    store = SessionStore(session_id)
    assert store.spooled_bytes() == len(pcm)  # the audio is kept
    assert (await asyncio.to_thread(store.meta))["save_attempts"] == 1

    # The worker's sweep saves it (here, where the media directory works), once.
    settings.LIVE_RESUME_SECONDS = 0
    assert await database_sync_to_async(recordings.save_abandoned_live_sessions)() == 1
    recording = await Recording.objects.select_related("transcript").aget(owner=alice)
    assert recording.status == Recording.Status.DONE and recording.live_session == session_id
    assert len(await asyncio.to_thread(engine.decode_audio, recording.audio.path)) == len(pcm) // 2
    assert "fox" in recording.transcript.text.lower()
    assert await database_sync_to_async(recordings.save_abandoned_live_sessions)() == 0
    assert not store.spool_path.exists()


async def test_a_session_that_cannot_be_saved_ends_as_a_failed_recording_with_its_audio(alice, settings):
    settings.LIVE_RESUME_SECONDS = 0
    settings.LIVE_SAVE_ATTEMPTS = 2
    session = await live.LiveSession.start(alice.id, engine.Options(), "local-agreement", save_live_session)
    await session.feed(b"\x01\x00" * 16000)
    session._keeper.cancel()
    session._let_go()  # as if its process had died: nobody serves it, nothing was saved
    await asyncio.to_thread(session.store.release_lease)
    for _ in range(settings.LIVE_SAVE_ATTEMPTS):
        await asyncio.to_thread(session.store.count_save_attempt)
    assert await database_sync_to_async(recordings.save_abandoned_live_sessions)() == 1
    recording = await Recording.objects.aget(owner=alice)
    assert recording.status == Recording.Status.FAILED and "attempts" in recording.error
    assert len(await asyncio.to_thread(engine.decode_audio, recording.audio.path)) == 16000
    assert not await Recording.objects.filter(owner=alice, transcript__isnull=False).aexists()


CLOSE_CODES = {
    1000,
    1009,  # Daphne's own, for a message over 1 MiB
    sockets.CLOSE_AUDIO_TOO_FAST,
    sockets.CLOSE_BAD_FRAME,
    sockets.CLOSE_FRAME_TOO_LARGE,
    sockets.CLOSE_NOT_STARTED,
    sockets.CLOSE_QUOTA_USED_UP,
    sockets.CLOSE_SESSION_TOO_LONG,
    sockets.CLOSE_TOO_MANY_MESSAGES,
    sockets.CLOSE_TOO_MANY_STREAMS,
}


def random_message(rng: random.Random, session_ids: list[str]) -> str | bytes:
    kind = rng.random()
    if kind < 0.35:
        size = rng.choice([0, 1, 2, 3, 320, 3200, 6400, 32000, 65535, 65536, 65538, 70000])
        return rng.randbytes(size)
    if kind < 0.5:
        return rng.randbytes(rng.randint(0, 200)).decode("latin-1")
    if kind < 0.6:
        return "".join(rng.choice('{}[]":,0123456789abcnulltruefalse ') for _ in range(rng.randint(0, 60)))
    values = [None, 0, -1, 1e308, "", "x" * rng.randint(0, 300), [], {}, True, "en", "tiny.en", "naive"]
    message = {"type": rng.choice(["start", "stop", "start", "stop", "pause", "", None, 7, ["start"]])}
    for key in rng.sample(["language", "model", "policy", "resume", "extra"], rng.randint(0, 4)):
        message[key] = rng.choice(values + (session_ids if key == "resume" else []))
    return orjson.dumps(message).decode()


async def test_random_frames_and_messages_never_crash_or_hang_the_live_socket(alice, bob, web_processes):  # noqa: F811
    web = await asyncio.to_thread(web_processes, LIVE_RESUME_SECONDS="0")
    rng = random.Random(1313)
    cookies = [await database_sync_to_async(session_cookie)(user) for user in (alice, bob)]
    session_ids: list[str] = []
    for _ in range(25):
        ws = await open_live(web, rng.choice(cookies))
        try:
            for _ in range(rng.randint(1, 30)):
                await ws.send(random_message(rng, session_ids))  # raises once the server closed it
                while True:  # what the server answered so far
                    try:
                        reply = orjson.loads(await asyncio.wait_for(ws.recv(), 0.02))
                    except TimeoutError:
                        break
                    assert reply["type"] in {"ready", "partial", "final", "lagging", "error", "saved"}, reply
                    assert reply.get("code") != "internal", reply
                    if reply["type"] == "ready":
                        session_ids.append(reply["session"])
            # Still answering: a stop gets a reply (or the socket was already closed cleanly).
            await ws.send('{"type": "stop"}')
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                reply = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                if reply["type"] in {"saved", "error"}:
                    break
            await ws.close()
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 30)
        assert ws.close_code in CLOSE_CODES, (ws.close_code, ws.close_reason)
    assert web.process.poll() is None
    log = web.log.read_text()
    assert "Exception inside application" not in log and "failed" not in log, log[-3000:]
    # And it still serves a plain session.
    ws, ready = await start_session(web, bob)
    assert ready["type"] == "ready"
    await ws.send(b"\x00\x00" * 3200)
    await ws.send('{"type": "stop"}')
    assert (await next_of(ws, "saved"))["recording"]


async def test_saving_an_hour_long_session_streams_its_audio_instead_of_copying_it(alice):
    session = await live.LiveSession.start(alice.id, engine.Options(), "local-agreement", save_live_session)
    second = b"\x01\x00" * 16000
    with open(session.store.spool_path, "ab") as spool:  # an hour of audio, as if received
        for _ in range(3600):
            spool.write(second)
    session.received_bytes = 3600 * len(second)
    tracemalloc.start()
    try:
        recording = await asyncio.to_thread(save_live_session, session)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The original read the PCM and built the WAV in memory: 220 MB for this hour (115 MB of PCM).
    assert peak < 20 * 2**20, f"saving took {peak / 2**20:.0f} MiB"
    assert recording.duration == 3600 and recording.audio.size == 44 + 3600 * len(second)
    with wave.open(recording.audio.path) as saved:
        assert saved.getnframes() == 3600 * 16000 and saved.getframerate() == 16000
    assert (await session.stop()).id == recording.id
