"""Celery tasks of the workflows: they take ids and leave the work to runs.py."""

import asyncio

from celery import shared_task


@shared_task(time_limit=1800, soft_time_limit=1700)
def run_workflow(run_id: int) -> str | None:
    from . import runs

    run = asyncio.run(runs.execute(run_id))
    return run.status if run else None
