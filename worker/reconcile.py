"""Find runs whose worker vanished and queue them again; keep this worker's heartbeat.

A run is orphaned when its status says `running` but nobody holds its lease: its worker died
(SIGKILL, OOM, a lost machine). Its broker message would only come back after the visibility
timeout, so the reconciler re-queues it now; the lease keeps the two deliveries from ever
training at once, and the run resumes from its last checkpoint.

A run is also lost when Redis loses its data (restarted without persistence, flushed, replaced):
its queued message is gone with it. Redis then no longer holds the `epoch` key; the first
reconciler to notice sets it again and re-queues every run whose directory says `queued`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import redis

from service import keys
from service.settings import Settings

log = logging.getLogger(__name__)


def orphaned_runs(settings: Settings, r: redis.Redis) -> list[str]:
    out: list[str] = []
    if not settings.runs_dir.exists():
        return out
    for status_path in settings.runs_dir.glob("*/status.json"):
        try:
            status = json.loads(status_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        run_id = status_path.parent.name
        if status.get("state") != "running":
            continue
        # grace: a run just picked up writes `running` after taking its lease, never before
        if time.time() - status_path.stat().st_mtime < settings.lease_ttl_s:
            continue
        if not r.exists(keys.lease(run_id)):
            out.append(run_id)
    return out


def queued_runs(settings: Settings) -> list[str]:
    out = []
    for status_path in sorted(settings.runs_dir.glob("*/status.json")) if settings.runs_dir.exists() else []:
        try:
            if json.loads(status_path.read_text()).get("state") == "queued":
                out.append(status_path.parent.name)
        except (OSError, json.JSONDecodeError):
            continue
    return out


def reconcile_once(settings: Settings, r: redis.Redis, send: Callable[[str], None]) -> list[str]:
    sent = []
    if r.set(keys.EPOCH, str(time.time()), nx=True):
        # Redis remembers nothing of this deployment: every queued message may be gone. Copies
        # that did survive are harmless (a delivered run is leased, an ended one skipped).
        for run_id in queued_runs(settings):
            log.warning("Redis holds no record of queued run %s (its data was lost?); queueing it again", run_id)
            send(run_id)
            sent.append(run_id)
    for run_id in orphaned_runs(settings, r):
        # several workers reconcile: the first to mark the run re-queues it
        if r.set(keys.requeued(run_id), "1", nx=True, ex=max(int(settings.lease_ttl_s), 1)):
            log.warning("run %s lost its worker; queueing it again to resume from its checkpoint", run_id)
            send(run_id)
            sent.append(run_id)
    return sent


def start_background(settings: Settings, r: redis.Redis, worker_id: str,
                     send: Callable[[str], None]) -> threading.Event:
    """Heartbeat (for /api/health) and reconciliation, in a daemon thread of the worker process."""
    stop = threading.Event()

    def loop() -> None:
        next_reconcile = 0.0
        while not stop.is_set():
            try:
                r.hset(keys.WORKERS, worker_id, time.time())
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + settings.reconcile_every_s
                    reconcile_once(settings, r, send)
            except redis.RedisError as err:
                log.warning("heartbeat/reconcile: %s", err)
            stop.wait(2.0)

    threading.Thread(target=loop, name="rekd-reconciler", daemon=True).start()
    return stop
