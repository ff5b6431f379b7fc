from django.contrib import admin, messages

from . import outbox
from .models import GraphChange


@admin.register(GraphChange)
class GraphChangeAdmin(admin.ModelAdmin):
    """Graph writes waiting for Neo4j: normally empty. Rows piling up mean Neo4j is unreachable; a
    failed row (after GRAPH_OUTBOX_MAX_ATTEMPTS) is a change that cannot be applied: its last error
    says why, and "Try again" queues it once the cause is fixed."""

    list_display = (
        "id",
        "kind",
        "recording_id",
        "owner_id",
        "created_at",
        "attempts",
        "next_attempt_at",
        "failed_at",
        "last_error",
    )
    list_filter = ("kind", ("failed_at", admin.EmptyFieldListFilter))
    actions = ["try_again"]

    @admin.action(description="Try again now")
    def try_again(self, request, queryset):
        self.message_user(request, f"{outbox.retry(queryset)} change(s) queued again.", messages.SUCCESS)
