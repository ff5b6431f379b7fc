"""The REST API's recordings and transcripts (django-ninja), mounted on the project's API in
assistant_site/api.py with the other apps' routers.

Authentication is the API's (a bearer token or the browser's session). Every query is scoped to the
caller: another user's recording is a 404.
"""

from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, File, Form, Query, Router, Schema
from ninja.errors import HttpError
from ninja.files import UploadedFile
from ninja.responses import Status
from pydantic import field_validator

from actions.recordings import accept_upload, delete_recording
from common import metrics
from common.cursors import make_cursor, read_cursor

from . import exports, quotas
from .forms import UploadForm, declared_length, too_large_message
from .models import Recording

router = Router(tags=["recordings"])


# --- Schemas ----------------------------------------------------------------------------------


class RecordingOut(Schema):
    id: int
    uuid: str
    title: str
    status: str
    progress: float
    error: str
    duration: float | None
    size_bytes: int
    options: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @staticmethod
    def resolve_uuid(obj):
        return str(obj.uuid)


class WordOut(Schema):
    start: float
    end: float
    word: str
    probability: float


class SegmentOut(Schema):
    index: int
    start: float
    end: float
    text: str
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    words: list[WordOut] | None

    @staticmethod
    def resolve_words(obj):
        return exports.word_dicts(obj) if obj.words is not None else None


class TranscriptOut(Schema):
    text: str
    language: str
    language_probability: float | None
    model: str = Field(..., alias="model_name")
    compute_type: str
    pipeline: str
    processing_seconds: float
    created_at: datetime
    segments: list[SegmentOut]

    @staticmethod
    def resolve_segments(obj):
        return list(obj.segments.all())


class RecordingDetailOut(RecordingOut):
    transcript: TranscriptOut | None

    @staticmethod
    def resolve_transcript(obj):
        return getattr(obj, "transcript", None)


class RecordingPage(Schema):
    results: list[RecordingOut]
    next_cursor: str | None


class RecordingFilters(Schema):
    cursor: str | None = None
    limit: int = Field(20, ge=1, le=100)
    status: Recording.Status | None = None
    q: str | None = Field(None, max_length=200, description="Words in the title or transcript")
    created_after: datetime | None = None
    created_before: datetime | None = None

    @field_validator("created_after", "created_before")
    @classmethod
    def in_utc(cls, value: datetime | None) -> datetime | None:
        # ISO 8601 allows offsets up to ±23:59, PostgreSQL only ±15:59 (a 500 otherwise): compare in UTC.
        if value is None:
            return None
        try:
            return (timezone.make_aware(value) if timezone.is_naive(value) else value).astimezone(UTC)
        except OverflowError:
            raise ValueError("Out of the range of dates.") from None


class Error(Schema):
    detail: str


# --- Cursor pagination (keyset on created_at, id: stable under inserts, no OFFSET scans) -------


def encode_cursor(recording: Recording) -> str:
    return make_cursor("recordings", recording.owner_id, [recording.created_at.isoformat(), recording.pk])


def decode_cursor(owner_id: object, cursor: str) -> tuple[datetime, int]:
    """Only a cursor this server signed for this user (common/cursors.py): a made-up id past 64
    bits would otherwise reach PostgreSQL and fail there."""
    try:
        created_at, pk = read_cursor("recordings", owner_id, cursor, 2)
        return datetime.fromisoformat(created_at), int(pk)
    except (ValueError, TypeError):  # BadCursor is a ValueError
        raise HttpError(400, "The cursor is not one this API gave out.") from None


# --- Endpoints ----------------------------------------------------------------------------------


@router.get("/recordings", response=RecordingPage)
def list_recordings(request: HttpRequest, filters: Query[RecordingFilters]):
    """My recordings, newest first; follow `next_cursor` for the next page."""
    recordings = Recording.objects.owned_by(request.user).newest_first()
    if filters.status:
        recordings = recordings.filter(status=filters.status)
    if filters.q:
        recordings = recordings.filter(Q(title__icontains=filters.q) | Q(transcript__text__icontains=filters.q))
    if filters.created_after:
        recordings = recordings.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        recordings = recordings.filter(created_at__lt=filters.created_before)
    if filters.cursor:
        created_at, pk = decode_cursor(request.user.pk, filters.cursor)
        recordings = recordings.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    page = list(recordings[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {"results": page, "next_cursor": encode_cursor(page[-1]) if more else None}


@router.post("/recordings", response={202: RecordingOut, 400: Error, 413: Error, 429: Error})
def create_recording(
    request: HttpRequest,
    file: File[UploadedFile],
    title: Form[str] = "",
    model: Form[str] = "",
    compute_type: Form[str] = "",
    language: Form[str] = "",
    prompt: Form[str] = "",
    word_timestamps: Form[bool] = False,
):
    """Upload audio or video to transcribe; the recording comes back queued (poll it, or watch
    `/ws/recordings/{id}/`). 413: the file is too large or too long, or your storage quota is full;
    429: you have the most recordings waiting for transcription at once."""
    if declared_length(request) > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        return Status(413, {"detail": too_large_message(declared_length(request))})
    fields = {
        "title": title,
        "model": model,
        "compute_type": compute_type,
        "language": language,
        "prompt": prompt,
        "word_timestamps": word_timestamps,
    }
    try:
        quotas.check(request.user.pk or 0)  # the router authenticated the caller: pk is set
        form = UploadForm(fields, {"audio": file})
        if not form.is_valid():
            return Status(form.error_status(), {"detail": form.error_text()})
        recording = accept_upload(
            request.user,
            form.cleaned_data["audio"],
            form.title_or_filename(),
            form.cleaned_data["options"],
            form.audio_info,
        )
    except quotas.QuotaExceeded as exc:
        return Status(exc.status, {"detail": exc.message})
    metrics.UPLOAD_SIZE.labels("api").observe(recording.size_bytes)
    return Status(202, recording)


def _owned(request, recording_id: int) -> Recording:
    return get_object_or_404(Recording.objects.owned_by(request.user), pk=recording_id)


@router.get("/recordings/{recording_id}", response=RecordingDetailOut)
def get_recording(request: HttpRequest, recording_id: int, response: HttpResponse):
    """One recording with its transcript, segments and (when asked for at upload) words."""
    recording = get_object_or_404(
        Recording.objects.owned_by(request.user).select_related("transcript"), pk=recording_id
    )
    not_modified = exports.not_modified(request, recording)
    if not_modified:
        return not_modified
    exports.with_validators(response, recording)  # ninja copies these headers onto its response
    return recording


@router.get("/recordings/{recording_id}/transcript.{fmt}", response={200: None, 404: Error, 409: Error})
def export_transcript(request: HttpRequest, recording_id: int, fmt: str):
    """The transcript as txt, srt, vtt or json."""
    return exports.export_response(request, _owned(request, recording_id), fmt)


@router.delete("/recordings/{recording_id}", response={204: None})
def remove_recording(request: HttpRequest, recording_id: int):
    """Delete a recording, its audio file, its transcript and its part of the knowledge graph."""
    delete_recording(_owned(request, recording_id))
    return Status(204, None)
