"""The worker's decisions against a real redis-server: lease, attempts cap, idempotency, cancel
before start, the reconciler re-queueing orphaned runs exactly once, and what happens when
Redis loses its data (queued runs sent again, leases taken back by their holders)."""

import json
import os
import threading
import time

import pytest
import redis

from conftest import tiny_vision
from rekd.services import start_redis
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from service import keys
from service.lease import Lease
from service.settings import Settings
from worker.reconcile import reconcile_once
from worker.runner import StopWhen, run_training


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait()


@pytest.fixture
def env(tmp_path, redis_url):
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    settings = Settings(redis_url=redis_url, runs_dir=tmp_path, lease_ttl_s=2, max_attempts=2)
    return settings, r


def _new_run(settings, run_id="r1", **status):
    store = RunStore.create(settings.run_dir(run_id), parse_config(tiny_vision("cls", max_steps=2, eval_every=2,
                                                                               checkpoint_every=2)))
    if status:
        store.write_status(**status)
    return store


def _stream(r, run_id):
    return [json.loads(f[b"data"]) for _, f in r.xrange(keys.stream(run_id))]


def test_crash_looping_run_is_failed_with_the_reason(env):
    settings, r = env
    store = _new_run(settings, state="running", attempts=2, worker="host:123")
    out = run_training("r1", settings=settings, r=r, worker_id="w")
    assert out["state"] == "failed"
    st = store.status()
    assert st["state"] == "failed" and "gave up after 2 starts" in st["error"] and "host:123" in st["error"]
    assert [e["type"] for e in _stream(r, "r1")] == ["error", "finished"]
    assert not r.exists(keys.lease("r1"))


def test_a_leased_run_is_left_to_its_holder(env):
    settings, r = env
    store = _new_run(settings)
    r.set(keys.lease("r1"), "other-worker", px=10_000)
    assert run_training("r1", settings=settings, r=r, worker_id="w")["state"] == "leased-elsewhere"
    assert store.status()["state"] == "queued" and r.get(keys.lease("r1")) == b"other-worker"


def test_redelivery_of_a_finished_run_changes_nothing(env):
    settings, r = env
    store = _new_run(settings)
    assert run_training("r1", settings=settings, r=r, worker_id="w")["state"] == "completed"
    events = store.events()
    before = (store.root / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    again = run_training("r1", settings=settings, r=r, worker_id="w")
    assert again == {"run_id": "r1", "state": "completed", "skipped": True}
    assert store.events() == events
    assert (store.root / "checkpoints" / "last.safetensors").stat().st_mtime_ns == before
    assert store.status()["attempts"] == 1
    assert [e["id"] for e in _stream(r, "r1")] == [e["id"] for e in events]  # the live copy matches


def test_cancelled_before_start_never_trains(env):
    settings, r = env
    store = _new_run(settings)
    r.set(keys.cancel("r1"), "1")
    assert run_training("r1", settings=settings, r=r, worker_id="w")["state"] == "cancelled"
    assert store.status()["state"] == "cancelled"
    assert not (store.root / "checkpoints").exists()


def test_reconciler_requeues_an_orphaned_run_once(env):
    settings, r = env
    orphan = _new_run(settings, "orphan", state="running")
    alive = _new_run(settings, "alive", state="running")
    _new_run(settings, "done", state="completed")
    r.set(keys.lease("alive"), "w2", px=60_000)
    old = time.time() - 60
    for store in (orphan, alive):
        os.utime(store.root / "status.json", (old, old))
    sent: list[str] = []
    assert reconcile_once(settings, r, sent.append) == ["orphan"]
    assert reconcile_once(settings, r, sent.append) == []  # a second reconciler does not re-send it
    assert sent == ["orphan"]
    fresh = _new_run(settings, "fresh", state="running")  # just started: within the grace period
    assert fresh and reconcile_once(settings, r, sent.append) == []


def test_after_redis_loses_its_data_every_queued_run_is_sent_again_once(env):
    settings, r = env
    _new_run(settings, "q1")
    _new_run(settings, "q2", waiting_for="some-teacher")  # a student waiting for its teacher
    _new_run(settings, "done", state="completed")
    sent: list[str] = []
    r.set(keys.EPOCH, "1")
    assert reconcile_once(settings, r, sent.append) == []  # Redis remembers: the queue is intact
    r.flushall()  # Redis restarted without its data: queue, leases and the epoch are gone
    assert reconcile_once(settings, r, sent.append) == ["q1", "q2"]
    assert reconcile_once(settings, r, sent.append) == []  # the first reconciler to notice re-sends, once
    assert sent == ["q1", "q2"]


def test_a_lease_whose_key_vanished_is_taken_back_one_taken_by_another_is_lost(env):
    _, r = env
    lease = Lease(r, "r1", "w1", ttl_s=5)
    assert lease.acquire()
    r.delete(keys.lease("r1"))  # Redis lost it: nobody else holds the run, so its trainer keeps it
    assert lease.renew() and r.get(keys.lease("r1")) == b"w1" and r.pttl(keys.lease("r1")) > 4000
    assert not lease.lost.is_set()
    r.set(keys.lease("r1"), "w2")  # another worker took it (after an expiry): ours is lost
    assert not lease.renew() and lease.lost.is_set() and r.get(keys.lease("r1")) == b"w2"


@pytest.mark.parametrize("how", ["cancel", "lease lost", "shutdown"])
def test_the_step_delay_waits_before_each_step_yet_a_stop_is_seen_within_a_second(env, how):
    """REKD_STEP_DELAY_S, the test hook: each should_stop call waits the delay before answering,
    but looks for a stop meanwhile (the cancel key at most every 0.5 s, the lease and shutdown
    flags every 0.05 s), so a delay far longer than that does not hold a stop back."""
    _, r = env
    lease, shutting_down = Lease(r, "r1", "w", ttl_s=5), threading.Event()
    stop = StopWhen(r, "r1", lease, shutting_down, step_delay_s=0.2)
    t0 = time.monotonic()
    assert stop() is False and stop() is False and stop() is False
    assert time.monotonic() - t0 >= 0.6  # the whole delay, at every call

    slow = StopWhen(r, "r1", lease, shutting_down, step_delay_s=60)
    trigger = {"cancel": lambda: r.set(keys.cancel("r1"), "1"), "lease lost": lease.lost.set,
               "shutdown": shutting_down.set}[how]
    timer = threading.Timer(0.3, trigger)
    timer.start()
    t0 = time.monotonic()
    answer = slow()
    took = time.monotonic() - t0
    timer.join()
    assert answer == {"cancel": True, "lease lost": "preempt", "shutdown": "suspend"}[how]
    assert 0.3 <= took < 1.5, took


def test_the_step_delay_slows_a_real_run_and_a_cancel_still_stops_it_at_once(env):
    settings, r = env
    # every step waits the delay: log events one step apart are at least the delay apart
    slow = settings.model_copy(update={"step_delay_s": 0.3})
    cfg = tiny_vision("cls", max_steps=4, log_every=1, eval_every=4, checkpoint_every=4)
    store = RunStore.create(settings.run_dir("r1"), parse_config(cfg))
    assert run_training("r1", settings=slow, r=r, worker_id="w")["state"] == "completed"
    times = [e["time"] for e in store.events() if e["type"] == "log"]
    assert len(times) == 4 and all(b - a >= 0.3 for a, b in zip(times, times[1:])), times

    # a run whose every step waits a minute, cancelled during its first step's wait: it stops, with
    # its checkpoint, within seconds (the cancel is read every 0.5 s), still at step 0
    slower = settings.model_copy(update={"step_delay_s": 60})
    cfg = tiny_vision("cls", max_steps=1000, log_every=1, eval_every=1000, checkpoint_every=1000)
    store = RunStore.create(settings.run_dir("r2"), parse_config(cfg))
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(run_training("r2", settings=slower, r=r, worker_id="w")))
    worker.start()
    deadline = time.monotonic() + 60
    while "start" not in [e["type"] for e in store.events()]:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)
    time.sleep(0.5)  # well inside step 0's 60 s wait
    t0 = time.monotonic()
    r.set(keys.cancel("r2"), "1")
    worker.join(timeout=60)
    assert out["state"] == "cancelled" and time.monotonic() - t0 < 5, (out, time.monotonic() - t0)
    st = store.status()
    assert st["state"] == "cancelled" and st["step"] == 0
    assert (store.root / "checkpoints" / "last.safetensors").exists()
