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

from .checkpoint import atomic_write_json, load_checkpoint, save_checkpoint
from .data.features import Featurizer, Inputs, TextFeaturizer
from .data.raw import DatasetBundle
from .data.registry import ground_truth_kind
from .faithfulness import IG_STEPS, posthoc, rationale_faithfulness, summarize
from .model.runmodel import LoadedRun
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


def list_snapshots(store: RunStore) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in store.examples.glob("step-*.json"))


def read_snapshot(store: RunStore, step: int) -> dict[str, Any]:
    return json.loads((store.examples / f"step-{step:07d}.json").read_text())


# --- faithfulness over the saved examples, with an optional post-hoc baseline ------------------
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
