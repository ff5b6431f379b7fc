"""WebSocket consumers: a recording's job progress (pushed from the Celery worker via Redis), and
live transcription (audio in, text out)."""

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import reverse

from actions.recordings import save_live_session
from common.sockets import (
    CLOSE_AUDIO_TOO_FAST,
    CLOSE_BAD_FRAME,
    CLOSE_FRAME_TOO_LARGE,
    CLOSE_NOT_FOUND,
    CLOSE_NOT_STARTED,
    CLOSE_TOO_MANY_MESSAGES,
    CLOSE_TOO_MANY_STREAMS,
    CLOSE_UNAUTHENTICATED,
    JsonConsumer,
)

from . import engine, live
from .models import Recording
from .progress import recording_group


class RecordingProgressConsumer(JsonConsumer):
    """Server-to-page only: whatever the page sends (text, bytes, garbage) is ignored."""

    metrics_kind = "progress"

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

    @database_sync_to_async
    def _owned_recording(self, user, pk):
        return Recording.objects.owned_by(user).filter(pk=pk).first()


class LiveTranscriptionConsumer(JsonConsumer):
    """Binary PCM16 audio in; ready / partial / final / lagging / error / saved out (JSON).
    Every limit (README "Limits of a live session") is checked before a frame is accepted."""

    metrics_kind = "live"

    session: live.LiveSession | None = None
    ended = False  # closed by us: whatever the client still sends is ignored
    control_messages = 0

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        await self.accept()

    async def disconnect(self, code):
        if self.session is not None:
            self.session.detach()

    async def receive(self, text_data=None, bytes_data=None):
        if self.ended:
            return
        if bytes_data is not None:
            await self._audio(bytes_data)
            return
        self.control_messages += 1
        if len(text_data) > settings.LIVE_MAX_CONTROL_BYTES:
            await self._error(
                "message_too_large",
                f"Control messages are limited to {settings.LIVE_MAX_CONTROL_BYTES} bytes.",
                close=CLOSE_FRAME_TOO_LARGE,
            )
            return
        if self.control_messages > settings.LIVE_MAX_CONTROL_MESSAGES:
            await self._error(
                "too_many_messages",
                f"At most {settings.LIVE_MAX_CONTROL_MESSAGES} control messages per connection.",
                close=CLOSE_TOO_MANY_MESSAGES,
            )
            return
        try:
            message = orjson.loads(text_data)
            kind = message.get("type") if isinstance(message, dict) else None
        except orjson.JSONDecodeError:
            await self._error("bad_message", "Text frames must be JSON control messages; audio goes in binary frames.")
            return
        if kind == "start":
            await self._start(message)
        elif kind == "stop":
            await self._stop()
        else:
            await self._error("unknown_type", f"Unknown message type {str(kind)[:40]!r}; expected 'start' or 'stop'.")

    async def _audio(self, frame: bytes) -> None:
        if self.session is None:
            await self._error("not_started", "Send a start message before audio.", close=CLOSE_NOT_STARTED)
        elif len(frame) > settings.LIVE_MAX_FRAME_BYTES:
            await self._error(
                "frame_too_large",
                f"Audio frames are limited to {settings.LIVE_MAX_FRAME_BYTES} bytes.",
                close=CLOSE_FRAME_TOO_LARGE,
            )
        elif len(frame) % 2:
            await self._error(
                "bad_frame", "Audio frames are 16-bit samples: an even number of bytes.", close=CLOSE_BAD_FRAME
            )
        elif limit := self.session.limit_for(len(frame)):
            await self._end(limit)
        else:
            await self.session.feed(frame)

    async def _start(self, message: dict) -> None:
        if self.session is not None:
            await self._error("already_started", "This stream has already started.")
            return
        resume = message.get("resume")
        session = await live.LiveSession.resume(self.user.id, str(resume)[:64], save_live_session) if resume else None
        resumed = session is not None
        if session is None:
            options = engine.Options(language=str(message.get("language") or ""), model=str(message.get("model") or ""))
            policy = message.get("policy") or "local-agreement"
            try:
                if not isinstance(policy, str) or policy not in live.POLICIES:
                    raise engine.OptionError("policy", f"Unknown policy {str(policy)[:40]!r}.")
                session = await live.LiveSession.start(self.user.id, options, policy, save=save_live_session)
            except engine.OptionError as exc:
                await self._error("bad_option", str(exc))
                return
            except live.TooManyStreams:
                await self._error(
                    "too_many_streams",
                    f"At most {settings.LIVE_MAX_STREAMS_PER_USER} live streams at once.",
                    close=CLOSE_TOO_MANY_STREAMS,
                )
                return
            except live.QuotaUsedUp:
                limit = live.quota_used_up()
                await self._error(limit.code, limit.message, close=limit.close_code)
                return
        self.session = session
        session.attach(self.send_json, self._end)
        await self.send_json(
            {
                "type": "ready",
                "session": session.id,
                "sample_rate": live.SAMPLE_RATE,
                "received": session.received_samples,
                "resumed": resumed,
            }
        )

    async def _stop(self) -> None:
        if self.session is None:
            await self._error("not_started", "Nothing to stop.")
            return
        session, self.session = self.session, None
        self.ended = True
        await self._saved(await session.stop())
        await self.close(code=1000)

    async def _end(self, limit: live.Limit) -> None:
        """The session broke a limit: tell the client why, save what was accepted, close."""
        if self.session is None or self.ended:
            return
        session, self.session = self.session, None
        self.ended = True
        await self.send_json({"type": "error", "code": limit.code, "message": limit.message})
        if limit.close_code == CLOSE_AUDIO_TOO_FAST:
            # Cut a flood off at once (whatever it still sends is dropped unread), then save.
            await self.close(code=limit.close_code, reason=limit.code)
            session.stop_in_background()
            return
        await self._saved(await session.stop())
        await self.close(code=limit.close_code, reason=limit.code)

    async def _saved(self, recording: Recording | None) -> None:
        await self.send_json(
            {
                "type": "saved",
                "recording": recording.id if recording else None,
                "url": reverse("recording-detail", args=[recording.id]) if recording else None,
            }
        )

    async def _error(self, code: str, message: str, close: int | None = None) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
        if close:
            self.ended = True
            await self.close(code=close, reason=code)
