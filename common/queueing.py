"""Queueing follow-up work so that it can never undo the change that asked for it."""

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def enqueue_on_commit(task, *args) -> None:
    """Send `task(*args)` to the broker once the current transaction commits (at once outside one).

    Unlike Celery's `delay_on_commit`, a broker that cannot take the message does not raise into
    code that has already committed: the change stands, the failure is logged, and the periodic
    sweeps (the graph outbox's) pick up what was left.
    """

    def send() -> None:
        try:
            task.delay(*args)
        except Exception:
            log.exception("could not queue %s%r; the committed change stands", task.name, args)

    transaction.on_commit(send)
