"""Per-example rationales and metric series of one run, read from its run directory.

The routes only read files that the trainer writes atomically (examples/*.json,
examples/inputs.safetensors, events.jsonl, checkpoints), so they are safe to call while the run
trains. The faithfulness route also runs models (a baseline CLS run's integrated gradients, or an
old snapshot's checkpoint). They are plain `def` routes: FastAPI runs them in its threadpool, off
the event loop.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open

from backend.quality import (
    GROUND_TRUTH_DOC,
    EvalQuality,
    ExamplePlausibility,
    GroundTruthKind,
    RationaleWarning,
    RunQuality,
    eval_quality,
    example_plausibility,
    run_quality_out,
)
from backend.runs_fs import SettingsDep, check_run_id, error_responses, run_dir_or_404
from rekd_core.analysis.explain import load_run
from rekd_core.analysis.faithfulness import baseline_problem
from rekd_core.analysis.faithfulness_report import NoFaithfulness, faithfulness_report
from rekd_core.analysis.quality import QUALITY_KEYS, flat_figures, last_event, quality_block, run_quality
from rekd_core.config import ExperimentConfig
from rekd_core.model.runmodel import LoadedRun
from rekd_core.store.examples import list_snapshots, read_snapshot
from rekd_core.store.runstore import RunStore
from service.settings import Settings

router = APIRouter(tags=["runs"])

ExampleFilter = Literal["all", "correct", "wrong", "disagree"]


# --- response models ---------------------------------------------------------------------------
class TokenPosition(BaseModel):
    index: int = Field(description="position in the model's input (index into mask / sel_prob)")
    token: str
    span: list[int] = Field(description="[start, end) character offsets of the token in the text")
    selectable: bool = Field(description="false for [CLS]/[SEP]: never part of a rationale")


class PatchPosition(BaseModel):
    index: int = Field(description="position in the model's input (index into mask / sel_prob)")
    row: int
    col: int
    box: list[int] = Field(description="[x0, y0, x1, y1] pixel box in the image it was computed for")
    selectable: bool = True


class ExampleFaithfulness(BaseModel):
    """ERASER scores of one rationale, all three probabilities from the same predictor, of ŷ = its
    prediction from the rationale (4 decimals)."""

    p_full: float = Field(description="p(ŷ | x): every selectable position kept")
    p_rationale: float = Field(description="p(ŷ | r): the rationale only (the normal prediction)")
    p_complement: float = Field(description="p(ŷ | x \\ r): every selectable position but the rationale")
    comprehensiveness: float = Field(description="p_full − p_complement: high = the rationale was needed")
    sufficiency: float = Field(description="p_full − p_rationale: low = the rationale suffices")
    full_pred: str = Field(description="class predicted from the full input")
    complement_pred: str = Field(description="class predicted from the complement")


class Side(BaseModel):
    """One model's view of one example (student or teacher)."""

    pred: int = Field(description="predicted class index")
    probs: list[float] = Field(description="class probabilities, in class_names order")
    mask: list[int] | None = Field(None, description="1 where the predictor saw the position; null for a CLS run")
    sel_prob: list[float] | None = Field(None, description="the generator's keep probability per position")
    faithfulness: ExampleFaithfulness | None = Field(
        None, description="RE sides: comprehensiveness and sufficiency; null for a CLS run or an older snapshot")
    plausibility: ExamplePlausibility | None = Field(
        None, description="this rationale against the example's ground-truth evidence; null for a CLS run, data "
                          "without ground truth, an example without it, or an older snapshot")


class ExampleItem(BaseModel):
    index: int = Field(description="position of the example in the saved subset (stable across steps)")
    row: int = Field(description="row of the example in the dev split")
    label: int = Field(description="true class index")
    correct: bool = Field(description="student pred == label")
    student: Side
    teacher: Side | None = None
    agree: float | None = Field(None, description="IoU of teacher and student masks (1 when both are empty)")
    text: str | None = Field(None, description="text runs: the input text")
    positions: list[TokenPosition] | None = Field(
        None, description="text runs: every non-padding token; mask/sel_prob are cut to this length")
    image: str | None = Field(None, description="vision runs: the input at native size, a PNG data URL")
    evidence: list[int] | None = Field(
        None, description="the ground-truth evidence, 0/1 per position (text: cut to the mask's length); null where "
                          "the data or this example has none")


class ExamplesPage(BaseModel):
    run_id: str
    modality: Literal["vision", "text"]
    class_names: list[str]
    steps: list[int] = Field(description="steps with a saved snapshot, ascending")
    step: int = Field(description="the step shown")
    tau: float | None = Field(description="the Gumbel-softmax temperature at that step")
    filter: ExampleFilter
    label: int | None
    offset: int
    limit: int
    total: int = Field(description="examples matching the filters (before paging)")
    has_teacher: bool
    grid: list[int] | None = Field(None, description="vision runs: patch grid [rows, cols]")
    image_size: list[int] | None = Field(None, description="vision runs: [height, width] of the images")
    patches: list[PatchPosition] | None = Field(None, description="vision runs: each patch's box, shared by all items")
    ground_truth: GroundTruthKind | None = Field(None, description=GROUND_TRUTH_DOC)
    quality: EvalQuality | None = Field(
        None, description="whether the rationale is real at this step: the dev evaluation's plausibility, input "
                          "dependence (with the most frequent mask) and mask-only probe; null when no evaluation "
                          "of this step is recorded")
    warnings: list[RationaleWarning] = Field(default_factory=list,
                                             description="that evaluation's warnings; [] when none")
    items: list[ExampleItem]


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


# --- helpers shared with the explain route -----------------------------------------------------
def png_data_url(image: np.ndarray) -> str:
    """A uint8 (H, W), (H, W, C) or (C, H, W) array as a data:image/png;base64 URL."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def finite(value: Any) -> float | None:
    # JSON has no NaN/inf and FastAPI refuses to emit them: a diverged loss must not turn into a 500
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# --- examples ----------------------------------------------------------------------------------
def _read_inputs(store: RunStore) -> dict[str, Any]:
    path = store.examples / "inputs.json"
    if not path.exists():
        raise HTTPException(409, f"run {store.run_id!r} has no saved examples yet (written when training starts)")
    return json.loads(path.read_text())


def _pick_step(store: RunStore, step: int | None) -> tuple[list[int], int]:
    steps = list_snapshots(store)
    if not steps:
        raise HTTPException(409, f"run {store.run_id!r} has no rationale snapshot yet (one is saved at each eval)")
    if step is None:
        return steps, steps[-1]
    if step not in steps:
        raise HTTPException(404, f"run {store.run_id!r} has no snapshot at step {step}; available: {steps}")
    return steps, step


def _selected_rows(snap: dict[str, Any], flt: ExampleFilter, label: int | None) -> list[int]:
    labels: list[int] = snap["labels"]
    s_pred: list[int] = snap["student"]["pred"]
    t_pred: list[int] | None = (snap.get("teacher") or {}).get("pred")
    rows = [i for i in range(len(labels)) if label is None or labels[i] == label]
    if flt == "correct":
        return [i for i in rows if s_pred[i] == labels[i]]
    if flt == "wrong":
        return [i for i in rows if s_pred[i] != labels[i]]
    if flt == "disagree":  # no teacher: no example disagrees with it
        return [i for i in rows if t_pred is not None and s_pred[i] != t_pred[i]]
    return rows


def _class_name(class_names: list[str], k: Any) -> str:
    return class_names[k] if isinstance(k, int) and 0 <= k < len(class_names) else str(k)


def example_faithfulness(raw: dict[str, Any] | None, i: int, class_names: list[str]) -> ExampleFaithfulness | None:
    """Example `i`'s ERASER scores from a snapshot side (shared with the run comparison)."""
    # snapshots written before faithfulness scores existed have no such key
    if not raw:
        return None
    nums = {k: finite(raw[k][i]) or 0.0 for k in ("p_full", "p_rationale", "p_complement", "comprehensiveness",
                                                  "sufficiency")}
    return ExampleFaithfulness(**nums, full_pred=_class_name(class_names, raw["full_pred"][i]),
                               complement_pred=_class_name(class_names, raw["complement_pred"][i]))


def _side(raw: dict[str, Any] | None, i: int, keep: int | None, class_names: list[str]) -> Side | None:
    if raw is None:
        return None
    mask = raw.get("mask")
    sel = raw.get("sel_prob")
    return Side(pred=raw["pred"][i], probs=[finite(p) or 0.0 for p in raw["probs"][i]],
                mask=None if mask is None else mask[i][:keep],
                sel_prob=None if sel is None else [finite(p) or 0.0 for p in sel[i][:keep]],
                faithfulness=example_faithfulness(raw.get("faithfulness"), i, class_names),
                plausibility=example_plausibility(raw.get("plausibility"), i))


def example_evidence(inputs: dict[str, Any], i: int, keep: int | None = None) -> list[int] | None:
    """Example `i`'s ground truth from inputs.json, 0/1 per position cut to `keep` (None without)."""
    evidence = inputs.get("evidence")
    if not isinstance(evidence, list) or i >= len(evidence) or not isinstance(evidence[i], list):
        return None
    return [int(v) for v in evidence[i][:keep]]


def _iou(a: list[int], b: list[int], valid: list[bool]) -> float:
    # as rekd_core.train.tasks.mask_iou: over counted positions, 1 when both masks are empty
    inter = sum(1 for x, y, v in zip(a, b, valid) if v and x and y)
    union = sum(1 for x, y, v in zip(a, b, valid) if v and (x or y))
    return inter / union if union else 1.0


def example_images(store: RunStore, indices: list[int]) -> dict[int, str]:
    """PNG data URLs of the stored dev images at `indices` (shared with the run comparison)."""
    path = store.examples / "inputs.safetensors"
    if not indices or not path.exists():
        return {}
    # safe_open reads just the requested rows, and safetensors has no pickle to execute
    with safe_open(str(path), framework="numpy") as f:
        images = f.get_slice("images")
        return {i: png_data_url(images[i : i + 1][0]) for i in indices}


def _item(inputs: dict[str, Any], snap: dict[str, Any], i: int, image: str | None) -> ExampleItem:
    text_item = inputs["items"][i] if inputs["modality"] == "text" else None
    positions = None if text_item is None else [TokenPosition(**p) for p in text_item["positions"]]
    keep = None if positions is None else max((p.index for p in positions), default=-1) + 1
    student = _side(snap["student"], i, keep, inputs["class_names"])
    teacher = _side(snap.get("teacher"), i, keep, inputs["class_names"])
    assert student is not None  # every snapshot has the student's side
    agree = None
    if student.mask is not None and teacher is not None and teacher.mask is not None:
        valid = [p.selectable for p in positions] if positions is not None else [True] * len(student.mask)
        agree = _iou(student.mask, teacher.mask, valid)
    return ExampleItem(index=i, row=inputs["rows"][i], label=snap["labels"][i],
                       correct=student.pred == snap["labels"][i], student=student, teacher=teacher, agree=agree,
                       text=None if text_item is None else text_item["text"], positions=positions, image=image,
                       evidence=example_evidence(inputs, i, keep))


def ground_truth_of(inputs: dict[str, Any]) -> str | None:
    kind = inputs.get("ground_truth")
    return kind if kind in ("benchmark", "annotations") else None


@router.get("/api/runs/{run_id:path}/examples", response_model=ExamplesPage,
            responses=error_responses(404, 409, 422, e404="no such run, or no snapshot at that step",
                                      e409="the run has no rationale snapshot yet",
                                      e422="invalid run id or query parameter"))
def get_examples(
    run_id: str,
    settings: SettingsDep,
    step: Annotated[int | None, Query(ge=0, description="a snapshot step; omitted: the latest")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    filter: Annotated[ExampleFilter, Query(description="disagree: student pred != teacher pred")] = "all",
    label: Annotated[int | None, Query(ge=0, description="only examples of this true class")] = None,
) -> ExamplesPage:
    """Per-example rationales of the run's fixed dev subset at one eval step, teacher beside student."""
    store = RunStore(run_dir_or_404(settings, run_id))
    inputs = _read_inputs(store)
    steps, shown = _pick_step(store, step)
    if label is not None and label >= len(inputs["class_names"]):
        raise HTTPException(422, f"label {label} out of range: the run has {len(inputs['class_names'])} classes")
    snap = read_snapshot(store, shown)
    rows = _selected_rows(snap, filter, label)
    page = rows[offset : offset + limit]
    vision = inputs["modality"] == "vision"
    images = example_images(store, page) if vision else {}
    quality = eval_quality(quality_block(last_event(store.root, "eval", step=shown)))
    return ExamplesPage(
        run_id=run_id, modality=inputs["modality"], class_names=inputs["class_names"], steps=steps, step=shown,
        tau=finite(snap.get("tau")), filter=filter, label=label, offset=offset, limit=limit, total=len(rows),
        has_teacher=snap.get("teacher") is not None,
        grid=inputs.get("grid"), image_size=inputs.get("image_size"),
        patches=[PatchPosition(**p) for p in inputs["positions"]] if vision else None,
        ground_truth=ground_truth_of(inputs), quality=quality, warnings=quality.warnings if quality else [],
        items=[_item(inputs, snap, i, images.get(i)) for i in page],
    )


# --- metrics -----------------------------------------------------------------------------------
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


# --- is the rationale real? -------------------------------------------------------------------
@router.get("/api/runs/{run_id:path}/quality", response_model=RunQuality,
            responses=error_responses(404, 422, e422="invalid run id"))
def get_quality(run_id: str, settings: SettingsDep) -> RunQuality:
    """Whether the run's rationale is real: plausibility against ground truth (where the data has it),
    input dependence with the best fixed mask, the mask-only probe and the warnings they raise, for
    the latest dev evaluation and the test result. Every figure is null for a CLS run or a run
    trained before these figures were recorded; nothing is computed here, all is read from the run."""
    root = run_dir_or_404(settings, run_id)
    return run_quality_out({**run_quality(root), "run_id": run_id})


# --- faithfulness, with a post-hoc baseline ---------------------------------------------------
class FaithfulnessScores(BaseModel):
    comprehensiveness: float = Field(description="mean p(ŷ|x) − p(ŷ|x without the selection)")
    sufficiency: float = Field(description="mean p(ŷ|x) − p(ŷ|the selection only)")
    selected_fraction: float = Field(description="mean share of the counted positions selected")


class BaselineScores(FaithfulnessScores):
    run_id: str = Field(description="the CLS run explained post hoc")
    method: Literal["integrated_gradients"]


class FaithfulnessReport(BaseModel):
    run_id: str
    step: int = Field(description="the snapshot step scored")
    n: int = Field(description="examples scored (the first `limit` saved dev examples)")
    rationale: FaithfulnessScores = Field(description="the run's own rationales (ŷ: its prediction from them)")
    baseline: BaselineScores | None = Field(
        None, description="the baseline CLS run's integrated-gradients top-k selections at each example's "
                          "rationale size, scored with that CLS model (ŷ: its full-input prediction)")


def baseline_run_or_422(settings: Settings, baseline_id: str, run_cfg: ExperimentConfig,
                        class_names: list[str]) -> LoadedRun:
    """The baseline CLS run, loaded; 422 (with the reason) unless it is a completed CLS run on the
    same data and positions as the run. Loads a model: call it off the event loop."""
    check_run_id(baseline_id)
    root = settings.runs_dir.resolve()
    path = (settings.runs_dir / baseline_id).resolve()
    if path == root or not path.is_relative_to(root) or not path.is_dir():
        raise HTTPException(422, f"baseline: no run {baseline_id!r}")
    bstore = RunStore(path)
    try:
        bcfg = bstore.config()
        state = bstore.status().get("state")
    except Exception:  # a directory that is not a run: refused as input, never a 500
        raise HTTPException(422, f"baseline: {baseline_id!r} is not a readable run") from None
    problem = baseline_problem(run_cfg, class_names, bcfg, class_names)
    if problem:
        raise HTTPException(422, f"baseline {baseline_id!r}: {problem}")
    if state != "completed":
        raise HTTPException(422, f"baseline {baseline_id!r}: the CLS run is {state or 'not started'}, not completed")
    try:
        loaded = load_run(path, "best")
    except Exception as err:
        raise HTTPException(422, f"baseline {baseline_id!r}: its checkpoint cannot be read "
                                 f"({type(err).__name__})") from None
    problem = baseline_problem(run_cfg, class_names, loaded.config, loaded.class_names)
    if problem:
        raise HTTPException(422, f"baseline {baseline_id!r}: {problem}")
    return loaded


@router.get("/api/runs/{run_id:path}/faithfulness", response_model=FaithfulnessReport,
            responses=error_responses(404, 409, 422, e404="no such run, or no snapshot at that step",
                                      e409="the run has no rationale snapshot yet (or one too old to score)",
                                      e422="invalid run id or query parameter; the run is a CLS run; the baseline "
                                           "is not a completed CLS run on the same dataset and positions"))
def get_faithfulness(
    run_id: str,
    settings: SettingsDep,
    baseline: Annotated[str | None, Query(description="a completed CLS run id: add its integrated-gradients "
                                                      "selections at the same sparsity")] = None,
    step: Annotated[int | None, Query(ge=0, description="a snapshot step; omitted: the latest")] = None,
    limit: Annotated[int, Query(ge=1, le=256, description="score the first `limit` saved dev examples")] = 64,
) -> FaithfulnessReport:
    """ERASER comprehensiveness and sufficiency of the run's rationales over its saved dev examples,
    beside (with `baseline`) a post-hoc method's at the same sparsity."""
    store = RunStore(run_dir_or_404(settings, run_id))
    if baseline is not None:
        check_run_id(baseline)
    try:
        cfg = store.config()
    except Exception:
        raise HTTPException(409, f"run {run_id!r} has no readable config") from None
    if cfg.mode == "cls":
        raise HTTPException(422, f"run {run_id!r} is a CLS run: it has no rationale to score")
    inputs = _read_inputs(store)
    _, shown = _pick_step(store, step)
    base = None if baseline is None else baseline_run_or_422(settings, baseline, cfg, inputs["class_names"])
    try:
        report = faithfulness_report(store, shown, baseline=base, limit=limit)
    except NoFaithfulness as err:
        raise HTTPException(409, str(err)) from None

    def scores(d: dict[str, Any]) -> dict[str, float]:
        return {k: finite(d[k]) or 0.0 for k in ("comprehensiveness", "sufficiency", "selected_fraction")}

    b = report["baseline"]
    return FaithfulnessReport(
        run_id=run_id, step=shown, n=report["n"], rationale=FaithfulnessScores(**scores(report["rationale"])),
        baseline=None if b is None else BaselineScores(run_id=b["run_id"], method=b["method"], **scores(b)))
