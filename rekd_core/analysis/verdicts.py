"""Plain warnings about a rationale, from its metrics (rationale_metrics.py); no torch here, so
every layer can state them the same way.

- `constant_rationale`: the run selects almost the same positions for every input: fewer than
  10 % of its masks are distinct, or its predictor fed the single most frequent mask for every
  input is within 2 points of its accuracy.
- `mask_code`: a classifier that sees only the mask (not the input) predicts the label far above
  chance: more than halfway from the chance rate to 100 %. Where ground truth exists, the same
  probe on the ground-truth masks is the reference: a mask that tells no more than the evidence's
  own shape (within 5 points) is not flagged.
"""

from __future__ import annotations

from typing import Any

DISTINCT_SHARE_MIN = 0.10
FIXED_MASK_MARGIN = 0.02
PROBE_EXCESS_MAX = 0.5
PROBE_GT_MARGIN = 0.05

CONSTANT = "this run selects almost the same positions for every input"
CODE = "the mask alone predicts the label: the rationale may be a code, not an explanation"


def rationale_warnings(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """[{code, message, detail}] for an evaluation's metrics (an eval event, a test result)."""
    out: list[dict[str, str]] = []
    dep = metrics.get("input_dependence")
    acc = metrics.get("accuracy")
    if dep:
        reasons = []
        share = dep.get("distinct_share")
        if share is not None and share < DISTINCT_SHARE_MIN:
            reasons.append(f"{share:.1%} of its masks are distinct ({dep.get('distinct')} of {dep.get('n')})")
        fixed_acc = dep.get("fixed_accuracy")
        if fixed_acc is not None and acc is not None and acc - fixed_acc <= FIXED_MASK_MARGIN:
            reasons.append(f"one fixed mask for every input gives {fixed_acc:.1%} accuracy against its {acc:.1%}")
        if reasons:
            out.append({"code": "constant_rationale", "message": CONSTANT, "detail": "; ".join(reasons)})
    probe = metrics.get("probe")
    if probe and probe.get("accuracy") is not None:
        p, chance = float(probe["accuracy"]), float(probe.get("chance") or 0.0)
        excess = (p - chance) / max(1.0 - chance, 1e-9)
        gt = probe.get("gt_accuracy")
        explained = gt is not None and p <= float(gt) + PROBE_GT_MARGIN
        if excess > PROBE_EXCESS_MAX and not explained:
            detail = f"a classifier on the mask alone gets {p:.1%} (chance {chance:.1%})"
            if gt is not None:
                detail += f"; on the ground-truth masks {float(gt):.1%}"
            out.append({"code": "mask_code", "message": CODE, "detail": detail})
    return out
