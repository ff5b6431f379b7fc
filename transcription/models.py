import uuid
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


class RecordingQuerySet(models.QuerySet):
    def owned_by(self, user):
        return self.filter(owner=user)

    def owned_by_id(self, user_id: int):
        return self.filter(owner_id=user_id)

    def newest_first(self):
        return self.order_by("-created_at", "-id")

    def waiting(self):
        """Queued or being transcribed: the jobs that count against USER_MAX_QUEUED_JOBS."""
        return self.filter(status__in=(Recording.Status.QUEUED, Recording.Status.PROCESSING))

    def stored_bytes(self) -> int:
        return self.aggregate(total=models.Sum("size_bytes"))["total"] or 0


def recording_upload_path(recording: "Recording", filename: str) -> str:
    # The stored name is ours: a uuid, and the extension of the format the probe found (uploads) or
    # of the file we wrote (live). The user's file name is only ever the default title.
    suffix = Path(filename).suffix.lower()[:10]
    return f"recordings/{recording.owner_id}/{timezone.now():%Y/%m}/{recording.uuid}{suffix}"


class Recording(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Transcribing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recordings")
    title = models.CharField(max_length=255)
    audio = models.FileField(upload_to=recording_upload_path, max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    # The Content-Type of the format found by probing at upload, the one the audio is served with;
    # empty for rows stored before (served by their stored extension, limited to audio types).
    audio_mime = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # 0..1, the share of the audio transcribed so far.
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Decoded audio length, seconds")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When it was last put in the queue: a queued job no worker claimed for JOB_REQUEUE_SECONDS
    # (its message lost with Redis, or never sent) is sent again by the reaper.
    queued_at = models.DateTimeField(default=timezone.now)
    # While a worker transcribes it, refreshed every JOB_HEARTBEAT_SECONDS: a stale heartbeat means
    # the worker died, and the reaper (transcription/jobs.py) takes the job back.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Claims so far; the current one is the claim token: only that attempt may store or fail it.
    attempts = models.PositiveSmallIntegerField(default=0)
    # "host pid" of the worker process holding the current attempt (for operators, and the fault tests).
    worker = models.CharField(max_length=255, blank=True)
    graph_synced_at = models.DateTimeField(null=True, blank=True)
    # The transcription options asked for (engine.Options as a dict); empty means the defaults.
    options = models.JSONField(default=dict, blank=True)
    # What AI workflows found in it and the graph should hold: {"entities": [{"name", "type"}]}.
    knowledge = models.JSONField(default=dict, blank=True)
    # The live session this recording was saved from: unique, so a session is never saved twice.
    live_session = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    objects = RecordingQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            # The reaper's look at unfinished jobs, every JOB_REAPER_SECONDS: small, whatever the history.
            models.Index(
                fields=["status"], name="recording_unfinished", condition=models.Q(status__in=("queued", "processing"))
            ),
        ]

    def __str__(self):
        return self.title

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    def progress_payload(self) -> dict:
        """What the page needs to show this job's state; also the WebSocket message body."""
        return {
            "type": "progress",
            "status": self.status,
            "status_label": self.get_status_display(),
            "progress": round(self.progress, 4),
            "duration": self.duration,
            "error": self.error,
        }


class Transcript(models.Model):
    recording = models.OneToOneField(Recording, on_delete=models.CASCADE, related_name="transcript")
    text = models.TextField()
    language = models.CharField(max_length=16, blank=True)
    language_probability = models.FloatField(null=True, blank=True)
    model_name = models.CharField(max_length=255)
    compute_type = models.CharField(max_length=32)
    pipeline = models.CharField(max_length=16, blank=True)
    processing_seconds = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"Transcript of {self.recording}"


class Segment(models.Model):
    transcript = models.ForeignKey(Transcript, on_delete=models.CASCADE, related_name="segments")
    index = models.PositiveIntegerField()
    start = models.FloatField()
    end = models.FloatField()
    text = models.TextField()
    # Who spoke it, when known (an import with speaker labels); it becomes a Speaker in the graph.
    speaker = models.CharField(max_length=100, blank=True)
    avg_logprob = models.FloatField(null=True, blank=True)
    no_speech_prob = models.FloatField(null=True, blank=True)
    compression_ratio = models.FloatField(null=True, blank=True)
    # [[start, end, word, probability], ...] when word timestamps were asked for.
    words = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["transcript", "index"], name="segment_order_unique")]

    def __str__(self):
        return f"[{self.start:.2f}-{self.end:.2f}] {self.text}"
