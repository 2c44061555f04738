"""GET /api/runs/{id}/examples: per-example rationales of one run at one eval step, teacher beside student.

The route only reads files that the trainer writes atomically (examples/*.json,
examples/inputs.safetensors, events.jsonl), through rekd_core.store.examples, so it is safe to call
while the run trains. It is a plain `def` route: FastAPI runs it in its threadpool, off the event loop.

The run's other read-only views live beside it, one resource per module: metrics.py, quality.py and
faithfulness.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from backend.quality import (
    GROUND_TRUTH_DOC,
    EvalQuality,
    ExamplePlausibility,
    GroundTruthKind,
    RationaleWarning,
    eval_quality,
    example_plausibility,
)
from backend.runs_fs import SettingsDep, error_responses, run_dir_or_404
from rekd_core.analysis.quality import last_event, quality_block
from rekd_core.store.examples import read_snapshot
from rekd_core.store.runstore import RunStore

from ._shared import example_evidence, example_images, finite, inputs_or_409, pick_step

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


# --- the page ----------------------------------------------------------------------------------
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



def _iou(a: list[int], b: list[int], valid: list[bool]) -> float:
    # as rekd_core.train.tasks.mask_iou: over counted positions, 1 when both masks are empty
    inter = sum(1 for x, y, v in zip(a, b, valid) if v and x and y)
    union = sum(1 for x, y, v in zip(a, b, valid) if v and (x or y))
    return inter / union if union else 1.0



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
    inputs = inputs_or_409(store)
    steps, shown = pick_step(store, step)
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
