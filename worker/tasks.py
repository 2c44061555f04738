"""The one task: train a run by id (thin; the work is in runner.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import redis
from celery import Task
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from rekd_core.store.runstore import TERMINAL_STATES, RunStore
from service import keys
from service.keys import TRAIN_TASK
from service.send import send_run
from service.settings import get_settings

from .app import app
from .pool import pool_problem
from .reconcile import start_background
from .runner import run_training

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
_redis: redis.Redis | None = None
_bg_stop = None
SHUTTING_DOWN = threading.Event()


def get_redis() -> redis.Redis:
    global _redis
    if _redis is None:
        # a short connect timeout: calls on the training thread (events, cancel checks) must not
        # hang for long on a Redis that is unreachable rather than refusing
        _redis = redis.Redis.from_url(get_settings().redis_url or "", socket_timeout=10, socket_connect_timeout=2,
                                      health_check_interval=30)
    return _redis


def _queue_of(run_id: str) -> str:
    settings = get_settings()
    return RunStore(settings.run_dir(run_id)).status().get("queue") or settings.queue


def enqueue(run_id: str) -> None:
    """Send the run again, to its own queue (a sweep may route it to e.g. `gpu`)."""
    app.send_task(TRAIN_TASK, args=[run_id], queue=_queue_of(run_id))


def resend_orphan(run_id: str) -> None:
    """Re-queue a run whose worker vanished. Its broker message (and with it the chain of the
    students that wait for it) comes back only after the visibility timeout; so the students
    it was sent with (`then` in its status) follow the resumed run again as a chain. Copies
    delivered twice are harmless: a run already leased, or ended, is skipped by the runner."""
    settings = get_settings()
    then = RunStore(settings.run_dir(run_id)).status().get("then") or []
    pending = [rid for rid in then if RunStore(settings.run_dir(rid)).status().get("state") not in TERMINAL_STATES]
    send_run(app, run_id, _queue_of(run_id), [(rid, _queue_of(rid)) for rid in pending])


def teacher_wait_s(retries: int) -> float:
    """Delay before a student looks at its teacher again: every 5 s for the first half minute,
    then doubling up to a minute, so a student queued behind a day-long teacher polls rarely."""
    return min(5.0 * 2 ** (retries // 6), 60.0)


# max_retries=None: a student waits for its teacher as long as the teacher trains
@app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def train_run(self: Task, run_id: str) -> dict[str, Any]:
    out = run_training(run_id, settings=get_settings(), r=get_redis(), worker_id=WORKER_ID,
                       shutting_down=SHUTTING_DOWN, requeue=enqueue)
    if out["state"] == "waiting":
        # the run's lease is released by now; the retry is the same task (and chain) again, later
        raise self.retry(countdown=teacher_wait_s(self.request.retries))
    return out


@worker_init.connect
def _check_pool(sender: Any = None, **_: Any) -> None:
    # SystemExit, not an exception: Celery logs and swallows a signal handler's exceptions
    problem = pool_problem(sender.pool_cls, sender.concurrency) if sender is not None else None
    if problem:
        raise SystemExit(f"rekd worker: {problem}")


@worker_shutting_down.connect
def _on_shutting_down(**_: Any) -> None:
    # SIGTERM / Ctrl-C: the running run checkpoints at its next step and goes back to the queue,
    # instead of holding the shutdown until it finishes or is killed mid-step
    SHUTTING_DOWN.set()


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    global _bg_stop
    _bg_stop = start_background(get_settings(), get_redis(), WORKER_ID, resend_orphan)
    log.info("rekd worker %s ready", WORKER_ID)


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    if _bg_stop is not None:
        _bg_stop.set()
    try:
        get_redis().hdel(keys.WORKERS, WORKER_ID)
    except redis.RedisError:
        pass
