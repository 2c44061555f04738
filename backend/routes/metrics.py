"""GET /api/runs/{id}/metrics: a run's training (log), dev (eval) and test series from its events.jsonl.

A plain `def` route: FastAPI runs it in its threadpool, off the event loop; events.jsonl is appended
by the trainer a line at a time, so it is safe to read while the run trains.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from backend.runs_fs import SettingsDep, error_responses, run_dir_or_404
from rekd_core.analysis.quality import QUALITY_KEYS, flat_figures
from rekd_core.store.runstore import RunStore

from ._shared import finite

router = APIRouter(tags=["runs"])


# --- response models ---------------------------------------------------------------------------
class _MetricPoint(BaseModel):
    step: int
    tau: float | None = None
    selected_mean: float | None = None
    selected_std: float | None = None
    selected_min: float | None = None
    selected_max: float | None = None
    iou: float | None = Field(None, description="teacher-student mask IoU (REKD runs)")


class LogPoint(_MetricPoint):
    # any further loss term the trainer adds comes through as another loss_<term> field
    model_config = ConfigDict(extra="allow")

    epoch: float | None = None
    lr: float | None = None
    train_acc: float | None = None
    samples_per_s: float | None = None
    loss_ce: float | None = None
    loss_select: float | None = None
    loss_re: float | None = None
    loss_kd_r: float | None = None
    loss_kd_y: float | None = None
    loss_kd: float | None = None
    loss_total: float | None = None


class EvalPoint(_MetricPoint):
    accuracy: float | None = None
    macro_f1: float | None = None
    n: int | None = None
    faithfulness_comprehensiveness: float | None = Field(None, description="RE/REKD: dev mean p(ŷ|x) − p(ŷ|x \\ r)")
    faithfulness_sufficiency: float | None = Field(None, description="RE/REKD: dev mean p(ŷ|x) − p(ŷ|r)")
    faithfulness_p_full: float | None = None
    faithfulness_p_rationale: float | None = None
    faithfulness_p_complement: float | None = None
    faithfulness_complement_accuracy: float | None = None
    faithfulness_full_accuracy: float | None = None
    plausibility_precision: float | None = Field(None, description="with ground truth: share of the rationale that "
                                                                   "is evidence")
    plausibility_recall: float | None = Field(None, description="with ground truth: share of the evidence selected")
    plausibility_f1: float | None = Field(None, description="with ground truth: rationale-evidence F1")
    plausibility_iou: float | None = Field(None, description="with ground truth: rationale-evidence IoU")
    random_precision: float | None = Field(None, description="with ground truth: random positions' precision (the "
                                                             "evidence's share)")
    distinct_share: float | None = Field(None, description="share of distinct masks (near 0: one mask for all)")
    jaccard_distance: float | None = Field(None, description="mean pairwise Jaccard distance of the masks")
    fixed_accuracy: float | None = Field(None, description="accuracy with the most frequent mask for every input")
    fixed_share: float | None = Field(None, description="share of inputs given the most frequent mask")
    probe_accuracy: float | None = Field(None, description="accuracy of a classifier that sees only the mask")
    probe_chance: float | None = Field(None, description="the majority class's share (the probe's chance)")
    probe_gt_accuracy: float | None = Field(None, description="with ground truth: the probe on the evidence masks")


class TestPoint(EvalPoint):
    checkpoint_step: int | None = Field(None, description="step of the best-dev checkpoint that was tested")


class Metrics(BaseModel):
    run_id: str
    log: list[LogPoint]
    eval: list[EvalPoint]
    test: TestPoint | None


# --- the series --------------------------------------------------------------------------------
_SKIP = {"id", "time", "type", "split"}


def _flatten(event: dict[str, Any]) -> dict[str, Any]:
    """Numbers only; nested groups become prefixed fields (loss.ce -> loss_ce, selected.mean -> selected_mean);
    an evaluation's rationale figures become the named fields of rekd_core.analysis.quality.FLAT_FIGURES
    (plausibility_f1, distinct_share, probe_accuracy, ...), present (null when absent) on every eval point."""
    out: dict[str, Any] = {}
    if event.get("type") in ("eval", "test"):
        out.update(flat_figures(event))
    for key, value in event.items():
        if key in _SKIP or key in QUALITY_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{key}_{sub}"] = finite(v)
        elif isinstance(value, (int, float)):
            out[key] = value if isinstance(value, int) else finite(value)
    return out


def _series(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    # keyed by step: if a crash left a step's event twice, the later one (the replay) wins
    by_step: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.get("type") == kind and isinstance(ev.get("step"), int):
            by_step[ev["step"]] = _flatten(ev)
    return [by_step[s] for s in sorted(by_step)]


def _csv(log: list[dict[str, Any]], evals: list[dict[str, Any]]) -> str:
    rows = [{"kind": "log", **r} for r in log] + [{"kind": "eval", **r} for r in evals]
    columns: dict[str, None] = {"kind": None, "step": None}
    for r in rows:
        columns.update(dict.fromkeys(r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


@router.get("/api/runs/{run_id:path}/metrics", response_model=Metrics,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "JSON series, or with format=csv one table of log and eval rows "
                                            "(a `kind` column tells them apart)"},
                       **error_responses(404, 422, e422="invalid run id or query parameter")})
def get_metrics(
    run_id: str,
    settings: SettingsDep,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Metrics | Response:
    """The run's training (log) and dev (eval) series for plotting, and its test result when finished."""
    store = RunStore(run_dir_or_404(settings, run_id))
    events = store.events()
    log, evals = _series(events, "log"), _series(events, "eval")
    if fmt == "csv":
        return Response(_csv(log, evals), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{run_id}-metrics.csv"'})
    tests = _series(events, "test")
    return Metrics(run_id=run_id, log=[LogPoint(**r) for r in log], eval=[EvalPoint(**r) for r in evals],
                   test=TestPoint(**tests[-1]) if tests else None)

