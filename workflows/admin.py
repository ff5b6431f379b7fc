from django.contrib import admin

from .models import NodeRun, Workflow, WorkflowRun


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "owner", "key", "created_at")
    list_filter = ("source",)
    search_fields = ("name", "description")


class NodeRunInline(admin.TabularInline):
    model = NodeRun
    extra = 0
    fields = ("node_id", "node_type", "status", "duration_ms", "cache_hit", "attempts", "error")
    readonly_fields = fields


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ("id", "workflow", "owner", "recording", "status", "created_at", "finished_at")
    list_filter = ("status", "workflow")
    inlines = [NodeRunInline]
