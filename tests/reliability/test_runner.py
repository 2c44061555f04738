"""The worker's decisions against a real redis-server: lease, attempts cap, idempotency, cancel
before start, the reconciler re-queueing orphaned runs exactly once, and what happens when
Redis loses its data (queued runs sent again, leases taken back by their holders)."""

import json
import os
import time

import pytest
import redis

from conftest import tiny_vision
from rekd.services import start_redis
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from service import keys
from service.settings import Settings
from worker.reconcile import reconcile_once
from worker.runner import run_training


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
    from service.lease import Lease

    _, r = env
    lease = Lease(r, "r1", "w1", ttl_s=5)
    assert lease.acquire()
    r.delete(keys.lease("r1"))  # Redis lost it: nobody else holds the run, so its trainer keeps it
    assert lease.renew() and r.get(keys.lease("r1")) == b"w1" and r.pttl(keys.lease("r1")) > 4000
    assert not lease.lost.is_set()
    r.set(keys.lease("r1"), "w2")  # another worker took it (after an expiry): ours is lost
    assert not lease.renew() and lease.lost.is_set() and r.get(keys.lease("r1")) == b"w2"
