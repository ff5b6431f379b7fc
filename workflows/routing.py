from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/workflows/runs/<int:pk>/", consumers.WorkflowRunConsumer.as_asgi()),
]
