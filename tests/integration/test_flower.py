"""Celery's own monitor, Flower, against a real rekd service: the worker is online and its run's task
is visible (STARTED, in the worker's active list) while the run trains, and SUCCESS after; Celery's
remote control (`inspect ping` / `active`) answers mid-run within seconds.

Real redis-server, Celery worker, uvicorn (tests/support/service.py) and a real Flower process on a
free loopback port, started the way docs/service.md tells a user to start it beside `rekd up`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import tiny_vision
from rekd.services import free_port, wait_for_port
from service.send import make_celery
from service.settings import Settings
from tests.support.service import ROOT, Harness, launch_run, sse_events, start_service

STEP_DELAY_S = 0.25
STEPS = 80  # 80 x 0.25 s: a run of about 20 s on any machine, long enough to look at it mid-run


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    s = start_service(tmp_path_factory.mktemp("svc"), workers=1, step_delay_s=STEP_DELAY_S)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def flower(svc: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """Flower on loopback against the service's broker, with the environment the worker gets; its
    HTTP API opened without auth (loopback only), as docs/service.md shows."""
    port = free_port()
    log_path = Path(tmp_path_factory.mktemp("flower")) / "flower.log"
    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "--broker", svc.redis_url, "flower",
           "--address=127.0.0.1", f"--port={port}", "--persistent=False"]
    env = {**svc.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        try:
            wait_for_port("127.0.0.1", port, timeout=60, proc=proc)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"Flower did not start: {err}\n{log_path.read_text()[-3000:]}") from None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            yield c
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _poll(what: str, fn: Any, timeout: float = 30.0, every: float = 0.25) -> Any:
    """fn() until it returns something truthy; AssertionError naming `what` (and fn's last value) after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not seen within {timeout:.0f} s (last: {last!r})")


def _our_worker(names: Any) -> str | None:
    return next((n for n in names if n.startswith("test-worker0-")), None)


def _children(pid: int) -> list[int]:
    return [int(c) for f in Path(f"/proc/{pid}/task").glob("*/children") for c in f.read_text().split()]


def _task_of(flower: httpx.Client, run_id: str, state: str) -> dict[str, Any] | None:
    tasks = flower.get("/api/tasks", params={"state": state}).json()
    return next(({"uuid": uuid, **t} for uuid, t in tasks.items() if run_id in str(t.get("args"))), None)


def test_flower_sees_the_worker_online_and_its_task_running_mid_run(svc: Harness, flower: httpx.Client) -> None:
    # before any run: Flower has the worker, by inspection and by its heartbeats
    listed = _poll("worker listed by /api/workers?refresh=1",
                   lambda: _our_worker(flower.get("/api/workers", params={"refresh": 1}).json()))
    _poll("worker alive by heartbeat", lambda: flower.get("/api/workers", params={"status": 1}).json().get(listed))

    ctl = make_celery(Settings(redis_url=svc.redis_url)).control
    with svc.client() as c:
        run_id = launch_run(c, tiny_vision("re", max_steps=STEPS, log_every=4, eval_every=STEPS,
                                           checkpoint_every=STEPS))
        _poll("run running", lambda: c.get(f"/api/runs/{run_id}").json()["state"] == "running", timeout=120)
        _poll("run past step 4", lambda: c.get(f"/api/runs/{run_id}").json()["step"] >= 4, timeout=60)

        # the task, from the worker's events: STARTED, with the run id as its argument
        task = _poll("task STARTED in Flower", lambda: _task_of(flower, run_id, "STARTED"), timeout=15)
        assert task["name"] == "rekd.train_run" and task["worker"] == listed

        # mid-run, for several heartbeat periods: online by heartbeat, and inspection answers
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:
            assert flower.get("/api/workers", params={"status": 1}).json().get(listed) is True, \
                "the worker fell offline in Flower while its run trained"
            time.sleep(1)
        refreshed = flower.get("/api/workers", params={"refresh": 1, "workername": listed})
        assert refreshed.status_code == 200, refreshed.text
        active = refreshed.json()[listed].get("active")
        assert active and any(run_id in str(t.get("args")) for t in active), f"not in Flower's active list: {active}"
        pool = refreshed.json()[listed]["stats"]["pool"]
        assert pool["max-concurrency"] == 1 and pool["implementation"].endswith("thread:TaskPool"), pool
        # one run, in the worker process itself: no child that a killed worker could leave behind
        assert _children(svc.procs["worker0"].pid) == []

        # Celery's remote control straight from here, as `celery inspect ping` / `active` do
        t0 = time.monotonic()
        pong = ctl.inspect(timeout=5, destination=[listed]).ping()
        ping_s = time.monotonic() - t0
        assert pong and listed in pong, f"inspect ping unanswered mid-run ({ping_s:.1f} s)"
        assert ping_s < 5
        active_now = ctl.inspect(timeout=5, destination=[listed]).active()
        assert active_now and [t["args"] for t in active_now[listed]] == [[run_id]]
        assert c.get(f"/api/runs/{run_id}").json()["state"] == "running"  # all of this happened mid-run

        evs = sse_events(c, run_id, timeout=180)
        assert evs[-1]["type"] == "finished" and evs[-1]["state"] == "completed"

    info = _poll("task SUCCESS in Flower",
                 lambda: (lambda r: r.status_code == 200 and r.json().get("state") == "SUCCESS" and r.json())(
                     flower.get(f"/api/task/info/{task['uuid']}")), timeout=15)
    assert run_id in str(info["args"]) and info["worker"] == listed
    assert "'state': 'completed'" in str(info["result"])  # the task's result says how the run ended
    assert flower.get("/api/workers", params={"status": 1}).json().get(listed) is True
