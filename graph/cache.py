"""Frequent graph reads cached in Redis, invalidated per user.

Every cached answer is stored with the user's graph version it was computed at; any write to that
user's graph bumps the version, so all their cached reads go stale at once and nothing has to find
and delete them. A read fetches the version and the answer in one round trip (MGET): the trace of a
cached search showed four Redis round trips one after another (token, rate limit, version, answer),
and this was one of them.
"""

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar, cast

import orjson
from django.conf import settings
from django.core.cache import cache

T = TypeVar("T")


def _version_key(owner: str) -> str:
    return f"graph:version:{owner}"


def _first_version() -> int:
    # The cache evicts (allkeys-lru, settings.REDIS_CACHE_URL), the version keys too: a version that
    # restarted at 1 would find the entries cached under the old 1, 2, ... still there. A new start
    # from the clock never meets an old one.
    return time.time_ns()


def graph_changed(owner: str) -> None:
    """Make every cached read of this user's graph stale."""
    key = _version_key(owner)
    if not cache.add(key, _first_version(), timeout=None):
        try:
            cache.incr(key)
        except ValueError:  # evicted between the two calls
            cache.add(key, _first_version(), timeout=None)


def version(owner: str) -> int:
    # Never None: the key is set when missing.
    return cast(int, cache.get_or_set(_version_key(owner), _first_version, timeout=None))


def cached(owner: str, name: str, args: dict, compute: Callable[[], T]) -> T:
    """`compute()`'s result for this user and these arguments, from Redis while the graph is unchanged."""
    digest = hashlib.sha1(orjson.dumps(args, option=orjson.OPT_SORT_KEYS)).hexdigest()[:20]
    key, version_key = f"graph:{name}:{owner}:{digest}", _version_key(owner)
    found = cache.get_many([key, version_key])
    current = found.get(version_key)
    if current is None:  # never written, or evicted
        current = version(owner)
    stored = found.get(key)
    if stored is not None and stored[0] == current:
        return cast(T, stored[1])
    value = compute()
    cache.set(key, (current, value), timeout=settings.GRAPH_CACHE_SECONDS)
    return value
