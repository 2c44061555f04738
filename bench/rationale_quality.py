"""Is the rationale real? The demo pipelines scored against ground truth, input dependence and
the mask-only probe, on their test splits (the figures docs/quality.md's "Is the rationale real?" quotes).

    python bench/rationale_quality.py                 # every demo below, seed 0 (~10 min on a 2-core CPU)
    python bench/rationale_quality.py --tables-only   # rebuild the table from the run directories

Each demo is a teacher, then the small student as CLS, RE and REKD (distilled from that teacher),
exactly as the UI's demo buttons run it; `rt-needle` is the Rotten Tomatoes demo on the
review-among-synopses benchmark (data.dataset and max_len overridden). Every run is scored with
`rekd_core.train.evaluate.evaluate_run` (what `rekd evaluate RUN --json` prints). Results:
bench/results/rationale_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# demo -> (pipeline whose presets it runs, overrides for every stage, what it is)
DEMOS: dict[str, tuple[str, list[str], str]] = {
    "fmnist": ("demo-fmnist", [], "Fashion-MNIST, centred items (no ground truth)"),
    "fmnist-clutter": ("demo-fmnist-clutter", [], "cluttered Fashion-MNIST (ground truth: the item)"),
    "rt": ("demo-rt", [], "Rotten Tomatoes (no ground truth)"),
    "rt-needle": ("demo-rt", ["data.dataset=rotten_tomatoes_needle", "data.max_len=128"],
                  "a review among synopsis sentences (ground truth: the review)"),
}


def train_demo(name: str, runs: Path) -> dict[str, str]:
    """Train the demo's pipeline (a finished run is kept, not retrained); role -> run dir."""
    from rekd_core.presets import get_pipeline
    from rekd_core.store.runstore import RunStore
    from rekd_core.train.trainer import train

    pipeline, overrides, _ = DEMOS[name]
    dirs: dict[str, str] = {}
    for stage in get_pipeline(pipeline).stages:
        run_dir = runs / name / stage.role
        dirs[stage.role] = str(run_dir)
        done = RunStore(run_dir).results()
        if done and done.get("state") == "completed":
            continue
        cfg = stage.build(overrides, teacher_run=dirs["teacher"] if stage.needs_teacher else None)
        t0 = time.time()
        train(cfg, run_dir)
        print(f"{name}/{stage.role}: trained in {time.time() - t0:.0f} s", file=sys.stderr)
    return dirs


def score(dirs: dict[str, str]) -> dict[str, Any]:
    from rekd_core.train.evaluate import evaluate_run

    return {role: evaluate_run(d, split="test") for role, d in dirs.items()}


def _f(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}" if pct else f"{v:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ("| demo | run | test acc. % | selected % | precision on evidence (random) | recall | F1 (random) "
            "| distinct masks % | fixed-mask acc. % | probe acc. % (chance; on ground truth) | warnings |")
    lines = [head, "|" + "---|" * 11]
    for demo, runs in results.items():
        for role, r in runs.items():
            pl, dep, pr = r.get("plausibility"), r.get("input_dependence"), r.get("probe")
            sel = r.get("selected", {}).get("mean")
            prec = f"{_f(pl['precision'], False)} ({_f(pl['random']['precision'], False)})" if pl else "–"
            f1 = f"{_f(pl['f1'], False)} ({_f(pl['random']['f1'], False)})" if pl else "–"
            probe = "–"
            if pr:
                gt = "" if pr.get("gt_accuracy") is None else f"; {_f(pr['gt_accuracy'])}"
                probe = f"{_f(pr['accuracy'])} ({_f(pr['chance'])}{gt})"
            warn = ", ".join(w["code"] for w in r.get("warnings", [])) or "–"
            lines.append(f"| {demo} | {role} | {_f(r['accuracy'])} | {_f(sel)} | {prec} | "
                         f"{_f(pl['recall'], False) if pl else '–'} | {f1} | "
                         f"{_f(dep['distinct_share']) if dep else '–'} | {_f(dep['fixed_accuracy']) if dep else '–'} | "
                         f"{probe} | {warn} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demos", nargs="+", default=list(DEMOS), choices=list(DEMOS))
    ap.add_argument("--runs-dir", default=str(ROOT / "bench" / "runs" / "quality"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--tables-only", action="store_true", help="score the existing run directories only")
    args = ap.parse_args()
    runs, out = Path(args.runs_dir), Path(args.out)
    results: dict[str, Any] = {}
    for demo in args.demos:
        if args.tables_only:
            dirs = {p.name: str(p) for p in sorted((runs / demo).iterdir())}
        else:
            dirs = train_demo(demo, runs)
        results[demo] = score(dirs)
    out.mkdir(parents=True, exist_ok=True)
    slim = {d: {role: {k: v for k, v in r.items() if k != "run_dir"} for role, r in rs.items()}
            for d, rs in results.items()}
    for rs in slim.values():
        for r in rs.values():
            if "input_dependence" in r:
                r["input_dependence"].pop("fixed_mask", None)
    (out / "rationale_quality.json").write_text(json.dumps(slim, indent=1))
    md = table(results)
    (out / "rationale_quality.md").write_text(
        "Demo pipelines scored on their test splits (`python bench/rationale_quality.py`; seed 0, best-dev "
        "checkpoints).\n\n" + md + "\n")
    print(md)


if __name__ == "__main__":
    main()
