"""The one owner of the Neo4j connection: neomodel configured from settings.NEO4J_BOLT_URL."""

import logging

import neo4j.exceptions
import neomodel
from django.conf import settings
from opentelemetry import trace

from common import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# What "Neo4j is away" looks like to a caller: pages answer 503, writers retry later. Anything else
# is a bug and should surface.
GRAPH_UNAVAILABLE = (
    neo4j.exceptions.ServiceUnavailable,
    neo4j.exceptions.SessionExpired,
    neo4j.exceptions.TransientError,
    ConnectionError,
    OSError,
)


def configure() -> None:
    """Point neomodel at the configured server; it connects lazily on first query."""
    config = neomodel.get_config()
    if config.database_url != settings.NEO4J_BOLT_URL:
        if neomodel.db.driver is not None:
            neomodel.db.close_connection()
        config.database_url = settings.NEO4J_BOLT_URL
    # Fail fast when Neo4j is down instead of blocking a worker for neomodel's default minute.
    config.connection_acquisition_timeout = 10.0
    config.connection_timeout = 5.0


def graph_is_reachable() -> bool:
    try:
        neomodel.db.cypher_query("RETURN 1")
        return True
    except Exception:
        log.exception("neo4j unreachable")
        return False


def cypher(name: str, query: str, params: dict | None = None) -> tuple[list, tuple[str, ...]]:
    """Every app query goes through here, under a stable snake_case `name` (`search_segments`,
    `write_recording`...): the label of its latency and error metrics (assistant_neo4j_query_seconds)
    and its span's name. Never anything from its parameters: they hold users' words."""
    with (
        tracer.start_as_current_span(
            f"neo4j {name}", kind=trace.SpanKind.CLIENT, attributes={"db.system": "neo4j", "db.operation.name": name}
        ),
        metrics.neo4j_query(name),
    ):
        return neomodel.db.cypher_query(query, params)
