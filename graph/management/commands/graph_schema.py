import io
import time

import neomodel
from django.core.management.base import BaseCommand, CommandError

from graph.writes import GRAPH_UNAVAILABLE


class Command(BaseCommand):
    help = "Install the graph's constraints and indexes in Neo4j (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--wait", type=float, default=0, help="Seconds to wait for Neo4j to come up."
        )

    def handle(self, *args, wait, verbosity, **options):
        import graph.models  # noqa: F401 - registers the node classes with neomodel

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
        neomodel.db.install_all_labels(stdout=self.stdout if verbosity > 1 else io.StringIO())
        self.stdout.write(self.style.SUCCESS("graph schema installed"))
