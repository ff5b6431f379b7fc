"""The Celery app: configured from Django settings (CELERY_*), tasks found in each app's tasks.py and
in the actions layer's (the tasks that cross apps)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant_site.settings")

app = Celery("assistant_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["actions"])
