"""Per-example rationales of a fixed dev subset, saved at every evaluation for the UI.

examples/inputs.json          which dev rows, their labels, and for text their tokens
examples/inputs.safetensors   for images, the rows' pixels at native size (uint8)
examples/step-<step>.json     at one step (zero-padded to 7 digits): student (and teacher)
                              prediction, probabilities, the binary mask and the selection
                              probability per position
"""

from __future__ import annotations

import json
from typing import Any

import torch

from .checkpoint import atomic_write_json, save_checkpoint
from .data import DatasetBundle
from .features import Featurizer, TextFeaturizer
from .runstore import RunStore


def write_inputs(store: RunStore, bundle: DatasetBundle, feat: Featurizer, rows: torch.Tensor,
                 class_names: list[str]) -> None:
    rows_l = rows.cpu().tolist()
    meta: dict[str, Any] = {"split": "dev", "rows": rows_l, "labels": bundle.dev.y[rows.cpu()].tolist(),
                            "class_names": class_names, "modality": bundle.modality,
                            "num_positions": feat.num_positions}
    if isinstance(feat, TextFeaturizer):
        texts = [bundle.dev.x[i] for i in rows_l]  # type: ignore[index]
        items = []
        for text in texts:
            _, positions = feat.positions(text)
            items.append({"text": text, "positions": [p for p in positions if p["token"] != feat.tokenizer.pad_token]})
        meta["items"] = items
    else:
        images = bundle.dev.x[rows.cpu()]  # type: ignore[index]
        save_checkpoint(store.examples / "inputs.safetensors", {"images": images}, {"rows": rows_l})
        h, w = images.shape[-2:]
        meta["image_size"] = [int(h), int(w)]
        meta["grid"] = list(feat.spec.grid)  # type: ignore[union-attr]
        meta["positions"] = feat.positions(int(h), int(w))  # type: ignore[union-attr]
    atomic_write_json(store.examples / "inputs.json", meta)


def _side(out: dict[str, torch.Tensor], prefix: str) -> dict[str, Any] | None:
    pred = out.get(f"{prefix}pred")
    if pred is None:
        return None
    side: dict[str, Any] = {"pred": pred.tolist(),
                            "probs": [[round(p, 4) for p in row] for row in out[f"{prefix}probs"].tolist()]}
    if f"{prefix}mask" in out:
        side["mask"] = out[f"{prefix}mask"].to(torch.uint8).tolist()
        side["sel_prob"] = [[round(p, 3) for p in row] for row in out[f"{prefix}sel"].tolist()]
    return side


def write_snapshot(store: RunStore, *, step: int, tau: float, out: dict[str, torch.Tensor],
                   y: torch.Tensor) -> None:
    snap = {"step": step, "tau": tau, "labels": y.tolist(), "student": _side(out, ""),
            "teacher": _side(out, "t_")}
    atomic_write_json(store.examples / f"step-{step:07d}.json", snap)


def list_snapshots(store: RunStore) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in store.examples.glob("step-*.json"))


def read_snapshot(store: RunStore, step: int) -> dict[str, Any]:
    return json.loads((store.examples / f"step-{step:07d}.json").read_text())
