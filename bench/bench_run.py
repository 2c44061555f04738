"""Whole-run wall time: a teacher -> students pipeline, split by what the time went to.

    python bench/bench_run.py [--pipeline demo-fmnist-clutter] [--stages teacher,re,rekd]
                              [--set KEY=VALUE ...] [--student-set KEY=VALUE ...] [--teacher-run DIR]
                              [--runs DIR] [--no-final-eval] [--out bench/results/bench_run_cpu.json]

Each stage is the engine's own `train()` on the pipeline's preset (rekd_core.presets), in this
process, one after the other (the REKD student distils from the teacher stage, or from
--teacher-run), then `evaluate_run` on its test split (accuracy, faithfulness, plausibility: what
`rekd evaluate` prints), unless --no-final-eval. Nothing in the engine is changed: a light hook
wraps the engine's functions as the trainer module imported them and charges each call's wall
time, *exclusive* of the hooked calls inside it, to one bucket:

- data: loading the dataset, featurising the splits onto the device, cutting each batch
- step: `train_step` (forward, backward, optimizer step)
- teacher: loading the teacher run and filling its output cache (the first REKD student fills it)
- eval: the dev evaluations (with faithfulness and plausibility), rationale snapshots for the UI,
  the test evaluation at the end of training and the final `evaluate_run`
- checkpoint: saving (last and best) and reloading the best checkpoint
- setup: building the model and optimizer, writing the run's example inputs
- events: appending events and writing the status file
- other: the rest of the stage's wall time (the loop itself, the τ schedule, log windows, ...)

The naive path of a REKD stage is `--student-set model.teacher_outputs=live`: the frozen teacher
runs on every batch (the reference code's way) instead of being read from its cache, its time then
counted in the step. The fraction outside the step is 1 - step / wall. Module imports happen before the
clock starts and are not counted. `--device cuda` passes train.device=cuda and
train.precision=bf16 to every stage (for bench/gpu_check.sh; not run on a GPU yet).

`--paper STEPS`: instead of a preset pipeline, the paper's vision pipeline at its sizes —
a ViT-Base/16 RE teacher (cifar10-teacher), then ViT-Tiny/16 RE and REKD students
(cifar10-vit-tiny), 224 px, batch 32, random init (no pretrained weights are fetched) — for STEPS
steps each, on synthetic data of CIFAR-10's shapes (uint8 3 x 32 x 32 images, upscaled by the
featurizer as CIFAR-10 would be; 10 random labels; --paper-train / --paper-eval examples; no
ground truth, so no plausibility). Meant for the GPU; only smoke-tested on the CPU with a few steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rekd_core.train.evaluate as evaluate_mod  # noqa: E402
import rekd_core.train.trainer as trainer_mod  # noqa: E402
from rekd_core.data.raw import DatasetBundle, Split  # noqa: E402
from rekd_core.presets import Stage, get_pipeline  # noqa: E402
from rekd_core.store.runstore import RunStore  # noqa: E402
from rekd_core.train.evaluate import evaluate_run  # noqa: E402

BUCKETS = ("data", "step", "teacher", "eval", "checkpoint", "setup", "events")


class Clock:
    """Exclusive wall time per bucket: a hooked call inside another is charged to its own bucket only."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(BUCKETS, 0.0)
        self.calls = dict.fromkeys(BUCKETS, 0)
        self._stack: list[float] = []  # time spent in hooked children of each open call

    def wrap(self, bucket: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                children = self._stack.pop()
                self.totals[bucket] += dt - children
                self.calls[bucket] += 1
                if self._stack:
                    self._stack[-1] += dt
        return timed

    def reset(self) -> None:
        self.totals = dict.fromkeys(BUCKETS, 0.0)
        self.calls = dict.fromkeys(BUCKETS, 0)


def install(clock: Clock) -> None:
    """Hook the functions rekd_core.train.trainer calls (as its module imported them) and the run store."""
    t = trainer_mod
    for name, bucket in (("load_for_config", "data"), ("train_step", "step"), ("load_teacher", "teacher"),
                         ("teacher_outputs", "teacher"), ("evaluate", "eval"), ("write_snapshot", "eval"),
                         ("save_state", "checkpoint"), ("load_checkpoint", "checkpoint"), ("build_model", "setup"),
                         ("build_optimizer", "setup"), ("write_inputs", "setup")):
        setattr(t, name, clock.wrap(bucket, getattr(t, name)))
    build_featurizer = t.build_featurizer

    def featurizer(cfg: Any) -> Any:
        feat = build_featurizer(cfg)
        feat.prepare = clock.wrap("data", feat.prepare)  # type: ignore[method-assign]
        feat.batch = clock.wrap("data", feat.batch)  # type: ignore[method-assign]
        return feat

    t.build_featurizer = featurizer
    RunStore.append_event = clock.wrap("events", RunStore.append_event)  # type: ignore[method-assign]
    RunStore.write_status = clock.wrap("events", RunStore.write_status)  # type: ignore[method-assign]


def paper_stages(steps: int) -> list[Stage]:
    """The paper's vision pipeline at its sizes, random init, `steps` steps a stage."""
    common = ("model.student.pretrained=false", f"train.max_steps={steps}", f"train.eval_every={max(steps // 2, 1)}",
              f"train.checkpoint_every={steps}", f"train.log_every={max(steps // 10, 1)}")
    return [Stage("teacher", "cifar10-teacher", ("name=paper-teacher", *common)),
            Stage("re", "cifar10-vit-tiny", ("mode=re", "name=paper-re", *common)),
            Stage("rekd", "cifar10-vit-tiny", ("mode=rekd", "name=paper-rekd", *common), needs_teacher=True)]


def synthetic_cifar(n_train: int, n_eval: int, seed: int = 0) -> DatasetBundle:
    """Random uint8 images of CIFAR-10's shape and random labels among its 10 classes."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (n,), generator=g))

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return DatasetBundle("cifar10", "vision", names, split(n_train), split(n_eval), split(n_eval))


def run_stage(clock: Clock, cfg: Any, run_dir: Path, *, final_eval: bool) -> dict[str, Any]:
    clock.reset()
    events: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    results = trainer_mod.train(cfg, run_dir, on_event=events.append)
    train_wall = time.perf_counter() - t0
    figures: dict[str, Any] = {}
    if final_eval:
        figures = clock.wrap("eval", evaluate_run)(run_dir, split="test")
    wall = time.perf_counter() - t0
    buckets = dict(clock.totals)
    buckets["other"] = wall - sum(buckets.values())
    return {"run_dir": str(run_dir), "mode": cfg.mode, "name": cfg.name, "state": results.get("state"),
            "steps": results.get("step"), "wall_s": wall, "train_wall_s": train_wall, "buckets_s": buckets,
            "calls": dict(clock.calls), "outside_step_fraction": 1 - buckets["step"] / wall,
            "test": {k: v for k, v in (results.get("test") or {}).items() if isinstance(v, int | float)},
            "final_eval": _scalars(figures)}


def _scalars(d: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a nested result, flattened to dotted names."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_scalars(v, f"{prefix}{k}."))
    elif isinstance(d, bool):
        pass
    elif isinstance(d, int | float):
        out[prefix[:-1]] = float(d)
    return out


def table(stages: list[dict[str, Any]]) -> str:
    head = "| stage | steps | wall s | " + " | ".join(BUCKETS) + " | other | outside the step |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    rows = [*stages, total(stages)]
    for s in rows:
        b = s["buckets_s"]
        out.append(f"| {s['name']} | {s['steps']} | {s['wall_s']:.1f} | "
                   + " | ".join(f"{b[k]:.1f}" for k in BUCKETS)
                   + f" | {b['other']:.1f} | {100 * s['outside_step_fraction']:.0f} % |")
    return "\n".join(out)


def total(stages: list[dict[str, Any]]) -> dict[str, Any]:
    wall = sum(s["wall_s"] for s in stages)
    buckets = {k: sum(s["buckets_s"][k] for s in stages) for k in (*BUCKETS, "other")}
    return {"name": "**pipeline**", "steps": sum(s["steps"] or 0 for s in stages), "wall_s": wall,
            "buckets_s": buckets, "outside_step_fraction": 1 - buckets["step"] / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default="demo-fmnist-clutter")
    ap.add_argument("--stages", default="teacher,re,rekd", help="roles of the pipeline to run, in order")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE for every stage")
    ap.add_argument("--student-set", action="append", default=[], help="KEY=VALUE for the student stages only")
    ap.add_argument("--teacher-run", default=None, help="distil from this finished teacher run (no teacher stage)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--runs", default=None, help="where the runs go (default: a fresh folder under /tmp)")
    ap.add_argument("--no-final-eval", action="store_true")
    ap.add_argument("--paper", type=int, default=None, metavar="STEPS",
                    help="the paper's vision pipeline at its sizes on synthetic CIFAR-10-shaped data, STEPS a stage")
    ap.add_argument("--paper-train", type=int, default=3200)
    ap.add_argument("--paper-eval", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_run_cpu.json"))
    args = ap.parse_args()
    runs = Path(args.runs) if args.runs else Path(f"/tmp/bench_run_{int(time.time())}")
    overrides = list(args.overrides)
    if args.device == "cuda":
        overrides += ["train.device=cuda", "train.precision=bf16"]
    clock = Clock()
    install(clock)
    if args.paper:
        bundle = synthetic_cifar(args.paper_train, args.paper_eval)
        trainer_mod.load_for_config = clock.wrap("data", lambda cfg: bundle)
        evaluate_mod.load_for_config = lambda cfg: bundle
        pipeline_stages = paper_stages(args.paper)
    else:
        pipeline_stages = list(get_pipeline(args.pipeline).stages)
    teacher_run = args.teacher_run
    stages: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for role in args.stages.split(","):
        stage = next(s for s in pipeline_stages if s.role == role)
        extra = overrides if role == "teacher" else [*overrides, *args.student_set]
        cfg = stage.build(extra, teacher_run=teacher_run if stage.needs_teacher else None)
        run_dir = runs / role
        res = run_stage(clock, cfg, run_dir, final_eval=not args.no_final_eval)
        stages.append(res)
        if role == "teacher":
            teacher_run = str(run_dir)
        print(f"# {role}: {res['wall_s']:.1f} s, step {res['buckets_s']['step']:.1f} s, outside the step "
              f"{100 * res['outside_step_fraction']:.0f} %", file=sys.stderr, flush=True)
    env = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.processor() or platform.machine(), "load_avg_at_end": list(_loadavg()),
           "command": " ".join(["python", "bench/bench_run.py"] + sys.argv[1:]),
           "pipeline_wall_s": time.perf_counter() - t0}
    out = {"env": env, "stages": stages, "total": total(stages)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(table(stages))


def _loadavg() -> tuple[float, float, float]:
    try:
        import os
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


if __name__ == "__main__":
    main()
