"""The loss terms of DESIGN.md, one function each, named as in the paper.

Shapes: Z (B, L, 2) generator logits; M (B, L) masks; Q (B, C) predictor logits;
`valid` (B, L) is 1 where a position counts toward L (real tokens / patches), else 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prediction_ce(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(q.float(), y)


def selection_loss(mask: torch.Tensor, valid: torch.Tensor, p_target: float,
                   how: str = "per_example") -> torch.Tensor:
    """(sum_l M_l - L * p_target)^2.

    per_example (paper): each example's count against its own L, then the batch mean.
    batch_mean (reference): the batch-mean count against the batch-mean L, squared once.
    """
    count = (mask * valid).sum(dim=1)
    length = valid.sum(dim=1)
    if how == "per_example":
        return ((count - length * p_target) ** 2).mean()
    if how == "batch_mean":
        return (count.mean() - length.mean() * p_target) ** 2
    raise ValueError(f"length_penalty must be 'per_example' or 'batch_mean', got {how!r}")


def re_loss(q: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, *,
            lambda_select: float, p_target: float, how: str = "per_example") -> dict[str, torch.Tensor]:
    """L_RE = CE(Q, y) + lambda_select * (sum M - L p)^2, with its two parts."""
    ce = prediction_ce(q, y)
    sel = selection_loss(mask, valid, p_target, how)
    return {"ce": ce, "select": sel, "re": ce + lambda_select * sel}


_TINY = torch.finfo(torch.float32).tiny  # log(0) is read as log(tiny): 0 log 0 = 0


def kl_divergence(p: torch.Tensor, log_q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(p || q) along `dim` from the probabilities `p` and the log-probabilities `log_q`; 0 log 0 = 0.
    The engine's one KL: both distillation terms below are this."""
    p = p.float()
    return (p * (torch.log(p.clamp_min(_TINY)) - log_q)).sum(dim)


def kl_categorical(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(p || q) along `dim` for probability tensors; 0 log 0 = 0."""
    return kl_divergence(p, torch.log(q.float().clamp_min(_TINY)), dim)


def rationale_kd(s_teacher: torch.Tensor, s_student: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L_KD^R = sum_l KL(S^T_l || S^S_l) over counted positions, batch mean. S: (B, L, 2)."""
    per_pos = kl_categorical(s_teacher, s_student)  # (B, L)
    return (per_pos * valid).sum(dim=1).mean()


def prediction_kd(q_teacher: torch.Tensor, q_student: torch.Tensor, tau: float) -> torch.Tensor:
    """L_KD^Y = KL(softmax(Q^T / tau) || softmax(Q^S / tau)), batch mean (tau^2 is applied by the caller)."""
    pt = torch.softmax(q_teacher.float() / tau, dim=-1)
    log_ps = torch.log_softmax(q_student.float() / tau, dim=-1)
    return kl_divergence(pt, log_ps).mean()


def rekd_loss(l_re: torch.Tensor, kd_r: torch.Tensor | None, kd_y: torch.Tensor | None, *,
              tau: float, alpha: float, lambda_R: float) -> dict[str, torch.Tensor]:
    """L_KD = lambda_R * L_KD^R + tau^2 * L_KD^Y;  L_REKD = alpha * L_RE + (1 - alpha) * L_KD.

    A part left out by the `distill` option is passed as None and contributes nothing.
    """
    kd = l_re.new_zeros(())
    if kd_r is not None:
        kd = kd + lambda_R * kd_r
    if kd_y is not None:
        kd = kd + (tau ** 2) * kd_y
    return {"kd": kd, "total": alpha * l_re + (1.0 - alpha) * kd}
