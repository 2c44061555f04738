"""Is the rationale real? Plausibility, input dependence and a covert-channel probe.

All functions take eval-time (argmax) masks as (N, L) 0/1 tensors over a split, with `valid`
(N, L) marking the positions that count (selectable: not padding, not [CLS]/[SEP]):

- `plausibility`: agreement with the ground-truth evidence (N, L), per example then averaged
  over the examples that carry ground truth: precision |M∩T|/|M|, recall |M∩T|/|T|, F1
  2|M∩T|/(|M|+|T|) (for text this is ERASER's token-F1), IoU |M∩T|/|M∪T|; an empty rationale
  scores 0. Beside it, what random positions at the same per-example size would score in
  expectation (exact: precision |T|/|V|, recall |M|/|V|, F1 2|M||T|/(|V|(|M|+|T|))). Text adds
  ERASER's IOU-F1: contiguous selected spans match a ground-truth span at IoU >= 0.5.
- `input_dependence`: the share of distinct masks, the mean pairwise Jaccard distance, and the
  *best fixed mask* (the one mask the run selects most often) with its share and plausibility;
  the accuracy of the predictor fed that fixed mask for every input needs the model and is
  measured by train/evaluate.py.
- `mask_probe`: k-fold accuracy of a multinomial logistic regression that sees only the binary
  mask, never the input, against the majority-class rate. Far above
  chance, the positions alone encode the label: the generator may be signalling the class
  through *where* it selects. Where ground truth exists the same probe on the ground-truth masks
  says how much the evidence's own shape gives away (an item's silhouette does).
"""

from __future__ import annotations

from typing import Any

import torch

PROBE_FOLDS = 5
PROBE_L2 = 1e-3
JACCARD_MAX_ROWS = 1024  # mean pairwise distance over at most this many masks (an N x N matrix)


def _binary(t: torch.Tensor) -> torch.Tensor:
    return (t.float() > 0.5).float()


def plausibility(mask: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, known: torch.Tensor | None = None,
                 *, spans: bool = False) -> dict[str, Any] | None:
    """Mask vs ground truth, averaged over the examples with ground truth (None when none has)."""
    m, t, v = _binary(mask) * _binary(valid), _binary(target) * _binary(valid), _binary(valid)
    rows = t.sum(1) > 0
    if known is not None:
        rows &= known.bool().to(rows.device)
    if not bool(rows.any()):
        return None
    m, t, v = m[rows], t[rows], v[rows]
    inter, k, g, n = (m * t).sum(1), m.sum(1), t.sum(1), v.sum(1).clamp_min(1)
    precision = torch.where(k > 0, inter / k.clamp_min(1), torch.zeros_like(k))
    recall = inter / g
    f1 = 2 * inter / (k + g)
    iou = inter / (k + g - inter)
    out: dict[str, Any] = {
        "n": int(rows.sum()),
        "precision": float(precision.mean()), "recall": float(recall.mean()),
        "f1": float(f1.mean()), "iou": float(iou.mean()),
        "evidence_fraction": float((g / n).mean()),
        "random": {"precision": float((g / n).mean()), "recall": float((k / n).mean()),
                   "f1": float((2 * k * g / (n * (k + g))).mean())},
    }
    if spans:
        out["iou_f1"] = iou_f1(m, t)
    return out


def per_example_plausibility(mask: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                             known: torch.Tensor | None = None) -> dict[str, list[float | None]]:
    """Each example's precision and recall (None where it carries no ground truth)."""
    m, t = _binary(mask) * _binary(valid), _binary(target) * _binary(valid)
    inter, k, g = (m * t).sum(1), m.sum(1), t.sum(1)
    has = g > 0
    if known is not None:
        has &= known.bool().to(has.device)
    p = torch.where(k > 0, inter / k.clamp_min(1), torch.zeros_like(k))
    r = inter / g.clamp_min(1)
    return {"precision": [round(float(a), 4) if h else None for a, h in zip(p.tolist(), has.tolist())],
            "recall": [round(float(a), 4) if h else None for a, h in zip(r.tolist(), has.tolist())]}


def _runs(row: list[float]) -> list[tuple[int, int]]:
    """[start, end) of each run of ones in a 0/1 row."""
    out, start = [], None
    for i, v in enumerate(row + [0.0]):
        if v > 0.5 and start is None:
            start = i
        elif v <= 0.5 and start is not None:
            out.append((start, i))
            start = None
    return out


def _span_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def iou_f1(mask: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """ERASER's IOU-F1, averaged over examples: a predicted span (a run of selected positions) is
    a match when its IoU with some ground-truth span reaches `threshold`; precision = matched
    predicted spans / predicted spans, recall = matched ground-truth spans / ground-truth spans."""
    scores = []
    for mrow, trow in zip(mask.tolist(), target.tolist()):
        pred, gold = _runs(mrow), _runs(trow)
        if not gold:
            continue
        if not pred:
            scores.append(0.0)
            continue
        p = sum(any(_span_iou(a, b) >= threshold for b in gold) for a in pred) / len(pred)
        r = sum(any(_span_iou(a, b) >= threshold for a in pred) for b in gold) / len(gold)
        scores.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(sum(scores) / len(scores)) if scores else 0.0


def fixed_mask(mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The mask the run selects most often (ties: the lexicographically first) and its share."""
    uniq, counts = torch.unique(_binary(mask), dim=0, return_counts=True)
    best = int(torch.argmax(counts))
    return uniq[best], float(counts[best]) / mask.shape[0]


def jaccard_distance(mask: torch.Tensor, max_rows: int = JACCARD_MAX_ROWS) -> float:
    """Mean Jaccard distance 1 - |A∩B|/|A∪B| over all pairs of the first `max_rows` masks (two
    empty masks are identical: distance 0)."""
    m = _binary(mask[:max_rows])
    n = m.shape[0]
    if n < 2:
        return 0.0
    inter = m @ m.T
    size = m.sum(1)
    union = size[:, None] + size[None, :] - inter
    sim = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=m.device), diagonal=1)
    return float((1 - sim)[upper].mean())


def input_dependence(mask: torch.Tensor, valid: torch.Tensor, target: torch.Tensor | None = None,
                     known: torch.Tensor | None = None) -> dict[str, Any]:
    """How much the masks change with the input, and the best fixed mask (see the module doc)."""
    m = _binary(mask) * _binary(valid)
    n = m.shape[0]
    distinct = int(torch.unique(m, dim=0).shape[0]) if n else 0
    fixed, share = fixed_mask(m) if n else (torch.zeros(m.shape[1]), 0.0)
    out: dict[str, Any] = {
        "n": n, "distinct": distinct, "distinct_share": distinct / n if n else 0.0,
        "jaccard_distance": jaccard_distance(m),
        "fixed_share": share, "fixed_size": int(fixed.sum()),
        "fixed_mask": [int(v) for v in fixed.tolist()],
    }
    if target is not None and n:
        fixed_all = fixed[None, :].expand_as(m) * _binary(valid)
        out["fixed_plausibility"] = plausibility(fixed_all, target, valid, known)
    return out


def _standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS (convex: the optimum is unique)."""
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, tolerance_grad=1e-6, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def mask_probe(mask: torch.Tensor, y: torch.Tensor, num_classes: int, *, folds: int = PROBE_FOLDS,
               seed: int = 0, l2: float = PROBE_L2) -> dict[str, Any] | None:
    """Held-out accuracy of a classifier that sees only the 0/1 mask (None: too few examples).

    k folds over a seeded permutation; each fold is predicted by a model fit on the others.
    `chance` is the majority class's share of the examples: what always guessing it scores.
    """
    x = _binary(mask).detach().cpu().double()
    y = y.detach().cpu().long()
    n = x.shape[0]
    if n < 2 * folds or int(torch.unique(y).numel()) < 2:
        return None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = order.chunk(folds)
    right = 0
    for k in range(folds):
        test = parts[k]
        train = torch.cat([p for j, p in enumerate(parts) if j != k])
        mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-3)
        w, b = _fit_logreg(_standardise(x[train], mean, std), y[train], num_classes, l2)
        pred = (_standardise(x[test], mean, std) @ w + b).argmax(1)
        right += int((pred == y[test]).sum())
    chance = int(torch.bincount(y, minlength=num_classes).max()) / n
    return {"accuracy": right / n, "chance": chance, "n": n, "folds": folds}
