"""WebSocket consumers: a recording's job progress, pushed from the Celery worker via Redis."""

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from .models import Recording
from .progress import recording_group

# Close codes in the 4000-4999 range reserved for applications.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class RecordingProgressConsumer(AsyncWebsocketConsumer):
    """Server-to-page only: whatever the page sends (text, bytes, garbage) is ignored."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        recording = await self._owned_recording(user, self.scope["url_route"]["kwargs"]["pk"])
        if recording is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = recording_group(recording.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # The state as of now, so a page that connects after the job moved on is not stale.
        # Sent after joining the group, so no update can fall between the two.
        recording = await self._owned_recording(user, recording.id)
        await self.send_json(recording.progress_payload())

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        pass

    async def recording_progress(self, event):
        await self.send_json(event["data"])

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=orjson.dumps(content).decode())

    @database_sync_to_async
    def _owned_recording(self, user, pk):
        return Recording.objects.owned_by(user).filter(pk=pk).first()
