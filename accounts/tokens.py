"""Who an API key belongs to. One place for the REST API and the OpenAI-compatible endpoint.

A key's owner is cached in Redis (the cache all web processes share) for CACHE_SECONDS: the lookup
was a fifth of a cached API request's CPU (py-spy, see README). Revoking a key, or saving or deleting
its user (deactivation included), deletes the entry at once, so no process keeps serving it; only a
change that bypasses model signals (a queryset `update()`) waits for the expiry. The password hash is
never cached: the user comes back with it deferred (loaded from the database if anything asks), so
saving that user cannot overwrite it. Redis being away costs a database query, never an error.
A token may carry an expiry: it is kept in the cached entry and checked on every use, and an entry
is never cached for longer than its token has left.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from .models import ApiToken, hash_key

logger = logging.getLogger(__name__)

# Writing last_used_at on every request would turn every read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=5)
CACHE_SECONDS = 60
UNCACHED_FIELDS = {"password"}


def bearer_key(request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _cache_key(key_hash: str) -> str:
    # v2: entries carry the token's expiry (an older process's 3-tuples are never read).
    return f"api-token:v2:{key_hash}"


def _cache_call(method: str, *args):
    try:
        return getattr(cache, method)(*args)
    except Exception as error:  # Redis away: the database answers instead
        logger.warning("API token cache unavailable (%s): %s", method, error)
        return None


def _user_fields(user) -> dict:
    return {f.attname: getattr(user, f.attname) for f in user._meta.concrete_fields if f.name not in UNCACHED_FIELDS}


def _user_from(fields: dict):
    return get_user_model().from_db(DEFAULT_DB_ALIAS, list(fields), list(fields.values()))


class TokenExpired(Exception):
    """The key is a real token whose expiry has passed: refused (401) with a message that says so."""

    def __init__(self, expires_at: datetime):
        super().__init__(
            f"This API token expired at {expires_at:%Y-%m-%d %H:%M} UTC. Create a new one on your profile page."
        )
        self.expires_at = expires_at


@dataclass(frozen=True)
class Authenticated:
    user: Any
    token_id: int
    expires_at: datetime | None


def _cache_seconds(expires_at: datetime | None, now: datetime) -> int:
    """Never longer than the token has left, so a cached entry cannot outlive it (it is checked on
    every read too)."""
    if expires_at is None:
        return CACHE_SECONDS
    return max(1, min(CACHE_SECONDS, int((expires_at - now).total_seconds()) + 1))


def authenticate_key(key: str) -> Authenticated | None:
    """The active user owning this key (with the token's id and expiry), or None. Raises TokenExpired
    for an expired token."""
    if not key:
        return None
    key_hash = hash_key(key)
    now = timezone.now()
    entry = _cache_call("get", _cache_key(key_hash))
    if entry is None:
        token = ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()
        if token is None or not token.user.is_active:
            return None
        entry = (token.pk, token.last_used_at, _user_fields(token.user), token.expires_at)
        if token.expires_at is None or token.expires_at > now:
            _cache_call("set", _cache_key(key_hash), entry, _cache_seconds(token.expires_at, now))
    token_pk, last_used_at, user_fields, expires_at = entry
    if expires_at is not None and expires_at <= now:
        raise TokenExpired(expires_at)
    if last_used_at is None or now - last_used_at > LAST_USED_GRANULARITY:
        if not ApiToken.objects.filter(pk=token_pk).update(last_used_at=now):
            _cache_call("delete", _cache_key(key_hash))  # revoked meanwhile
            return None
        entry = (token_pk, now, user_fields, expires_at)
        _cache_call("set", _cache_key(key_hash), entry, _cache_seconds(expires_at, now))
    return Authenticated(_user_from(user_fields), token_pk, expires_at)


def user_for_key(key: str):
    """The active user owning this key, or None. Raises TokenExpired for an expired token."""
    found = authenticate_key(key)
    return found.user if found else None


@receiver(post_delete, sender=ApiToken, dispatch_uid="api-token-revoked")
@receiver(post_save, sender=ApiToken, dispatch_uid="api-token-changed")  # e.g. its expiry, in the admin
def _forget_token(sender, instance: ApiToken, **kwargs) -> None:
    # Now and again after commit: a lookup that read the token before the delete committed may have
    # cached it in between.
    key = _cache_key(instance.key_hash)
    _cache_call("delete", key)
    transaction.on_commit(lambda: _cache_call("delete", key))


@receiver(post_save, sender=get_user_model(), dispatch_uid="api-token-user-saved")
def _forget_users_tokens(sender, instance, **kwargs) -> None:
    """A deactivated (or renamed…) user's keys are looked up afresh. Deleting a user deletes its tokens,
    each of which forgets itself."""
    hashes = list(ApiToken.objects.filter(user_id=instance.pk).values_list("key_hash", flat=True))
    if hashes:
        keys = [_cache_key(key_hash) for key_hash in hashes]
        _cache_call("delete_many", keys)
        transaction.on_commit(lambda: _cache_call("delete_many", keys))
