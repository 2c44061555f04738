"""Liveness of the web UI: a training event's creation in the worker -> the point on the chart in the browser.

Against a real service (redis-server, a Celery worker, uvicorn with the UI) and Debian's headless
Chromium. A run is launched over the API; the Monitor tab picks it up by itself; the page's
Plotly loss chart is read every 50 ms, and each log event's latency is the moment its point
appears minus the worker's timestamp on the event (same machine, same clock).

    python bench/bench_ui.py [--steps 600] [--log-every 10]

Prints a table and writes bench/results/bench_ui.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import tiny_vision  # noqa: E402
from tests.support.service import start_service  # noqa: E402

POINTS_JS = """() => { const el = document.querySelector('#plot-losses .js-plotly-plot');
    return el && el.data && el.data.length ? el.data[0].x.length : 0; }"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_ui.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        svc = start_service(Path(tmp), workers=1, ui=True)
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(svc.base + "/")
            page.get_by_role("tab", name="Monitor").click()
            cfg = tiny_vision("re", max_steps=args.steps, log_every=args.log_every, eval_every=10**6,
                              checkpoint_every=10**6)
            with svc.client() as c:
                run_id = c.post("/api/runs", json={"config": cfg}).json()["id"]
                seen_at: dict[int, float] = {}
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    n = page.evaluate(POINTS_JS)
                    now = time.time()
                    for k in range(1, n + 1):
                        seen_at.setdefault(k, now)
                    state = c.get(f"/api/runs/{run_id}").json()["state"]
                    if state not in ("queued", "running") and n >= args.steps // args.log_every:
                        break
                    time.sleep(0.05)
                events = [json.loads(x) for x in (svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()]
        finally:
            browser.close()
            svc.stop()
    logs = [e for e in events if e["type"] == "log"]
    lat = [seen_at[k + 1] - ev["time"] for k, ev in enumerate(logs) if k + 1 in seen_at]
    span = logs[-1]["time"] - logs[0]["time"] if len(logs) > 1 else 0.0
    res = {"what": "worker log event -> its point on the Monitor's loss chart in headless Chromium",
           "events": len(lat), "events_per_s": round(len(logs) / span, 2) if span else None,
           "median_s": round(statistics.median(lat), 3), "p95_s": round(pct(lat, 0.95), 3),
           "max_s": round(max(lat), 3), "ui_timer_s": 1.0, "machine": platform.processor() or platform.machine(),
           "command": "python bench/bench_ui.py " + " ".join(sys.argv[1:])}
    print(f"| path | median | p95 | max | n |\n|---|---|---|---|---|\n| {res['what']} | {res['median_s']} s | "
          f"{res['p95_s']} s | {res['max_s']} s | {res['events']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
