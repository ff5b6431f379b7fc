from django.contrib import admin

from .models import Recording, Segment, Transcript


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "status", "duration", "created_at")
    list_filter = ("status",)
    search_fields = ("title", "owner__username")
    raw_id_fields = ("owner",)


class SegmentInline(admin.TabularInline):
    model = Segment
    extra = 0
    fields = ("index", "start", "end", "text", "avg_logprob", "no_speech_prob", "compression_ratio")
    readonly_fields = fields


@admin.register(Transcript)
class TranscriptAdmin(admin.ModelAdmin):
    list_display = (
        "recording",
        "language",
        "model_name",
        "compute_type",
        "pipeline",
        "processing_seconds",
        "created_at",
    )
    raw_id_fields = ("recording",)
    inlines = [SegmentInline]
