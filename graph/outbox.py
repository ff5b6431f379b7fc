"""Getting graph changes from the outbox into Neo4j, recording by recording.

`record` is called inside the transaction that changes a recording; once it commits, a task
applies the change. Each recording's changes are applied on their own: the latest one wins (a write
after a delete finds no recording and does nothing), under a lock on that recording's oldest row
held for the whole application (a database row lock: it cannot expire mid-run, and it goes with
the transaction if the worker dies). A change that fails is tried again later with a growing delay
(GRAPH_OUTBOX_RETRY_SECONDS, doubling) and, after GRAPH_OUTBOX_MAX_ATTEMPTS, left failed for an
admin to see and retry, while every other recording's changes go on. Neo4j being away is nobody's
fault: the round stops, nothing counts against the changes, and the task or the periodic sweep
tries again. Applying twice is harmless.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min, QuerySet
from django.utils import timezone

from common.queueing import enqueue_on_commit
from transcription.models import Recording

from . import writes
from .connection import GRAPH_UNAVAILABLE
from .models import GraphChange

log = logging.getLogger(__name__)


def record(kind: str, recording_id: int, owner_id: int) -> None:
    """Note a change the graph must follow; applied by a worker after the transaction commits (or,
    if the broker cannot take the task then, by the periodic sweep)."""
    from .tasks import apply_graph_changes

    GraphChange.objects.create(kind=kind, recording_id=recording_id, owner_id=owner_id)
    enqueue_on_commit(apply_graph_changes)


def record_owner_purge(owner_id: int) -> None:
    """Note that a deleted user's whole graph must go (applied like any change, later if Neo4j is away)."""
    record(GraphChange.Kind.PURGE_OWNER, -owner_id, owner_id)


def apply(change: GraphChange) -> None:
    if change.kind == GraphChange.Kind.PURGE_OWNER:
        writes.delete_owner(str(change.owner_id))
    elif change.kind == GraphChange.Kind.DELETE:
        writes.delete_recording(change.recording_id, str(change.owner_id))
    else:
        writes.write_recording(change.recording_id)


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failure: GRAPH_OUTBOX_RETRY_SECONDS, doubled each time, at most a day."""
    return timedelta(seconds=min(24 * 3600, settings.GRAPH_OUTBOX_RETRY_SECONDS * 2 ** (attempts - 1)))


def _apply_recording(recording_id: int) -> bool:
    """Apply the latest change of one recording if it is due and no other worker holds it. True if
    applied; raises GRAPH_UNAVAILABLE (after noting it) if Neo4j cannot be reached."""
    changes = GraphChange.objects.filter(recording_id=recording_id)
    outage = None
    with transaction.atomic():
        head_id = changes.order_by("id").values_list("id", flat=True).first()
        if head_id is None:
            return False
        # The oldest row is the recording's lock: SKIP LOCKED so a busy recording is passed over,
        # not waited for. (SQLite has no row locks; its writes are one at a time anyway.)
        locked = GraphChange.objects.select_for_update(skip_locked=True).filter(pk=head_id).values_list("pk", flat=True)
        if not list(locked):
            return False
        latest = changes.order_by("-id").first()
        if latest is None or latest.failed_at is not None or latest.next_attempt_at > timezone.now():
            return False
        settled = changes.filter(id__lte=latest.id)  # a change recorded meanwhile stays for the next round
        try:
            with transaction.atomic():  # a savepoint: a database error in apply() leaves the notes below possible
                apply(latest)
        except GRAPH_UNAVAILABLE as exc:
            settled.update(last_error=f"Neo4j unavailable: {exc}"[:500])
            outage = exc
        except Exception as exc:  # this change's own failure: it waits, the others go on
            log.exception("graph change %s of recording %s failed", latest.pk, recording_id)
            attempts = latest.attempts + 1
            failed = attempts >= settings.GRAPH_OUTBOX_MAX_ATTEMPTS
            settled.update(
                attempts=attempts,
                last_error=f"{type(exc).__name__}: {exc}"[:500],
                next_attempt_at=timezone.now() + retry_delay(attempts),
                failed_at=timezone.now() if failed else None,
            )
            return False
        else:
            settled.delete()
            return True
    raise outage


def apply_pending(limit: int = 200) -> int:
    """Apply the due changes of up to `limit` recordings, the longest waiting first. Returns how many
    recordings were applied; raises GRAPH_UNAVAILABLE (leaving the rest waiting) if Neo4j cannot be
    reached."""
    due = (
        GraphChange.objects.filter(failed_at__isnull=True, next_attempt_at__lte=timezone.now())
        .values("recording_id")
        .annotate(first=Min("id"))
        .order_by("first")
        .values_list("recording_id", flat=True)[:limit]
    )
    return sum(_apply_recording(recording_id) for recording_id in list(due))


def retry(changes: QuerySet[GraphChange]) -> int:
    """Try these changes again now (the admin's action for failed ones)."""
    count = changes.update(attempts=0, failed_at=None, next_attempt_at=timezone.now(), last_error="")
    from .tasks import apply_graph_changes

    enqueue_on_commit(apply_graph_changes)
    return count


def rewrite_old_uids() -> int:
    """Queue a write of every transcribed recording of the users whose graph still has nodes with
    the old, truncated uids (writes.OLD_UID_LENGTH). Rewriting a recording links it to the nodes
    of the new uids, and the old ones, left without links, are dropped. Returns how many were queued."""
    owners = writes.owners_with_old_uids()
    if not owners:
        return 0
    recordings = Recording.objects.filter(owner_id__in=owners, status=Recording.Status.DONE)
    with transaction.atomic():
        changes = GraphChange.objects.bulk_create(
            GraphChange(kind=GraphChange.Kind.WRITE, recording_id=pk, owner_id=owner_id)
            for pk, owner_id in recordings.values_list("pk", "owner_id")
        )
        from .tasks import apply_graph_changes

        enqueue_on_commit(apply_graph_changes)
    return len(changes)


def pending_count() -> int:
    return GraphChange.objects.filter(failed_at__isnull=True).count()
