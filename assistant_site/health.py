"""Cheap reachability probes for the parts the app depends on."""

import logging

from django.core.cache import cache
from django.db import connection

log = logging.getLogger(__name__)


def database_is_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        log.exception("database unreachable")
        return False


def redis_is_reachable() -> bool:
    try:
        return bool(cache.client.get_client().ping())
    except Exception:
        log.exception("redis unreachable")
        return False
