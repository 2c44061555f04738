"""Latency of the live path, against a real service (redis-server, a Celery worker, uvicorn):

- launch: POST /api/runs -> the run's first event (`start`) at an SSE client
- stream: an event's creation in the worker -> its arrival at the SSE client
- fan-out: the same with N concurrent subscribers on one run (default 200): latency over all of
  them, whether each saw every event once, the API server's memory, and /api/health meanwhile

    python bench/bench_stream.py [--launches 5] [--events 200] [--subscribers 200]

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
from tests.support.service import sse_events, start_service  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def fan_out(svc, n_subscribers: int, events: int) -> dict:
    """N SSE subscribers on one live run; the API's RSS sampled throughout; health probed meanwhile."""
    api_pid = svc.procs["api"].pid
    with svc.client() as c:
        idle = _rss_mb(api_pid)
        # a run ahead of it in the queue keeps the measured one waiting until every subscriber is
        # connected, so each event is delivered live, not replayed from the file to a late client
        blocker = tiny_vision("cls", max_steps=1500, eval_every=10**6, checkpoint_every=10**6)
        c.post("/api/runs", json={"config": blocker})
        cfg = tiny_vision("cls", max_steps=events * 5, log_every=5, eval_every=10**6, checkpoint_every=10**6)
        run_id = c.post("/api/runs", json={"config": cfg}).json()["id"]
    got: list[list[dict]] = [[] for _ in range(n_subscribers)]

    def subscribe(i: int) -> None:
        with svc.client() as cc:
            got[i] = sse_events(cc, run_id, stamp=True, timeout=600)

    threads = [threading.Thread(target=subscribe, args=(i,), daemon=True) for i in range(n_subscribers)]
    for t in threads:
        t.start()
    with svc.client() as c:
        if c.get(f"/api/runs/{run_id}").json()["state"] != "queued":
            print("warning: the measured run started before every subscriber connected", file=sys.stderr)
    peak, health = idle, []
    with svc.client() as c:
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss_mb(api_pid))
            t0 = time.perf_counter()
            ok = c.get("/api/health").status_code == 200
            health.append((time.perf_counter() - t0, ok))
            time.sleep(0.2)
    lat = [(e["_received"] - e["time"]) * 1000 for evs in got for e in evs if e["type"] == "log"]
    counts = {len(evs) for evs in got}
    ids_ok = all([e["id"] for e in evs] == list(range(1, len(evs) + 1)) for evs in got)
    h = [d for d, _ in health]
    return {"subscribers": n_subscribers, "events_each": sorted(counts), "every_event_once_in_order": ids_ok,
            "event_to_sse_ms": {"median": statistics.median(lat), "p95": pct(lat, 0.95), "max": max(lat),
                                "n": len(lat)},
            "api_rss_mb": {"idle": round(idle), "peak": round(peak)},
            "health_during_load": {"answered": sum(ok for _, ok in health), "asked": len(health),
                                   "median_ms": round(1000 * statistics.median(h), 1),
                                   "max_ms": round(1000 * max(h), 1)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launches", type=int, default=5)
    ap.add_argument("--events", type=int, default=200, help="log events in the streaming run")
    ap.add_argument("--subscribers", type=int, default=200, help="concurrent SSE clients in the fan-out run")
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
            fan = fan_out(svc, args.subscribers, args.events)
        finally:
            svc.stop()
    lat = [(e["_received"] - e["time"]) * 1000 for e in got if e["type"] == "log"]
    res = {
        "launch_to_first_event_s": {"median": statistics.median(launch), "p95": pct(launch, 0.95), "n": len(launch)},
        "event_to_sse_ms": {"median": statistics.median(lat), "p95": pct(lat, 0.95), "max": max(lat), "n": len(lat)},
        "fan_out": fan,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("| path | median | p95 | n |\n|---|---|---|---|")
    lf, ev = res["launch_to_first_event_s"], res["event_to_sse_ms"]
    print(f"| POST /api/runs -> first event at the SSE client | {lf['median']:.2f} s | {lf['p95']:.2f} s | {lf['n']} |")
    print(f"| worker event -> SSE client | {ev['median']:.1f} ms | {ev['p95']:.1f} ms | {ev['n']} |")
    fl = fan["event_to_sse_ms"]
    print(f"| worker event -> each of {fan['subscribers']} SSE clients | {fl['median']:.1f} ms | {fl['p95']:.1f} ms | "
          f"{fl['n']} |")
    print(f"API server RSS {fan['api_rss_mb']['idle']} MB idle -> {fan['api_rss_mb']['peak']} MB peak with "
          f"{fan['subscribers']} subscribers; each got {fan['events_each']} events, in order and once: "
          f"{fan['every_event_once_in_order']}; /api/health answered {fan['health_during_load']['answered']}/"
          f"{fan['health_during_load']['asked']} (median {fan['health_during_load']['median_ms']} ms)")


if __name__ == "__main__":
    main()
