"""Workers killed, stopped and cancelled under a real service (guarantees 1, 5 and 6).

Real redis-server, real Celery worker processes (the run trains in a thread of the worker
process, so SIGKILL takes the run with it), real uvicorn; faults are real signals.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import run_history, same_final_weights, tiny_vision
from rekd_core.config import parse_config
from rekd_core.train.trainer import train
from tests.support.service import launch_run as launch
from tests.support.service import sse_events, start_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    # short lease and reconcile period, so a killed worker's run is picked up within seconds; each
    # step waits 0.05 s first (REKD_STEP_DELAY_S), so a run lasts about steps x 0.05 s on any machine
    s = start_service(tmp_path_factory.mktemp("svc"), workers=1, step_delay_s=0.05, REKD_LEASE_TTL_S="4",
                      REKD_RECONCILE_EVERY_S="1")
    yield s
    s.stop()


def test_killed_worker_run_resumes_on_another_and_ends_as_if_never_interrupted(svc, tmp_path):
    with svc.client() as c:
        # 40 steps x 0.05 s: seen past step 8 (its checkpoint writes the status), the run has 1.6 s or
        # more to go when the kill lands, however fast the machine
        cfg = tiny_vision("re", max_steps=40, log_every=2, eval_every=20, checkpoint_every=4)
        run_id = launch(c, cfg)
        # wait until a checkpoint exists past step 8, then SIGKILL the worker mid-run (8 steps an epoch)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = c.get(f"/api/runs/{run_id}").json()
            if st["step"] >= 8:
                break
            time.sleep(0.05)
        assert st["state"] == "running" and st["step"] >= 8
        (name,) = [n for n in svc.procs if n.startswith("worker")]
        svc.kill(name)
        svc.start_worker()
        evs = sse_events(c, run_id, timeout=240)
        assert evs[-1]["type"] == "finished" and evs[-1]["state"] == "completed"
        st = c.get(f"/api/runs/{run_id}").json()
        assert st["attempts"] == 2 and st["state"] == "completed"
        stored = [json.loads(x) for x in (svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()]
        assert [e["id"] for e in stored] == list(range(1, len(stored) + 1))
        log_steps = [e["step"] for e in stored if e["type"] == "log"]
        assert log_steps == list(range(2, 41, 2))  # one continuous sequence: no gap, no duplicate step
        starts = [e for e in stored if e["type"] == "start"]
        assert [s["resumed"] for s in starts] == [False, True] and starts[1]["step"] >= 4

    # ... and it ends exactly where the same run ends uninterrupted (CPU, fixed seed, one thread)
    ref = tmp_path / "uninterrupted"
    train(parse_config(cfg), ref)
    same_final_weights(svc.runs_dir / run_id, ref)
    assert run_history(svc.runs_dir / run_id) == run_history(ref)


def test_graceful_worker_shutdown_hands_the_run_back(svc):
    with svc.client() as c:
        # 60 steps x 0.05 s: the status first moves by step 30 (at a log after 1 s, or the step-30
        # checkpoint), leaving 1.5 s of run or more for the signal to land in, however fast the machine
        cfg = tiny_vision("re", max_steps=60, log_every=10, eval_every=30, checkpoint_every=30)
        run_id = launch(c, cfg)
        deadline = time.monotonic() + 120
        while c.get(f"/api/runs/{run_id}").json()["step"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        (name,) = [n for n in svc.procs if n.startswith("worker")]
        proc = svc.procs.pop(name)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a prompt warm shutdown, not a hang until the run ends
        st = c.get(f"/api/runs/{run_id}").json()
        assert st["state"] == "queued" and 4 <= st["step"] < 60
        assert (svc.runs_dir / run_id / "checkpoints" / "last.safetensors").exists()
        svc.start_worker()
        evs = sse_events(c, run_id, timeout=240)
        assert evs[-1]["state"] == "completed"
        st = c.get(f"/api/runs/{run_id}").json()
        assert st["attempts"] == 1  # a hand-back is not a crash
        log_steps = [e["step"] for e in evs if e["type"] == "log"]
        assert log_steps == list(range(10, 61, 10))


def test_cancel_stops_within_seconds_keeps_checkpoint_and_never_returns(svc):
    with svc.client() as c:
        # 1000 steps x 0.05 s: 50 s, far longer than the cancel may take; no checkpoint before the cancel's
        run_id = launch(c, tiny_vision("re", max_steps=1000, log_every=1, checkpoint_every=1000,
                                       eval_every=1000))
        first = sse_events(c, run_id, until="log")
        t0 = time.monotonic()
        r = c.post(f"/api/runs/{run_id}/cancel")
        assert r.status_code == 202
        rest = sse_events(c, run_id, last_event_id=first[-1]["id"], timeout=60)
        assert rest[-1]["type"] == "finished" and rest[-1]["state"] == "cancelled"
        assert time.monotonic() - t0 < 10
        assert (svc.runs_dir / run_id / "checkpoints" / "last.safetensors").exists()
        n = len((svc.runs_dir / run_id / "events.jsonl").read_text().splitlines())
        time.sleep(3)
        assert c.get(f"/api/runs/{run_id}").json()["state"] == "cancelled"
        assert len((svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()) == n  # not redelivered
        assert c.post(f"/api/runs/{run_id}/cancel").status_code == 409
        assert c.delete(f"/api/runs/{run_id}").status_code == 204
        assert not (svc.runs_dir / run_id).exists()
        assert c.get(f"/api/runs/{run_id}").status_code == 404
