from django.urls import path

from workflows.consumers import WorkflowRunConsumer

from . import consumers

websocket_urlpatterns = [
    path("ws/recordings/<int:pk>/", consumers.RecordingProgressConsumer.as_asgi()),
    path("ws/live/", consumers.LiveTranscriptionConsumer.as_asgi()),
    path("ws/workflows/runs/<int:pk>/", WorkflowRunConsumer.as_asgi()),
]
