"""Is the rationale real? The figures each evaluation records (train/evaluate.py, rationale_metrics.py),
read back from a run directory for the API, the exports, comparisons and sweep tables.

No torch and no model here: only events.jsonl, results.json, status.json and examples/inputs.json.
An evaluation's quality block is `{step, accuracy, plausibility, input_dependence, probe, warnings}`;
runs trained before these figures existed (and CLS runs, which have no rationale) get None for
each figure and no warnings. A run's warnings are those of its test result once it has finished,
else those of its latest dev evaluation (verdicts.py says when each is raised).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .verdicts import rationale_warnings

QUALITY_KEYS = ("plausibility", "input_dependence", "probe")
GROUND_TRUTH_KINDS = ("benchmark", "annotations")

# flat names (the metrics series, CSV exports and tables) -> the path in an eval event or test result
FLAT_FIGURES: dict[str, tuple[str, ...]] = {
    "plausibility_precision": ("plausibility", "precision"),
    "plausibility_recall": ("plausibility", "recall"),
    "plausibility_f1": ("plausibility", "f1"),
    "plausibility_iou": ("plausibility", "iou"),
    "random_precision": ("plausibility", "random", "precision"),
    "distinct_share": ("input_dependence", "distinct_share"),
    "jaccard_distance": ("input_dependence", "jaccard_distance"),
    "fixed_accuracy": ("input_dependence", "fixed_accuracy"),
    "fixed_share": ("input_dependence", "fixed_share"),
    "probe_accuracy": ("probe", "accuracy"),
    "probe_chance": ("probe", "chance"),
    "probe_gt_accuracy": ("probe", "gt_accuracy"),
}


def clean(value: Any) -> Any:
    """A JSON value with every NaN / infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def figure(metrics: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    node: Any = metrics or {}
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return _number(node)


def flat_figures(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    """`FLAT_FIGURES` of an eval event or test result (None where absent)."""
    return {name: figure(metrics, path) for name, path in FLAT_FIGURES.items()}


def warnings_of(metrics: dict[str, Any] | None) -> list[dict[str, str]]:
    """The evaluation's warnings as stored, or recomputed from its figures (runs recorded before
    warnings were stored; [] when it has no rationale figures)."""
    if not metrics:
        return []
    stored = metrics.get("warnings")
    if isinstance(stored, list):
        return [{"code": str(w.get("code", "")), "message": str(w.get("message", "")),
                 "detail": str(w.get("detail", ""))} for w in stored if isinstance(w, dict)]
    return rationale_warnings(metrics)


def quality_block(metrics: dict[str, Any] | None, step: int | None = None) -> dict[str, Any] | None:
    """{step, accuracy, plausibility, input_dependence, probe, warnings} of one evaluation."""
    if metrics is None:
        return None
    s = metrics.get("step") if step is None else step
    out: dict[str, Any] = {"step": s if isinstance(s, int) else None, "accuracy": _number(metrics.get("accuracy"))}
    for key in QUALITY_KEYS:
        value = metrics.get(key)
        out[key] = clean(value) if isinstance(value, dict) else None
    if out["plausibility"] is not None and out["plausibility"].get("ground_truth") not in GROUND_TRUTH_KINDS:
        out["plausibility"]["ground_truth"] = None
    out["warnings"] = warnings_of(metrics)
    return out


# --- events.jsonl, read from its end -----------------------------------------------------------
def _lines_backwards(path: Path, chunk: int = 1 << 16) -> Iterator[bytes]:
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        f.seek(0, 2)
        pos = f.tell()
        rest = b""
        while pos > 0:
            n = min(chunk, pos)
            pos -= n
            f.seek(pos)
            parts = (f.read(n) + rest).split(b"\n")
            rest = parts[0]
            yield from reversed(parts[1:])
        yield rest


def last_event(run_dir: str | Path, kind: str, *, step: int | None = None) -> dict[str, Any] | None:
    """The run's last event of type `kind` (at `step`, if given), read from the end of events.jsonl:
    cheap on a long run, and a step's event written twice (a replay after a crash) is the later one."""
    needle = f'"{kind}"'.encode()
    for line in _lines_backwards(Path(run_dir) / "events.jsonl"):
        if needle not in line:
            continue
        try:
            ev = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a line being written
        if isinstance(ev, dict) and ev.get("type") == kind and (step is None or ev.get("step") == step):
            return ev
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _test_metrics(root: Path) -> tuple[dict[str, Any] | None, int | None]:
    """The finished run's test result and the step of the (best-dev) checkpoint it was scored at."""
    res = _read_json(root / "results.json")
    test = res.get("test")
    if not isinstance(test, dict):
        return None, None
    best = res.get("best_dev") or {}
    step = best.get("step") if isinstance(best, dict) else None
    if not isinstance(step, int):
        ev = last_event(root, "test")
        step = ev.get("checkpoint_step") if ev else None
    return test, step if isinstance(step, int) else None


def ground_truth(root: Path, *metrics: dict[str, Any] | None) -> str | None:
    """"benchmark" | "annotations" | None: from the evaluations' plausibility, else the saved examples."""
    for m in metrics:
        kind = ((m or {}).get("plausibility") or {}).get("ground_truth")
        if kind in GROUND_TRUTH_KINDS:
            return str(kind)
    kind = _read_json(root / "examples" / "inputs.json").get("ground_truth")
    return kind if kind in GROUND_TRUTH_KINDS else None


def run_quality(run_dir: str | Path) -> dict[str, Any]:
    """{run_id, mode, ground_truth, dev, test, warnings} of one run (see the module doc)."""
    root = Path(run_dir)
    cfg = _read_json(root / "config.json")
    dev_ev = last_event(root, "eval")
    test, test_step = _test_metrics(root)
    dev = quality_block(dev_ev)
    tested = quality_block(test, test_step)
    warnings = (tested or dev or {}).get("warnings") or []
    return {"run_id": root.name, "mode": cfg.get("mode"), "ground_truth": ground_truth(root, test, dev_ev),
            "dev": dev, "test": tested, "warnings": warnings}


def run_warnings(run_dir: str | Path, status: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """The run's warnings (test's once finished, else the latest dev evaluation's), cheaply: from
    status.json's copy of the test result, else the last eval event (read from the end)."""
    root = Path(run_dir)
    st = status if status is not None else _read_json(root / "status.json")
    test = st.get("test")
    if st.get("state") == "completed" and isinstance(test, dict):
        return warnings_of(test)
    return warnings_of(last_event(root, "eval"))
