"""The one owner of the Neo4j connection: neomodel configured from settings.NEO4J_BOLT_URL."""

import logging

import neomodel
from django.conf import settings

log = logging.getLogger(__name__)


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
