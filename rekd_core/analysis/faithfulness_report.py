"""ERASER faithfulness over a run's saved dev examples (store/examples.py), beside a post-hoc
baseline: a CLS run's integrated-gradients top-k selections at the same size (what the API's
faithfulness view shows). Snapshots from before faithfulness was scored are recomputed from the
checkpoint of their step, when one is left."""

from __future__ import annotations

import json
from typing import Any

import torch

from ..data.features import Featurizer, Inputs, TextFeaturizer
from ..model.runmodel import LoadedRun
from ..store.checkpoint import load_checkpoint
from ..store.examples import read_snapshot
from ..store.runstore import RunStore
from .faithfulness import IG_STEPS, posthoc, rationale_faithfulness, summarize


class NoFaithfulness(LookupError):
    """The snapshot predates faithfulness scores and no checkpoint of its step is left to recompute them."""


def example_inputs(store: RunStore, feat: Featurizer, limit: int, device: torch.device) -> tuple[Inputs, torch.Tensor]:
    """The first `limit` saved dev examples as `feat` featurises them, with their labels."""
    meta = json.loads((store.examples / "inputs.json").read_text())
    y = torch.tensor(meta["labels"][:limit], dtype=torch.long)
    if isinstance(feat, TextFeaturizer):
        x: Any = [item["text"] for item in meta["items"][:limit]]
    else:
        tensors, _ = load_checkpoint(store.examples / "inputs.safetensors")
        x = tensors["images"][:limit]
    prepared = feat.prepare(x, y, device)
    return feat.batch(prepared, torch.arange(len(y), device=device)), y


def _fit(t: torch.Tensor, length: int) -> torch.Tensor:
    return t[:, :length] if t.shape[1] >= length else torch.nn.functional.pad(t, (0, length - t.shape[1]))


def _recompute(store: RunStore, step: int, limit: int) -> tuple[dict[str, float], torch.Tensor]:
    """(rationale averages, masks) from the checkpoint saved at `step`, for snapshots without scores."""
    for which in ("last", "best"):
        try:
            run = LoadedRun(store.root, which=which)
        except (FileNotFoundError, ValueError):
            continue
        if run.step != step or run.mode == "cls":
            continue
        inputs, _ = example_inputs(store, run.featurizer, limit, run.device)
        mask, f = rationale_faithfulness(run.model, inputs)
        return summarize(f), _fit(mask * inputs.selectable, run.featurizer.num_positions).cpu()
    raise NoFaithfulness(f"run {store.run_id!r}: the snapshot at step {step} has no faithfulness scores and no "
                         "checkpoint of that step is left to compute them (pick the last step)")


def _counted_positions(store: RunStore, n: int) -> torch.Tensor:
    """(n, num_positions) 1 where the run's rationale counts a position (its own featurisation, as saved)."""
    meta = json.loads((store.examples / "inputs.json").read_text())
    length = int(meta["num_positions"])
    if meta["modality"] != "text":
        return torch.ones(n, length)
    out = torch.zeros(n, length)
    for i, item in enumerate(meta["items"][:n]):
        for p in item["positions"]:
            if p.get("selectable", True) and p["index"] < length:
                out[i, p["index"]] = 1.0
    return out


def faithfulness_report(store: RunStore, step: int, *, baseline: LoadedRun | None = None, limit: int = 64,
                        ig_steps: int = IG_STEPS) -> dict[str, Any]:
    """ERASER scores of the run's rationales over its saved dev examples at snapshot `step`, and
    (with a CLS `baseline`) of that run's integrated-gradients top-k selections at the same size."""
    snap = read_snapshot(store, step)
    side = snap["student"]
    n = min(limit, len(snap["labels"]))
    masks = torch.tensor(side["mask"][:n], dtype=torch.float32)
    faith = side.get("faithfulness")
    if faith:
        rationale: dict[str, float] = {k: sum(faith[k][:n]) / max(n, 1) for k in ("comprehensiveness", "sufficiency")}
    else:
        means, masks = _recompute(store, step, n)
        rationale = {k: means[k] for k in ("comprehensiveness", "sufficiency")}
    out: dict[str, Any] = {"run_id": store.run_id, "step": step, "n": n, "rationale": rationale, "baseline": None}
    counted = _counted_positions(store, n)
    k = (_fit(masks, counted.shape[1]) * counted).sum(1)
    rationale["selected_fraction"] = float((k / counted.sum(1).clamp_min(1)).mean()) if n else 0.0
    if baseline is not None and n:
        inputs, _ = example_inputs(store, baseline.featurizer, n, baseline.device)
        n_sel = inputs.selectable.sum(1).clamp_min(1)
        res = posthoc(baseline.model, inputs, k.long().to(baseline.device), steps=ig_steps)
        s = summarize(res.scores)
        out["baseline"] = {"run_id": baseline.run_dir.name, "method": "integrated_gradients",
                           "comprehensiveness": s["comprehensiveness"], "sufficiency": s["sufficiency"],
                           "selected_fraction": float((res.mask.sum(1) / n_sel).mean())}
    return out
