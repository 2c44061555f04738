"""The rationale model: generator (backbone + L x 2 head) and predictor (backbone + classifier)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import Backbone
from ..data.features import Inputs
from .backbones import BackboneModule, BertBackbone, VitBackbone, build_backbone
from .masks import hard_mask, keep_score, span_mean, topk_mask
from .selected import encode_selected


class RationaleModel(nn.Module):
    """`cls` mode has only the predictor, which then reads the whole input."""

    def __init__(self, spec: Backbone, *, num_classes: int, with_generator: bool,
                 share_backbone: bool = False, vocab_size: int | None = None,
                 max_len: int | None = None, fill_token_id: int | None = None,
                 topk_fraction: float | None = None, span: int = 1, predictor_attention: str = "full") -> None:
        super().__init__()
        # full: the paper's predictor over all L positions; selected: only the selected ones (selected.py)
        self.predictor_attention = predictor_attention
        # text: positions are selected in runs of `span` tokens (1: single tokens, the paper)
        self.span = span
        # None: the paper's argmax rule; a fraction: exactly that share of each input's positions
        self.topk_fraction = topk_fraction
        self.predictor = build_backbone(spec, vocab_size=vocab_size, max_len=max_len, fill_token_id=fill_token_id)
        if predictor_attention == "selected" and not isinstance(self.predictor, VitBackbone | BertBackbone):
            raise ValueError("model.predictor_attention: selected needs a ViT or BERT-like student (a CNN reads "
                             "pixels: there is no sequence to shorten)")
        self.classifier = nn.Linear(self.predictor.hidden_size, num_classes)
        self.with_generator = with_generator
        self.share_backbone = share_backbone
        if with_generator:
            if not share_backbone:  # registered once, so the state dict holds no aliased tensors
                self.generator = build_backbone(spec, vocab_size=vocab_size, max_len=max_len)
            self.selector = nn.Linear(self.predictor.hidden_size, 2)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, head parameters): heads start from scratch even on a pretrained backbone."""
        heads = list(self.classifier.parameters())
        if self.with_generator:
            heads += list(self.selector.parameters())
        head_ids = {id(p) for p in heads}
        body = [p for p in self.parameters() if id(p) not in head_ids]
        return body, heads

    def generator_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(the generator's own backbone, its selector head); a shared backbone counts as the predictor's."""
        if not self.with_generator:
            return [], []
        body = [] if self.share_backbone else list(self.generator.parameters())
        return body, list(self.selector.parameters())

    @property
    def generator_backbone(self) -> BackboneModule:
        return self.predictor if self.share_backbone else self.generator

    def generate(self, inputs: Inputs) -> torch.Tensor:
        """Z: (B, L, 2) logits of (drop, keep) per position, in float32."""
        h, _ = self.generator_backbone.encode(inputs.x, inputs.attention, None)
        return span_mean(self.selector(h).float(), self.span)

    def select(self, z: torch.Tensor, selectable: torch.Tensor) -> torch.Tensor:
        """The deterministic (evaluation / explanation) mask from generator logits Z, by this model's rule."""
        if self.topk_fraction is None:
            return hard_mask(z)
        return topk_mask(keep_score(z), selectable[:, :z.shape[1]], self.topk_fraction)

    def predict(self, inputs: Inputs, mask: torch.Tensor | None) -> torch.Tensor:
        """Q: (B, C) from the rationale M ⊙ X (the full input when mask is None)."""
        keep = None if mask is None else inputs.effective_mask(mask)
        if keep is not None and self.predictor_attention == "selected":
            _, pooled = encode_selected(self.predictor, inputs.x, inputs.attention, keep)
        else:
            _, pooled = self.predictor.encode(inputs.x, inputs.attention, keep)
        return self.classifier(pooled).float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
