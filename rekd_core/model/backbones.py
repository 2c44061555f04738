"""One backbone surface for ViT and BERT: `encode(inputs, keep)` -> (per-position states, pooled).

`keep` (B, L) multiplies the patch / word embeddings (R = M ⊙ X) before positions are added;
the ViT CLS token is not a position and is always kept. Generator and predictor are written
once against this surface (models.py), so no code downstream asks which architecture it holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ..config import CnnBackbone, TextBackbone, VisionBackbone
from ..data.features import resolve_text_source

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

log = logging.getLogger(__name__)


def _on_meta() -> bool:
    """Built under `with torch.device("meta")`: shapes only, for counting parameters at the door
    (rekd_core/checks.py); no pretrained weights are fetched or read then."""
    return torch.get_default_device().type == "meta"


_ARCHITECTURE_ONLY: ContextVar[bool] = ContextVar("rekd_architecture_only", default=False)


@contextmanager
def architecture_only() -> Iterator[None]:
    """Build a pretrained text encoder from its config alone, reading no weights: for a model whose
    every weight comes from a checkpoint next (an exported folder, store/hub.py, ships the encoder's
    config.json only)."""
    token = _ARCHITECTURE_ONLY.set(True)
    try:
        yield
    finally:
        _ARCHITECTURE_ONLY.reset(token)


class BackboneModule(nn.Module):
    """The surface generator and predictor are written against (models.py)."""

    hidden_size: int  # the width of the per-position states and of the pooled summary
    num_positions: int  # L, the positions a rationale selects among

    def encode(self, x: torch.Tensor, attention: torch.Tensor | None,
               keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-position states (B, L, D), pooled (B, D)); `keep` (B, L) scales each position's input."""
        raise NotImplementedError


class VitBackbone(BackboneModule):
    def __init__(self, spec: VisionBackbone) -> None:
        super().__init__()
        import timm  # heavy (seconds to import); only ViTs need it

        overrides = {k: getattr(spec, k) for k in ("embed_dim", "depth", "num_heads", "mlp_ratio")}
        kwargs = {k: v for k, v in overrides.items() if v is not None}  # unset keeps timm's default
        pretrained = bool(spec.pretrained) and not _on_meta()
        if isinstance(spec.pretrained, str):
            path = Path(spec.pretrained).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"model.*.pretrained: no weights file at {str(path)[:80]}")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        # spec.name names a timm ViT: encode() walks its VisionTransformer parts
        self.vit = cast("VisionTransformer", timm.create_model(
            spec.name, pretrained=pretrained, num_classes=0,
            img_size=spec.img_size, patch_size=spec.patch_size, in_chans=spec.in_chans, **kwargs,
        ))
        self.hidden_size: int = self.vit.num_features
        self.num_positions: int = spec.grid[0] * spec.grid[1]

    def encode(self, x: torch.Tensor, attention: torch.Tensor | None,
               keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.vit
        h = v.patch_embed(x)  # (B, L, D)
        if keep is not None:
            h = h * keep.unsqueeze(-1).to(h.dtype)
        h = v._pos_embed(h)  # prepends CLS (+ registers) and adds position embeddings
        h = v.norm_pre(v.patch_drop(h))
        h = v.norm(v.blocks(h))
        pooled = v.forward_head(h, pre_logits=True)
        return h[:, v.num_prefix_tokens:], pooled


class ConvBackbone(BackboneModule):
    """A small CNN on the same surface: per-position states are its last feature map pooled to
    the patch grid; the mask zeroes the unselected patches' pixels (R = M ⊙ X in pixel space;
    zero is the value a dropped ViT patch's embedding takes, here at the input)."""

    def __init__(self, spec: CnnBackbone) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = spec.in_chans, spec.channels
        for i in range(spec.depth):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.GELU()]
            c_in, c = c, c * 2
        self.net = nn.Sequential(*layers)
        self.grid = spec.grid
        self.patch_size = spec.patch_size
        self.hidden_size: int = c_in
        self.num_positions: int = spec.grid[0] * spec.grid[1]

    def encode(self, x: torch.Tensor, attention: torch.Tensor | None,
               keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if keep is not None:
            cells = keep.to(x.dtype).view(x.shape[0], 1, *self.grid)
            x = x * cells.repeat_interleave(self.patch_size, 2).repeat_interleave(self.patch_size, 3)
        f = self.net(x)
        states = nn.functional.adaptive_avg_pool2d(f, self.grid).flatten(2).transpose(1, 2)
        return states, f.mean((2, 3))


class BertBackbone(BackboneModule):
    """`fill_token_id`: what a dropped token becomes, that token's word embedding (None: zeros, the
    paper's R = M ⊙ X)."""

    def __init__(self, spec: TextBackbone, *, vocab_size: int, max_len: int, fill_token_id: int | None = None) -> None:
        super().__init__()
        self.fill_token_id = fill_token_id
        self.pooling = spec.pooling
        from transformers import AutoConfig, AutoModel, BertConfig, BertModel  # heavy; only text models need it

        if spec.pretrained:
            source = resolve_text_source(spec.pretrained)
            if _on_meta() or _ARCHITECTURE_ONLY.get():  # its shape from its config alone
                self.bert = AutoModel.from_config(AutoConfig.from_pretrained(source))
            else:
                self.bert = AutoModel.from_pretrained(source)
            if spec.keep_layers is not None:
                layers = self.bert.encoder.layer
                if spec.keep_layers > len(layers):
                    raise ValueError(f"model.*.keep_layers={spec.keep_layers}: {spec.pretrained!r} has only "
                                     f"{len(layers)} layers")
                self.bert.encoder.layer = layers[:spec.keep_layers]
                self.bert.config.num_hidden_layers = spec.keep_layers
            positions = getattr(self.bert.config, "max_position_embeddings", None)
            if positions is not None and max_len > positions:
                raise ValueError(f"data.max_len is {max_len} but {spec.pretrained[:80]!r} reads at most {positions} "
                                 "tokens")
            got = self.bert.get_input_embeddings().num_embeddings
            if got != vocab_size:
                raise ValueError(
                    f"model backbone {spec.pretrained!r} has a {got}-token vocabulary but the shared "
                    f"tokenizer has {vocab_size}: teacher and student must read the same tokens"
                )
        else:
            cfg = BertConfig(
                vocab_size=vocab_size, hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
                num_attention_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
                hidden_dropout_prob=spec.dropout, attention_probs_dropout_prob=spec.dropout,
                max_position_embeddings=max(512, max_len),
            )
            self.bert = BertModel(cfg, add_pooling_layer=False)
        self.hidden_size: int = self.bert.config.hidden_size
        self.num_positions: int = max_len

    def encode(self, x: torch.Tensor, attention: torch.Tensor | None,
               keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        words = self.bert.get_input_embeddings()
        emb = words(x)  # word embeddings only; positions added inside
        if keep is not None:
            k = keep.unsqueeze(-1).to(emb.dtype)
            emb = emb * k
            if self.fill_token_id is not None:
                # a dropped position reads as [MASK] / [PAD], a token the pretrained encoder knows
                emb = emb + (1 - k) * words.weight[self.fill_token_id]
        h = self.bert(inputs_embeds=emb, attention_mask=attention).last_hidden_state
        if self.pooling in ("mean", "mean_kept") and attention is not None:
            w = attention.unsqueeze(-1).to(h.dtype)
            if self.pooling == "mean_kept" and keep is not None:
                w = w * keep.unsqueeze(-1).to(h.dtype)
            return h, (h * w).sum(1) / w.sum(1).clamp_min(1)
        return h, h[:, 0]  # [CLS] state as the pooled summary


def build_backbone(spec: VisionBackbone | CnnBackbone | TextBackbone, *, vocab_size: int | None = None,
                   max_len: int | None = None, fill_token_id: int | None = None) -> BackboneModule:
    if isinstance(spec, VisionBackbone):
        return VitBackbone(spec)
    if isinstance(spec, CnnBackbone):
        return ConvBackbone(spec)
    if vocab_size is None or max_len is None:
        raise ValueError("a text backbone needs the shared tokenizer's vocab_size and max_len")
    return BertBackbone(spec, vocab_size=vocab_size, max_len=max_len, fill_token_id=fill_token_id)
