"""`rekd sweep`: submit a sweep to a running service (or to one started here) and follow it.

If an API answers at --api (default: REKD_API_URL or http://127.0.0.1:8000), the sweep goes
there; if none does, an embedded service is started for the sweep's duration (redis-server,
N workers consuming the sweep's queues, the API on a free loopback port, runs under
--runs-dir) and stopped at the end. Progress goes to stderr, the table to stdout or --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from rekd_core.config import ConfigError, load_config_file
from rekd_core.sweeps import SWEEPS, SweepSpec, get_sweep, parse_spec, plan

from . import services

DEFAULT_API = "http://127.0.0.1:8000"


def add_parser(sub: Any) -> None:
    s = sub.add_parser("sweep", help="run a sweep (seeds x modes x ablations) and print its aggregated table",
                       description="Sweep presets: " + ", ".join(SWEEPS))
    s.add_argument("spec", nargs="?", help="a sweep spec file (YAML or JSON: name, base, axes, teacher, ...)")
    s.add_argument("--preset", help=f"a sweep preset: {', '.join(SWEEPS)}")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every run (teachers too), e.g. --set train.max_steps=50")
    s.add_argument("--api", help=f"the service to submit to (default: REKD_API_URL or {DEFAULT_API}); if none "
                                 "answers, one is started here")
    s.add_argument("--workers", type=int, default=2, help="workers of the embedded service (default 2)")
    s.add_argument("--runs-dir", help="runs directory of the embedded service (default: REKD_RUNS_DIR or ./runs)")
    s.add_argument("--format", choices=["md", "csv", "tex"], default="md", help="the table's format (default md)")
    s.add_argument("--out", help="write the table here instead of stdout")
    s.add_argument("--poll", type=float, default=3.0, help="seconds between progress checks")
    s.set_defaults(func=cmd_sweep)


def _request(args: argparse.Namespace) -> tuple[dict[str, Any], SweepSpec]:
    if (args.spec is None) == (args.preset is None):
        raise ConfigError("give a sweep SPEC file or --preset NAME, not both or neither")
    if args.preset:
        spec = get_sweep(args.preset)
        body: dict[str, Any] = {"preset": args.preset, "overrides": args.set}
    else:
        data = load_config_file(args.spec)
        spec = parse_spec(data)
        body = {"spec": data, "overrides": args.set}
    plan(spec, args.set)  # refuse a bad sweep here, before anything is started
    return body, spec


def _headers() -> dict[str, str]:
    token = os.environ.get("REKD_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def follow(url: str, sweep_id: str, poll: float = 3.0) -> dict[str, Any]:
    """Poll the sweep until it ends, printing a line whenever its counts change; the final view."""
    t0 = time.monotonic()
    last = None
    with httpx.Client(base_url=url, timeout=30, headers=_headers()) as c:
        while True:
            v = c.get(f"/api/sweeps/{sweep_id}").raise_for_status().json()
            every = v["teachers"] + v["runs"]
            running = sum(x["state"] == "running" for x in every)
            line = (f"{v['done']}/{v['n_runs']} runs completed, {v['failed']} failed, {running} running, "
                    f"progress {100 * v['progress']:.0f} %")
            partial = [f"{r['label']}: {100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} "
                       f"({r['n']}/{r['n_total']})" for r in v["table"] if r["n"]]
            if partial:  # the table so far: test accuracy per cell over the finished runs
                line += " | " + "; ".join(partial)
            if line != last:
                print(f"[{time.monotonic() - t0:6.0f} s] {line}", file=sys.stderr, flush=True)
                last = line
            if v["state"] != "running":
                return v
            time.sleep(poll)


def cmd_sweep(args: argparse.Namespace) -> int:
    from service.settings import Settings

    body, spec = _request(args)
    url = (args.api or os.environ.get("REKD_API_URL") or DEFAULT_API).rstrip("/")
    def run(url: str) -> int:
        t0 = time.monotonic()
        r = httpx.post(f"{url}/api/sweeps", json=body, headers=_headers(), timeout=120)
        if r.status_code != 201:
            print(f"rekd: the sweep was refused ({r.status_code}): {r.text}", file=sys.stderr)
            return 2
        sweep_id = r.json()["id"]
        print(f"rekd: sweep {sweep_id}: {r.json()['runs']} runs queued at {url}", file=sys.stderr, flush=True)
        try:
            v = follow(url, sweep_id, args.poll)
        except KeyboardInterrupt:
            print(f"\nrekd: stopped following sweep {sweep_id}; its runs stay queued (a service started here "
                  "is stopped: `rekd up` on the same runs directory resumes them), or cancel it with "
                  f"POST /api/sweeps/{sweep_id}/cancel", file=sys.stderr)
            return 130
        table = httpx.get(f"{url}/api/sweeps/{sweep_id}/table", params={"format": args.format},
                          headers=_headers(), timeout=30).text
        print(f"rekd: sweep {sweep_id} {v['state']} after {time.monotonic() - t0:.0f} s", file=sys.stderr)
        if args.out:
            Path(args.out).write_text(table)
            print(f"rekd: table written to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(table)
        return 0 if v["state"] == "completed" else 1

    if _answers(url):
        return run(url)
    settings = Settings()
    runs_dir = Path(args.runs_dir or settings.runs_dir).resolve()
    queues = list(dict.fromkeys(q for q in (settings.queue, spec.queue, spec.teacher_queue) if q))
    print(f"rekd: no API at {url}; starting one here", file=sys.stderr)
    # redis-server (unless REKD_REDIS_URL names one), the workers on the sweep's queues, the API on a free
    # loopback port; stopped when the sweep ends or is interrupted
    svc = services.Service(runs_dir, ui=False, queues=",".join(queues), redis_url=settings.redis_url,
                           log_dir=runs_dir / ".logs", log_prefix="sweep-", worker_name="rekd-sweep")
    with services.running(svc, args.workers):
        svc.wait_workers(args.workers, timeout=120)
        print(f"rekd: started a service here: {args.workers} workers on {svc.queues}, runs in {runs_dir} "
              f"(logs in {svc.log_dir})", file=sys.stderr)
        return run(svc.base)
