from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """AI workflows over transcripts (DAG engine, LLM nodes): see the workflows issue."""

    name = "workflows"
