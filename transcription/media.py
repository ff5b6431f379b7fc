"""The recording's own audio, to its owner, with HTTP range requests so the player can seek.

Behind nginx (deploy/nginx) the app only decides: the caller has checked the owner, and the answer
is an empty response naming the file in X-Accel-Redirect; nginx serves it from disk, ranges
included, so no app process reads or holds the audio. Without nginx the app serves it itself.
"""

import re
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, HttpResponse, HttpResponseBase
from django.utils.http import content_disposition_header
from django.utils.text import slugify

from .engine import mime_for_extension

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# nginx's internal location that aliases MEDIA_ROOT (deploy/nginx/config.py PROTECTED_MEDIA).
ACCEL_PREFIX = "/protected-media/"


def _nginx_serves_files(request) -> bool:
    """nginx sets X-Sendfile-Type on every request it passes on (replacing a client's own), so the
    header means an nginx that can serve the file is reading this answer. Sent to the app directly
    by a client, it only earns that client an empty response for its own recording."""
    enabled = settings.MEDIA_X_ACCEL
    return enabled and request.headers.get("X-Sendfile-Type") == "X-Accel-Redirect"


def content_type(recording) -> str:
    """The type of what the file is (probed at upload), never of what its uploader called it."""
    return recording.audio_mime or mime_for_extension(recording.audio.name)


def _safe_headers(response: HttpResponseBase, recording) -> HttpResponseBase:
    # nosniff: a browser never second-guesses the type; the file name is ours (title slug and the
    # stored extension), so no user-chosen name or extension reaches a download.
    response["X-Content-Type-Options"] = "nosniff"
    known = content_type(recording) != "application/octet-stream"
    suffix = Path(recording.audio.name).suffix if known else ".bin"
    filename = (slugify(recording.title)[:80] or f"recording-{recording.pk}") + suffix
    response["Content-Disposition"] = content_disposition_header(as_attachment=False, filename=filename) or "inline"
    return response


def audio_response(request, recording) -> HttpResponseBase:
    field = recording.audio
    mime = content_type(recording)
    if _nginx_serves_files(request):
        response: HttpResponseBase = HttpResponse(content_type=mime)
        response["X-Accel-Redirect"] = ACCEL_PREFIX + quote(field.name)
        return _safe_headers(response, recording)
    size = field.size
    match = RANGE.match(request.headers.get("Range", "").strip())
    if not match or match.groups() == ("", ""):
        response = FileResponse(field.open("rb"), content_type=mime)
        response["Accept-Ranges"] = "bytes"
        return _safe_headers(response, recording)
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
    else:  # "bytes=-N": the last N bytes
        start, end = max(size - int(last), 0), size - 1
    if start > end or start >= size:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    with field.open("rb") as handle:
        handle.seek(start)
        body = handle.read(end - start + 1)
    response = HttpResponse(body, status=206, content_type=mime)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    return _safe_headers(response, recording)
