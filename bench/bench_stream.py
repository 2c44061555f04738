"""Latency of the live path, against a real service (redis-server, a Celery worker, uvicorn):

- launch: POST /api/runs -> the run's first event (`start`) at an SSE client
- stream: an event's creation in the worker -> its arrival at the SSE client

    python bench/bench_stream.py [--launches 5] [--events 200]

Prints a table and writes bench/results/bench_stream.json. Same-machine clocks: the worker
stamps each event with time.time(); the client stamps its arrival.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import tiny_vision  # noqa: E402
from rekd.testing import sse_events, start_service  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launches", type=int, default=5)
    ap.add_argument("--events", type=int, default=200, help="log events in the streaming run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_stream.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        svc = start_service(Path(tmp), workers=1)
        try:
            with svc.client() as c:
                launch = []
                for _ in range(args.launches):
                    cfg = tiny_vision("cls", max_steps=2, eval_every=2, checkpoint_every=2)
                    t0 = time.time()
                    run_id = c.post("/api/runs", json={"config": cfg}).json()["id"]
                    first = sse_events(c, run_id, limit=1, stamp=True)[0]
                    launch.append(first["_received"] - t0)
                    sse_events(c, run_id)  # let it finish before the next launch
                cfg = tiny_vision("cls", max_steps=args.events, log_every=1, eval_every=10**6,
                                  checkpoint_every=10**6)
                run_id = c.post("/api/runs", json={"config": cfg}).json()["id"]
                got: list[dict] = []
                reader = threading.Thread(target=lambda: got.extend(sse_events(c, run_id, stamp=True, timeout=600)))
                reader.start()
                reader.join()
        finally:
            svc.stop()
    lat = [(e["_received"] - e["time"]) * 1000 for e in got if e["type"] == "log"]
    res = {
        "launch_to_first_event_s": {"median": statistics.median(launch), "p95": pct(launch, 0.95), "n": len(launch)},
        "event_to_sse_ms": {"median": statistics.median(lat), "p95": pct(lat, 0.95), "max": max(lat), "n": len(lat)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("| path | median | p95 | n |\n|---|---|---|---|")
    lf, ev = res["launch_to_first_event_s"], res["event_to_sse_ms"]
    print(f"| POST /api/runs -> first event at the SSE client | {lf['median']:.2f} s | {lf['p95']:.2f} s | {lf['n']} |")
    print(f"| worker event -> SSE client | {ev['median']:.1f} ms | {ev['p95']:.1f} ms | {ev['n']} |")


if __name__ == "__main__":
    main()
