"""The worker's decisions against a real redis-server: lease, attempts cap, idempotency, cancel
before start, and the reconciler re-queueing orphaned runs exactly once."""

import json
import os
import time

import pytest
import redis

from backend.settings import Settings
from conftest import tiny_vision
from rekd.services import start_redis
from rekd_core.config import parse_config
from rekd_core.runstore import RunStore
from worker import keys
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
