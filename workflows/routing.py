from django.urls import path

from . import consumers

# The ignore: django-stubs types path() for views only, not for ASGI consumers (a gap in the stubs).
websocket_urlpatterns = [
    path("ws/workflows/runs/<int:pk>/", consumers.WorkflowRunConsumer.as_asgi()),  # type: ignore[arg-type]
]
