"""Workflows (DAG definitions as JSON), their runs, and one record per node per run."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkflowQuerySet(models.QuerySet):
    def visible_to(self, user):
        """The built-in workflows and the user's own."""
        return self.filter(models.Q(owner__isnull=True) | models.Q(owner=user))


class Workflow(models.Model):
    class Source(models.TextChoices):
        BUILTIN = "builtin", "Built in"
        RIVET = "rivet", "Rivet import"
        CUSTOM = "custom", "Custom"

    # No owner: a built-in workflow, shared by everyone (read-only).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="workflows"
    )
    key = models.SlugField(max_length=64, blank=True, help_text="Stable name of a built-in workflow")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.CUSTOM)
    # {"nodes": [{"id", "type", "settings", "inputs": {port: "node.port"}}]}: see workflows/engine.py
    definition = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = WorkflowQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(owner__isnull=True), name="builtin_workflow_key_unique"
            ),
        ]

    def __str__(self):
        return self.name


class WorkflowRunQuerySet(models.QuerySet):
    def owned_by(self, user):
        return self.filter(owner=user)

    def latest_summary(self, recording):
        """The newest finished run of the built-in summary workflow on this recording."""
        from .builtin import SUMMARY

        return (
            self.filter(recording=recording, workflow__key=SUMMARY, workflow__owner__isnull=True, status="done")
            .order_by("-created_at")
            .first()
        )


class WorkflowRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workflow_runs")
    recording = models.ForeignKey(
        "transcription.Recording", null=True, blank=True, on_delete=models.CASCADE, related_name="workflow_runs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    inputs = models.JSONField(default=dict, blank=True)
    # {node id: {setting: value}}: settings changed for this run only (e.g. the ask page's scope).
    overrides = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # As for recordings (transcription/models.py): when it was last queued, the running worker's
    # heartbeat, and the claims so far (the current one is the token that may finish it).
    queued_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    objects = WorkflowRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["recording", "-created_at"]),
            models.Index(
                fields=["status"], name="run_unfinished", condition=models.Q(status__in=("queued", "running"))
            ),
        ]

    def __str__(self):
        return f"{self.workflow} run {self.pk}"

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class NodeRun(models.Model):
    class Status(models.TextChoices):
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (branch not taken)"
        CANCELLED = "cancelled", "Cancelled"
        NOT_RUN = "not_run", "Not run"

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=200)
    node_type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    output = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self):
        return f"{self.node_id} ({self.status})"
