"""A real rekd service on loopback (redis-server, Celery worker processes, uvicorn), for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .services import api_cmd, free_port, start_redis, ui_env, wait_for_port, worker_cmd

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Service:
    base: str
    runs_dir: Path
    redis_url: str
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    n_workers: int = 0
    redis_dir: Path | None = None

    def start_worker(self) -> subprocess.Popen:
        name = f"worker{self.n_workers}"
        self.n_workers += 1
        log = open(self.log_dir / f"{name}.log", "wb")
        proc = subprocess.Popen(worker_cmd(self.env["REKD_QUEUE"], f"test-{name}"), env=self.env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def kill_redis(self) -> None:
        """SIGKILL redis-server: no shutdown save, as in a crash or an OOM kill."""
        self.kill("redis")

    def restart_redis(self, keep_data: bool = True) -> None:
        """Start redis-server again on the same port: from its append-only file, or empty
        (`keep_data=False`: what a Redis without persistence, or a replaced one, comes back as)."""
        assert self.redis_dir is not None
        port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])
        data = self.redis_dir
        if not keep_data:
            data = self.redis_dir.with_name(f"{self.redis_dir.name}-{time.monotonic_ns()}")
        self.procs["redis"], _ = start_redis(data, port=port)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30)

    def wait_workers(self, n: int = 1, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                h = c.get("/api/health").json()
                if len(h["workers"]) >= n:
                    return
                time.sleep(0.5)
        raise TimeoutError(f"fewer than {n} workers alive; logs in {self.log_dir}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def start_service(tmp: Path, workers: int = 1, ui: bool = False, runs_dir: Path | None = None,
                  **env_extra: str) -> Service:
    """Every process of the service, fresh, on `runs_dir` (default: a new folder in `tmp`)."""
    runs = runs_dir or tmp / "runs"
    runs.mkdir(exist_ok=True)
    logs = tmp / "logs"
    logs.mkdir()
    redis_proc, url = start_redis(tmp / "redis")
    port = free_port()
    env = {**os.environ, "REKD_REDIS_URL": url, "REKD_RUNS_DIR": str(runs), "REKD_QUEUE": "rekd-test",
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           **ui_env("127.0.0.1", port), **env_extra}
    svc = Service(base=f"http://127.0.0.1:{port}", runs_dir=runs, redis_url=url, env=env, log_dir=logs,
                  redis_dir=tmp / "redis")
    svc.procs["redis"] = redis_proc
    api_log = open(logs / "api.log", "wb")
    svc.procs["api"] = subprocess.Popen(api_cmd("127.0.0.1", port, ui=ui), env=env, cwd=ROOT, stdout=api_log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(workers):
        svc.start_worker()
    wait_for_port("127.0.0.1", port, timeout=90, proc=svc.procs["api"])
    svc.wait_workers(workers)
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
