"""The recording's own audio, to its owner, with HTTP range requests so the player can seek."""

import mimetypes
import re

from django.http import FileResponse, HttpResponse, HttpResponseBase

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def audio_response(request, recording) -> HttpResponseBase:
    field = recording.audio
    size = field.size
    content_type = mimetypes.guess_type(field.name)[0] or "application/octet-stream"
    match = RANGE.match(request.headers.get("Range", "").strip())
    if not match or match.groups() == ("", ""):
        response: HttpResponseBase = FileResponse(field.open("rb"), content_type=content_type)
        response["Accept-Ranges"] = "bytes"
        return response
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
    response = HttpResponse(body, status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    return response
