from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/recordings/<int:pk>/", consumers.RecordingProgressConsumer.as_asgi()),
    path("ws/live/", consumers.LiveTranscriptionConsumer.as_asgi()),
]
