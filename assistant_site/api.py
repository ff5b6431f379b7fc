"""The project's REST API (django-ninja), built once here from each app's router.

Authentication: `Authorization: Bearer <token>` (tokens are made on the profile page or with
POST /api/tokens) or the browser's session. Each token (each user, for a session) may make
API_REQUESTS_PER_MINUTE requests, uploads API_UPLOADS_PER_MINUTE of them; then 429 with Retry-After.
The limit is counted in the authentication step, in the request's thread, rather than by
ninja.throttling, whose check runs on the event loop for async operations and counts in the cache
with a read-modify-write (accounts/throttling.py). Responses are rendered with orjson.
"""

import orjson
from django.contrib.auth.decorators import login_required
from ninja import NinjaAPI
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer, SessionAuth

from accounts import throttling
from accounts.api import router as tokens_router
from accounts.tokens import TokenExpired, authenticate_key
from graph.api import router as graph_router
from transcription.api import router as recordings_router


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request, data, *, response_status):
        return orjson.dumps(data)


class ApiKey(HttpBearer):
    def authenticate(self, request, token):
        found = authenticate_key(token)  # raises TokenExpired: a 401 that says so
        if found is None:
            return None
        request.user = found.user
        # The token's own expiry: a token made with this one may not outlive it (accounts/api.py).
        request.api_token_expires_at = found.expires_at
        throttling.count_api_request(request, f"token:{found.token_id}")
        return found.user


class Session(SessionAuth):
    def authenticate(self, request, key):
        user = super().authenticate(request, key)
        if user:
            throttling.count_api_request(request, f"user:{user.pk}")
        return user


api = NinjaAPI(
    title="Whisper Assistant API",
    version="1",
    renderer=ORJSONRenderer(),
    auth=[ApiKey(), Session()],
    urls_namespace="api",
    docs_decorator=login_required,  # the schema and docs page are for signed-in users too
)
api.add_router("", recordings_router)
api.add_router("", graph_router)
api.add_router("", tokens_router)


@api.exception_handler(throttling.Throttled)
def too_many_requests(request, error: throttling.Throttled):
    response = api.create_response(request, {"detail": error.message}, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


@api.exception_handler(TokenExpired)
def token_expired(request, error: TokenExpired):
    return api.create_response(request, {"detail": str(error)}, status=401)
