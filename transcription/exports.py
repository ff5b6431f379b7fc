"""Transcript exports: plain text, SubRip (SRT), WebVTT and JSON, plus OpenAI's response shapes,
and their HTTP responses (downloads with ETag/Last-Modified, so a client re-fetching an unchanged
transcript gets a 304 and no body).

Each format takes a Transcript's segments (ordered) and returns the file's text or data.
"""

import orjson
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.utils.text import slugify

from .models import Recording, Segment, Transcript

FORMATS = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}


def timestamp(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (WebVTT) or HH:MM:SS,mmm (SRT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(segment: Segment) -> str:
    # A blank line ends a cue in both formats, and "-->" would start a new timing line in VTT.
    return " ".join(segment.text.split()).replace("-->", "->")


def to_txt(segments: list[Segment]) -> str:
    return "".join(f"{s.text.strip()}\n" for s in segments if s.text.strip())


def to_srt(segments: list[Segment]) -> str:
    cues = [
        f"{n}\n{timestamp(s.start, ',')} --> {timestamp(max(s.end, s.start), ',')}\n{_cue_text(s)}\n"
        for n, s in enumerate((s for s in segments if s.text.strip()), start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: list[Segment]) -> str:
    cues = [
        f"{timestamp(s.start)} --> {timestamp(max(s.end, s.start))}\n{_cue_text(s)}\n"
        for s in segments
        if s.text.strip()
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def word_dicts(segment: Segment) -> list[dict]:
    return [
        {"start": start, "end": end, "word": word, "probability": probability}
        for start, end, word, probability in segment.words or ()
    ]


def to_json(recording: Recording, transcript: Transcript, segments: list[Segment]) -> dict:
    return {
        "id": recording.pk,
        "title": recording.title,
        "duration": recording.duration,
        "language": transcript.language,
        "model": transcript.model_name,
        "compute_type": transcript.compute_type,
        "pipeline": transcript.pipeline,
        "processing_seconds": round(transcript.processing_seconds, 3),
        "created_at": transcript.created_at.isoformat(),
        "text": transcript.text,
        "segments": [
            {
                "id": s.index,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "avg_logprob": s.avg_logprob,
                "no_speech_prob": s.no_speech_prob,
                "compression_ratio": s.compression_ratio,
                "words": word_dicts(s) if s.words is not None else None,
            }
            for s in segments
        ],
    }


def render(fmt: str, recording: Recording, transcript: Transcript, segments: list[Segment]) -> str | dict:
    if fmt == "txt":
        return to_txt(segments)
    if fmt == "srt":
        return to_srt(segments)
    if fmt == "vtt":
        return to_vtt(segments)
    if fmt == "json":
        return to_json(recording, transcript, segments)
    raise ValueError(f"unknown export format {fmt!r}")


def openai_verbose_json(
    transcript: Transcript, segments: list[Segment], duration: float, granularities: set[str]
) -> dict:
    """OpenAI's verbose_json transcription object."""
    body = {
        "task": "transcribe",
        "language": _language_name(transcript.language),
        "duration": duration,
        "text": transcript.text,
    }
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": s.index,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w["word"].strip(), "start": w["start"], "end": w["end"]} for s in segments for w in word_dicts(s)
        ]
    return body


_LANGUAGE_NAMES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "nl": "dutch",
    "pt": "portuguese",
    "ja": "japanese",
    "zh": "chinese",
    "ru": "russian",
}


def _language_name(code: str) -> str:
    # OpenAI reports the language by name ("english"); other codes are passed through as codes.
    return _LANGUAGE_NAMES.get(code, code)


# --- HTTP -------------------------------------------------------------------------------------


def validators(recording: Recording) -> tuple[str, int]:
    """(ETag, Last-Modified timestamp) for a recording as the API shows it: they change whenever
    its state, progress or transcript does."""
    transcript = getattr(recording, "transcript", None)
    changed = (
        transcript.created_at if transcript else (recording.finished_at or recording.started_at or recording.created_at)
    )
    etag = f'"{recording.pk}-{recording.status}-{round(recording.progress * 1000)}-{changed.timestamp():.6f}"'
    return etag, int(changed.timestamp())


def not_modified(request, recording: Recording) -> HttpResponse | None:
    """A 304 when the client's If-None-Match / If-Modified-Since still hold, else None."""
    etag, last_modified = validators(recording)
    return get_conditional_response(request, etag=etag, last_modified=last_modified)


def with_validators(response: HttpResponse, recording: Recording) -> HttpResponse:
    etag, last_modified = validators(recording)
    response["ETag"] = etag
    response["Last-Modified"] = http_date(last_modified)
    response["Cache-Control"] = "private, no-cache"
    return response


def export_response(request, recording: Recording, fmt: str) -> HttpResponse:
    """The transcript as a download in `fmt`; 404 for an unknown format, 409 while not transcribed."""
    if fmt not in FORMATS:
        raise Http404(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    transcript = Transcript.objects.filter(recording=recording).first()
    if transcript is None:
        return JsonResponse({"detail": "This recording has no transcript yet."}, status=409)
    recording.transcript = transcript
    cached = not_modified(request, recording)
    if cached:
        return cached
    body = render(fmt, recording, transcript, list(transcript.segments.all()))
    content = orjson.dumps(body, option=orjson.OPT_INDENT_2) if isinstance(body, dict) else body.encode()
    response = HttpResponse(content, content_type=FORMATS[fmt])
    filename = f"{slugify(recording.title) or 'transcript'}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return with_validators(response, recording)
