"""What every WebSocket consumer shares: JSON frames out (orjson) and the close codes of our protocols."""

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer

from . import metrics

# Close codes in the 4000-4999 range reserved for applications (protocols in the README).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_FRAME = 4400  # PCM16 frames must have an even number of bytes
CLOSE_NOT_STARTED = 4409  # audio before the start message
CLOSE_TOO_MANY_STREAMS = 4429
# A frame or message over our limits. (Not RFC 6455's 1009: Daphne lets an application close only
# with 1000 or 3000-4999; Daphne itself closes with 1009 a message over its own 1 MiB limit.)
CLOSE_FRAME_TOO_LARGE = 4413
CLOSE_QUOTA_USED_UP = 4402  # the user's live minutes for today are used up
CLOSE_SESSION_TOO_LONG = 4408  # the live session reached LIVE_MAX_SESSION_SECONDS (it is saved)
CLOSE_AUDIO_TOO_FAST = 4420  # audio faster than LIVE_MAX_REALTIME_RATIO × real time (what came before is saved)
CLOSE_TOO_MANY_MESSAGES = 4421  # more than LIVE_MAX_CONTROL_MESSAGES text messages on one connection


class JsonConsumer(AsyncWebsocketConsumer):
    """Server messages are JSON text frames, serialised with orjson. Accepted connections are counted
    by `metrics_kind` (assistant_websocket_connections)."""

    metrics_kind = "other"
    _counted = False

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol, headers)
        self._counted = True
        metrics.websocket_opened(self.metrics_kind)

    async def websocket_disconnect(self, message):
        if self._counted:
            self._counted = False
            metrics.websocket_closed(self.metrics_kind)
        await super().websocket_disconnect(message)

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=orjson.dumps(content).decode())
