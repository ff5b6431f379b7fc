from django.contrib import admin

from .models import GraphChange


@admin.register(GraphChange)
class GraphChangeAdmin(admin.ModelAdmin):
    """Graph writes waiting for Neo4j: normally empty; rows piling up mean Neo4j is unreachable."""

    list_display = ("id", "kind", "recording_id", "owner_id", "created_at", "attempts", "last_error")
    list_filter = ("kind",)
