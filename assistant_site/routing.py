"""WebSocket routes, collected from each app's own routing module."""

from transcription.routing import websocket_urlpatterns as transcription_routes
from workflows.routing import websocket_urlpatterns as workflows_routes

websocket_urlpatterns = [*transcription_routes, *workflows_routes]
