"""Cheap reachability probes for the parts the app depends on."""

import logging
import urllib.request

from django.conf import settings
from django.db import connection, connections
from django_redis import get_redis_connection  # type: ignore[import-untyped]  # no py.typed marker in django-redis

log = logging.getLogger(__name__)


def database_is_reachable() -> bool:
    """Called in a thread of its own (assistant_site/views.py readyz): its connection is given back
    (to the pool) before the thread goes, rather than left open in it."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        log.exception("database unreachable")
        return False
    finally:
        connections.close_all()


def redis_is_reachable() -> bool:
    try:
        return bool(get_redis_connection().ping())
    except Exception:
        log.exception("redis unreachable")
        return False


def llm_is_reachable() -> bool:
    """The OpenAI-compatible server lists its models (one cheap GET, 2 s at most)."""
    request = urllib.request.Request(settings.LLM_BASE_URL.rstrip("/") + "/models")
    if settings.LLM_API_KEY:
        request.add_header("Authorization", f"Bearer {settings.LLM_API_KEY}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except Exception:
        log.exception("language model server unreachable")
        return False
