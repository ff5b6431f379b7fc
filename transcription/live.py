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
import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from . import engine
from .live_store import LEASE_SECONDS, SessionStore, open_sessions
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
        self.pending: list[np.ndarray] = []  # received, not yet handed to the transcriber
        self.send: Send | None = None
        self.closed = False
        self.inference_seconds = 0.0
        self._new_audio = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._expiry: asyncio.Task | None = None
        self._keeper: asyncio.Task | None = None

    @classmethod
    def start(cls, user_id: int, options: engine.Options, policy: str, save: Save) -> "LiveSession":
        if open_sessions(user_id) >= settings.LIVE_MAX_STREAMS_PER_USER:
            raise TooManyStreams
        session = cls(user_id, options, save, policy)
        session.store.create(user_id, session.options.to_dict(), policy)
        session.store.take_lease()
        session._serve()
        return session

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
        meta = await sync_to_async(store.meta, thread_sensitive=False)()
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
        store.ask_for_it()
        deadline = time.monotonic() + LEASE_SECONDS + 1.0
        while time.monotonic() < deadline:
            if store.take_lease():
                store.taken()
                if store.meta() is None:  # saved and discarded while we waited
                    store.release_lease()
                    return False
                return True
            await asyncio.sleep(0.1)
        return False

    def _restore(self) -> None:
        """Rebuild the transcriber from the store: the committed words, and the audio after them."""
        committed = self.store.words()
        start_sample = int((committed[-1].end if committed else 0.0) * SAMPLE_RATE)
        self.received_bytes = self.store.spooled_bytes()
        start_sample = min(start_sample, self.received_bytes // 2)
        pcm = self.store.read_pcm(start_sample)
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        self.transcriber.restore(committed, audio, start_sample / SAMPLE_RATE)

    @classmethod
    def take_abandoned(cls, session_id: str, save: Save) -> "LiveSession | None":
        """A session whose process died and that nobody resumed, with its last words transcribed
        (in the caller's thread): ready to save. None if another process has it."""
        store = SessionStore(session_id)
        meta = store.meta()
        if meta is None or not store.take_lease():
            return None
        session = cls(meta["user_id"], engine.Options.from_dict(meta["options"]), save, meta["policy"], session_id)
        session._restore()
        if len(session.transcriber.buffer):
            session.transcriber.process()
        session.transcriber.finish()
        session.closed = True
        return session

    def _serve(self) -> None:
        """From now on this process serves the session: it keeps the lease and appends to the spool."""
        self.spool = self.store.open_spool()
        _sessions[self.id] = self
        self._keeper = asyncio.create_task(self._keep_lease())

    async def _keep_lease(self) -> None:
        """Renew the lease every second; hand the session over when another process asks for it
        while no socket feeds it here."""
        try:
            while not self.closed:
                await asyncio.sleep(1.0)
                try:
                    if self.send is None and self.store.is_wanted():
                        self._hand_over()
                        return
                    if not self.store.renew_lease():
                        log.warning("live session %s: lease lost; another process serves it now", self.id)
                        self._let_go()
                        return
                except redis.RedisError:
                    # Redis away for a moment: nobody else can take the lease meanwhile either.
                    log.warning("live session %s: could not renew its lease", self.id, exc_info=True)
        except asyncio.CancelledError:
            pass

    def _hand_over(self) -> None:
        log.info("live session %s handed over to another process", self.id)
        self._let_go()
        self.store.release_lease()

    def _let_go(self) -> None:
        """Stop serving the session here, without saving it: another process carries it on."""
        self.closed = True
        for task in (self._task, self._expiry):
            if task:
                task.cancel()
        _sessions.pop(self.id, None)
        if self.spool:
            self.spool.close()
            self.spool = None
        if self.send is not None:  # a socket still feeds it here: tell it to resume elsewhere
            asyncio.create_task(self._emit({"type": "error", "code": "moved", "message": "Reconnect to resume."}))

    @property
    def received_samples(self) -> int:
        return self.received_bytes // 2

    def attach(self, send: Send) -> None:
        self.send = send
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def feed(self, frame: bytes) -> None:
        """PCM16 little-endian mono 16 kHz; cheap, on the event loop (one unbuffered append)."""
        if self.spool is None:
            return  # no longer served here (see _let_go): the client was told to reconnect
        self.spool.write(frame)
        self.received_bytes += len(frame)
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
        self.store.add_words(update.committed)
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
        self.store.add_words(update.committed + rest)
        await self._send_update(update.committed + rest, [])
        _sessions.pop(self.id, None)
        if self._keeper:
            self._keeper.cancel()
        if self.spool:
            self.spool.close()
        if not self.received_bytes:
            self.discard()
            return None
        recording = await sync_to_async(self.save)(self)
        self.discard()
        return recording

    def discard(self) -> None:
        """Forget the session's state outside the process: saved (or empty), it is over."""
        self.store.delete(self.user_id)

    def wav(self) -> bytes:
        """Everything received, as a WAV file."""
        return wav_bytes(self.store.read_pcm())

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
