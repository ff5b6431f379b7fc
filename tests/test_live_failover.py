"""A live session belongs to no web process: when the process serving it dies, the page reconnects
to another process and carries on with no audio lost, and a session nobody resumes is saved by the
worker's sweep. Real Daphne processes, killed with SIGKILL mid-session."""

import asyncio
import itertools
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from actions import recordings
from tests import services
from tests.factories import words
from tests.test_live import FRAME_SECONDS, pcm16_frames
from tests.test_progress_socket import session_cookie
from transcription import engine
from transcription.live_store import SessionStore
from transcription.models import Recording

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent


class WebProcess:
    """One Daphne process of the app on a free port; `kill()` is SIGKILL: no cleanup of any kind."""

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "assistant_site.asgi:application",
            ],
            cwd=ROOT,
            # Never skip ahead: on a busy machine a new process's first inference (model load) may
            # fall behind, and this test is about what is kept, not how fast it is transcribed.
            env=services.test_process_env(settings.DATABASES["default"])
            | {"LIVE_MAX_LAG_SECONDS": "600"}
            | (env or {}),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        services.wait_until_listening("127.0.0.1", self.port, self.process, 60, log)

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM), MiB."""
        return _status_kb(self.process.pid, "VmHWM") / 1024

    def rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmRSS") / 1024

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


@pytest.fixture
def web_processes(real_services, tmp_path):
    started: list[WebProcess] = []
    numbers = itertools.count()  # a log of its own for each, when two start at once

    def start(**env: str) -> WebProcess:
        web = WebProcess(tmp_path / f"daphne-{next(numbers)}.log", env)
        started.append(web)
        return web

    yield start
    for web in started:
        services.stop(web.process)


async def open_live(web: WebProcess, cookie: str):
    return await websockets.connect(
        f"ws://127.0.0.1:{web.port}/ws/live/",
        additional_headers={"Origin": "http://127.0.0.1:8000", "Cookie": f"sessionid={cookie}"},
        max_size=None,
    )


async def next_of(ws, kind: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        if message["type"] == kind:
            return message


async def stream(ws, pcm: bytes) -> None:
    step = int(FRAME_SECONDS * engine.SAMPLE_RATE) * 2
    for at in range(0, len(pcm), step):
        await ws.send(pcm[at : at + step])
        await asyncio.sleep(FRAME_SECONDS)  # as a microphone would


async def test_a_session_survives_the_death_of_its_web_process(alice, speech, web_processes):
    path, _ = speech
    pcm = b"".join(pcm16_frames(path))
    half = len(pcm) // 2 // 2 * 2
    cookie = await database_sync_to_async(session_cookie)(alice)

    first = await asyncio.to_thread(web_processes)
    # The process the page reconnects to starts meanwhile (behind a balancer it would be running).
    starting = asyncio.create_task(asyncio.to_thread(web_processes))
    ws = await open_live(first, cookie)
    await ws.send(orjson.dumps({"type": "start", "language": "en"}).decode())
    session_id = (await next_of(ws, "ready"))["session"]
    await stream(ws, pcm[:half])
    first.kill()  # mid-session, mid-word, with nothing saved
    await ws.close()

    second = await starting
    ws = await open_live(second, cookie)
    await ws.send(orjson.dumps({"type": "start", "resume": session_id}).decode())
    ready = await next_of(ws, "ready", timeout=30)
    assert ready["session"] == session_id and ready["resumed"] is True
    # Everything the dead process had received was kept: the page re-sends only what came after.
    received_bytes = ready["received"] * 2
    assert 0 < received_bytes <= half
    await stream(ws, pcm[received_bytes:])
    await ws.send(orjson.dumps({"type": "stop"}).decode())
    saved = await next_of(ws, "saved")
    await ws.close()

    recording = await Recording.objects.select_related("transcript").aget(pk=saved["recording"], owner=alice)
    saved_audio = await asyncio.to_thread(engine.decode_audio, recording.audio.path)
    assert len(saved_audio) == len(pcm) // 2  # not a sample lost, none twice
    text_said = recording.transcript.text.lower()
    # Words from before the kill (committed by the first process, or transcribed again from the
    # spool by the second), and the second process transcribing on after them. (Which words tiny.en
    # hears at the seam varies with the machine's load; the audio, checked above, is exact.)
    assert {"fox", "dog"} <= words(text_said), text_said
    assert len(text_said.split("dog", 1)[1].split()) >= 3, text_said
    assert await asyncio.to_thread(SessionStore(session_id).meta) is None  # nothing left behind


async def test_a_session_nobody_resumes_is_saved_by_the_worker(alice, speech, web_processes, settings):
    settings.LIVE_RESUME_SECONDS = 0
    path, _ = speech
    pcm = b"".join(pcm16_frames(path))
    cookie = await database_sync_to_async(session_cookie)(alice)
    web = await asyncio.to_thread(web_processes)
    ws = await open_live(web, cookie)
    await ws.send(orjson.dumps({"type": "start", "language": "en"}).decode())
    session_id = (await next_of(ws, "ready"))["session"]
    await stream(ws, pcm)
    await asyncio.sleep(0.5)  # the last frames reach the process
    web.kill()
    spooled = SessionStore(session_id).spooled_bytes()
    assert spooled > len(pcm) * 0.9

    saved = 0
    for _ in range(40):  # its lease runs out within live_store.LEASE_SECONDS
        saved = await database_sync_to_async(recordings.save_abandoned_live_sessions)()
        if saved:
            break
        await asyncio.sleep(0.25)
    assert saved == 1
    recording = await Recording.objects.select_related("transcript").aget(owner=alice)
    assert recording.options["pipeline"] == "live" and {"fox", "dog"} <= words(recording.transcript.text)
    saved_audio = await asyncio.to_thread(engine.decode_audio, recording.audio.path)
    assert len(saved_audio) == spooled // 2
    assert await database_sync_to_async(recordings.save_abandoned_live_sessions)() == 0  # saved once


async def test_a_session_moves_to_another_process_while_the_first_still_runs(alice, speech, web_processes):
    """A load balancer may send the reconnecting page anywhere: the process holding the session
    hands it over at once instead of waiting out its lease."""
    path, _ = speech
    pcm = b"".join(pcm16_frames(path))
    half = len(pcm) // 2 // 2 * 2
    cookie = await database_sync_to_async(session_cookie)(alice)
    first, second = await asyncio.gather(asyncio.to_thread(web_processes), asyncio.to_thread(web_processes))

    ws = await open_live(first, cookie)
    await ws.send(orjson.dumps({"type": "start", "language": "en"}).decode())
    session_id = (await next_of(ws, "ready"))["session"]
    await stream(ws, pcm[:half])
    await ws.close()  # the connection drops; the first process keeps the session for a resume

    ws = await open_live(second, cookie)
    await ws.send(orjson.dumps({"type": "start", "resume": session_id}).decode())
    ready = await next_of(ws, "ready", timeout=30)
    assert ready["resumed"] is True and ready["received"] * 2 <= half
    await stream(ws, pcm[ready["received"] * 2 :])
    await ws.send(orjson.dumps({"type": "stop"}).decode())
    saved = await next_of(ws, "saved")
    await ws.close()

    recording = await Recording.objects.select_related("transcript").aget(pk=saved["recording"], owner=alice)
    assert len(await asyncio.to_thread(engine.decode_audio, recording.audio.path)) == len(pcm) // 2
    assert {"fox", "dog"} <= words(recording.transcript.text)
    assert "handed over to another process" in first.log.read_text()
    assert first.process.poll() is None  # it is still serving others
