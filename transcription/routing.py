from django.urls import path

from . import consumers

# The ignores: django-stubs types path() for views only, not for ASGI consumers (a gap in the stubs).
websocket_urlpatterns = [
    path("ws/recordings/<int:pk>/", consumers.RecordingProgressConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/live/", consumers.LiveTranscriptionConsumer.as_asgi()),  # type: ignore[arg-type]
]
