"""Building a rationale model from a config, and rebuilding one from a run's checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import Backbone, ExperimentConfig, parse_config
from ..data.features import Featurizer, TextFeaturizer, build_featurizer
from ..store.checkpoint import load_checkpoint
from .models import RationaleModel


def build_model(cfg: ExperimentConfig, spec: Backbone, *, num_classes: int,
                featurizer: Featurizer, with_generator: bool) -> RationaleModel:
    vocab_size: int | None = None
    max_len: int | None = None
    fill_token_id: int | None = None
    if isinstance(featurizer, TextFeaturizer):
        vocab_size, max_len = featurizer.vocab_size, featurizer.max_len
        fill_token_id = featurizer.fill_token_id(cfg.model.dropped_token)
    return RationaleModel(
        spec, num_classes=num_classes, with_generator=with_generator,
        share_backbone=cfg.model.share_backbone,
        vocab_size=vocab_size,
        max_len=max_len,
        fill_token_id=fill_token_id,
        topk_fraction=cfg.loss.p_target if cfg.model.selection == "topk" else None,
        span=cfg.model.span,
        predictor_attention=cfg.model.predictor_attention,
    )


def model_weights(model: RationaleModel) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def load_model_weights(model: RationaleModel, tensors: dict[str, torch.Tensor]) -> None:
    sd = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(sd, strict=True)


class LoadedRun:
    """A trained run rebuilt from its checkpoint: config, featurizer, model, class names."""

    def __init__(self, run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> None:
        self.run_dir = Path(run_dir)
        path = self.run_dir / "checkpoints" / f"{which}.safetensors"
        if not path.exists() and which == "best":
            path = self.run_dir / "checkpoints" / "last.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{self.run_dir}: no checkpoint yet (looked for {which}.safetensors)")
        self.checkpoint_path = path
        tensors, meta = load_checkpoint(path, device="cpu")
        self.meta: dict[str, Any] = meta
        self.config: ExperimentConfig = parse_config(meta["config"])
        self.class_names: list[str] = meta["class_names"]
        self.step: int = int(meta.get("step", 0))
        self.device = torch.device(device)
        self.featurizer = build_featurizer(self.config)
        self.model = build_model(self.config, self.config.model.student, num_classes=len(self.class_names),
                                 featurizer=self.featurizer, with_generator=self.config.mode != "cls")
        load_model_weights(self.model, tensors)
        self.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def mode(self) -> str:
        return self.config.mode
