"""What a run's checkpoints hold, and resuming from them.

`last` (and `previous`, the `last` it replaced: the fallback when `last` is damaged) carries all a
resumed run needs to go on bit for bit: the weights, the optimizer's state, the RNG states (torch's,
the Gumbel noise generator's, CUDA's on a GPU) and the open log window (`LogWindow`: the steps since
the last log event, so that the first log after a resume covers the same steps). `best` carries the
weights. The files are store/checkpoint.py's: tensors, plus JSON metadata (the caller's `meta`:
config, class names, step, ...) in the header.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..model.models import RationaleModel
from ..model.runmodel import load_model_weights, model_weights
from ..store.atomic import remove_partial_writes
from ..store.checkpoint import (
    decode_bytes,
    encode_bytes,
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    save_checkpoint,
)
from ..store.runstore import RunStore
from .evaluate import frac_stats
from .tasks import StepOut

log = logging.getLogger(__name__)

WINDOW_TENSORS = ("frac", "iou")  # the window's per-example columns, saved as tensors `window.<name>`


class LogWindow:
    """The steps since the last log event: their loss terms, accuracy, selected fractions and (REKD)
    mask IoUs with the teacher. Summed as tensors on the device, read on the host at the log step."""

    def __init__(self) -> None:
        self.n = 0  # steps
        self.samples = 0
        self.correct: Any = 0
        self.terms: dict[str, Any] = {}
        self.frac: list[torch.Tensor] = []
        self.iou: list[torch.Tensor] = []

    def add(self, out: StepOut, y: torch.Tensor, valid: torch.Tensor) -> None:
        """One training step's outputs (tensors only: no host synchronisation)."""
        self.n += 1
        self.samples += int(y.shape[0])
        self.correct = self.correct + (out.logits.argmax(-1) == y).sum()
        for k, v in out.terms.items():
            self.terms[k] = self.terms.get(k, 0.0) + v.detach().float()
        if out.mask is not None:
            self.frac.append((out.mask * valid).sum(1) / valid.sum(1).clamp_min(1))
        if "iou" in out.extra:
            self.iou.append(out.extra["iou"])

    def figures(self, seconds: float) -> dict[str, Any]:
        """The log event's figures over the window (`seconds` of wall time)."""
        ev: dict[str, Any] = {
            "loss": {k: float(v) / self.n for k, v in self.terms.items()},
            "train_acc": float(self.correct) / max(self.samples, 1),
            "samples_per_s": self.samples / max(seconds, 1e-9),
        }
        if self.frac:
            ev["selected"] = frac_stats(torch.cat(self.frac))
        if self.iou:
            ev["iou"] = float(torch.cat(self.iou).mean())
        return ev

    def state_dict(self) -> dict[str, Any]:
        """The window as a checkpoint keeps it: numbers (n, samples, correct, terms) and, when the
        window has them, the per-example columns as tensors (frac, iou)."""
        state: dict[str, Any] = {"n": self.n, "samples": self.samples, "correct": float(self.correct),
                                 "terms": {k: float(v) for k, v in self.terms.items()}}
        for key in WINDOW_TENSORS:
            parts = getattr(self, key)
            if parts:
                state[key] = torch.cat(parts)
        return state

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.n = state["n"]
        self.samples = state["samples"]
        self.correct = torch.tensor(state["correct"], device=device)
        self.terms = {k: torch.tensor(v, device=device) for k, v in state["terms"].items()}
        for key in WINDOW_TENSORS:
            setattr(self, key, [state[key]] if key in state else [])


def save_state(store: RunStore, kind: str, model: RationaleModel, meta: dict[str, Any], *,
               opt: torch.optim.Optimizer, noise_gen: torch.Generator, device: torch.device,
               window: LogWindow | None = None) -> None:
    """Checkpoint `kind` of the run: "last" with everything a resume needs (the `last` it replaces
    kept as `previous`), "best" with the weights; `window`, the open log window, with either."""
    tensors = model_weights(model)
    if window is not None:
        state = window.state_dict()
        for key in WINDOW_TENSORS:
            if key in state:
                tensors[f"window.{key}"] = state.pop(key)
        meta["window"] = state
    if kind == "last":
        opt_t, groups = optimizer_tensors(opt)
        tensors.update(opt_t)
        meta["optimizer_groups"] = groups
        meta["rng"] = {"torch": encode_bytes(torch.get_rng_state()), "noise": encode_bytes(noise_gen.get_state())}
        if device.type == "cuda":
            meta["rng"]["cuda"] = encode_bytes(torch.cuda.get_rng_state(device))
    previous = store.checkpoints / "previous.safetensors" if kind == "last" else None
    save_checkpoint(store.checkpoints / f"{kind}.safetensors", tensors, meta, previous=previous)


def resume_point(store: RunStore, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest intact resume checkpoint: `last`, else the one it replaced. A crash between
    the two renames of a save leaves only `previous`; a damaged `last` is refused on load."""
    remove_partial_writes(store.checkpoints)
    found = [p for p in (store.checkpoints / "last.safetensors", store.checkpoints / "previous.safetensors")
             if p.exists()]
    errors = []
    for path in found:
        try:
            return load_checkpoint(path, device=device)
        except ValueError as err:
            log.error("%s", err)
            errors.append(str(err))
    if errors:
        raise RuntimeError("no intact checkpoint to resume from: " + "; ".join(errors))
    return None


def restore_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], *, model: RationaleModel,
                  opt: torch.optim.Optimizer, noise_gen: torch.Generator, device: torch.device) -> LogWindow | None:
    """Load a resume checkpoint into the run's model, optimizer and RNGs; return its open log window
    (None: a checkpoint written before windows were saved: the resumed run starts a new one)."""
    load_model_weights(model, tensors)
    load_optimizer_tensors(opt, tensors, meta["optimizer_groups"])
    torch.set_rng_state(decode_bytes(meta["rng"]["torch"]))
    noise_gen.set_state(decode_bytes(meta["rng"]["noise"]))
    if "cuda" in meta["rng"] and device.type == "cuda":
        torch.cuda.set_rng_state(decode_bytes(meta["rng"]["cuda"]), device)
    if "window" not in meta:
        return None
    state = dict(meta["window"])
    for key in WINDOW_TENSORS:
        if f"window.{key}" in tensors:
            state[key] = tensors[f"window.{key}"]
    window = LogWindow()
    window.load_state_dict(state, device)
    return window
