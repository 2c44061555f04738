"""Gumbel-softmax rationale masks.

Z has shape (B, L, 2): per position, logits of (drop, keep). Training draws a relaxed sample
S_tau = softmax((Z + G) / tau) and a hard mask with the straight-through estimator; evaluation
and explanations use the deterministic argmax of Z.
"""

from __future__ import annotations

import torch


def gumbel_noise(shape: torch.Size | tuple[int, ...], *, generator: torch.Generator | None,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """G = -log(-log U), drawn on `device` (no host round trip in the training loop)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    # clamp keeps log finite at the ends of the interval
    u = u.clamp_(torch.finfo(dtype).tiny, 1.0 - torch.finfo(dtype).eps)
    return -torch.log(-torch.log(u))


def relaxed_sample(logits: torch.Tensor, tau: float, noise: torch.Tensor | None) -> torch.Tensor:
    """S_tau = softmax((Z + G) / tau), shape (B, L, 2); `noise=None` gives the clean softmax(Z / tau)."""
    z = logits if noise is None else logits + noise
    return torch.softmax(z / tau, dim=-1)


def straight_through(soft: torch.Tensor) -> torch.Tensor:
    """Hard keep-mask (B, L) with the gradient of the soft keep-probability.

    `hard + (s - s.detach())` is exactly `hard` in the forward pass (x - x == 0 in floating
    point), unlike `hard - s.detach() + s`, which can be off by one ulp.
    """
    keep = soft[..., 1]
    hard = (soft[..., 1] > soft[..., 0]).to(soft.dtype)
    return hard + (keep - keep.detach())


def hard_mask(logits: torch.Tensor) -> torch.Tensor:
    """Deterministic evaluation mask: keep where the keep-logit wins (argmax Z)."""
    return (logits[..., 1] > logits[..., 0]).to(logits.dtype)


def selection_probs(logits: torch.Tensor) -> torch.Tensor:
    """The generator's keep probability per position, softmax(Z)[..., 1] (no noise, tau = 1)."""
    return torch.softmax(logits.float(), dim=-1)[..., 1]


def topk_mask(scores: torch.Tensor, selectable: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, L) 0/1: in each row the round(fraction x its selectable positions) highest `scores`
    (at least one), never a position that is not selectable; ties go to the earlier position."""
    s = scores.float().masked_fill(selectable <= 0, float("-inf"))
    length = s.shape[1]
    k = (selectable.float().sum(1) * fraction).round().clamp(min=1)
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(length, device=s.device).expand_as(order))
    return ((ranks < k[:, None]) & (selectable > 0)).to(scores.dtype)


def keep_score(logits: torch.Tensor) -> torch.Tensor:
    """z_keep - z_drop: what top-k ranks (the argmax rule keeps where it is positive)."""
    return logits[..., 1] - logits[..., 0]


def span_mean(z: torch.Tensor, span: int) -> torch.Tensor:
    """(B, L, 2) logits with every run of `span` consecutive positions set to the run's mean, so
    whatever ranks or thresholds positions keeps or drops a run whole (the last run may be short)."""
    if span == 1:
        return z
    b, length, c = z.shape
    runs = -(-length // span)
    padded = torch.nn.functional.pad(z, (0, 0, 0, runs * span - length))
    counts = torch.full((runs,), float(span), device=z.device, dtype=z.dtype)
    counts[-1] = length - (runs - 1) * span  # the padded tail is not averaged in
    means = padded.view(b, runs, span, c).sum(2) / counts[None, :, None]
    return means.repeat_interleave(span, dim=1)[:, :length]


def span_noise(shape: torch.Size | tuple[int, ...], span: int, *, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
    """Gumbel noise shared by each run of `span` positions (shape (B, L, 2)), so a sampled mask keeps runs whole."""
    b, length, c = shape
    g = gumbel_noise((b, -(-length // span), c), generator=generator, device=device)
    return g.repeat_interleave(span, dim=1)[:, :length]
