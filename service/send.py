"""The queue, as the API and the worker both use it: the one Celery configuration, and sending
runs by task name with Celery's canvas for the order (no task import, so a sender needs neither
worker/ nor torch).

`make_celery` builds both apps: the worker's (worker/app.py, which adds the task module) and
`client()`, the send-only app of the API process; so they agree on the broker and the serializer.

A run goes to its own queue (`status.json` keeps it, so a resumed run goes back there); a
teacher goes first as a chain, with the students that distil from it as the chain's next step
(a group when there are several): they are sent when the teacher's task returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from celery import Celery, chain, group

from .keys import TRAIN_TASK
from .settings import Settings, get_settings


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """A Celery app configured from Settings: JSON only, late acks, prefetch 1, one run at a time,
    task events on (for Flower).
    `include`: the task modules a worker imports (a sender has none)."""
    if not settings.redis_url:
        raise RuntimeError("REKD_REDIS_URL is not set (`rekd up` sets it for the processes it starts)")
    app = Celery("rekd", broker=settings.redis_url, include=list(include))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle
        result_serializer="json",
        task_ignore_result=True,  # results live in the run directory
        task_acks_late=True,  # a task is acknowledged when it ends, so a dead worker's run is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds no queued run it cannot start
        # one run per worker process, trained in a thread of it: the main thread stays free to answer
        # inspection and send heartbeats mid-run (worker/app.py says why not solo, or prefork)
        worker_pool="threads",
        worker_concurrency=1,
        task_default_queue=settings.queue,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # kombu's sweep for messages past the timeout runs every interval x throttle seconds
            # (100 s by default); one ZRANGE every few seconds lets a short timeout mean what it says
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 3)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Celery's monitor (Flower, `celery events`) sees each run's task: sent by the API, received,
        # started and ended by a worker; the worker's heartbeats go out whatever this says
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


@lru_cache(maxsize=1)
def client() -> Celery:
    """This process's send-only Celery app (the API's), made on the first send: it registers no
    task and sends by name. A failure (no REKD_REDIS_URL) is not cached: the next send tries again."""
    return make_celery(get_settings())


def signature(app: Any, run_id: str, queue: str) -> Any:
    return app.signature(TRAIN_TASK, args=[run_id], immutable=True, queue=queue)


def send_run(app: Any, run_id: str, queue: str, then: Sequence[tuple[str, str]] = ()) -> None:
    """Queue `run_id` on `queue`; `then` ((run id, queue) pairs) are sent when its task returns."""
    head = signature(app, run_id, queue)
    if not then:
        head.apply_async()
        return
    after = [signature(app, rid, q) for rid, q in then]
    chain(head, after[0] if len(after) == 1 else group(after)).apply_async()
