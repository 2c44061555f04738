"""A real rekd service on loopback (redis-server, Celery worker processes, uvicorn), for tests and benchmarks:
rekd's own supervisor (rekd/services.py) with a fresh Redis, logs in files and ways to break it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from rekd.services import Service, start_redis

ROOT = Path(__file__).resolve().parents[2]


class Harness(Service):
    """A `Service` with what the tests do to it: kill a process, kill and restart Redis."""

    def kill(self, name: str) -> None:
        """SIGKILL one process (and what it started), as in a crash."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def kill_redis(self) -> None:
        """SIGKILL redis-server: no shutdown save, as in a crash or an OOM kill."""
        self.kill("redis")

    def restart_redis(self, keep_data: bool = True) -> None:
        """Start redis-server again on the same port: from its append-only file, or empty
        (`keep_data=False`: what a Redis without persistence, or a replaced one, comes back as)."""
        port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
        data = self.redis_dir
        if not keep_data:
            data = self.redis_dir.with_name(f"{self.redis_dir.name}-{time.monotonic_ns()}")
        self.procs["redis"], _ = start_redis(data, port=port)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30)


def start_service(tmp: Path, workers: int = 1, ui: bool = False, runs_dir: Path | None = None,
                  step_delay_s: float = 0.0, **env_extra: str) -> Harness:
    """Every process of the service, fresh (its own redis-server in `tmp`), on `runs_dir` (default: a new
    folder in `tmp`); logs in `tmp`/logs; back once the API answers and the workers are alive.

    `step_delay_s` (REKD_STEP_DELAY_S, for every worker, those started later included): each training
    step waits that long first, so a run of n steps lasts about n x delay on any machine and a fault
    test can act while it runs. Other settings go in `env_extra` (e.g. REKD_LEASE_TTL_S="4")."""
    runs = runs_dir or tmp / "runs"
    runs.mkdir(exist_ok=True)
    logs = tmp / "logs"
    logs.mkdir()
    env = {"REKD_QUEUE": "rekd-test", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env_extra}
    if step_delay_s:
        env["REKD_STEP_DELAY_S"] = str(step_delay_s)
    svc = Harness(runs, ui=ui, queues=env["REKD_QUEUE"], redis_dir=tmp / "redis", env=env, log_dir=logs,
                  worker_name="test-worker", cwd=ROOT)
    try:
        svc.boot(workers)
        svc.wait_workers(workers)
    except BaseException:
        svc.stop()
        raise
    return svc


def sse_events(client: httpx.Client, run_id: str, last_event_id: int | None = None, timeout: float = 300,
               until: str = "finished", limit: int | None = None, stamp: bool = False) -> list[dict[str, Any]]:
    """Read the run's SSE stream until an event of type `until` (or `limit` events).

    With `stamp`, each event gets `_received` (the client's clock on arrival).
    """
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    out: list[dict[str, Any]] = []
    with client.stream("GET", f"/api/runs/{run_id}/events", headers=headers,
                       timeout=httpx.Timeout(timeout, read=timeout)) as resp:
        if resp.status_code != 200 or not resp.headers["content-type"].startswith("text/event-stream"):
            raise RuntimeError(f"SSE request failed: {resp.status_code} {resp.read()[:200]!r}")
        block: dict[str, str] = {}
        for line in resp.iter_lines():
            if line == "":
                if "data" in block:
                    ev = json.loads(block["data"])
                    if int(block["id"]) != ev["id"] or block["event"] != ev["type"]:
                        raise RuntimeError(f"SSE frame disagrees with its data: {block}")
                    if stamp:
                        ev["_received"] = time.time()
                    out.append(ev)
                    if ev["type"] == until or (limit and len(out) >= limit):
                        return out
                block = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(":")
                block[k] = v.lstrip()
    return out


def launch_run(client: httpx.Client, cfg: dict[str, Any]) -> str:
    """POST a full config; the new run's id (fails loudly on anything but 201 Created)."""
    r = client.post("/api/runs", json={"config": cfg})
    if r.status_code != 201:
        raise AssertionError(f"launch refused: {r.status_code} {r.text}")
    return r.json()["id"]
