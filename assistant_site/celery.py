"""The Celery app: configured from Django settings (CELERY_*), tasks found in each app's tasks.py and
in the actions layer's (the tasks that cross apps)."""

import os

from celery import Celery

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
