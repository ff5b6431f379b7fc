"""The project's REST API (django-ninja), built once here from each app's router.

Authentication: `Authorization: Bearer <token>` (tokens are made on the profile page) or the
browser's session. Responses are rendered with orjson.
"""

import orjson
from django.contrib.auth.decorators import login_required
from ninja import NinjaAPI
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer, django_auth

from accounts.tokens import user_for_key
from graph.api import router as graph_router
from transcription.api import router as recordings_router


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return orjson.dumps(data)


class ApiKey(HttpBearer):
    def authenticate(self, request, token):
        user = user_for_key(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="Whisper Assistant API",
    version="1",
    renderer=ORJSONRenderer(),
    auth=[ApiKey(), django_auth],
    urls_namespace="api",
    docs_decorator=login_required,  # the schema and docs page are for signed-in users too
)
api.add_router("", recordings_router)
api.add_router("", graph_router)
