from django.apps import AppConfig


class GraphConfig(AppConfig):
    name = "graph"

    def ready(self):
        from .connection import configure

        configure()
