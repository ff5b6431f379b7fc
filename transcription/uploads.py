"""Accepting and deleting recordings: the state changes that the upload views and the API call."""

from django.db import transaction

from graph import outbox as graph_outbox
from graph.models import GraphChange

from . import engine
from .models import Recording
from .tasks import transcribe_recording


def declared_length(request) -> int:
    """The request's Content-Length, so an oversized body is refused before it is parsed."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # malformed: the multipart parser refuses the body later


def accept_upload(owner, uploaded_file, title: str, options: engine.Options | None = None) -> Recording:
    with transaction.atomic():
        recording = Recording(
            owner=owner,
            title=title,
            size_bytes=uploaded_file.size,
            options=options.to_dict() if options else {},
        )
        recording.audio.save(uploaded_file.name, uploaded_file, save=False)
        recording.save()
        # On commit, so the worker never looks for a row that is not there yet.
        transcribe_recording.delay_on_commit(recording.id)
    return recording


def delete_recording(recording: Recording) -> None:
    """Remove a recording everywhere: its row (and transcript), its file, its graph nodes."""
    storage, name, recording_id = recording.audio.storage, recording.audio.name, recording.id
    with transaction.atomic():
        recording.delete()
        # The file goes only once the row is gone for good.
        transaction.on_commit(lambda: storage.delete(name) if name else None)
        graph_outbox.record(GraphChange.Kind.DELETE, recording_id, recording.owner_id)
