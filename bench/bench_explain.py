"""Latency of an explanation, in process and through POST /api/explain, for the offline models.

Trains (briefly: latency does not depend on accuracy) an RE teacher and a REKD student of the
offline presets' sizes for images (Fashion-MNIST ViTs) and for text (Rotten Tomatoes BERTs),
then explains real test inputs with each: `explain()` in this process, and the same over HTTP
against a real uvicorn server (multipart upload, JSON back). A REKD explanation includes the
teacher's, so it runs two models.

    python bench/bench_explain.py [--n 100] [--presets fmnist|demo]

Prints a table and writes bench/results/bench_explain.json (median, p95, peak RSS).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rekd_core.analysis.explain import explain, load_run  # noqa: E402
from rekd_core.data.load import load_dataset  # noqa: E402
from rekd_core.presets import get_preset  # noqa: E402
from rekd_core.train.trainer import train  # noqa: E402
from tests.support.service import start_service  # noqa: E402

SHORT = ["train.max_steps=20", "train.eval_every=20", "train.checkpoint_every=20", "train.log_every=10",
         "data.max_train=2000", "data.max_eval=200"]
SIZES = {"full": ("fmnist-teacher", "fmnist-student", "rt-teacher-scratch", "rt-student"),
         "demo": ("demo-fmnist-teacher", "demo-fmnist-student", "demo-rt-teacher", "demo-rt-student")}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _train(root: Path, preset: str, name: str, extra: list[str]) -> Path:
    run = root / name
    train(get_preset(preset).build([*SHORT, f"name={name}", *extra]), run)
    return run


def _inputs(n: int) -> tuple[list[bytes], list[str]]:
    raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
    imgs = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    pngs = []
    for im in imgs:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    texts = [str(t) for t in list(load_dataset("rotten_tomatoes").test.x)[:n]]
    return pngs, texts


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median_ms": round(1000 * statistics.median(xs), 2), "p95_ms": round(1000 * pct(xs, 0.95), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="explanations per model and path")
    ap.add_argument("--presets", choices=list(SIZES), default="full",
                    help="model sizes: the offline presets' or the demos'")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_explain.json"))
    args = ap.parse_args()
    vt, vs, tt, ts = SIZES[args.presets]
    pngs, texts = _inputs(args.n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        svc = start_service(Path(tmp), workers=0)
        try:
            runs = svc.runs_dir
            t0 = time.time()
            v_teacher = _train(runs, vt, "vision-teacher", [])
            v_student = _train(runs, vs, "vision-rekd", ["mode=rekd", f"model.teacher_run={v_teacher}"])
            t_teacher = _train(runs, tt, "text-teacher", [])
            t_student = _train(runs, ts, "text-rekd", ["mode=rekd", f"model.teacher_run={t_teacher}"])
            print(f"trained 4 short runs in {time.time() - t0:.0f} s", file=sys.stderr)
            cases = [("vision", "RE teacher", v_teacher, vt), ("vision", "REKD student (+ teacher)", v_student, vs),
                     ("text", "RE teacher", t_teacher, tt), ("text", "REKD student (+ teacher)", t_student, ts)]
            with svc.client() as c:
                for modality, what, run, preset in cases:
                    items: list = ([Image.open(io.BytesIO(p)) for p in pngs] if modality == "vision" else texts)
                    loaded = load_run(run)
                    explain(loaded, items[0])  # warm-up: first call pays for lazy init
                    local = []
                    for it in items:
                        t = time.perf_counter()
                        explain(loaded, it)
                        local.append(time.perf_counter() - t)
                    http = []
                    for i in range(len(items) + 1):  # the first request loads the model: not counted
                        t = time.perf_counter()
                        if modality == "vision":
                            r = c.post("/api/explain", data={"run_id": run.name},
                                       files={"file": ("x.png", pngs[i % len(pngs)], "image/png")})
                        else:
                            r = c.post("/api/explain", data={"run_id": run.name, "text": texts[i % len(texts)]})
                        dt = time.perf_counter() - t
                        assert r.status_code == 200, r.text
                        if i:
                            http.append(dt)
                    rows.append({"modality": modality, "model": what, "preset": preset,
                                 "in_process": _stats(local), "http": _stats(http), "n": len(items)})
            api_pid = svc.procs["api"].pid
            hwm = next((int(line.split()[1]) for line in Path(f"/proc/{api_pid}/status").read_text().splitlines()
                        if line.startswith("VmHWM")), 0)
        finally:
            svc.stop()
    res = {"rows": rows, "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "api_peak_rss_mb": round(hwm / 1024), "machine": platform.processor() or platform.machine(),
           "command": "python bench/bench_explain.py " + " ".join(sys.argv[1:])}
    print("| input | model | preset | in process median / p95 | POST /api/explain median / p95 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['modality']} | {r['model']} | `{r['preset']}` | {r['in_process']['median_ms']} / "
              f"{r['in_process']['p95_ms']} ms | {r['http']['median_ms']} / {r['http']['p95_ms']} ms |")
    print(f"peak RSS: this process {res['bench_peak_rss_mb']} MB, API server {res['api_peak_rss_mb']} MB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
