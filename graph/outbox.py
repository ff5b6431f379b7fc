"""Getting graph changes from the outbox into Neo4j.

`record` is called inside the transaction that changes a recording; once it commits, a task
applies the change. Pending changes are applied in order, the latest per recording winning (a
write after a delete finds no recording and does nothing). If Neo4j is away they stay, and the
periodic task or the next change tries again: nothing is lost, and applying twice is harmless.
"""

from common.queueing import enqueue_on_commit

from . import writes
from .connection import GRAPH_UNAVAILABLE
from .models import GraphChange


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


def apply_pending(limit: int = 200) -> int:
    """Apply waiting changes, oldest first. Returns how many were applied; raises GRAPH_UNAVAILABLE
    (leaving the rest waiting) if Neo4j cannot be reached."""
    pending = list(GraphChange.objects.order_by("id")[:limit])
    latest = {change.recording_id: change for change in pending}  # later ids overwrite earlier
    applied = 0
    for change in sorted(latest.values(), key=lambda c: c.id):
        try:
            apply(change)
        except GRAPH_UNAVAILABLE as exc:
            GraphChange.objects.filter(recording_id=change.recording_id, id__lte=change.id).update(
                attempts=change.attempts + 1, last_error=str(exc)[:500]
            )
            raise
        # Only what was read: a change recorded meanwhile stays for the next round.
        GraphChange.objects.filter(recording_id=change.recording_id, id__lte=change.id).delete()
        applied += 1
    return applied


def pending_count() -> int:
    return GraphChange.objects.count()
