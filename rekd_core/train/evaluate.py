"""Deterministic evaluation of a model on a prepared split: accuracy, faithfulness and whether
the rationale is real (plausibility, input dependence, the mask-only probe).

Used by the training loop at every evaluation and on the test split, and by `rekd evaluate`
on a finished run. Masks are the eval-time ones: argmax of the generator logits, no noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..analysis.faithfulness import Faithfulness, erasure, summarize
from ..analysis.rationale_metrics import input_dependence, mask_probe, per_example_plausibility, plausibility
from ..analysis.verdicts import rationale_warnings
from ..data.features import Featurizer, Prepared, TextFeaturizer
from ..data.load import load_for_config
from ..data.registry import ground_truth_kind
from ..model.masks import selection_probs
from ..model.models import RationaleModel
from ..model.runmodel import LoadedRun
from .tasks import mask_iou
from .teacher import TeacherOutputs


def macro_f1(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    conf.index_put_((y.cpu(), pred.cpu()), torch.ones_like(y.cpu()), accumulate=True)
    tp = conf.diag().float()
    prec = tp / conf.sum(0).clamp_min(1)
    rec = tp / conf.sum(1).clamp_min(1)
    f1 = torch.where(prec + rec > 0, 2 * prec * rec / (prec + rec), torch.zeros_like(tp))
    present = (conf.sum(1) + conf.sum(0)) > 0  # classes absent from both sides do not count
    return float(f1[present].mean()) if bool(present.any()) else 0.0


def frac_stats(frac: torch.Tensor) -> dict[str, float]:
    return {"mean": float(frac.mean()), "std": float(frac.std(unbiased=False)),
            "min": float(frac.min()), "max": float(frac.max())}


def _pad(t: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad (B, L') to (B, length) so batches trimmed to different lengths concatenate."""
    if t.shape[1] == length:
        return t
    return torch.nn.functional.pad(t, (0, length - t.shape[1]))


def _faith(cat: dict[str, torch.Tensor], prefix: str) -> Faithfulness:
    """The evaluation's `{prefix}*` columns back as a Faithfulness (ŷ is not kept: not needed)."""
    return Faithfulness(target=cat[f"{prefix}full_pred"], **{k: cat[f"{prefix}{k}"] for k in
                        ("p_full", "p_rationale", "p_complement", "full_pred", "complement_pred")})


def _batch_size(feat: Featurizer) -> int:
    return 64 if isinstance(feat, TextFeaturizer) else 256


@torch.no_grad()
def evaluate(model: RationaleModel, feat: Featurizer, data: Prepared, *, num_classes: int,
             autocast: bool = False, teacher: TeacherOutputs | None = None, rows: torch.Tensor | None = None,
             faithfulness: bool = True, teacher_faithfulness: bool = False, rationale: bool = True,
             probe_seed: int = 0, ground_truth: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Evaluate `model` on `data` (or its `rows`): (metrics, per-example columns).

    With `faithfulness` an RE model's rationales are also scored with ERASER's comprehensiveness
    and sufficiency (analysis/faithfulness.py): two more predictor forwards per batch, read as `f_*`
    columns and averaged into metrics["faithfulness"]. `teacher_faithfulness` scores the
    teacher's own rationales the same way (`t_f_*` columns), with the live teacher predictor:
    meant for a small subset only. With `rationale`, metrics also get "input_dependence" (one
    more predictor pass, with the best fixed mask), "probe", "plausibility" where the split
    carries ground truth, and "warnings" (analysis/verdicts.py). Per-example plausibility (`pl_*`, and
    `t_pl_*` for the teacher) and the ground truth (`evidence`) are columns whenever it exists.
    `ground_truth` (data.registry.ground_truth_kind of the dataset) is recorded with plausibility.
    """
    device = data.y.device
    was_training = model.training
    model.eval()
    if rows is None:
        # length-sorted order for text (batches trim to similar lengths); undone below
        rows = feat.inference_order(data)
    rows = rows.to(device)
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in ("pred", "probs", "frac", "iou")}
    per_pos: dict[str, list[torch.Tensor]] = {k: [] for k in ("mask", "sel", "valid", "t_mask", "t_sel", "t_pred",
                                                               "t_probs")}
    width = feat.num_positions
    bs = _batch_size(feat)
    for i in range(0, len(rows), bs):
        idx = rows[i:i + bs]
        inputs = feat.batch(data, idx)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            if model.with_generator:
                z = model.generate(inputs)
                m = model.select(z, inputs.selectable)
                q = model.predict(inputs, m)
                sel = inputs.selectable
                outs["frac"].append((m * sel).sum(1) / sel.sum(1).clamp_min(1))
                if faithfulness:
                    f = erasure(model.predict, inputs, m, q_rationale=q)
                    for k, v in f.columns().items():
                        outs.setdefault(f"f_{k}", []).append(v)
                per_pos["mask"].append(_pad(m, width))
                per_pos["sel"].append(_pad(selection_probs(z), width))
            else:
                q = model.predict(inputs, None)
            per_pos["valid"].append(_pad(inputs.selectable, width))
            if teacher is not None:
                zt, qt = teacher.own(idx, inputs)
                mt = teacher.teacher.select(zt, inputs.selectable)
                per_pos["t_mask"].append(_pad(mt, width))
                per_pos["t_sel"].append(_pad(selection_probs(zt), width))
                per_pos["t_pred"].append(qt.argmax(-1))
                per_pos["t_probs"].append(torch.softmax(qt.float(), -1))
                if teacher_faithfulness:
                    ft = erasure(teacher.predict_with, inputs, mt, q_rationale=qt)
                    for k, v in ft.columns().items():
                        per_pos.setdefault(f"t_f_{k}", []).append(v)
                if model.with_generator:
                    outs["iou"].append(mask_iou(m, mt, inputs.selectable))
        outs["pred"].append(q.argmax(-1))
        outs["probs"].append(torch.softmax(q.float(), -1))
    cat = {k: torch.cat(v) for k, v in {**outs, **per_pos}.items() if v}
    unsort = torch.argsort(rows)
    rows = rows[unsort]
    cat = {k: v[unsort] for k, v in cat.items()}
    y = data.y[rows]
    metrics: dict[str, Any] = {
        "accuracy": float((cat["pred"] == y).float().mean()),
        "macro_f1": macro_f1(cat["pred"], y, num_classes),
        "n": int(len(rows)),
    }
    if "frac" in cat:
        metrics["selected"] = frac_stats(cat["frac"])
    if "iou" in cat:
        metrics["iou"] = float(cat["iou"].mean())
    if "f_p_full" in cat:
        metrics["faithfulness"] = summarize(_faith(cat, "f_"), y)

    ev = data.evidence
    target = known = None
    if ev is not None:
        target, known = ev[0][rows].float(), ev[1][rows]
        cat["evidence"] = target * cat["valid"]
        cat["evidence_known"] = known
        for prefix in ("", "t_"):
            if f"{prefix}mask" in cat:
                pe = per_example_plausibility(cat[f"{prefix}mask"], target, cat["valid"], known)
                cat[f"{prefix}pl_precision"] = _column(pe["precision"])
                cat[f"{prefix}pl_recall"] = _column(pe["recall"])
    if rationale and "mask" in cat:
        metrics.update(rationale_metrics(model, feat, data, rows, cat, y, num_classes=num_classes, autocast=autocast,
                                         target=target, known=known, probe_seed=probe_seed))
        metrics["warnings"] = rationale_warnings(metrics)
    if "plausibility" in metrics and ground_truth is not None:
        metrics["plausibility"]["ground_truth"] = ground_truth
    if was_training:
        model.train()
    return metrics, cat


def _column(values: list[float | None]) -> torch.Tensor:
    return torch.tensor([float("nan") if v is None else v for v in values])


def rationale_metrics(model: RationaleModel, feat: Featurizer, data: Prepared, rows: torch.Tensor,
                      cat: dict[str, torch.Tensor], y: torch.Tensor, *, num_classes: int, autocast: bool,
                      target: torch.Tensor | None, known: torch.Tensor | None,
                      probe_seed: int = 0) -> dict[str, Any]:
    """plausibility (with ground truth), input_dependence (with the fixed mask's accuracy) and the
    mask-only probe, for the masks in `cat` (rows in `rows` order)."""
    mask, valid = cat["mask"] * cat["valid"], cat["valid"]
    out: dict[str, Any] = {}
    text = isinstance(feat, TextFeaturizer)
    if target is not None:
        pl = plausibility(mask, target, valid, known, spans=text)
        if pl is not None:
            out["plausibility"] = pl
    dep = input_dependence(mask, valid, target, known)
    fixed = torch.tensor(dep["fixed_mask"], dtype=torch.float32, device=y.device)
    dep["fixed_accuracy"] = _fixed_mask_accuracy(model, feat, data, rows, fixed, autocast=autocast)
    out["input_dependence"] = dep
    probe = mask_probe(mask, y, num_classes, seed=probe_seed)
    if probe is not None:
        if target is not None:
            have = known.bool() if known is not None else torch.ones(len(y), dtype=torch.bool)
            gt = mask_probe((target * valid)[have], y[have], num_classes, seed=probe_seed)
            probe["gt_accuracy"] = None if gt is None else gt["accuracy"]
        out["probe"] = probe
    return out


def _fixed_mask_accuracy(model: RationaleModel, feat: Featurizer, data: Prepared, rows: torch.Tensor,
                         fixed: torch.Tensor, *, autocast: bool) -> float:
    """Accuracy of the predictor when every input gets the same mask `fixed` (its own positions)."""
    device = data.y.device
    right = 0
    order = feat.inference_order(data)
    keep = torch.zeros(len(data), dtype=torch.bool, device=device)
    keep[rows] = True
    order = order[keep[order]]
    bs = _batch_size(feat)
    for i in range(0, len(order), bs):
        idx = order[i:i + bs]
        inputs = feat.batch(data, idx)
        sel = inputs.selectable
        m = fixed[None, :sel.shape[1]].expand_as(sel) * sel
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            q = model.predict(inputs, m)
        right += int((q.argmax(-1) == data.y[idx]).sum())
    return right / max(len(order), 1)


def evaluate_run(run_dir: str | Path, *, split: str = "test", which: str = "best",
                 device: str = "cpu") -> dict[str, Any]:
    """Score a trained run on one split of its own data (as `rekd evaluate` prints it).

    The run is rebuilt from its checkpoint (`which`) and its dataset from its stored config, so
    the figures are those the run's own evaluations report, computed afresh.
    """
    if split not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    run = LoadedRun(run_dir, which=which, device=device)
    cfg = run.config
    bundle = load_for_config(cfg)
    part = getattr(bundle, split)
    data = run.featurizer.prepare(part.x, part.y, run.device, evidence=part.evidence)
    metrics, _ = evaluate(run.model, run.featurizer, data, num_classes=len(run.class_names),
                          faithfulness=run.mode != "cls", probe_seed=cfg.train.seed,
                          ground_truth=ground_truth_kind(bundle.name))
    return {"run": Path(run_dir).name, "run_dir": str(Path(run_dir).resolve()), "mode": run.mode,
            "dataset": bundle.name, "split": split, "checkpoint": which, "step": run.step, **metrics}
