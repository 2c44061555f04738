"""`rekd`, the command line: one parser with the engine's commands (train, validate, explain, evaluate,
data, presets: rekd_core/cli.py) and the service's (up, worker, serve, sweep)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import time
from pathlib import Path

from rekd_core import cli as core_cli

from . import sweep_cli


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_up(args: argparse.Namespace) -> int:
    from service.settings import Settings

    from . import services

    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    if not _is_loopback(host) and not settings.api_token and not args.insecure:
        print(f"rekd: refusing to serve on {host} without REKD_API_TOKEN (anyone on the network could launch "
              "jobs); set a token, bind 127.0.0.1, or pass --insecure", file=sys.stderr)
        return 2
    runs_dir = Path(args.runs_dir or settings.runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    # Python leaves SIGINT ignored when it started ignored (a background job of a script, or
    # some supervisors): then Ctrl-C or `kill -INT` would not stop us, and we must stop everything
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = []
    redis_url = settings.redis_url
    if not redis_url:
        rproc, redis_url = services.start_redis(runs_dir / ".redis")
        procs.append(rproc)
        print(f"rekd: embedded Redis at {redis_url} (data in {runs_dir / '.redis'})", file=sys.stderr)
    env = {**os.environ, "REKD_REDIS_URL": redis_url, "REKD_RUNS_DIR": str(runs_dir), "PYTHONUNBUFFERED": "1",
           **services.ui_env(host, port)}
    if args.data:  # folders the API may read user data from, on top of REKD_DATA_ROOTS and the defaults
        roots = [str(Path(d).resolve()) for d in args.data]
        env["REKD_DATA_ROOTS"] = os.pathsep.join(filter(None, [os.environ.get("REKD_DATA_ROOTS"), *roots]))
    try:
        for i in range(args.workers):
            procs.append(services.spawn(services.worker_cmd(settings.queue, f"rekd-worker{i}"), env, f"[worker{i}]"))
        api = services.spawn(services.api_cmd(host, port), env, "[api]")
        procs.append(api)
        services.wait_for_port(host if host != "0.0.0.0" else "127.0.0.1", port, timeout=60, proc=api)
        print(f"\nrekd is up: open http://{host}:{port} in a browser  (API docs at /docs; runs in {runs_dir}; "
              "Ctrl-C stops)\n",
              file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p.args[2] if len(p.args) > 2 else p.args[0] for p in procs if p.poll() is not None]
        print(f"rekd: a process exited ({', '.join(map(str, dead))}); stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nrekd: stopping", file=sys.stderr)
        return 0
    finally:
        # a second Ctrl-C (or a signal relayed by a wrapper) must not abort the cleanup half-way:
        # that would orphan the worker and the server, still holding the port
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.stop_all(list(reversed(procs)))


def cmd_worker(args: argparse.Namespace) -> int:
    from service.settings import Settings

    from . import services

    settings = Settings()
    if not settings.redis_url:
        print("rekd: set REKD_REDIS_URL to the broker the API uses", file=sys.stderr)
        return 2
    os.execv(sys.executable, services.worker_cmd(args.queues or settings.queue))
    return 0  # not reached


def cmd_serve(args: argparse.Namespace) -> int:
    from service.settings import Settings

    from . import services

    settings = Settings()
    host, port = args.host or settings.host, args.port or settings.port
    if not _is_loopback(host) and not settings.api_token and not args.insecure:
        print(f"rekd: refusing to serve on {host} without REKD_API_TOKEN; pass --insecure to override",
              file=sys.stderr)
        return 2
    os.environ.update(services.ui_env(host, port))
    os.execv(sys.executable, services.api_cmd(host, port, ui=not args.no_ui))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rekd", description="Rationale extraction and REKD: train, evaluate and "
                                 "explain models here, or run the service (API, workers, web UI) and sweeps.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = ap.add_subparsers(dest="command", required=True)
    core_cli.add_commands(sub)
    up = sub.add_parser("up", help="start everything here: Redis (embedded), a worker, the API and the web UI")
    up.add_argument("--host", help="bind address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="port (default 8000)")
    up.add_argument("--workers", type=int, default=1, help="worker processes (one run each at a time)")
    up.add_argument("--runs-dir", help="runs directory (default: REKD_RUNS_DIR or ./runs)")
    up.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without an API token")
    up.add_argument("--data", action="append", metavar="FOLDER", help="a folder the API may read your datasets "
                    "from (repeatable; added to REKD_DATA_ROOTS; the runs directory's data/ and the built-in "
                    "datasets are always readable)")
    up.set_defaults(func=cmd_up)
    w = sub.add_parser("worker", help="start one worker (for a deployment: REKD_REDIS_URL, REKD_RUNS_DIR)")
    w.add_argument("--queues", help="comma-separated queues to consume (default: REKD_QUEUE or 'rekd')")
    w.set_defaults(func=cmd_worker)
    s = sub.add_parser("serve", help="start the API server (with the web UI at /) without Redis or workers")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--insecure", action="store_true")
    s.add_argument("--no-ui", action="store_true", help="the API alone, without the web UI at /")
    s.set_defaults(func=cmd_serve)
    sweep_cli.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    core_cli.setup_logging(args.verbose)
    return core_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
