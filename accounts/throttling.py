"""Attempt limits kept in Redis, shared by every web process: sign-in (site and admin), sign-up, the
API per token.

A fixed window per key: the first attempt starts the window (SET NX EX), each attempt counts (INCR),
and one round trip gives the count and the seconds left. Hand-written rather than a library because
the candidates each fit badly here: django-axes's middleware and authentication backend are sync
(a thread hop per request under ASGI) and it writes every attempt to the database; django-ratelimit
and ninja.throttling count in the cache with a read-modify-write (ninja keeps a list of timestamps
per key), so concurrent attempts undercount, and each guards one kind of view, where the same
counters here guard Django's LoginView, the admin's login, the sign-up view, the API and the OpenAI
endpoint. Redis being away lets attempts through (logged): throttling must not take sign-in down.
"""

import hashlib
import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.http import HttpResponse

from . import tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    scope: str  # what is counted: "login-user", "api-token" ...
    count: int  # attempts allowed per window
    seconds: int  # the window


class Throttled(Exception):
    def __init__(self, retry_after: int, message: str):
        super().__init__(message)
        self.retry_after, self.message = retry_after, message


def _key(limit: Limit, ident: str) -> str:
    # Hashed: a username or token never sits in Redis in clear, and any length makes a short key.
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    return f"wa:throttle:{limit.scope}:{digest}"


_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    """The broker's Redis (REDIS_URL), which never evicts: in the cache's Redis (LRU) a counter could
    be evicted under memory pressure, and the limit with it."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def hit(limit: Limit, ident: str) -> int | None:
    """Count one attempt. Returns the seconds to wait when this attempt is over the limit, else None."""
    key = _key(limit, ident)
    try:
        pipe = _redis().pipeline()
        pipe.set(key, 0, ex=limit.seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
    except Exception as error:
        log.warning("throttle counters unavailable: %s", error)
        return None
    return max(int(ttl), 1) if count > limit.count else None


def blocked_for(limit: Limit, ident: str) -> int | None:
    """Seconds until `ident` may try again, if it used up its attempts; counts nothing."""
    key = _key(limit, ident)
    try:
        pipe = _redis().pipeline()
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
    except Exception as error:
        log.warning("throttle counters unavailable: %s", error)
        return None
    return max(int(ttl), 1) if count is not None and int(count) >= limit.count else None


def clear(limit: Limit, ident: str) -> None:
    try:
        _redis().delete(_key(limit, ident))
    except Exception as error:
        log.warning("throttle counters unavailable: %s", error)


def client_address(request) -> str:
    """The client's address. Daphne runs with --proxy-headers behind nginx or the Ingress, so
    REMOTE_ADDR is already the X-Forwarded-For address the proxy set; nothing here reads the header."""
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def too_many_requests(retry_after: int, message: str) -> HttpResponse:
    response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response


def wait_phrase(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}" if seconds >= 60 else f"{seconds} seconds"


# --- The limits, from settings (read each time, so tests can change them).


def login_per_username() -> Limit:
    return Limit("login-user", settings.LOGIN_FAILURES_PER_USERNAME, settings.LOGIN_LOCKOUT_SECONDS)


def login_per_address() -> Limit:
    return Limit("login-address", settings.LOGIN_FAILURES_PER_ADDRESS, settings.LOGIN_LOCKOUT_SECONDS)


def signup_per_address() -> Limit:
    return Limit("signup-address", settings.SIGNUPS_PER_ADDRESS_PER_HOUR, 3600)


def api_requests() -> Limit:
    return Limit("api", settings.API_REQUESTS_PER_MINUTE, 60)


def api_uploads() -> Limit:
    return Limit("api-upload", settings.API_UPLOADS_PER_MINUTE, 60)


# --- Sign-in: the failures of a username and of an address are counted; once either is used up,
# every attempt for it is refused (the right password too) until the window ends, before the
# password is even checked (so a locked account costs no hashing).


def check_login(request, username: str) -> None:
    """Raises Throttled when this username or this address has used up its failed sign-ins."""
    waits = [
        blocked_for(login_per_username(), username.casefold()),
        blocked_for(login_per_address(), client_address(request)),
    ]
    retry_after = max((wait for wait in waits if wait), default=None)
    if retry_after:
        raise Throttled(
            retry_after,
            f"Too many failed sign-ins. Try again in {wait_phrase(retry_after)}.",
        )


def login_failed(request, username: str) -> None:
    hit(login_per_username(), username.casefold())
    hit(login_per_address(), client_address(request))


def login_succeeded(username: str) -> None:
    # The address keeps its count: a success must not reset an attacker's budget across usernames.
    clear(login_per_username(), username.casefold())


@receiver(user_login_failed, dispatch_uid="throttle-login-failed")
def _count_failed_login(sender, credentials: dict, request=None, **kwargs) -> None:
    # Sent by authenticate() for the site's and the admin's login forms alike.
    if request is not None:
        login_failed(request, str(credentials.get("username", "")))


@receiver(user_logged_in, dispatch_uid="throttle-logged-in")
def _forget_failed_logins(sender, request, user, **kwargs) -> None:
    login_succeeded(user.get_username())


# --- The API (assistant_site/api.py) and the OpenAI-compatible endpoint.

UPLOAD_PATHS = ("/api/recordings", "/v1/audio/transcriptions")


def count_api_request(request, ident: str) -> None:
    """Count one API request of `ident` (a token, a user); an upload counts against the upload limit
    too. Raises Throttled beyond either."""
    limits = [api_requests()]
    if request.method == "POST" and request.path.rstrip("/") in UPLOAD_PATHS:
        limits.append(api_uploads())
    for limit in limits:
        if wait := hit(limit, ident):
            what = "uploads" if limit.scope == "api-upload" else "requests"
            raise Throttled(wait, f"Too many {what}: at most {limit.count} a minute per token. Retry after {wait} s.")


def api_user(request):
    """The bearer key's user, its request counted against the token's limits (the OpenAI endpoint,
    which is not a ninja operation). None for no or a wrong key; raises tokens.TokenExpired or Throttled."""
    found = tokens.authenticate_key(tokens.bearer_key(request))
    if found is not None:
        count_api_request(request, f"token:{found.token_id}")
    return found.user if found else None
