"""Accounts: deleting a user and everything they made, in every store."""

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from graph import outbox as graph_outbox
from transcription import live_store
from transcription.models import Recording

log = logging.getLogger(__name__)


def delete_user(user) -> None:
    """Remove a user everywhere: their rows (recordings, transcripts, workflows, runs, API tokens go
    with the user by cascade), their files (uploads and saved live audio, their unsaved live
    sessions' spool), and their graph nodes. The graph purge goes through the outbox in the same
    transaction, so with Neo4j away it is applied later; files go only once the rows are gone for good."""
    user_id = user.pk
    storage = Recording._meta.get_field("audio").storage
    names = [name for name in Recording.objects.filter(owner_id=user_id).values_list("audio", flat=True) if name]
    with transaction.atomic():
        graph_outbox.record_owner_purge(user_id)
        user.delete()
        transaction.on_commit(lambda: _delete_files(user_id, storage, names))


def _delete_files(user_id: int, storage, names: list[str]) -> None:
    for name in names:
        try:
            storage.delete(name)
        except OSError:
            log.exception("could not delete %s of deleted user %s", name, user_id)
    # Anything else stored under the user's folder (a file whose row never committed).
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "recordings" / str(user_id), ignore_errors=True)
    try:
        live_store.discard_user_sessions(user_id)
    except Exception:  # Redis away: the sweep finds the sessions' owner gone and cannot save them
        log.exception("could not discard the live sessions of deleted user %s", user_id)
