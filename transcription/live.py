"""Live sessions: audio in from a WebSocket, partial and final text out, a Recording at the end.

A session outlives its socket for LIVE_RESUME_SECONDS, so a client whose connection drops can
reconnect and carry on, through any web process: the session's audio and committed words live
outside the process (live_store.py), and a process that resumes a session another one serves asks
for it and takes it over (or, if that process died, takes it once its lease runs out). A session
whose process died and that nobody resumes is saved by the worker (`abandoned_sessions`).
Inference runs on a shared thread pool (one worker per core, one model shared by all streams),
never on the event loop.

Saving a finished session is not this module's business: whoever starts a session hands it the
function that saves it (the actions layer's `save_live_session`), so it is stored exactly like an
upload's transcript, follow-up work included.

Limits (README "Limits of a live session"): audio at most LIVE_MAX_REALTIME_RATIO × real time with
a burst of LIVE_BURST_SECONDS, LIVE_MAX_SESSION_SECONDS per session, LIVE_MINUTES_PER_DAY per user.
A session that reaches one is ended and saved; nothing already accepted is lost. Memory does not
grow with a session's length: the audio is on disk, the transcriber's window is bounded, and saving
streams the spool into the stored WAV.
"""

import asyncio
import io
import logging
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from opentelemetry import trace

from common import metrics, sockets

from . import engine
from .live_store import LEASE_SECONDS, SessionStore, add_live_seconds, live_seconds_today, open_sessions
from .models import Recording
from .streaming import SAMPLE_RATE, LocalAgreement, NaiveWindow, Update, Word, text_of

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Wait for at least this much new audio between inference calls.
MIN_STEP_SECONDS = 0.2
# A session taken over or saved by another process transcribes at most this much of the audio after
# its last committed word (the saved audio is always all of it): memory and time stay bounded.
RESTORE_MAX_SECONDS = 30.0
POLICIES: dict[str, type[LocalAgreement | NaiveWindow]] = {"local-agreement": LocalAgreement, "naive": NaiveWindow}

_pool: ThreadPoolExecutor | None = None
_sessions: dict[str, "LiveSession"] = {}
_background: set[asyncio.Task] = set()  # sessions being saved after their socket was cut off

Send = Callable[[dict], Awaitable[None]]
# Ends the session's socket for a limit reached between frames (the consumer's).
OnLimit = Callable[["Limit"], Coroutine[object, object, None]]
# Stores a stopped session (its audio and transcript) as a recording; runs in a thread.
Save = Callable[["LiveSession"], Recording]


def inference_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.LIVE_INFERENCE_WORKERS, thread_name_prefix="live-asr")
    return _pool


class TooManyStreams(Exception):
    pass


class QuotaUsedUp(Exception):
    pass


@dataclass(frozen=True)
class Limit:
    """Why a session must end now: an error code and message for the client, a close code."""

    code: str
    message: str
    close_code: int


def too_fast() -> Limit:
    return Limit(
        "too_fast",
        f"Audio arrived faster than {settings.LIVE_MAX_REALTIME_RATIO:g}× real time; what came before is saved.",
        sockets.CLOSE_AUDIO_TOO_FAST,
    )


def too_long() -> Limit:
    return Limit(
        "session_too_long",
        f"A live session is limited to {settings.LIVE_MAX_SESSION_SECONDS // 60} minutes; it was saved.",
        sockets.CLOSE_SESSION_TOO_LONG,
    )


def quota_used_up() -> Limit:
    return Limit(
        "quota_used_up",
        f"Your {settings.LIVE_MINUTES_PER_DAY} minutes of live transcription for today are used up.",
        sockets.CLOSE_QUOTA_USED_UP,
    )


class AudioRate:
    """A token bucket counted in seconds of audio: it refills at LIVE_MAX_REALTIME_RATIO per second
    up to LIVE_BURST_SECONDS (enough to re-send what a reconnect lost)."""

    def __init__(self, tokens: float | None = None):
        self.rate = settings.LIVE_MAX_REALTIME_RATIO
        self.burst = settings.LIVE_BURST_SECONDS
        self.tokens = self.burst if tokens is None else max(0.0, min(self.burst, tokens))
        self.at = time.monotonic()

    def take(self, seconds: float) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if seconds > self.tokens:
            return False
        self.tokens -= seconds
        return True


class LiveSession:
    def __init__(
        self,
        user_id: int,
        options: engine.Options,
        save: Save,
        policy: str = "local-agreement",
        session_id: str | None = None,
    ):
        self.id = session_id or uuid.uuid4().hex
        self.user_id = user_id
        self.save = save
        self.options = options.resolved()
        self.policy = policy
        self.transcriber = POLICIES[policy](self.options)
        self.store = SessionStore(self.id)
        self.spool = None  # the audio file, appended to as frames arrive
        self.received_bytes = 0
        self.started = time.time()  # wall clock, shared by every process that serves the session
        self.rate = AudioRate()
        self.quota_left = float(settings.LIVE_MINUTES_PER_DAY * 60)  # seconds, refreshed from Redis
        self._uncounted = 0.0  # seconds received and not yet added to the user's day in Redis
        # Received, not yet handed to the transcriber (PCM16 frames; bounded by the rate limit).
        self.pending: deque[bytes] = deque()
        # The transcriber is not thread-safe: one step at a time, even when stop() comes while a
        # cancelled step is still running on its thread.
        self._step_lock = threading.Lock()
        self.send: Send | None = None
        self._on_limit: OnLimit | None = None
        self.closed = False
        self.inference_seconds = 0.0
        self.latency = metrics.LiveLatency()
        self._new_audio = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._expiry: asyncio.Task | None = None
        self._keeper: asyncio.Task | None = None

    @classmethod
    async def start(cls, user_id: int, options: engine.Options, policy: str, save: Save) -> "LiveSession":
        """A new session; TooManyStreams or QuotaUsedUp if the user may not start one now."""
        session = cls(user_id, options, save, policy)
        await asyncio.to_thread(session._open)
        session._serve()
        return session

    def _open(self) -> None:
        if open_sessions(self.user_id) >= settings.LIVE_MAX_STREAMS_PER_USER:
            raise TooManyStreams
        self.quota_left = settings.LIVE_MINUTES_PER_DAY * 60 - live_seconds_today(self.user_id)
        if self.quota_left <= 0:
            raise QuotaUsedUp
        self.store.create(self.user_id, self.options.to_dict(), self.policy)
        self.store.take_lease()

    @classmethod
    async def resume(cls, user_id: int, session_id: str, save: Save) -> "LiveSession | None":
        """The user's session, from this process or taken over from the one serving it (or that
        served it and died). None if there is no such session, or it is still attached to a socket."""
        session = _sessions.get(session_id)
        if session is not None:
            if session.user_id != user_id or session.closed or session.send is not None:
                return None  # not theirs, over, or still fed by a live socket: one feed per session
            if session._expiry:
                session._expiry.cancel()
                session._expiry = None
            return session
        store = SessionStore(session_id)
        meta = await asyncio.to_thread(store.meta)
        if meta is None or meta["user_id"] != user_id:
            return None
        if not await cls._take_over(store):
            return None
        session = cls(user_id, engine.Options.from_dict(meta["options"]), save, meta["policy"], session_id)
        await asyncio.get_running_loop().run_in_executor(inference_pool(), session._restore)
        session._serve()
        log.info("live session %s taken over by this process", session_id)
        return session

    @staticmethod
    async def _take_over(store: SessionStore) -> bool:
        """Ask the process serving the session to hand it over, and take its lease once free: at
        once if that process is idle, within LEASE_SECONDS if it died."""
        await asyncio.to_thread(store.ask_for_it)
        deadline = time.monotonic() + LEASE_SECONDS + 1.0
        while time.monotonic() < deadline:
            if await asyncio.to_thread(store.take_lease):
                await asyncio.to_thread(store.taken)
                if await asyncio.to_thread(store.meta) is None:  # saved and discarded while we waited
                    await asyncio.to_thread(store.release_lease)
                    return False
                return True
            await asyncio.sleep(0.1)
        return False

    def _restore(self) -> None:
        """Rebuild the session from the store: when it started, how much audio it has, the committed
        words, and (at most RESTORE_MAX_SECONDS of) the audio after them."""
        meta = self.store.meta() or {}
        self.started = meta.get("started", self.started)
        committed = self.store.words()
        self.received_bytes = self.store.spooled_bytes()
        start_sample = min(int((committed[-1].end if committed else 0.0) * SAMPLE_RATE), self.received_samples)
        start_sample = max(start_sample, self.received_samples - int(RESTORE_MAX_SECONDS * SAMPLE_RATE))
        audio = pcm_to_float(self.store.read_pcm(start_sample))
        self.transcriber.restore(committed, audio, start_sample / SAMPLE_RATE)
        # The rate limit carries over: a session moved between processes gets no new burst beyond
        # what its age allows on average.
        age = time.time() - self.started
        self.rate = AudioRate(
            settings.LIVE_BURST_SECONDS + settings.LIVE_MAX_REALTIME_RATIO * age - self.received_seconds
        )
        self.quota_left = settings.LIVE_MINUTES_PER_DAY * 60 - live_seconds_today(self.user_id)

    @classmethod
    @contextmanager
    def abandoned(cls, session_id: str, save: Save, transcribe: bool = True) -> Iterator["LiveSession | None"]:
        """A session whose process died and that nobody resumed, with its last words transcribed
        (in the caller's thread), its lease held until the body is done: ready to save. None if
        another process has it."""
        store = SessionStore(session_id)
        meta = store.meta()
        if meta is None or not store.take_lease():
            yield None
            return
        with store.keeping_lease():
            session = cls(meta["user_id"], engine.Options.from_dict(meta["options"]), save, meta["policy"], session_id)
            session._restore()
            if transcribe:
                if len(session.transcriber.buffer):
                    session.transcriber.process()
                session.transcriber.finish()
            session.closed = True
            try:
                yield session
            finally:
                saved = store.meta() is None
        if not saved:  # let the next sweep try again
            store.release_lease()

    def _serve(self) -> None:
        """From now on this process serves the session: it keeps the lease and appends to the spool."""
        self.spool = self.store.open_spool()
        _sessions[self.id] = self
        metrics.LIVE_STREAMS.set(len(_sessions))
        self._keeper = asyncio.create_task(self._keep_lease())

    async def _keep_lease(self) -> None:
        """Every second: renew the lease, count the audio against the user's day, end the session at
        its length cap; hand the session over when another process asks for it while no socket
        feeds it here. Redis is called from a thread: never on the event loop."""
        try:
            while not self.closed:
                await asyncio.sleep(1.0)
                try:
                    if self.send is None and await asyncio.to_thread(self.store.is_wanted):
                        await self._hand_over()
                        return
                    if not await asyncio.to_thread(self.store.renew_lease):
                        log.warning("live session %s: lease lost; another process serves it now", self.id)
                        self._let_go()
                        return
                    await self._count_usage()
                except redis.RedisError:
                    # Redis away for a moment: nobody else can take the lease meanwhile either.
                    log.warning("live session %s: could not renew its lease", self.id, exc_info=True)
                if time.time() - self.started >= settings.LIVE_MAX_SESSION_SECONDS:
                    await self._reach(too_long())
                    return
        except asyncio.CancelledError:
            pass

    async def _count_usage(self) -> None:
        if self._uncounted:
            seconds, self._uncounted = self._uncounted, 0.0
            try:
                used = await asyncio.to_thread(add_live_seconds, self.user_id, seconds)
            except redis.RedisError:
                self._uncounted += seconds
                raise
            self.quota_left = settings.LIVE_MINUTES_PER_DAY * 60 - used

    async def _reach(self, limit: Limit) -> None:
        """A limit reached outside a frame (the session's age): its socket ends it, or, with no
        socket attached, it is saved now."""
        log.info("live session %s reached a limit: %s", self.id, limit.code)
        if self._on_limit is not None:
            asyncio.create_task(self._on_limit(limit))
        else:
            self.stop_in_background()

    async def _hand_over(self) -> None:
        log.info("live session %s handed over to another process", self.id)
        self._let_go()
        await asyncio.to_thread(self.store.release_lease)

    def _let_go(self) -> None:
        """Stop serving the session here, without saving it: another process carries it on."""
        self.closed = True
        for task in (self._task, self._expiry):
            if task:
                task.cancel()
        _sessions.pop(self.id, None)
        metrics.LIVE_STREAMS.set(len(_sessions))
        if self.spool:
            self.spool.close()
            self.spool = None
        if self.send is not None:  # a socket still feeds it here: tell it to resume elsewhere
            asyncio.create_task(self._emit({"type": "error", "code": "moved", "message": "Reconnect to resume."}))

    @property
    def received_samples(self) -> int:
        return self.received_bytes // 2

    @property
    def received_seconds(self) -> float:
        return self.received_samples / SAMPLE_RATE

    def attach(self, send: Send, on_limit: OnLimit | None = None) -> None:
        self.send = send
        self._on_limit = on_limit
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def limit_for(self, frame_bytes: int) -> Limit | None:
        """The limit that a frame of this size would break, if any (checked before it is accepted)."""
        seconds = frame_bytes / 2 / SAMPLE_RATE
        if self.received_seconds + seconds > settings.LIVE_MAX_SESSION_SECONDS:
            return too_long()
        if seconds > self.quota_left:
            return quota_used_up()
        if not self.rate.take(seconds):
            return too_fast()
        return None

    async def feed(self, frame: bytes) -> None:
        """PCM16 little-endian mono 16 kHz: appended to the spool (unbuffered, from a thread) before
        it counts as received."""
        spool = self.spool
        if spool is None:
            return  # no longer served here (see _let_go): the client was told to reconnect
        try:
            await asyncio.to_thread(spool.write, frame)
        except ValueError:  # closed under us by _let_go: the client was told to reconnect
            return
        self.received_bytes += len(frame)
        seconds = len(frame) / 2 / SAMPLE_RATE
        self._uncounted += seconds
        self.quota_left -= seconds
        self.pending.append(frame)
        self.latency.arrived(self.received_seconds, seconds)
        self._new_audio.set()

    def detach(self) -> None:
        """The socket went away: keep the session for a while, then save what there is."""
        self.send = None
        self._on_limit = None
        if not self.closed:
            self._expiry = asyncio.create_task(self._expire())

    def stop_in_background(self) -> None:
        """Save the session without a socket to answer (one cut off for breaking a limit)."""
        self.send = None
        self._on_limit = None
        task = asyncio.create_task(self.stop())
        _background.add(task)
        task.add_done_callback(_background.discard)

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
                if sum(len(f) for f in self.pending) < MIN_STEP_SECONDS * SAMPLE_RATE * 2:
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
        frames = []
        while self.pending:
            frames.append(self.pending.popleft())
        if frames:
            self.transcriber.insert_audio(pcm_to_float(b"".join(frames)))

    def _locked_step(self) -> tuple[Update, float, float]:
        """On an inference thread: the new audio in, skip ahead if too far behind, transcribe."""
        with self._step_lock:
            self._drain()
            behind = self.transcriber.received_seconds - self.transcriber.processed_until
            skipped = 0.0
            if behind > settings.LIVE_MAX_LAG_SECONDS:
                # Falling behind (too many streams for the cores): skip ahead rather than queue,
                # so latency stays bounded; the client is told what was skipped. Only the live view
                # skips: the spool, and so the saved recording, has every second received.
                skipped = self.transcriber.skip_to_now(keep_seconds=2.0)
            return self.transcriber.process(), behind, skipped

    def _locked_finish(self) -> list[Word]:
        """On an inference thread, after any step still running: the last words, all final."""
        with self._step_lock:
            self._drain()
            update = self.transcriber.process() if len(self.transcriber.buffer) else Update()
            return update.committed + self.transcriber.finish()

    async def _step(self, loop) -> None:
        started = time.perf_counter()
        # In the trace of the socket that started the session: its wait for the pool included.
        with tracer.start_as_current_span("live.inference") as span:
            update, behind, skipped = await loop.run_in_executor(inference_pool(), self._locked_step)
            span.set_attributes(
                {
                    "live.behind_seconds": round(behind, 3),
                    "live.skipped_seconds": round(skipped, 3),
                    "live.committed_words": len(update.committed),
                }
            )
        self.inference_seconds += time.perf_counter() - started
        self.latency.step(update.committed, update.partial, behind, skipped)
        if skipped:
            await self._emit({"type": "lagging", "behind": round(behind, 2), "skipped": round(skipped, 2)})
        await asyncio.to_thread(self.store.add_words, update.committed)
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
        """End the stream: transcribe what is left, make it final, save the recording. The lease is
        held until it is saved. If saving fails, the audio stays in the spool and the worker's sweep
        tries again (see actions.recordings.save_abandoned_live_sessions)."""
        if self.closed:
            return None
        self.closed = True
        others = [t for t in (self._task, self._expiry, self._keeper) if t and t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        _sessions.pop(self.id, None)
        metrics.LIVE_STREAMS.set(len(_sessions))
        with self.store.keeping_lease():
            rest = await asyncio.get_running_loop().run_in_executor(inference_pool(), self._locked_finish)
            await asyncio.to_thread(self.store.add_words, rest)
            await self._send_update(rest, [])
            if self.spool:
                self.spool.close()
                self.spool = None
            try:
                await self._count_usage()
            except redis.RedisError:
                log.warning("live session %s: its usage could not be counted", self.id, exc_info=True)
            if not self.received_bytes:
                await asyncio.to_thread(self.discard)
                return None
            try:
                recording = await sync_to_async(self.save)(self)
            except Exception:
                log.exception("live session %s could not be saved; its audio is kept for a retry", self.id)
                await asyncio.to_thread(self.store.count_save_attempt)
                await self._emit(
                    {
                        "type": "error",
                        "code": "save_failed",
                        "message": "The recording could not be saved now; its audio is kept and it will be saved later.",
                    }
                )
                recording = None
            else:
                await asyncio.to_thread(self.discard)
        if recording is None:
            await asyncio.to_thread(self.store.release_lease)  # the worker's sweep takes it from here
        return recording

    def discard(self) -> None:
        """Forget the session's state outside the process: saved (or empty), it is over."""
        self.store.delete(self.user_id)

    def wav_file(self) -> io.BufferedReader:
        """Everything received, as a WAV file read straight from the spool (never all in memory)."""
        return io.BufferedReader(SpooledWav(self.store.spool_path, self.store.spooled_bytes()), 1024 * 1024)

    def wav_size(self) -> int:
        return WAV_HEADER_BYTES + self.store.spooled_bytes()

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


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


WAV_HEADER_BYTES = 44


def wav_header(pcm_bytes: int) -> bytes:
    """The 44-byte header of a PCM16 mono 16 kHz WAV file with this much audio."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + pcm_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        SAMPLE_RATE,
        SAMPLE_RATE * 2,
        2,
        16,
        b"data",
        pcm_bytes,
    )


class SpooledWav(io.RawIOBase):
    """A WAV file that is a header and then the first `pcm_bytes` of a spool file, read as it is
    copied: storing a four-hour session costs a read buffer, not four copies of its audio."""

    def __init__(self, spool_path, pcm_bytes: int):
        self._header = wav_header(pcm_bytes)
        self._pcm = open(spool_path, "rb")  # noqa: SIM115 (closed with this reader)
        self._left = pcm_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._header:
            n = min(len(view), len(self._header))
            view[:n] = self._header[:n]
            self._header = self._header[n:]
            return n
        n = self._pcm.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        return n

    def close(self) -> None:
        self._pcm.close()
        super().close()


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
