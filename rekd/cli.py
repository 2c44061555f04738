"""`rekd`, the command line: one parser with the engine's commands (train, validate, explain, evaluate,
data, presets: rekd_core/cli.py) and the service's (up, worker, serve, sweep)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from rekd_core import cli as core_cli

from . import runs_cli, sweep_cli


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
    env = {}
    if args.data:  # folders the API may read user data from, on top of REKD_DATA_ROOTS and the defaults
        roots = [str(Path(d).resolve()) for d in args.data]
        env["REKD_DATA_ROOTS"] = os.pathsep.join(filter(None, [os.environ.get("REKD_DATA_ROOTS"), *roots]))
    svc = services.Service(runs_dir, host=host, port=port, queues=settings.queue, redis_url=settings.redis_url,
                           env=env)
    try:
        with services.running(svc, workers=args.workers):
            if "redis" in svc.procs:
                print(f"rekd: embedded Redis at {svc.redis_url} (data in {svc.redis_dir})", file=sys.stderr)
            print(f"\nrekd is up: open http://{host}:{port} in a browser  (API docs at /docs; runs in {runs_dir}; "
                  "Ctrl-C stops)\n", file=sys.stderr, flush=True)
            dead = svc.wait_any()
            print(f"rekd: {dead} exited (status {svc.procs[dead].returncode}); stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: everything is stopped by now
        return 0


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
    runs_cli.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    core_cli.setup_logging(args.verbose)
    return core_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
