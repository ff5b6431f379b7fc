"""Silk (https://github.com/jazzband/django-silk): sampled request profiles for staff, behind SILK_ENABLED.

Silk is always an installed app, so its tables exist whatever the setting (the migrations and
`makemigrations --check` never depend on it, and turning it on needs no migrate). Only its
middleware and its pages (/silk/) depend on SILK_ENABLED (settings.py, urls.py): off, nothing of
Silk runs in a request and /silk/ is a 404. On, its middleware is sync-only: each request it wraps
costs a hop to a thread under Daphne, so it stays off in production unless you are looking.

What Silk may keep, when on: no request or response body (both limits 0, and a large body is not
recorded at all, since Silk would then keep its form fields); no cookie or Authorization header
(Silk masks them); SQL as the query with its placeholders, never the values (a session key, a
password hash, transcript text: `SilkConfig.ready`), and without the EXPLAIN Silk would otherwise run
beside every query (its plan can quote values, and it doubles the database's work).
"""

import random

from django.conf import settings
from silk.apps import SilkAppConfig

# Never profiled: probes and scrapes, which would fill Silk with noise.
NOT_RECORDED = ("/healthz", "/readyz", "/metrics")


def record_request(request) -> bool:
    """SILKY_INTERCEPT_FUNC: SILK_SAMPLE_PERCENT of the requests, none with a body over Django's
    in-memory limit (Silk keeps the form fields of such a body, whatever its size limits say)."""
    if request.path_info.startswith(NOT_RECORDED):
        return False
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return False
    return random.random() * 100 < settings.SILK_SAMPLE_PERCENT


def may_view_silk(user) -> bool:
    """SILKY_PERMISSIONS: Silk shows other users' requests (paths, timings, queries): staff only."""
    return bool(user and user.is_active and user.is_staff)


class SilkConfig(SilkAppConfig):
    """Silk's app (label `silk`, its own migrations); when SILK_ENABLED, its SQL recording keeps the
    queries' placeholders and not their values, and runs no EXPLAIN."""

    def ready(self) -> None:
        if not settings.SILK_ENABLED:
            return
        from silk import sql

        # Silk renders each query as `query % values` through its module's force_str: "%s" for every
        # value leaves the query as Django wrote it. It runs the query itself with its real values.
        sql.force_str = lambda value: "%s"
        sql._explain_query = lambda connection, query, params: None
