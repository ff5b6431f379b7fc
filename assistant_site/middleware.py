"""Django's middleware, with the hooks that do no blocking I/O run on the event loop under ASGI.

Django runs every hook of a sync middleware in a thread under ASGI: about 17 hops to a thread and
back per request, the largest share (29-38 %) of a cached API request's time in a py-spy profile
(benchmarks/web.py --hold). These subclasses run the hooks that only read headers and cookies or set
lazy attributes on the loop, and hop to a thread only when a hook may reach the database: the session
when it must be saved, messages when there are some to store, the CSRF check of a form post (it
reads the body). A hook on the loop that touched the database would raise SynchronousOnlyOperation,
so a mistake here fails loudly.
"""

from asgiref.sync import sync_to_async
from compression_middleware.middleware import CompressionMiddleware as _CompressionMiddleware
from csp import middleware as csp_middleware
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin


class OnTheLoop(MiddlewareMixin):
    """Under ASGI, process_request and process_response run on the event loop; process_response goes
    to a thread when `response_needs_thread` says it may block."""

    def response_needs_thread(self, request, response) -> bool:
        return False

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)  # type: ignore[misc]  # async under ASGI
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            else:
                response = self.process_response(request, response)
        return response


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(OnTheLoop, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware):
    """request.user is lazy: the user is read when the view (in its thread) first looks."""


class SessionMiddleware(OnTheLoop, sessions.SessionMiddleware):
    """The session is loaded lazily by the view; saving it is the one part that needs a thread."""

    def response_needs_thread(self, request, response) -> bool:
        session = request.session
        return (session.modified or settings.SESSION_SAVE_EVERY_REQUEST) and not session.is_empty()


class MessageMiddleware(OnTheLoop, messages.MessageMiddleware):
    def response_needs_thread(self, request, response) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    """The token check of an unsafe method reads the posted form: in a thread. Safe methods pass."""

    async def process_view(self, request, callback, callback_args, callback_kwargs):  # type: ignore[override]
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return super().process_view(request, callback, callback_args, callback_kwargs)
        return await sync_to_async(super().process_view, thread_sensitive=True)(
            request, callback, callback_args, callback_kwargs
        )


class CompressionMiddleware(_CompressionMiddleware):
    """zstd, brotli or gzip (the client's pick) for responses of 500 bytes and more.

    Async streaming responses pass untouched: the library compresses streams with a sync iterator.
    Under ASGI it compresses on the event loop rather than in a thread: the work is CPU-bound either
    way (it holds the GIL), and the hop to a thread and back cost more than compressing an API answer.
    """

    async def __acall__(self, request):
        response = await self.get_response(request)
        return self.process_response(request, response)

    def process_response(self, request, response):
        if getattr(response, "is_async", False):
            return response
        return super().process_response(request, response)


class CSPMiddleware(OnTheLoop, csp_middleware.CSPMiddleware):
    """django-csp's middleware is sync-only (MiddlewareMixin); it only sets a lazy nonce and a header."""
