"""Faithfulness shown, not claimed: ERASER's comprehensiveness and sufficiency.

Definitions (DeYoung et al. 2020, "ERASER: A Benchmark to Evaluate Rationalized NLP Models",
section 4.2), for one example x, its rationale r and the predicted class ŷ:

    comprehensiveness = p(ŷ | x) − p(ŷ | x \\ r)   high: what the rationale held was needed
    sufficiency       = p(ŷ | x) − p(ŷ | r)       low (≤ 0 is best): the rationale alone suffices

For an RE model ŷ is the class the predictor gives from its rationale (the model's actual
prediction) and all three probabilities come from that one predictor through its own mask path
(RationaleModel.predict: the mask multiplies the patch / word embeddings; the ViT CLS token and,
unless `loss.count_special`, BERT's [CLS]/[SEP] are always kept; padding stays out of attention):

    p_rationale  = p(ŷ | r)      mask = the generator's deterministic mask (argmax Z)
    p_full       = p(ŷ | x)      mask = every selectable position
    p_complement = p(ŷ | x \\ r)  mask = the selectable positions the generator did not keep

So "x \\ r" is the input with the rationale's embeddings zeroed, exactly as the predictor already
drops unselected positions; a rationale covering every position leaves an all-masked input.

The post-hoc comparison (`posthoc`) explains a CLS run (the same predictor architecture trained on
the full input) with integrated gradients (Sundararajan et al. 2017) and scores the top-k
positions, k = the RE rationale's size for that example, with the same two measures, computed with
the CLS model through the *same* mask path (RationaleModel.predict accepts a mask in every mode:
the unselected patch / word embeddings are zeroed; no pixels or tokens are replaced). Here ŷ is
the CLS model's prediction on the full input, as in ERASER. IG is implemented here in plain torch:
Captum would add matplotlib and tqdm to the engine's dependencies for some forty lines, and it
needs a layer hook for the token path anyway.

Callers put models in eval mode (no dropout); no Gumbel noise is drawn anywhere here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..config import ExperimentConfig, PatchGrid, TextBackbone
from ..data.features import Inputs
from ..model.backbones import BertBackbone, VitBackbone
from ..model.models import RationaleModel

# (inputs, keep-mask over positions) -> class logits (B, C); RationaleModel.predict and
# TeacherOutputs.predict_with both have this shape
Predict = Callable[[Inputs, torch.Tensor], torch.Tensor]

IG_STEPS = 32


@dataclass
class Faithfulness:
    """Per-example (B,) tensors for one batch; ŷ is `target`."""

    target: torch.Tensor
    p_full: torch.Tensor
    p_rationale: torch.Tensor
    p_complement: torch.Tensor
    full_pred: torch.Tensor
    complement_pred: torch.Tensor

    @property
    def comprehensiveness(self) -> torch.Tensor:
        return self.p_full - self.p_complement

    @property
    def sufficiency(self) -> torch.Tensor:
        return self.p_full - self.p_rationale

    def columns(self) -> dict[str, torch.Tensor]:
        """The stored quantities by name (comprehensiveness and sufficiency derive from them)."""
        return {"p_full": self.p_full, "p_rationale": self.p_rationale, "p_complement": self.p_complement,
                "full_pred": self.full_pred, "complement_pred": self.complement_pred}


def full_mask(inputs: Inputs) -> torch.Tensor:
    """Every selectable position kept: the predictor on the whole input, through the mask path."""
    return inputs.selectable.float()


def complement_mask(inputs: Inputs, mask: torch.Tensor) -> torch.Tensor:
    """The selectable positions the rationale did not keep (x \\ r)."""
    sel = inputs.selectable.float()
    return sel * (1.0 - (mask.float() * sel))


def _prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), -1).gather(1, target[:, None])[:, 0]


@torch.no_grad()
def erasure(predict: Predict, inputs: Inputs, mask: torch.Tensor, *, q_rationale: torch.Tensor | None = None,
            q_full: torch.Tensor | None = None, target: str = "rationale") -> Faithfulness:
    """ERASER scores of `mask` (B, L) under one predictor.

    `q_rationale` / `q_full` are logits the caller already has (they are not recomputed, so an
    evaluation that has the rationale's prediction pays two extra forwards). `target` picks ŷ:
    "rationale" (an RE model's prediction) or "full" (a full-input model's, for post-hoc masks).
    """
    mask = mask.float()
    if q_rationale is None:
        q_rationale = predict(inputs, mask)
    if q_full is None:
        q_full = predict(inputs, full_mask(inputs))
    q_comp = predict(inputs, complement_mask(inputs, mask))
    if target == "rationale":
        y_hat = q_rationale.argmax(-1)
    elif target == "full":
        y_hat = q_full.argmax(-1)
    else:
        raise ValueError(f"target must be 'rationale' or 'full', not {target!r}")
    return Faithfulness(target=y_hat, p_full=_prob(q_full, y_hat), p_rationale=_prob(q_rationale, y_hat),
                        p_complement=_prob(q_comp, y_hat), full_pred=q_full.argmax(-1),
                        complement_pred=q_comp.argmax(-1))


@torch.no_grad()
def rationale_faithfulness(model: RationaleModel, inputs: Inputs) -> tuple[torch.Tensor, Faithfulness]:
    """(the deterministic rationale mask, its ERASER scores) for an RE model (student or teacher)."""
    if not model.with_generator:
        raise ValueError("a CLS model has no rationale: use posthoc() for a post-hoc selection")
    m = model.select(model.generate(inputs), inputs.selectable)
    return m, erasure(model.predict, inputs, m)


def summarize(f: Faithfulness, y: torch.Tensor | None = None) -> dict[str, float]:
    """Averages over the examples (the eval event's `faithfulness`); accuracies need labels `y`."""
    out = {"comprehensiveness": float(f.comprehensiveness.float().mean()),
           "sufficiency": float(f.sufficiency.float().mean()),
           "p_full": float(f.p_full.float().mean()), "p_rationale": float(f.p_rationale.float().mean()),
           "p_complement": float(f.p_complement.float().mean())}
    if y is not None:
        out["complement_accuracy"] = float((f.complement_pred == y).float().mean())
        out["full_accuracy"] = float((f.full_pred == y).float().mean())
    return out


def example_row(p_full: float, p_rationale: float, p_complement: float, full_pred: int, complement_pred: int,
                class_names: list[str] | None = None) -> dict[str, Any]:
    """One example's scores as the API shows them: rounded to 4 decimals, classes by name."""
    def name(k: int) -> Any:
        return class_names[k] if class_names is not None and 0 <= k < len(class_names) else k

    return {"p_full": round(p_full, 4), "p_rationale": round(p_rationale, 4),
            "p_complement": round(p_complement, 4),
            "comprehensiveness": round(p_full - p_complement, 4), "sufficiency": round(p_full - p_rationale, 4),
            "full_pred": name(full_pred), "complement_pred": name(complement_pred)}


def rows(f: Faithfulness, class_names: list[str] | None = None) -> list[dict[str, Any]]:
    cols = {k: v.tolist() for k, v in f.columns().items()}
    return [example_row(cols["p_full"][i], cols["p_rationale"][i], cols["p_complement"][i], cols["full_pred"][i],
                        cols["complement_pred"][i], class_names) for i in range(len(cols["p_full"]))]


# --- integrated gradients on a full-input (CLS) model ------------------------------------------
@dataclass
class IGResult:
    attributions: torch.Tensor  # in input space: pixels (B, C, H, W) or word embeddings (B, L, D)
    per_position: torch.Tensor  # (B, L) sum of |attribution| over a patch's pixels / a token's dims
    f_input: torch.Tensor  # (B,) p(target | x)
    f_baseline: torch.Tensor  # (B,) p(target | baseline)


def _text_encoder(model: RationaleModel) -> BertBackbone | None:
    return model.predictor if isinstance(model.predictor, BertBackbone) else None


def integrated_gradients(model: RationaleModel, inputs: Inputs, target: torch.Tensor, *, steps: int = IG_STEPS,
                         rows_per_pass: int = 512, pad_id: int | None = None) -> IGResult:
    """IG of p(target | x) for the predictor on the full input (Sundararajan et al. 2017).

    attr = (x − x') ⊙ (1/S) Σ_k ∇f(x' + α_k (x − x')), α_k = (k + ½)/S (midpoint rule), so that
    Σ attr ≈ f(x) − f(x') (completeness). Baseline x': images, the all-zeros model input (the
    normalised pixels, as Captum's default); texts, the [PAD] embedding at every selectable
    position ([CLS]/[SEP] and padding keep their own, so they get no attribution), the path running
    through the word-embedding layer (token ids are not differentiable).
    """
    steps = max(int(steps), 1)
    full = full_mask(inputs)
    text = _text_encoder(model)
    emb_layer = None if text is None else text.bert.get_input_embeddings()
    b = len(inputs)
    with torch.no_grad():
        if text is None or emb_layer is None:
            x = inputs.x.float()
            x0 = torch.zeros_like(x)
        else:
            x = emb_layer(inputs.x).float()
            pid = pad_id if pad_id is not None else int(getattr(text.bert.config, "pad_token_id", 0) or 0)
            pad = emb_layer(torch.full_like(inputs.x[:, :1], pid)).float()  # (B, 1, D)
            sel = inputs.selectable.float().unsqueeze(-1)
            x0 = sel * pad + (1 - sel) * x
    per_chunk = max(1, rows_per_pass // max(b, 1))
    alphas = (torch.arange(steps, dtype=torch.float32, device=x.device) + 0.5) / steps
    grad_sum = torch.zeros_like(x)
    rep = max(1, min(per_chunk, steps))

    def batched(n: int) -> tuple[Inputs, torch.Tensor]:
        # the batch repeated n times, example-major within each alpha block
        big = replace(inputs, x=inputs.x.repeat(n, *([1] * (inputs.x.dim() - 1))),
                      attention=None if inputs.attention is None else inputs.attention.repeat(n, 1),
                      selectable=inputs.selectable.repeat(n, 1),
                      keep=None if inputs.keep is None else inputs.keep.repeat(n, 1))
        return big, full.repeat(n, 1)

    def prob_at(points: torch.Tensor, n: int) -> torch.Tensor:
        big, fm = batched(n)
        if emb_layer is None:
            q = model.predict(replace(big, x=points), fm)
        else:
            # the word-embedding layer returns the path point instead of looking up the ids
            handle = emb_layer.register_forward_hook(lambda _m, _i, _o: points)
            try:
                q = model.predict(big, fm)
            finally:
                handle.remove()
        return _prob(q, target.repeat(n))

    with torch.enable_grad():
        for i in range(0, steps, rep):
            a = alphas[i:i + rep]
            n = len(a)
            shape = (n, 1) + (1,) * (x.dim() - 1)
            pts = (x0.unsqueeze(0) + a.view(shape) * (x - x0).unsqueeze(0)).reshape(n * b, *x.shape[1:])
            pts = pts.detach().requires_grad_(True)
            p = prob_at(pts, n)
            (g,) = torch.autograd.grad(p.sum(), pts)
            grad_sum += g.view(n, b, *x.shape[1:]).sum(0)
    attr = (x - x0) * grad_sum / steps
    with torch.no_grad():
        f_x = prob_at(x, 1)
        f_0 = prob_at(x0, 1)
    return IGResult(attributions=attr, per_position=_per_position(model, attr), f_input=f_x, f_baseline=f_0)


def _per_position(model: RationaleModel, attr: torch.Tensor) -> torch.Tensor:
    """Sum of |attribution| per patch (over its pixels and channels) or per token (over its dims)."""
    a = attr.abs()
    if attr.dim() == 3:  # (B, L, D) word embeddings
        return a.sum(-1)
    if not isinstance(model.predictor, VitBackbone):
        raise TypeError(f"attributions over pixels need a ViT predictor, not {type(model.predictor).__name__}")
    gh, gw = model.predictor.vit.patch_embed.grid_size
    bsz, c, h, w = a.shape
    return a.view(bsz, c, gh, h // gh, gw, w // gw).sum(dim=(1, 3, 5)).reshape(bsz, gh * gw)


def topk_mask(scores: torch.Tensor, k: torch.Tensor, selectable: torch.Tensor) -> torch.Tensor:
    """(B, L) 0/1: each example's k[b] highest-scoring selectable positions (ties: lowest index)."""
    s = scores.float().masked_fill(selectable <= 0, float("-inf"))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(s.shape[1], device=s.device).expand_as(order))
    return ((ranks < k.to(ranks.device).view(-1, 1)) & (selectable > 0)).float()


@dataclass
class Posthoc:
    mask: torch.Tensor  # (B, L) the top-k selection
    ig: IGResult
    scores: Faithfulness  # ŷ = the CLS model's prediction on the full input


def posthoc(model: RationaleModel, inputs: Inputs, k: torch.Tensor, *, steps: int = IG_STEPS) -> Posthoc:
    """IG top-k selection (k per example) of a full-input model, scored with that same model."""
    with torch.no_grad():
        q_full = model.predict(inputs, full_mask(inputs))
    y_hat = q_full.argmax(-1)
    ig = integrated_gradients(model, inputs, y_hat, steps=steps)
    mask = topk_mask(ig.per_position, k, inputs.selectable)
    scores = erasure(model.predict, inputs, mask, q_full=q_full, target="full")
    return Posthoc(mask=mask, ig=ig, scores=scores)


def baseline_problem(run: ExperimentConfig, run_classes: list[str], base: ExperimentConfig,
                     base_classes: list[str]) -> str | None:
    """Why a CLS run cannot serve as the post-hoc baseline of an RE run (None: it can)."""
    if run.mode == "cls":
        return "the run is a CLS run: it has no rationale to compare with a post-hoc one"
    if base.mode != "cls":
        return f"the baseline must be a CLS run, not a {base.mode!r} run"
    if base.task != run.task:
        return f"the baseline is a {base.task} run but the run is a {run.task} run"
    if base.data.dataset != run.data.dataset or list(base_classes) != list(run_classes):
        return (f"the baseline was trained on {base.data.dataset!r} but the run on {run.data.dataset!r}: "
                "they must share the dataset and its classes")
    s, t = run.model.student, base.model.student
    if isinstance(s, PatchGrid) and isinstance(t, PatchGrid):
        if tuple(s.grid) != tuple(t.grid) or s.img_size != t.img_size:
            return (f"the baseline sees a {t.grid[0]}x{t.grid[1]} patch grid at {t.img_size} px but the run a "
                    f"{s.grid[0]}x{s.grid[1]} grid at {s.img_size} px: the positions must be the same")
    elif isinstance(s, TextBackbone) and isinstance(t, TextBackbone):
        if (base.data.tokenizer, base.data.max_len) != (run.data.tokenizer, run.data.max_len):
            return (f"the baseline reads tokens with {base.data.tokenizer!r}/{base.data.max_len} but the run with "
                    f"{run.data.tokenizer!r}/{run.data.max_len}: the positions must be the same")
    return None
