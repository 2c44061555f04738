"""Per-example rationales of a fixed dev subset, saved at every evaluation for the UI.

examples/inputs.json          which dev rows, their labels, and for text their tokens
examples/inputs.safetensors   for images, the rows' pixels at native size (uint8)
examples/step-<step>.json     at one step (zero-padded to 7 digits): student (and teacher)
                              prediction, probabilities, the binary mask and the selection
                              probability per position, and for RE sides `faithfulness`: per
                              example p_full / p_rationale / p_complement, comprehensiveness,
                              sufficiency (4 decimals) and full_pred / complement_pred (class
                              indices); snapshots written before it have no such key; where the
                              data has ground truth, `plausibility`: per example precision and
                              recall of the mask against it (null for an example without)

inputs.json carries the ground truth where the data has it: `evidence`, per example the 0/1
target per position (null for an example without), and `ground_truth`: "benchmark" (built so that
only that part carries the label) or "annotations" (your own: agreement with annotators).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from ..data.features import Featurizer, TextFeaturizer
from ..data.raw import DatasetBundle, images_of, texts_of
from ..data.registry import ground_truth_kind
from .atomic import atomic_write_json
from .checkpoint import save_checkpoint
from .runstore import RunStore


def write_inputs(store: RunStore, bundle: DatasetBundle, feat: Featurizer, rows: torch.Tensor,
                 class_names: list[str], evidence: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """`evidence`: the dev split's (targets (N, L), known (N,)) from Prepared.evidence, if any."""
    rows_l = rows.cpu().tolist()
    meta: dict[str, Any] = {"split": "dev", "rows": rows_l, "labels": bundle.dev.y[rows.cpu()].tolist(),
                            "class_names": class_names, "modality": bundle.modality,
                            "num_positions": feat.num_positions}
    if evidence is not None:
        targets, known = (t[rows.to(t.device)].cpu() for t in evidence)
        meta["ground_truth"] = ground_truth_kind(bundle.name)
        meta["evidence"] = [[int(v) for v in row] if k else None
                            for row, k in zip(targets.round().to(torch.int64).tolist(), known.tolist())]
    if isinstance(feat, TextFeaturizer):
        dev_texts = texts_of(bundle.dev.x)
        texts = [dev_texts[i] for i in rows_l]
        items = []
        for text in texts:
            _, positions = feat.positions(text)
            items.append({"text": text, "positions": [p for p in positions if p["token"] != feat.tokenizer.pad_token]})
        meta["items"] = items
    else:
        images = images_of(bundle.dev.x)[rows.cpu()]
        save_checkpoint(store.examples / "inputs.safetensors", {"images": images}, {"rows": rows_l})
        h, w = images.shape[-2:]
        meta["image_size"] = [int(h), int(w)]
        meta["grid"] = list(feat.spec.grid)
        meta["positions"] = feat.positions(int(h), int(w))
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
    if f"{prefix}f_p_full" in out:
        side["faithfulness"] = _faithfulness_columns(out, f"{prefix}f_")
    if f"{prefix}pl_precision" in out:
        side["plausibility"] = {k: [None if v != v else round(float(v), 4) for v in out[f"{prefix}pl_{k}"].tolist()]
                                for k in ("precision", "recall")}
    return side


def _faithfulness_columns(out: dict[str, torch.Tensor], prefix: str) -> dict[str, list[Any]]:
    """Per-example ERASER scores, one list per field like the rest of the snapshot (classes by index)."""
    cols = {k: out[f"{prefix}{k}"].tolist() for k in ("p_full", "p_rationale", "p_complement")}
    res: dict[str, list[Any]] = {k: [round(float(p), 4) for p in v] for k, v in cols.items()}
    # from the unrounded probabilities, so each difference is itself correctly rounded
    res["comprehensiveness"] = [round(a - b, 4) for a, b in zip(cols["p_full"], cols["p_complement"])]
    res["sufficiency"] = [round(a - b, 4) for a, b in zip(cols["p_full"], cols["p_rationale"])]
    for k in ("full_pred", "complement_pred"):
        res[k] = [int(v) for v in out[f"{prefix}{k}"].tolist()]
    return res


def write_snapshot(store: RunStore, *, step: int, tau: float, out: dict[str, torch.Tensor],
                   y: torch.Tensor) -> None:
    snap = {"step": step, "tau": tau, "labels": y.tolist(), "student": _side(out, ""),
            "teacher": _side(out, "t_")}
    atomic_write_json(store.examples / f"step-{step:07d}.json", snap)


def read_inputs(store: RunStore) -> dict[str, Any] | None:
    """The run's inputs.json (see the module doc), or None before training has written it."""
    path = store.examples / "inputs.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def list_snapshots(store: RunStore) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in store.examples.glob("step-*.json"))


def read_snapshot(store: RunStore, step: int) -> dict[str, Any]:
    return json.loads((store.examples / f"step-{step:07d}.json").read_text())
