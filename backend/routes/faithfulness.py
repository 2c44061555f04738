"""GET /api/runs/{id}/faithfulness: ERASER scores of a run's rationales, with a post-hoc baseline.

It runs models (a baseline CLS run's integrated gradients, or an old snapshot's checkpoint): a plain
`def` route, which FastAPI runs in its threadpool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from backend.runs_fs import SettingsDep, check_run_id, error_responses, run_dir_or_404
from rekd_core.analysis.explain import load_run
from rekd_core.analysis.faithfulness import baseline_problem
from rekd_core.analysis.faithfulness_report import NoFaithfulness, faithfulness_report
from rekd_core.config import ExperimentConfig
from rekd_core.model.runmodel import LoadedRun
from rekd_core.store.runstore import RunStore
from service.settings import Settings

from ._shared import finite, inputs_or_409, pick_step

router = APIRouter(tags=["runs"])


# --- response models ---------------------------------------------------------------------------
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
    inputs = inputs_or_409(store)
    _, shown = pick_step(store, step)
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
