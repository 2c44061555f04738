"""The Celery app, configured from Settings: JSON only, late acks, prefetch 1, one run at a time.

Start a worker with `rekd worker` (or `celery -A worker.app worker --pool solo`). The solo pool
trains in the worker process itself, so killing the worker kills its run (no orphaned child
holding a lease), and one worker process trains one run, as a GPU wants.
"""

from __future__ import annotations

from celery import Celery

from service.keys import TRAIN_TASK
from service.settings import Settings, get_settings

__all__ = ["TRAIN_TASK", "app", "make_app"]


def make_app(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise RuntimeError("REKD_REDIS_URL is not set (`rekd up` sets it for the processes it starts)")
    app = Celery("rekd", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle
        result_serializer="json",
        task_ignore_result=True,  # results live in the run directory
        task_acks_late=True,  # a task is acknowledged when it ends, so a dead worker's run is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds no queued run it cannot start
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
        worker_send_task_events=False,
    )
    return app


app = make_app(get_settings())
