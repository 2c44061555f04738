"""One training step per mode: CLS, RE and REKD as task objects sharing one loop (trainer.py).

Each task's `step` returns the loss to minimise and the quantities the trainer logs, as
tensors (no host synchronisation here: the trainer reads them only at log steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ExperimentConfig
from ..data.features import Inputs
from ..model import losses
from ..model.masks import gumbel_noise, keep_score, relaxed_sample, span_noise, straight_through, topk_mask
from ..model.models import RationaleModel
from .teacher import TeacherOutputs


@dataclass
class StepOut:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    logits: torch.Tensor  # Q (B, C)
    mask: torch.Tensor | None = None  # hard student mask (B, L)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def mask_iou(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-example IoU of two 0/1 masks over counted positions (1 when both are empty)."""
    a = a * valid
    b = b * valid
    inter = (a * b).sum(1)
    union = ((a + b) > 0).float().sum(1)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


class ClsTask:
    """A plain classifier on the whole input: the no-rationale baseline."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg

    def step(self, model: RationaleModel, inputs: Inputs, y: torch.Tensor, idx: torch.Tensor,
             tau: float, gen: torch.Generator | None) -> StepOut:
        q = model.predict(inputs, None)
        ce = losses.prediction_ce(q, y)
        return StepOut(loss=ce, terms={"ce": ce, "total": ce}, logits=q)


class PartialInputTask(ClsTask):
    """The predictor alone on a random subset of each input's positions (each kept with
    probability `keep`): a warm-up that shows it inputs like the rationales it will read."""

    def __init__(self, cfg: ExperimentConfig, keep: float) -> None:
        super().__init__(cfg)
        self.keep = keep

    def step(self, model: RationaleModel, inputs: Inputs, y: torch.Tensor, idx: torch.Tensor,
             tau: float, gen: torch.Generator | None) -> StepOut:
        u = torch.rand(inputs.selectable.shape, generator=gen, device=inputs.selectable.device)
        m = (u < self.keep).to(inputs.selectable.dtype)
        q = model.predict(inputs, m)
        ce = losses.prediction_ce(q, y)
        return StepOut(loss=ce, terms={"ce": ce, "total": ce}, logits=q)


def _noise(z: torch.Tensor, span: int, gen: torch.Generator | None) -> torch.Tensor:
    """Gumbel noise for logits `z`, one draw per run of `span` positions."""
    if span == 1:
        return gumbel_noise(z.shape, generator=gen, device=z.device)
    return span_noise(z.shape, span, generator=gen, device=z.device)


class ReTask:
    """L_RE with a straight-through Gumbel-softmax mask.

    `p_target` starts as loss.p_target; the trainer moves it during a sparsity warm-up.
    """

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.p_target = cfg.loss.p_target

    def sample(self, model: RationaleModel, inputs: Inputs, tau: float,
               gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = model.generate(inputs)
        g = _noise(z, model.span, gen)
        s = relaxed_sample(z, tau, g)
        if model.topk_fraction is None:
            return z, s, straight_through(s)
        # top-k: the k best Gumbel-perturbed scores, with the relaxed keep probability's gradient
        keep = s[..., 1]
        hard = topk_mask(keep_score(z + g), inputs.selectable, self.p_target)
        return z, s, hard + (keep - keep.detach())

    def re_terms(self, model: RationaleModel, inputs: Inputs, y: torch.Tensor, m: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lc = self.cfg.loss
        q = model.predict(inputs, m)
        terms = losses.re_loss(q, y, m, inputs.selectable, lambda_select=lc.lambda_select,
                               p_target=self.p_target, how=str(lc.length_penalty))
        return q, terms

    def step(self, model: RationaleModel, inputs: Inputs, y: torch.Tensor, idx: torch.Tensor,
             tau: float, gen: torch.Generator | None) -> StepOut:
        _, _, m = self.sample(model, inputs, tau, gen)
        q, terms = self.re_terms(model, inputs, y, m)
        terms["total"] = terms["re"]
        return StepOut(loss=terms["re"], terms=terms, logits=q, mask=m.detach())


class RekdTask(ReTask):
    """L_REKD = alpha * L_RE + (1 - alpha) * (lambda_R * L_KD^R + tau^2 * L_KD^Y)."""

    def __init__(self, cfg: ExperimentConfig, teacher: TeacherOutputs) -> None:
        super().__init__(cfg)
        self.teacher = teacher

    def step(self, model: RationaleModel, inputs: Inputs, y: torch.Tensor, idx: torch.Tensor,
             tau: float, gen: torch.Generator | None) -> StepOut:
        lc = self.cfg.loss
        z_s, s_s, m = self.sample(model, inputs, tau, gen)
        q_s, terms = self.re_terms(model, inputs, y, m)
        z_t, q_t_own = self.teacher.own(idx, inputs)
        m_t = self.teacher.teacher.select(z_t, inputs.selectable)

        kd_r = kd_y = None
        if lc.distill in ("both", "rationale"):
            if lc.kd_rationale_input == "noisy":
                # reference: both sides are Gumbel samples (the teacher draws its own noise)
                g_t = _noise(z_t, self.teacher.teacher.span, gen)
                s_t, s_stu = relaxed_sample(z_t, tau, g_t), s_s
            else:
                s_t, s_stu = relaxed_sample(z_t, tau, None), relaxed_sample(z_s, tau, None)
            kd_r = losses.rationale_kd(s_t, s_stu, inputs.selectable)
            terms["kd_r"] = kd_r
        if lc.distill in ("both", "prediction"):
            if lc.teacher_predictor_mask == "student":
                # the teacher is a fixed target: no gradient flows back through it
                q_t = self.teacher.predict_with(inputs, m.detach())
            else:
                q_t = q_t_own
            kd_y = losses.prediction_kd(q_t, q_s, tau)
            terms["kd_y"] = kd_y
        mix = losses.rekd_loss(terms["re"], kd_r, kd_y, tau=tau, alpha=lc.alpha, lambda_R=lc.lambda_R)
        terms.update(mix)
        iou = mask_iou(m.detach(), m_t, inputs.selectable)
        return StepOut(loss=mix["total"], terms=terms, logits=q_s, mask=m.detach(), extra={"iou": iou})
