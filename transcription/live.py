"""Live sessions: audio in from a WebSocket, partial and final text out, a Recording at the end.

A session outlives its socket for LIVE_RESUME_SECONDS, so a client whose connection drops can
reconnect and carry on. Inference runs on a shared thread pool (one worker per core, one model
shared by all streams), never on the event loop. The registry is per process: a deployment with
several Daphne processes needs sticky WebSocket routing for resuming to find its session.

Saving a finished session is not this module's business: whoever starts a session hands it the
function that saves it (the actions layer's `save_live_session`), so it is stored exactly like an
upload's transcript, follow-up work included.
"""

import asyncio
import io
import logging
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from asgiref.sync import sync_to_async
from django.conf import settings

from . import engine
from .models import Recording
from .streaming import SAMPLE_RATE, LocalAgreement, NaiveWindow, Word, text_of

log = logging.getLogger(__name__)

# Wait for at least this much new audio between inference calls.
MIN_STEP_SECONDS = 0.2
POLICIES: dict[str, type[LocalAgreement | NaiveWindow]] = {"local-agreement": LocalAgreement, "naive": NaiveWindow}

_pool: ThreadPoolExecutor | None = None
_sessions: dict[str, "LiveSession"] = {}

Send = Callable[[dict], Awaitable[None]]
# Stores a stopped session (its audio and transcript) as a recording; runs in a thread.
Save = Callable[["LiveSession"], Recording]


def inference_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.LIVE_INFERENCE_WORKERS, thread_name_prefix="live-asr")
    return _pool


class TooManyStreams(Exception):
    pass


def open_streams(user_id: int) -> int:
    return sum(1 for s in _sessions.values() if s.user_id == user_id and not s.closed)


class LiveSession:
    def __init__(self, user_id: int, options: engine.Options, save: Save, policy: str = "local-agreement"):
        self.id = uuid.uuid4().hex
        self.user_id = user_id
        self.save = save
        self.options = options.resolved()
        self.transcriber = POLICIES[policy](self.options)
        self.pcm = bytearray()  # everything received, kept for the saved recording
        self.pending: list[np.ndarray] = []  # received, not yet handed to the transcriber
        self.send: Send | None = None
        self.closed = False
        self.inference_seconds = 0.0
        self._new_audio = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._expiry: asyncio.Task | None = None

    @classmethod
    def start(cls, user_id: int, options: engine.Options, policy: str, save: Save) -> "LiveSession":
        if open_streams(user_id) >= settings.LIVE_MAX_STREAMS_PER_USER:
            raise TooManyStreams
        session = cls(user_id, options, save, policy)
        _sessions[session.id] = session
        return session

    @staticmethod
    def resume(user_id: int, session_id: str) -> "LiveSession | None":
        session = _sessions.get(session_id)
        if session is None or session.user_id != user_id or session.closed:
            return None
        if session.send is not None:
            return None  # still attached to a live socket: one feed per session
        if session._expiry:
            session._expiry.cancel()
            session._expiry = None
        return session

    @property
    def received_samples(self) -> int:
        return len(self.pcm) // 2

    def attach(self, send: Send) -> None:
        self.send = send
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def feed(self, frame: bytes) -> None:
        """PCM16 little-endian mono 16 kHz; cheap, on the event loop."""
        self.pcm += frame
        self.pending.append(np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0)
        self._new_audio.set()

    def detach(self) -> None:
        """The socket went away: keep the session for a while, then save what there is."""
        self.send = None
        if not self.closed:
            self._expiry = asyncio.create_task(self._expire())

    async def _expire(self) -> None:
        await asyncio.sleep(settings.LIVE_RESUME_SECONDS)
        log.info("live session %s was not resumed; saving it", self.id)
        await self.stop()

    async def _emit(self, message: dict) -> None:
        if self.send is not None:
            try:
                await self.send(message)
            except Exception:  # the socket closed under us: the session carries on
                log.warning("live session %s: could not send", self.id, exc_info=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.closed:
                await self._new_audio.wait()
                self._new_audio.clear()
                if sum(len(a) for a in self.pending) < MIN_STEP_SECONDS * SAMPLE_RATE:
                    await asyncio.sleep(0.05)
                    if not self.pending:
                        continue
                await self._step(loop)
                if self.pending:
                    self._new_audio.set()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("live session %s failed", self.id)
            await self._emit({"type": "error", "code": "internal", "message": "Live transcription failed."})

    def _drain(self) -> None:
        if self.pending:
            audio, self.pending = np.concatenate(self.pending), []
            self.transcriber.insert_audio(audio)

    async def _step(self, loop) -> None:
        self._drain()
        behind = self.transcriber.received_seconds - self.transcriber.processed_until
        if behind > settings.LIVE_MAX_LAG_SECONDS:
            # Falling behind (too many streams for the cores): skip ahead rather than queue,
            # so latency stays bounded; the client is told what was skipped.
            skipped = self.transcriber.skip_to_now(keep_seconds=2.0)
            await self._emit({"type": "lagging", "behind": round(behind, 2), "skipped": round(skipped, 2)})
        started = time.perf_counter()
        update = await loop.run_in_executor(inference_pool(), self.transcriber.process)
        self.inference_seconds += time.perf_counter() - started
        await self._send_update(update.committed, update.partial)

    async def _send_update(self, committed: list[Word], partial: list[Word]) -> None:
        if committed:
            await self._emit(
                {
                    "type": "final",
                    "start": round(committed[0].start, 3),
                    "end": round(committed[-1].end, 3),
                    "text": text_of(committed),
                    "words": [w.as_dict() for w in committed],
                }
            )
        await self._emit(
            {
                "type": "partial",
                "start": round(partial[0].start, 3) if partial else None,
                "end": round(partial[-1].end, 3) if partial else None,
                "text": text_of(partial),
                "words": [w.as_dict() for w in partial],
            }
        )

    async def stop(self) -> Recording | None:
        """End the stream: transcribe what is left, make it final, save the recording."""
        if self.closed:
            return None
        self.closed = True
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        self._drain()
        update = await loop.run_in_executor(inference_pool(), self.transcriber.process)
        rest = self.transcriber.finish()
        await self._send_update(update.committed + rest, [])
        _sessions.pop(self.id, None)
        if not self.pcm:
            return None
        return await sync_to_async(self.save)(self)

    def wav(self) -> bytes:
        """Everything received, as a WAV file."""
        return wav_bytes(bytes(self.pcm))

    def result(self) -> engine.TranscriptionResult:
        """The committed words as a transcript, in the shape of a file transcription's."""
        segments = [
            engine.SegmentResult(
                index=i,
                start=group[0].start,
                end=group[-1].end,
                text=text_of(group),
                words=tuple(engine.WordResult(w.start, w.end, w.word, w.probability) for w in group),
            )
            for i, group in enumerate(segments_of(self.transcriber.committed))
        ]
        return engine.TranscriptionResult(
            model_name=self.options.model,
            compute_type=self.options.compute_type,
            pipeline="live",
            language=self.options.language or "en",
            language_probability=None,
            duration=round(self.received_samples / SAMPLE_RATE, 3),
            processing_seconds=round(self.inference_seconds, 3),
            segments=segments,
        )


def wav_bytes(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


def segments_of(words: list[Word], max_words: int = 40, pause: float = 1.0) -> list[list[Word]]:
    """Group words into segments at sentence ends, long pauses, or every max_words."""
    segments: list[list[Word]] = []
    current: list[Word] = []
    for word in words:
        if current and (word.start - current[-1].end > pause or len(current) >= max_words):
            segments.append(current)
            current = []
        current.append(word)
        if word.word.rstrip()[-1:] in ".?!":
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return segments
