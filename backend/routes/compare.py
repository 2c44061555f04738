"""Comparing runs example by example, and exporting runs' per-example rationales and comparison tables.

Read-only routes over run directories (files the trainer writes atomically), safe while runs train.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from backend.quality import GROUND_TRUTH_DOC, ExamplePlausibility, GroundTruthKind, RationaleWarning
from backend.runs_fs import SettingsDep, error_responses, run_dir_or_404
from rekd_core.analysis.compare import (
    CompareError,
    RunView,
    check_comparable,
    check_filter,
    load_view,
    matches,
    outcomes,
    quality_summary,
    render_table,
    summary,
    table_rows,
)
from rekd_core.analysis.quality import clean
from rekd_core.store.examples import list_snapshots, read_snapshot
from rekd_core.store.runstore import RunStore

from ._shared import example_images, finite
from .examples import PatchPosition, Side, TokenPosition, example_faithfulness

router = APIRouter(tags=["compare"])

RunsQuery = Annotated[list[str], Query(min_length=2, max_length=4, description="2 to 4 run ids (repeat the parameter)")]


class CompareQuality(BaseModel):
    """Whether the run's rationale is real, at the compared dev evaluation (null: the run has no such
    figure: a CLS run, data without ground truth, or a run trained before they were recorded)."""

    step: int | None = Field(None, description="the dev evaluation these figures are from")
    ground_truth: GroundTruthKind | None = Field(None, description=GROUND_TRUTH_DOC)
    plausibility_f1: float | None = Field(None, description="rationale-evidence F1, averaged over the dev examples "
                                                            "with ground truth")
    plausibility_precision: float | None = Field(None, description="share of the rationale that is evidence")
    distinct_share: float | None = Field(None, description="share of distinct masks (near 0: one mask for every "
                                                           "input)")
    fixed_accuracy: float | None = Field(None, description="dev accuracy with the most frequent mask for every input")
    probe_accuracy: float | None = Field(None, description="accuracy of a classifier that sees only the mask")
    probe_chance: float | None = Field(None, description="the majority class's share: the probe's chance level")
    warnings: list[RationaleWarning] = Field(default_factory=list, description="that evaluation's warnings")


class ComparedRun(BaseModel):
    id: str
    name: str
    mode: str
    step: int = Field(description="the snapshot compared (the run's latest evaluation)")
    quality: CompareQuality = Field(description="the run's rationale quality at that evaluation")


class CompareSummary(BaseModel):
    n: int = Field(description="examples all runs were evaluated on")
    patterns: dict[str, int] = Field(description="count per outcome pattern: one character per run, 1 right, 0 wrong")
    disagree: int = Field(description="examples on which the runs' predictions differ")
    accuracy: list[float | None] = Field(description="each run's accuracy on the shared examples")
    agreement: list[list[float | None]] = Field(description="fraction of shared examples where runs i and j agree")


class CompareSide(Side):
    positions: list[TokenPosition] | None = Field(None, description="text runs: this run's tokens")
    evidence: list[int] | None = Field(
        None, description="the example's ground truth over this run's own positions (0/1; text: cut like `mask`); "
                          "null where this run saved none")


class CompareItem(BaseModel):
    row: int = Field(description="row of the example in the dev split")
    label: int
    pattern: str = Field(description="one character per run: 1 right, 0 wrong")
    sides: list[CompareSide] = Field(description="each run's prediction and rationale, in `runs` order")
    text: str | None = None
    image: str | None = Field(None, description="vision runs: the input, a PNG data URL")
    evidence: list[int] | None = Field(
        None, description="the example's ground-truth evidence, 0/1 per position, from the first run (in `runs` "
                          "order) that saved it (the same dev example in every run); null where none did")


class ComparePage(BaseModel):
    runs: list[ComparedRun]
    modality: Literal["vision", "text"]
    class_names: list[str]
    summary: CompareSummary
    filter: str
    offset: int
    limit: int
    total: int = Field(description="examples matching the filter (before paging)")
    grid: list[int] | None = None
    image_size: list[int] | None = None
    patches: list[PatchPosition] | None = None
    items: list[CompareItem]


def _views(settings: Any, runs: list[str]) -> tuple[list[RunView], list[Path], list[int]]:
    roots = [run_dir_or_404(settings, r) for r in runs]
    try:
        views = [load_view(root) for root in roots]
        return views, roots, check_comparable(views)
    except CompareError as err:
        raise HTTPException(422, str(err)) from None


def _side(view: RunView, row: int) -> CompareSide:
    raw = view.side(row)
    positions = None
    keep = None
    if view.inputs["modality"] == "text":
        positions = [TokenPosition(**p) for p in view.inputs["items"][view.index_of_row[row]]["positions"]]
        keep = max((p.index for p in positions), default=-1) + 1
    evidence = view.evidence(row)
    pl = raw["plausibility"]
    return CompareSide(pred=raw["pred"], probs=[finite(p) or 0.0 for p in raw["probs"]],
                       mask=None if raw["mask"] is None else raw["mask"][:keep],
                       sel_prob=None if raw["sel_prob"] is None else [finite(p) or 0.0 for p in raw["sel_prob"][:keep]],
                       positions=positions,
                       faithfulness=example_faithfulness(view.snap["student"].get("faithfulness"),
                                                         view.index_of_row[row], view.inputs["class_names"]),
                       plausibility=None if pl is None else ExamplePlausibility(**clean(pl)),
                       evidence=None if evidence is None else evidence[:keep])


@router.get("/api/compare", response_model=ComparePage,
            responses=error_responses(404, 422, e422="fewer than 2 or more than 4 runs, runs that cannot be "
                                                     "compared (other dataset, no shared examples), or a bad filter"))
def compare_runs(
    settings: SettingsDep,
    runs: RunsQuery,
    filter: Annotated[str, Query(max_length=8, description="'disagree' (default), 'all', or a pattern such as "
                                                          "'10' (only the first run right) with x for either")]
    = "disagree",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 12,
) -> ComparePage:
    """The examples on which runs of one dataset differ, each run's rationale and prediction side by
    side, and a confusion-style count of who was right."""
    views, roots, rows = _views(settings, runs)
    try:
        flt = check_filter(filter, len(views))
    except CompareError as err:
        raise HTTPException(422, str(err)) from None
    outs = outcomes(views, rows)
    picked = [o for o in outs if matches(o, flt)]
    page = picked[offset: offset + limit]
    first = views[0]
    vision = first.inputs["modality"] == "vision"
    images = example_images(RunStore(settings.run_dir(first.run_id)), [first.index_of_row[o["row"]] for o in page]) \
        if vision else {}
    items = []
    for o in page:
        i0 = first.index_of_row[o["row"]]
        text = None if vision else first.inputs["items"][i0]["text"]
        sides = [_side(v, o["row"]) for v in views]
        evidence = next((s.evidence for s in sides if s.evidence is not None), None)
        items.append(CompareItem(row=o["row"], label=o["label"], pattern=o["pattern"], sides=sides, text=text,
                                 image=images.get(i0), evidence=evidence))
    return ComparePage(
        runs=[ComparedRun(id=v.run_id, name=v.name, mode=v.mode, step=v.step,
                          quality=CompareQuality.model_validate(clean(quality_summary(root, v))))
              for v, root in zip(views, roots)],
        modality=first.inputs["modality"], class_names=first.inputs["class_names"],
        summary=CompareSummary(**summary(outs, len(views))), filter=flt, offset=offset, limit=limit,
        total=len(picked), grid=first.inputs.get("grid"), image_size=first.inputs.get("image_size"),
        patches=[PatchPosition(**p) for p in first.inputs["positions"]] if vision else None, items=items)


_TABLE_TYPES = {"md": "text/markdown", "csv": "text/csv", "tex": "application/x-tex"}


@router.get("/api/compare/table", response_class=Response,
            responses={200: {"content": {t: {"schema": {"type": "string"}} for t in _TABLE_TYPES.values()},
                             "description": "one row per run: final numbers, rationale quality (plausibility F1, "
                                            "distinct masks, mask-only probe; – where absent) and results on the "
                                            "shared examples"},
                       **error_responses(404, 422)})
def compare_table(
    settings: SettingsDep,
    runs: RunsQuery,
    fmt: Annotated[Literal["md", "csv", "tex"], Query(alias="format")] = "md",
) -> Response:
    """The comparison as a table for a paper or an issue: Markdown, CSV or LaTeX."""
    views, roots, rows = _views(settings, runs)
    outs = outcomes(views, rows)
    text = render_table(table_rows(views, roots, summary(outs, len(views))), fmt)
    return Response(text, media_type=_TABLE_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="comparison.{fmt}"'})


# --- per-example rationales of one run, as JSON Lines ---------------------------------------------
def _at(side: dict[str, Any] | None, i: int, n: int) -> dict[str, Any] | None:
    """Example i of a snapshot side: every per-example list, whatever fields the trainer saved, and
    `plausibility` {precision, recall} of its rationale against the ground truth (null without)."""
    if side is None:
        return None
    out = {k: v[i] for k, v in side.items() if isinstance(v, list) and len(v) == n}
    pl = side.get("plausibility")
    scores = {k: (pl.get(k) or [None] * n)[i] for k in ("precision", "recall")} if isinstance(pl, dict) else {}
    out["plausibility"] = scores if any(v is not None for v in scores.values()) else None
    return out


def rationale_lines(store: RunStore, step: int) -> list[dict[str, Any]]:
    inputs = json.loads((store.examples / "inputs.json").read_text())
    snap = read_snapshot(store, step)
    names = inputs["class_names"]
    n = len(snap["labels"])
    kind = inputs.get("ground_truth")
    evidence_all = inputs.get("evidence")
    out = []
    for i in range(n):
        student = _at(snap["student"], i, n) or {}
        evidence = evidence_all[i] if isinstance(evidence_all, list) and i < len(evidence_all) else None
        line: dict[str, Any] = {"run_id": store.run_id, "step": step, "tau": snap.get("tau"), "index": i,
                                "row": inputs["rows"][i], "label": snap["labels"][i],
                                "label_name": names[snap["labels"][i]], "pred_name": names[student["pred"]],
                                "student": student, "teacher": _at(snap.get("teacher"), i, n),
                                "ground_truth": kind if kind in ("benchmark", "annotations") else None,
                                "evidence": evidence}
        mask = student.get("mask")
        if inputs["modality"] == "text":
            item = inputs["items"][i]
            line["text"] = item["text"]
            line["tokens"] = [p["token"] for p in item["positions"]]
            if mask is not None:
                line["rationale_tokens"] = [p["token"] for p in item["positions"]
                                            if p["selectable"] and p["index"] < len(mask) and mask[p["index"]]]
            if evidence is not None:
                line["evidence_tokens"] = [p["token"] for p in item["positions"]
                                           if p["index"] < len(evidence) and evidence[p["index"]]]
        else:
            line["grid"] = inputs.get("grid")
            if mask is not None:
                line["rationale_patches"] = [j for j, m in enumerate(mask) if m]
            if evidence is not None:
                line["evidence_patches"] = [j for j, m in enumerate(evidence) if m]
        out.append(line)
    return out


@router.get("/api/runs/{run_id:path}/rationales", response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                             "description": "one JSON object per example of the saved dev subset"},
                       **error_responses(404, 409, 422, e409="the run has no rationale snapshot yet")})
def export_rationales(
    run_id: str,
    settings: SettingsDep,
    step: Annotated[int | None, Query(ge=0, description="a snapshot step; omitted: the latest")] = None,
) -> Response:
    """The run's per-example rationales at one evaluation as JSON Lines: label, prediction,
    probabilities, mask and keep probabilities per position, selected tokens or patches (teacher too);
    where the data has ground truth, `ground_truth` ("benchmark" | "annotations"), `evidence` (0/1 per
    position, null for an example without), `evidence_tokens` / `evidence_patches`, and each side's
    `plausibility` {precision, recall} (null without ground truth or for a CLS run)."""
    store = RunStore(run_dir_or_404(settings, run_id))
    steps = list_snapshots(store)
    if not steps or not (store.examples / "inputs.json").exists():
        raise HTTPException(409, f"run {run_id!r} has no rationale snapshot yet (one is saved at each eval)")
    if step is not None and step not in steps:
        raise HTTPException(404, f"run {run_id!r} has no snapshot at step {step}; available: {steps}")
    shown = steps[-1] if step is None else step
    body = "".join(json.dumps(line) + "\n" for line in rationale_lines(store, shown))
    return Response(body, media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{run_id}-rationales-{shown}.jsonl"'})
