"""Response models for whether a rationale is real (plausibility, input dependence, the mask-only
probe, warnings), shared by the run, examples, explain and compare routes.

The figures are computed at every evaluation by rekd_core/train/evaluate.py (rationale_metrics.py,
verdicts.py) and read back by rekd_core/analysis/quality.py; every field is null where a run has no such
figure (CLS runs, data without ground truth, runs trained before the figures existed).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from rekd_core.analysis.quality import clean

GroundTruthKind = Literal["benchmark", "annotations"]
GROUND_TRUTH_DOC = ("where the data has ground-truth evidence: `benchmark` (built so that only that part carries "
                    "the label: agreement with it is evidence the rationale found the signal) or `annotations` "
                    "(your own marks: agreement with annotators, not proof of evidence); null without")


class RandomPlausibility(BaseModel):
    """What random positions, as many per example as the rationale selects, would score in expectation."""

    precision: float | None = Field(None, description="|T| / |V|: the evidence's share of the counted positions")
    recall: float | None = Field(None, description="|M| / |V|: the rationale's share of the counted positions")
    f1: float | None = Field(None, description="2|M||T| / (|V|(|M|+|T|))")


class PlausibilityScores(BaseModel):
    """The rationale M against the ground-truth evidence T, per example then averaged over the
    examples that carry ground truth (an empty rationale scores 0)."""

    n: int | None = Field(None, description="examples with ground truth the averages are over")
    precision: float | None = Field(None, description="|M∩T| / |M|: the share of the rationale that is evidence")
    recall: float | None = Field(None, description="|M∩T| / |T|: the share of the evidence the rationale found")
    f1: float | None = Field(None, description="2|M∩T| / (|M|+|T|) (for text, ERASER's token F1)")
    iou: float | None = Field(None, description="|M∩T| / |M∪T|")
    evidence_fraction: float | None = Field(None, description="mean share of the counted positions that are evidence")
    random: RandomPlausibility | None = Field(None, description="the same scores for random positions of the same size")
    iou_f1: float | None = Field(None, description="text only: ERASER's IOU-F1 (a selected span matches an evidence "
                                                   "span at IoU >= 0.5); null for images")


class Plausibility(PlausibilityScores):
    ground_truth: GroundTruthKind | None = Field(None, description=GROUND_TRUTH_DOC)


class InputDependence(BaseModel):
    """How much the rationale changes with the input, and the best *fixed* mask as a baseline."""

    n: int | None = Field(None, description="masks compared (the split's examples)")
    distinct: int | None = Field(None, description="distinct masks among them")
    distinct_share: float | None = Field(None, description="distinct / n: near 0, one mask for every input")
    jaccard_distance: float | None = Field(None, description="mean pairwise Jaccard distance of the masks "
                                                             "(0: all equal)")
    fixed_share: float | None = Field(None, description="share of the inputs given the most frequent mask")
    fixed_size: int | None = Field(None, description="positions the most frequent mask selects")
    fixed_mask: list[int] | None = Field(
        None, description="the most frequent mask itself, 0/1 per position (num_positions long; kept so it can be "
                          "drawn)")
    fixed_accuracy: float | None = Field(
        None, description="accuracy of the predictor fed that one fixed mask for every input: close to the run's "
                          "own accuracy, the rationale adds nothing input-specific")
    fixed_plausibility: PlausibilityScores | None = Field(
        None, description="with ground truth: the fixed mask's plausibility (what a constant rationale scores)")


class Probe(BaseModel):
    """A classifier that sees only the 0/1 mask, never the input: far above chance, *where* the
    generator selects encodes the label (a covert code, not an explanation)."""

    accuracy: float | None = Field(None, description="k-fold held-out accuracy of the mask-only classifier")
    chance: float | None = Field(None, description="the majority class's share: what always guessing it scores")
    n: int | None = Field(None, description="examples probed")
    folds: int | None = Field(None, description="cross-validation folds")
    gt_accuracy: float | None = Field(
        None, description="with ground truth: the same probe on the ground-truth masks (how much the evidence's own "
                          "shape gives away); null without")


class RationaleWarning(BaseModel):
    """A plain warning about the rationale (rekd_core/analysis/verdicts.py)."""

    code: str = Field(description="`constant_rationale` (almost the same positions for every input) or "
                                  "`mask_code` (the mask alone predicts the label)")
    message: str = Field(description="the warning in one sentence")
    detail: str = Field(description="the figures that raised it")


class EvalQuality(BaseModel):
    """Whether the rationale is real, at one evaluation (a dev eval or the test result)."""

    step: int | None = Field(None, description="dev: the evaluation's step; test: the best-dev checkpoint's step "
                                               "that was tested")
    accuracy: float | None = Field(None, description="the evaluation's accuracy (what fixed_accuracy compares with)")
    plausibility: Plausibility | None = Field(None, description="agreement with the ground truth; null without")
    input_dependence: InputDependence | None = Field(None, description="null for CLS runs and older runs")
    probe: Probe | None = Field(None, description="null for CLS runs, older runs, or too few examples")
    warnings: list[RationaleWarning] = Field(default_factory=list, description="[] when none")


class RunQuality(BaseModel):
    run_id: str
    mode: str | None = Field(None, description="cls, re or rekd")
    ground_truth: GroundTruthKind | None = Field(None, description=GROUND_TRUTH_DOC)
    dev: EvalQuality | None = Field(None, description="the latest dev evaluation; null before the first")
    test: EvalQuality | None = Field(None, description="the test result (best-dev checkpoint); null until the run "
                                                       "has completed")
    warnings: list[RationaleWarning] = Field(
        default_factory=list, description="the test result's warnings once the run has completed, else the latest "
                                          "dev evaluation's")


class ExamplePlausibility(BaseModel):
    """One rationale against its example's ground truth (null for an example without ground truth)."""

    precision: float | None = Field(None, description="share of the rationale's positions that are evidence")
    recall: float | None = Field(None, description="share of the evidence's positions the rationale selected")


def eval_quality(block: dict[str, Any] | None) -> EvalQuality | None:
    return None if block is None else EvalQuality.model_validate(clean(block))


def run_quality_out(data: dict[str, Any]) -> RunQuality:
    return RunQuality.model_validate(clean(data))


def warnings_out(items: list[dict[str, Any]]) -> list[RationaleWarning]:
    return [RationaleWarning(**w) for w in items]


def example_plausibility(raw: dict[str, Any] | None, i: int) -> ExamplePlausibility | None:
    """Example `i` of a snapshot side's `plausibility` ({precision: [...], recall: [...]}); None when
    the side has none or the example carries no ground truth."""
    if not isinstance(raw, dict):
        return None
    try:
        p, r = raw["precision"][i], raw["recall"][i]
    except (KeyError, IndexError, TypeError):
        return None
    if p is None and r is None:
        return None
    return ExamplePlausibility(**clean({"precision": p, "recall": r}))
