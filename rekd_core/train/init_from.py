"""model.init_from: a run that starts from another run's weights (e.g. a CLS run's): whether that
run's weights fit (`init_mismatch`, also the API's check when the run is requested) and the copy
(`init_from_run`: its predictor starts this run's predictor, its backbone the generator's)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig
from ..excerpts import excerpt
from ..model.models import RationaleModel
from ..store.checkpoint import load_checkpoint


class InitMismatch(ValueError):
    """model.init_from names a run whose weights cannot start this one."""


def init_mismatch(cfg: ExperimentConfig, init_student: dict[str, Any] | None, *,
                  classes: Sequence[str] | None = None, init_classes: Sequence[str] | None = None) -> str | None:
    """Why a run whose student was `init_student` (its config's model.student, as JSON) cannot start
    this one (model.init_from), or None when it can; classes compared when both are known."""
    mine = cfg.model.student.model_dump(mode="json")
    if init_student != mine:
        return (f"it has another student architecture ({excerpt(json.dumps(init_student, sort_keys=True), 160)}); "
                "it must match model.student")
    if classes is not None and init_classes is not None and list(classes) != list(init_classes):
        return f"it was trained on other classes ({excerpt(', '.join(map(str, init_classes)))})"
    return None


def init_from_run(model: RationaleModel, cfg: ExperimentConfig, run_dir: Path, class_names: list[str]) -> None:
    """model.init_from: start the predictor (backbone + classifier) from another run's best
    checkpoint, and the generator's own backbone from that run's predictor backbone."""
    path = run_dir / "checkpoints" / "best.safetensors"
    if not path.exists():
        path = run_dir / "checkpoints" / "last.safetensors"
    if not path.exists():
        raise InitMismatch(f"model.init_from: {run_dir} holds no checkpoint")
    tensors, meta = load_checkpoint(path, device="cpu")
    why = init_mismatch(cfg, meta.get("config", {}).get("model", {}).get("student"), classes=class_names,
                        init_classes=meta.get("class_names") or [])
    if why:  # the API made the same check (its classes aside) before the run was queued
        raise InitMismatch(f"model.init_from: {run_dir.name}: {why}")
    own = model.state_dict()
    copied = {}
    for key, value in tensors.items():
        name = key.removeprefix("model.")
        if name.startswith(("predictor.", "classifier.")):
            copied[name] = value
            twin = "generator." + name.removeprefix("predictor.")
            if name.startswith("predictor.") and twin in own and not model.share_backbone:
                copied[twin] = value
    missing = [k for k in copied if k not in own or own[k].shape != copied[k].shape]
    if missing:
        raise InitMismatch(f"model.init_from: {run_dir} does not fit this model ({missing[:3]})")
    model.load_state_dict(copied, strict=False)
