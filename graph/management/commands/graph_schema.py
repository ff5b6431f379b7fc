import io
import time
from typing import TextIO, cast

import neomodel
from django.core.management.base import BaseCommand, CommandError

from graph import outbox
from graph.connection import GRAPH_UNAVAILABLE


class Command(BaseCommand):
    help = "Install the graph's constraints, indexes and full-text indexes in Neo4j (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=float, default=0, help="Seconds to wait for Neo4j to come up.")

    def handle(self, *args, wait, verbosity, **options):
        from graph.nodes import FULLTEXT_INDEXES  # also registers the node classes with neomodel

        deadline = time.monotonic() + wait
        while True:
            try:
                neomodel.db.cypher_query("RETURN 1")
                break
            except GRAPH_UNAVAILABLE as exc:
                if time.monotonic() >= deadline:
                    raise CommandError(f"Neo4j is not reachable: {exc}") from exc
                time.sleep(1)
        # neomodel reports each constraint, including the ones already there: detail for -v 2.
        # neomodel only calls write(), which Django's OutputWrapper (a TextIOBase, not a TextIO) has.
        neomodel.db.install_all_labels(stdout=cast(TextIO, self.stdout) if verbosity > 1 else io.StringIO())
        existing = {row[0] for row in neomodel.db.cypher_query("SHOW FULLTEXT INDEXES YIELD name")[0]}
        for name, (label, properties) in FULLTEXT_INDEXES.items():
            if name in existing:
                continue
            fields = ", ".join(f"n.{p}" for p in properties)
            # Names come from our own table, never from input: safe to format into the statement.
            neomodel.db.cypher_query(f"CREATE FULLTEXT INDEX {name} FOR (n:{label}) ON EACH [{fields}]")
        neomodel.db.cypher_query("CALL db.awaitIndexes(300)")
        # A graph written before the uids were full SHA-256 hashes is rewritten through the outbox.
        if queued := outbox.rewrite_old_uids():
            self.stdout.write(f"{queued} recordings queued to be rewritten with full-length node uids")
        self.stdout.write(self.style.SUCCESS("graph schema installed"))
