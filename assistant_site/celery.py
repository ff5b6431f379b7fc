"""The Celery app: configured from Django settings (CELERY_*), tasks found in each app's tasks.py and
in the actions layer's (the tasks that cross apps)."""

import os

from celery import Celery, signals

from common import metrics_dir

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")


def _metrics_dir_for_this_worker() -> None:
    """A worker with CELERY_METRICS_PORT gets its pool's metrics directory (emptied) before anything
    imports prometheus_client (common/metrics_dir.py says why)."""
    port = os.environ.get("CELERY_METRICS_PORT", "")
    disabled = os.environ.get("METRICS_ENABLED", "").strip().lower() in ("false", "0", "no", "off")
    if port and not disabled and not os.environ.get(metrics_dir.ENV):
        os.environ[metrics_dir.ENV] = metrics_dir.prepare(metrics_dir.var_dir() / "metrics" / f"celery-{port}")


_metrics_dir_for_this_worker()

app = Celery("assistant_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["actions"])

from . import metrics as _metrics  # noqa: E402,F401  (its Celery signal handlers)


@signals.worker_process_init.connect
def _trace_pool_process(**kwargs) -> None:
    # In each prefork child, after the fork: the exporter's thread must belong to the process that
    # records the spans. A task then continues the trace of whoever queued it.
    from assistant_site import tracing

    tracing.setup("worker")


@signals.worker_process_shutdown.connect
def _flush_traces(**kwargs) -> None:
    from assistant_site import tracing

    tracing.flush()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_logs(logger, **kwargs) -> None:
    # Celery sets up its own handlers (text, its format); with LOG_FORMAT=json they write what the
    # web processes write: one JSON object per line, with the trace ids.
    from assistant_site import tracing

    tracing.use_json_logs(logger)
