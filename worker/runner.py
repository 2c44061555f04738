"""What one delivery of a run does: lease, teacher check, attempt count, train (resuming), release.

Idempotent: a run already finished, cancelled or failed is left alone; a run whose lease is
held elsewhere is left to its holder. So a redelivered or duplicated message is harmless.

A distilled (REKD) run trains only once its teacher run has completed. A pipeline sends the
student after the teacher's task returns, but that task returns however the teacher ended,
and a hand-posted student or a teacher handed back at a worker shutdown is not ordered at
all: so the student fails here if its teacher failed, and waits (queued) while it has not ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from rekd_core.checks import RunRefused, check_model_size
from rekd_core.config import ExperimentConfig
from rekd_core.store.runstore import TERMINAL_STATES, RunStore, now_iso
from rekd_core.train.trainer import train
from service import keys
from service.events import StreamPublisher
from service.lease import Lease
from service.settings import Settings

log = logging.getLogger(__name__)


class StopWhen:
    """should_stop for the trainer: a cancel request or a lost lease; Redis read at most every 0.5 s.

    With `step_delay_s` (the REKD_STEP_DELAY_S test hook) each call, made by the trainer before
    every step, first waits that long, looking for a stop every SLICE_S meanwhile: a run lasts
    about max_steps x delay however fast the machine, and a stop is still seen within ~0.5 s.
    """

    SLICE_S = 0.05

    def __init__(self, r: redis.Redis, run_id: str, lease: Lease, shutting_down: threading.Event,
                 step_delay_s: float = 0.0) -> None:
        self.r, self.key, self.lease = r, keys.cancel(run_id), lease
        self.shutting_down = shutting_down
        self.step_delay_s = step_delay_s
        self.next_check = 0.0
        self.cancelled = False

    def __call__(self) -> bool | str:
        if self.step_delay_s <= 0:
            return self.check()
        until = time.monotonic() + self.step_delay_s
        while not (stop := self.check()):
            left = until - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, self.SLICE_S))
        return stop

    def check(self) -> bool | str:
        if self.lease.lost.is_set():
            return "preempt"
        if self.shutting_down.is_set():
            return "suspend"
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + 0.5
            try:
                self.cancelled = bool(self.r.exists(self.key))
            except redis.RedisError:
                self.next_check = now + 5.0  # keep training through a Redis outage; look again later
        return self.cancelled


def _finish_without_training(store: RunStore, publish: StreamPublisher, state: str, reason: str | None) -> None:
    store.write_status(state=state, finished=now_iso(), error=reason)
    step = store.status().get("step", 0)
    if reason:
        publish(store.append_event({"type": "error", "step": step, "message": reason}))
    extra = {"error": reason} if reason else {}
    publish(store.append_event({"type": "finished", "step": step, "state": state, **extra}))


def teacher_verdict(cfg: ExperimentConfig) -> tuple[str, str | None]:
    """("train", None), ("wait", teacher id) or ("fail", reason) for a run about to train."""
    if cfg.mode != "rekd" or not cfg.model.teacher_run:
        return "train", None
    path = Path(cfg.model.teacher_run)
    teacher_id = path.name
    if not path.is_dir():
        return "fail", f"teacher run {teacher_id} is missing: no directory {path}"
    st = RunStore(path).status()
    state = st.get("state")
    if state in ("failed", "cancelled"):
        return "fail", f"teacher run {teacher_id} ended {state}" + (f": {st['error']}" if st.get("error") else "")
    if state in ("queued", "running"):
        return "wait", teacher_id
    # completed, or a directory without a status (made by hand): the trainer checks its checkpoint
    return "train", None


def run_training(run_id: str, *, settings: Settings, r: redis.Redis, worker_id: str,
                 shutting_down: threading.Event | None = None,
                 requeue: Callable[[str], None] | None = None) -> dict[str, Any]:
    store = RunStore(settings.run_dir(run_id))
    if not (store.root / "config.json").exists():
        log.error("run %s has no directory under %s; dropping the message", run_id, settings.runs_dir)
        return {"run_id": run_id, "state": "missing"}
    status = store.status()
    if status.get("state") in TERMINAL_STATES:
        return {"run_id": run_id, "state": status["state"], "skipped": True}
    lease = Lease(r, run_id, worker_id, settings.lease_ttl_s)
    if not lease.acquire():
        log.info("run %s is leased by another worker; leaving it to them", run_id)
        return {"run_id": run_id, "state": "leased-elsewhere"}
    publish = StreamPublisher(r, run_id, settings.stream_maxlen)
    try:
        if r.exists(keys.cancel(run_id)):
            _finish_without_training(store, publish, "cancelled", None)
            return {"run_id": run_id, "state": "cancelled"}
        cfg = store.config()
        verdict, detail = teacher_verdict(cfg)
        if verdict == "fail":
            # nothing was tried: not an attempt, and no crash to count
            store.write_status(waiting_for=None)
            _finish_without_training(store, publish, "failed", detail)
            return {"run_id": run_id, "state": "failed", "error": detail}
        if verdict == "wait":
            if status.get("waiting_for") != detail:
                store.write_status(waiting_for=detail)
            return {"run_id": run_id, "state": "waiting", "waiting_for": detail}
        if status.get("waiting_for"):
            store.write_status(waiting_for=None)
        try:  # the API's own check at the door; here with the network, for a model it could not count
            check_model_size(cfg, settings.max_params)
        except RunRefused as err:
            _finish_without_training(store, publish, "failed", str(err))  # nothing tried: not an attempt
            return {"run_id": run_id, "state": "failed", "error": str(err)}
        attempts = int(status.get("attempts", 0)) + 1
        if attempts > settings.max_attempts:
            reason = (f"gave up after {attempts - 1} starts that did not finish (the worker died or was lost "
                      f"each time; last worker {status.get('worker')})")
            _finish_without_training(store, publish, "failed", reason)
            return {"run_id": run_id, "state": "failed", "error": reason}
        store.write_status(attempts=attempts, worker=worker_id)
        stop = StopWhen(r, run_id, lease, shutting_down or threading.Event(), settings.step_delay_s)
        with lease.kept_alive():
            try:
                res = train(cfg, store.root, on_event=publish, should_stop=stop)
            except Exception as err:  # the trainer recorded the failure; the message must not come back
                log.exception("run %s failed", run_id)
                return {"run_id": run_id, "state": "failed", "error": f"{type(err).__name__}: {err}"}
        if lease.lost.is_set():
            return {"run_id": run_id, "state": "lease-lost"}
        if res["state"] == "suspended":
            # a clean hand-back is not a crash: it does not count against max_attempts
            store.write_status(attempts=attempts - 1)
            if requeue is not None:
                requeue(run_id)
        return {"run_id": run_id, "state": res["state"]}
    finally:
        lease.release()
