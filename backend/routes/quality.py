"""GET /api/runs/{id}/quality: is the run's rationale real? Read from the run, nothing computed."""

from __future__ import annotations

from fastapi import APIRouter

from backend.quality import RunQuality, run_quality_out
from backend.runs_fs import SettingsDep, error_responses, run_dir_or_404
from rekd_core.analysis.quality import run_quality

router = APIRouter(tags=["runs"])


@router.get("/api/runs/{run_id:path}/quality", response_model=RunQuality,
            responses=error_responses(404, 422, e422="invalid run id"))
def get_quality(run_id: str, settings: SettingsDep) -> RunQuality:
    """Whether the run's rationale is real: plausibility against ground truth (where the data has it),
    input dependence with the best fixed mask, the mask-only probe and the warnings they raise, for
    the latest dev evaluation and the test result. Every figure is null for a CLS run or a run
    trained before these figures were recorded; nothing is computed here, all is read from the run."""
    root = run_dir_or_404(settings, run_id)
    return run_quality_out({**run_quality(root), "run_id": run_id})
