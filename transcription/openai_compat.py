"""`POST /v1/audio/transcriptions`, compatible with OpenAI's API, so existing clients work.

Point the official client at the app (`OpenAI(base_url="http://host:8000/v1", api_key=<token>)`).
The file is stored as a recording like any upload (it appears in the history), transcribed by the
Celery worker, and this async view waits for the result on the channel layer: no thread, and no
database connection, is held while the worker runs. Errors use OpenAI's shape: {"error": {"message",
"type", "param", "code"}}.
"""

import asyncio
import math

import orjson
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from accounts.throttling import Throttled, api_user
from accounts.tokens import TokenExpired
from actions.recordings import accept_upload
from common import metrics

from . import engine, exports, quotas
from .forms import UploadForm, declared_length, too_large_message
from .jobs import INTERNAL_ERROR
from .models import Recording, Transcript
from .progress import recording_group

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
FINISHED = (Recording.Status.DONE, Recording.Status.FAILED)
# How long a wait for a message lasts before the database is asked directly (a lost message
# must not leave the request hanging).
RECHECK_SECONDS = 5.0


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str = "invalid_request_error"
) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status=status)


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


def parse_request(request) -> tuple[UploadForm, engine.Options, str, set[str]]:
    """Validate the multipart form: (upload form, options, response format, granularities)."""
    try:
        post, files = request.POST, request.FILES
    except MultiPartParserError as exc:
        raise BadRequest(f"The request body is not valid multipart/form-data ({exc}).") from exc
    if "file" not in files:
        raise BadRequest("You must provide a file (multipart field 'file').", "file")
    if not post.get("model"):
        raise BadRequest("You must provide a model parameter.", "model")
    response_format = post.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise BadRequest(
            f"Invalid response_format {response_format!r}; use one of {', '.join(RESPONSE_FORMATS)}.",
            "response_format",
        )
    granularities = set(post.getlist("timestamp_granularities[]") or post.getlist("timestamp_granularities"))
    if granularities - set(GRANULARITIES):
        raise BadRequest("timestamp_granularities[] takes 'word' and/or 'segment'.", "timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise BadRequest(
            "response_format must be set to verbose_json to use timestamp granularities.", "timestamp_granularities"
        )
    fields = {
        "model": post["model"],
        "language": post.get("language", ""),
        "prompt": post.get("prompt", ""),
        "temperature": post.get("temperature", ""),
        "word_timestamps": "word" in granularities,
    }
    form = UploadForm(fields, {"audio": files["file"]})
    if not form.is_valid():
        field, messages = next(iter(form.errors.items()))
        param = {"audio": "file", "__all__": None}.get(field, field)
        status = form.error_status()
        message = " ".join(str(m) for m in messages)
        raise BadRequest(message if param in (None, "file") else f"{param}: {message}", param, status)
    options = form.cleaned_data["options"]
    return form, options, response_format, granularities or {"segment"}


def status_and_let_go(recording_id: int) -> str | None:
    """The recording's status; then this request's database connection is given back (to the pool),
    as the wait may last as long as the job and a connection held meanwhile would be missing to
    every other request. Not inside a transaction (a test's)."""
    status = Recording.objects.filter(pk=recording_id).values_list("status", flat=True).first()
    if not connection.in_atomic_block:
        connection.close()
    return status


async def wait_until_finished(recording_id: int) -> str | None:
    """Wait for the worker to finish the recording, woken by its progress messages. It ends with the
    job whatever happens to it: done, failed, or failed by the reaper (its worker died too often; a
    worker that dies once only makes the job start again); and at the latest after
    OPENAI_WAIT_SECONDS (TimeoutError). The database is asked every RECHECK_SECONDS, so a lost
    message or a dead channel layer only delays the answer. None if the recording is gone."""
    layer = get_channel_layer()
    if layer is None:
        raise ImproperlyConfigured("CHANNEL_LAYERS has no default layer")
    channel = await layer.new_channel()
    group = recording_group(recording_id)
    await layer.group_add(group, channel)
    status_now = sync_to_async(status_and_let_go)
    try:
        async with asyncio.timeout(settings.OPENAI_WAIT_SECONDS):
            # Subscribed first, then looked: a job finishing in between is not missed.
            status = await status_now(recording_id)
            while status is not None and status not in FINISHED:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), RECHECK_SECONDS)
                    status = message["data"]["status"]
                except TimeoutError:
                    status = await status_now(recording_id)
                except Exception:  # the channel layer away (Redis restarting): ask the database
                    await asyncio.sleep(RECHECK_SECONDS)
                    status = await status_now(recording_id)
            return status
    finally:
        await layer.group_discard(group, channel)


def transcription_response(recording: Recording, response_format: str, granularities: set[str]) -> HttpResponse:
    transcript = Transcript.objects.get(recording=recording)
    segments = list(transcript.segments.all())
    if response_format == "text":
        return HttpResponse(transcript.text + "\n", content_type="text/plain; charset=utf-8")
    if response_format == "srt":
        return HttpResponse(exports.to_srt(segments), content_type=exports.FORMATS["srt"])
    if response_format == "vtt":
        return HttpResponse(exports.to_vtt(segments), content_type=exports.FORMATS["vtt"])
    usage = {"type": "duration", "seconds": math.ceil(recording.duration or 0)}
    if response_format == "verbose_json":
        body = exports.openai_verbose_json(transcript, segments, recording.duration or 0.0, granularities)
    else:
        body = {"text": transcript.text}
    return HttpResponse(orjson.dumps({**body, "usage": usage}), content_type="application/json")


@csrf_exempt  # token-authenticated, no cookies involved
async def transcriptions(request):
    if request.method != "POST":
        return openai_error(405, "Use POST with multipart/form-data.", code="method_not_allowed")
    try:
        user = await sync_to_async(api_user)(request)  # counted against the token's rate limits
    except TokenExpired as exc:
        return openai_error(401, str(exc), code="invalid_api_key")
    except Throttled as exc:
        response = openai_error(429, exc.message, code="rate_limit_exceeded", kind="requests")
        response["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return openai_error(
            401, "Incorrect or missing API key. Create one on your profile page.", code="invalid_api_key"
        )
    declared = declared_length(request)
    if declared > settings.MAX_UPLOAD_BYTES + 64 * 1024:
        return openai_error(413, too_large_message(declared), param="file", code="file_too_large")
    try:
        await sync_to_async(quotas.check)(user.pk)  # already at a limit: refused before the body is read
        # Parsing and probing read the file: off the event loop.
        form, options, response_format, granularities = await sync_to_async(parse_request, thread_sensitive=False)(
            request
        )
        recording = await sync_to_async(accept_upload)(
            user, form.cleaned_data["audio"], form.title_or_filename(), options, form.audio_info
        )
    except BadRequest as exc:
        return openai_error(exc.status, str(exc), param=exc.param)
    except quotas.QuotaExceeded as exc:
        kind = "rate_limit_error" if exc.status == 429 else "invalid_request_error"
        return openai_error(exc.status, exc.message, param="file", code=exc.code, kind=kind)
    metrics.UPLOAD_SIZE.labels("openai").observe(recording.size_bytes)
    try:
        status = await wait_until_finished(recording.pk)
    except TimeoutError:
        return openai_error(
            504,
            f"Still transcribing after {settings.OPENAI_WAIT_SECONDS} s; "
            f"the result will be in recording {recording.pk}.",
            kind="timeout",
        )
    if status is None:
        return openai_error(404, f"Recording {recording.pk} was deleted before it was transcribed.", code="deleted")
    await recording.arefresh_from_db()
    if status == Recording.Status.FAILED:
        if recording.error == INTERNAL_ERROR:
            return openai_error(500, recording.error, kind="server_error")
        return openai_error(400, recording.error, param="file", code="invalid_file")
    return await sync_to_async(transcription_response)(recording, response_format, granularities)
