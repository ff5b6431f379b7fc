"""A workflow run's page: node states and streamed LLM tokens, pushed from the worker."""

from channels.db import database_sync_to_async

from common.sockets import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, JsonConsumer

from .models import WorkflowRun
from .runs import run_group


class WorkflowRunConsumer(JsonConsumer):
    metrics_kind = "workflow_run"

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        pk = self.scope["url_route"]["kwargs"]["pk"]
        if not await self._owned(user, pk):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = run_group(pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # The state as of now (after joining the group, so nothing falls between the two).
        await self.send_json(await self._snapshot(pk))

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        pass  # the page only listens

    async def run_event(self, event):
        await self.send_json(event["data"])

    @database_sync_to_async
    def _owned(self, user, pk) -> bool:
        return WorkflowRun.objects.owned_by(user).filter(pk=pk).exists()

    @database_sync_to_async
    def _snapshot(self, pk) -> dict:
        run = WorkflowRun.objects.get(pk=pk)
        return {
            "type": "snapshot",
            "status": run.status,
            "error": run.error,
            "nodes": {
                n.node_id: {"status": n.status, "cache_hit": n.cache_hit, "duration_ms": n.duration_ms}
                for n in run.nodes.all()
            },
        }
