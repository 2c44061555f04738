"""Per-example comparison of two to four runs on one dataset: where they disagree, who is right.

Each run saves the same fixed dev subset at every evaluation (store/examples.py) when its data
settings agree, so runs of one pipeline (CLS, RE, REKD) line up example by example. Runs are
compared on the dev rows they have in common, at each run's latest snapshot (or a given step).

An outcome pattern is one character per run: "1" right, "0" wrong; a filter may use "x" for
"either" ("10" = only the first run right, "x1" = the second right).

Beside accuracy, each run's rationale quality at the compared evaluation (quality.py): its
plausibility against ground truth where the data has it, how much its masks depend on the
input, the mask-only probe, and the warnings they raise.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.examples import list_snapshots, read_inputs, read_snapshot
from ..store.runstore import RunStore
from .quality import GROUND_TRUTH_KINDS, flat_figures, last_event, warnings_of
from .tables import render_rows

MIN_RUNS, MAX_RUNS = 2, 4


class CompareError(ValueError):
    """The runs cannot be compared; the message says why and what to change."""


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


@dataclass
class RunView:
    run_id: str
    name: str
    mode: str
    step: int
    inputs: dict[str, Any]
    snap: dict[str, Any]
    index_of_row: dict[int, int]  # dev row -> position in this run's saved subset

    def side(self, row: int) -> dict[str, Any]:
        """The student's prediction and rationale on dev `row`; `plausibility` {precision, recall} is
        None without ground truth (or in a snapshot written before it was scored)."""
        i = self.index_of_row[row]
        s = self.snap["student"]
        out: dict[str, Any] = {"pred": s["pred"][i], "probs": s["probs"][i]}
        for key in ("mask", "sel_prob"):
            out[key] = s[key][i] if s.get(key) is not None else None
        pl = s.get("plausibility")
        scores = {k: _at(pl.get(k), i) for k in ("precision", "recall")} if isinstance(pl, dict) else {}
        out["plausibility"] = scores if any(v is not None for v in scores.values()) else None
        return out

    def evidence(self, row: int) -> list[int] | None:
        """The ground-truth evidence of dev `row` as this run saved it (0/1 per its positions), or None."""
        ev = self.inputs.get("evidence")
        i = self.index_of_row[row]
        if not isinstance(ev, list) or i >= len(ev) or not isinstance(ev[i], list):
            return None
        return [int(v) for v in ev[i]]


def load_view(root: Path, step: int | None = None) -> RunView:
    store = RunStore(root)
    steps = list_snapshots(store)
    inputs = read_inputs(store) if steps else None
    if inputs is None or not steps:
        raise CompareError(f"run {store.run_id} has no evaluated examples yet (they are saved at each evaluation)")
    if step is not None and step not in steps:
        raise CompareError(f"run {store.run_id} has no snapshot at step {step}; available: {steps}")
    cfg = json.loads((root / "config.json").read_text())
    shown = steps[-1] if step is None else step
    return RunView(run_id=store.run_id, name=cfg.get("name") or store.run_id, mode=cfg.get("mode", "?"), step=shown,
                   inputs=inputs, snap=read_snapshot(store, shown),
                   index_of_row={int(r): i for i, r in enumerate(inputs["rows"])})


def check_comparable(views: list[RunView]) -> list[int]:
    """The dev rows every run saved, in the first run's order; CompareError if they cannot line up."""
    if not MIN_RUNS <= len(views) <= MAX_RUNS:
        raise CompareError(f"compare {MIN_RUNS} to {MAX_RUNS} runs, not {len(views)}")
    if len({v.run_id for v in views}) != len(views):
        raise CompareError("a run is listed twice")
    first = views[0]
    for v in views[1:]:
        if v.inputs["modality"] != first.inputs["modality"]:
            raise CompareError(f"runs {first.run_id} ({first.inputs['modality']}) and {v.run_id} "
                               f"({v.inputs['modality']}) are on different modalities")
        if v.inputs["class_names"] != first.inputs["class_names"]:
            raise CompareError(f"runs {first.run_id} and {v.run_id} have different classes: not the same dataset")
    rows = [r for r in first.index_of_row if all(r in v.index_of_row for v in views[1:])]
    if not rows:
        raise CompareError("the runs share no evaluated example: their dev subsets differ (dataset, "
                           "data.split_seed, data.max_eval or train.eval_examples)")
    return rows


def outcomes(views: list[RunView], rows: list[int]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        i0 = views[0].index_of_row[row]
        label = int(views[0].snap["labels"][i0])
        preds = [int(v.snap["student"]["pred"][v.index_of_row[row]]) for v in views]
        correct = [p == label for p in preds]
        out.append({"row": row, "label": label, "preds": preds, "correct": correct,
                    "pattern": "".join("1" if c else "0" for c in correct)})
    return out


def matches(outcome: dict[str, Any], flt: str) -> bool:
    if flt == "all":
        return True
    if flt == "disagree":
        return len(set(outcome["preds"])) > 1
    return all(f in ("x", p) for f, p in zip(flt, outcome["pattern"], strict=True))


def check_filter(flt: str, n_runs: int) -> str:
    if flt in ("all", "disagree"):
        return flt
    if len(flt) != n_runs or set(flt) - set("01x"):
        raise CompareError(f"filter {flt!r}: use 'all', 'disagree', or one of 1 (right), 0 (wrong), x (either) "
                           f"per run, {n_runs} characters (e.g. '{'1' + '0' * (n_runs - 1)}': only the first right)")
    return flt


def summary(outs: list[dict[str, Any]], n_runs: int) -> dict[str, Any]:
    """Counts per outcome pattern (all 2^n, zeros included), disagreements, accuracy and pairwise agreement."""
    patterns = {"".join(p): 0 for p in itertools.product("10", repeat=n_runs)}
    for o in outs:
        patterns[o["pattern"]] += 1
    n = len(outs)
    agreement = [[sum(o["preds"][a] == o["preds"][b] for o in outs) / n if n else None for b in range(n_runs)]
                 for a in range(n_runs)]
    return {"n": n, "patterns": patterns, "disagree": sum(len(set(o["preds"])) > 1 for o in outs),
            "accuracy": [sum(o["correct"][k] for o in outs) / n if n else None for k in range(n_runs)],
            "agreement": agreement}


def compared_eval(root: Path, step: int) -> dict[str, Any]:
    """The dev evaluation whose snapshot is compared (the one at `step`), else the run's last one."""
    return last_event(root, "eval", step=step) or last_event(root, "eval") or {}


QUALITY_SUMMARY = ("plausibility_f1", "plausibility_precision", "distinct_share", "fixed_accuracy", "probe_accuracy",
                   "probe_chance")


def quality_summary(root: Path, view: RunView) -> dict[str, Any]:
    """The compared evaluation's rationale quality: {step, ground_truth, plausibility_f1,
    plausibility_precision, distinct_share, fixed_accuracy, probe_accuracy, probe_chance, warnings};
    None for each figure the run does not have."""
    ev = compared_eval(root, view.step)
    flat = flat_figures(ev)
    kind = view.inputs.get("ground_truth")
    return {"step": ev.get("step"), "ground_truth": kind if kind in GROUND_TRUTH_KINDS else None,
            **{k: flat[k] for k in QUALITY_SUMMARY}, "warnings": warnings_of(ev)}


def table_rows(views: list[RunView], roots: list[Path], summ: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: its final numbers, its rationale's quality (at the compared dev evaluation,
    like selected % and the faithfulness columns) and how it fares on the shared examples."""
    rows = []
    for k, (v, root) in enumerate(zip(views, roots)):
        res = RunStore(root).results() or {}
        test = res.get("test") or {}
        ev = compared_eval(root, v.step)
        faith = ev.get("faithfulness") or {}
        flat = flat_figures(ev)
        only = "".join("1" if j == k else "0" for j in range(len(views)))
        rows.append({
            "run": v.run_id, "name": v.name, "mode": v.mode, "step": v.step,
            "test_accuracy": test.get("accuracy"), "dev_accuracy": ev.get("accuracy"),
            "selected": (ev.get("selected") or {}).get("mean"),
            "comprehensiveness": faith.get("comprehensiveness"), "sufficiency": faith.get("sufficiency"),
            "plausibility_f1": flat["plausibility_f1"], "distinct_share": flat["distinct_share"],
            "probe_accuracy": flat["probe_accuracy"], "probe_chance": flat["probe_chance"],
            "warnings": ";".join(w["code"] for w in warnings_of(ev)) or None,
            "shared_accuracy": summ["accuracy"][k], "only_right": summ["patterns"].get(only, 0),
        })
    return rows


TABLE_COLUMNS = (("run", "run"), ("mode", "mode"), ("test_accuracy", "test acc %"), ("dev_accuracy", "dev acc %"),
                 ("selected", "selected %"), ("comprehensiveness", "comprehensiveness"),
                 ("sufficiency", "sufficiency"), ("plausibility_f1", "plausibility F1 %"),
                 ("distinct_share", "distinct %"), ("probe_accuracy", "probe acc %"),
                 ("shared_accuracy", "acc. on shared %"), ("only_right", "only this right"))
CSV_EXTRA = ("name", "step", "probe_chance", "warnings")  # the CSV's further columns (raw numbers, codes)
_PERCENT = {"test_accuracy", "dev_accuracy", "selected", "shared_accuracy", "plausibility_f1", "distinct_share",
            "probe_accuracy"}


def render_table(rows: list[dict[str, Any]], fmt: str = "md") -> str:
    """The comparison as Markdown, CSV (raw numbers; also probe chance and warning codes) or LaTeX; a
    figure a run does not have is "–" (empty in CSV)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        keys = [k for k, _ in TABLE_COLUMNS] + list(CSV_EXTRA)
        w.writerow(keys)
        for r in rows:
            w.writerow(["" if r.get(k) is None else r[k] for k in keys])
        return buf.getvalue()

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "–"
        if key in _PERCENT:
            return f"{100 * value:.1f}"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    head = [title for _, title in TABLE_COLUMNS]
    body = [[cell(k, r.get(k)) for k, _ in TABLE_COLUMNS] for r in rows]
    return render_rows(head, body, fmt)
