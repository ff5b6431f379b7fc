"""Accepting an upload: store the recording and queue its transcription once it is committed."""

from django.db import transaction

from .models import Recording
from .tasks import transcribe_recording


def accept_upload(owner, uploaded_file, title: str) -> Recording:
    with transaction.atomic():
        recording = Recording(owner=owner, title=title, size_bytes=uploaded_file.size)
        recording.audio.save(uploaded_file.name, uploaded_file, save=False)
        recording.save()
        # On commit, so the worker never looks for a row that is not there yet.
        transcribe_recording.delay_on_commit(recording.id)
    return recording
