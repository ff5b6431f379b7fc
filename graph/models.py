"""The graph's outbox, in the relational database (the graph's own schema is in nodes.py).

A change to a recording that the graph must follow is written here in the same transaction as the
change itself, so it can never be lost: if Neo4j is away, the row waits until a worker applies it.
"""

from django.db import models
from django.utils import timezone


class GraphChange(models.Model):
    class Kind(models.TextChoices):
        WRITE = "write", "Write"
        DELETE = "delete", "Delete"
        # A deleted user: every node they own. Its recording_id is minus the owner's id (never a
        # recording's), so the outbox's "latest change per recording" keeps each user's purge apart.
        PURGE_OWNER = "purge", "Delete the owner's graph"

    # Plain ids, not foreign keys: a deletion must outlive the deleted recording.
    recording_id = models.BigIntegerField()
    owner_id = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)
    # Failures of this change itself (Neo4j being away does not count), the next try after a growing
    # delay, and, after GRAPH_OUTBOX_MAX_ATTEMPTS, failed: kept for an admin to read and retry.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["recording_id"]),
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(failed_at__isnull=True), name="graph_change_due"
            ),
        ]

    def __str__(self):
        return f"{self.kind} recording {self.recording_id}"
