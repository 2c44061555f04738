"""The run directories as the read routes see them: run-id checks, run-dir lookup, error shapes.

A run id arrives from the network (a path segment or a form field), so it is checked against
`RUN_ID_RE` and the resolved directory must stay inside `runs_dir`: no `..`, no absolute path,
no symlink out of the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from pydantic import BaseModel, Field

from rekd_core.store.runstore import RUN_ID_RE
from service.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


class ErrorOut(BaseModel):
    """Every error body: `{"detail": ...}`."""

    detail: str | list[dict[str, Any]] = Field(
        description="what went wrong; a list of field errors when FastAPI itself rejected the request's shape")


_DEFAULT_DESCRIPTIONS = {
    400: "the request body could not be parsed",
    404: "no such run",
    409: "the run has nothing to show yet",
    413: "the request is too large",
    415: "the upload is not a supported image",
    422: "invalid input",
}


def error_responses(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these status codes; `e404="..."` overrides one description."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        text = described.get(f"e{code}", _DEFAULT_DESCRIPTIONS.get(code, "error"))
        out[code] = {"model": ErrorOut, "description": text}
    return out


def check_run_id(run_id: str) -> str:
    # fullmatch: RUN_ID_RE ends in `$`, which .match() would also accept before a trailing newline
    if not RUN_ID_RE.fullmatch(run_id):
        shown = run_id if len(run_id) <= 80 else run_id[:80] + "…"
        raise HTTPException(422, f"invalid run id {shown!r}: expected a letter or digit, then up to 127 "
                                 "letters, digits, '_', '.' or '-'")
    return run_id


def run_dir_or_404(settings: Settings, run_id: str) -> Path:
    """The run's directory (resolved), after checking the id (422) and that the run exists (404)."""
    check_run_id(run_id)
    root = settings.runs_dir.resolve()
    path = (settings.runs_dir / run_id).resolve()
    # a run directory holds its config.json: <runs>/data (the default data root) and strays are no runs
    if path == root or not path.is_relative_to(root) or not (path / "config.json").is_file():
        raise HTTPException(404, f"no run {run_id!r}")
    return path
