from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WorkflowsConfig(AppConfig):
    """AI workflows over transcripts: a DAG engine, LLM nodes, Rivet import."""

    name = "workflows"

    def ready(self):
        from . import builtin

        post_migrate.connect(lambda sender, **kw: builtin.install(), sender=self, weak=False)
