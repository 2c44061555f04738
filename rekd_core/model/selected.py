"""The opt-in predictor that reads only the selected positions (`model.predictor_attention: selected`).

The paper's predictor (`full`, the default) reads R = M ⊙ X over the whole sequence: a dropped
patch / token keeps its place as a zero embedding plus its position embedding, and every layer
attends over all L positions, so its cost does not depend on how few are selected. Here the
selected positions (and the ViT CLS token / the text specials the mask always keeps) are
*gathered* into a shorter sequence — padded to the longest row of the batch, padding masked out
of attention — and each keeps its original position embedding; the unselected ones are not in
the sequence at all. Cost then scales with the selected fraction (p_target) instead of L.

Equivalent to masking the unselected positions out of attention as keys *and* dropping their
states from pooling (they could still be computed as queries, but nothing would read them).
It is a change of the model, not of the formula's inputs: the predictor no longer has the
unselected positions as content-free "scratch" slots, so a model trained one way must not be
read the other way (the option is part of the run's config, so a checkpoint always is).

Training: the straight-through mask's forward value is exactly 0/1, so which positions are
gathered is read from it, while the gathered embeddings are still multiplied by it, so the CE
gradient reaches the generator through every *selected* position (as in `full`). An unselected
position now gets no CE gradient at all (in `full` it gets one through its zeroed embedding
slot): the generator learns to add a position only through the Gumbel noise sampling it, the
length penalty and, under REKD, the rationale-distillation term, which covers every position.

The number of gathered slots is read on the host (one sync per predictor forward), which the
CUDA-graph path would not allow; this option is for speed at small p_target, measured in
docs/performance.md.
"""

from __future__ import annotations

import torch

from .backbones import BackboneModule, BertBackbone, VitBackbone


def _gather_plan(attend: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index (B, K) of the attended positions, in order, then padding; valid (B, K) bool),
    K the most attended positions in any row (at least 1)."""
    counts = attend.sum(1)
    k = max(int(counts.max()), 1)
    # a stable sort on "not attended" lists each row's attended positions first, in their order
    order = torch.sort((~attend).to(torch.int8), dim=1, stable=True).indices[:, :k]
    valid = torch.arange(k, device=attend.device)[None, :] < counts[:, None]
    return order, valid


def _take(h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return h.gather(1, index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


def _scatter_back(g: torch.Tensor, index: torch.Tensor, valid: torch.Tensor, length: int) -> torch.Tensor:
    """(B, K, D) gathered states back to (B, L, D), zeros at the positions not read."""
    out = g.new_zeros(g.shape[0], length, g.shape[-1])
    return out.scatter(1, index.unsqueeze(-1).expand_as(g), g * valid.unsqueeze(-1).to(g.dtype))


def _vit(b: VitBackbone, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = b.vit
    h = v.patch_embed(x)
    h = h * keep.unsqueeze(-1).to(h.dtype)  # the straight-through gradient path, 1 on what is gathered
    h = v.norm_pre(v.patch_drop(v._pos_embed(h)))  # position embeddings before positions move
    n = v.num_prefix_tokens
    index, valid = _gather_plan(keep > 0)
    seq = torch.cat([h[:, :n], _take(h[:, n:], index)], 1)
    ok = torch.cat([valid.new_ones(valid.shape[0], n), valid], 1)
    mask = ok[:, None, None, :]  # (B, 1, 1, N): keys that may be attended; CLS always can
    for blk in v.blocks:
        seq = blk(seq, attn_mask=mask)
    seq = v.norm(seq)
    if v.attn_pool is None and v.global_pool == "token":
        pooled = seq[:, 0]
    elif v.attn_pool is None and v.global_pool == "avg":
        w = valid.unsqueeze(-1).to(seq.dtype)
        pooled = (seq[:, n:] * w).sum(1) / w.sum(1).clamp_min(1)
    else:
        raise ValueError(f"predictor_attention: selected supports token or avg pooling, not {v.global_pool!r}")
    pooled = v.head_drop(v.fc_norm(pooled))
    return _scatter_back(seq[:, n:], index, valid, keep.shape[1]), pooled


def _bert(b: BertBackbone, x: torch.Tensor, attention: torch.Tensor | None,
          keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    words = b.bert.get_input_embeddings()
    emb = words(x)
    k = keep.unsqueeze(-1).to(emb.dtype)
    emb = emb * k
    if b.fill_token_id is not None:
        emb = emb + (1 - k) * words.weight[b.fill_token_id]
    kept = keep > 0
    if attention is not None:
        kept = kept & (attention > 0)
    attend = kept.clone()
    if b.pooling == "cls":
        attend[:, 0] = True  # the slot the summary is read from; no content unless [CLS] is kept
    attend[:, 0] |= ~attend.any(1)  # an empty rationale reads one content-free slot, not nothing
    index, valid = _gather_plan(attend)
    h = b.bert(inputs_embeds=_take(emb, index), attention_mask=valid.long(), position_ids=index).last_hidden_state
    if b.pooling in ("mean", "mean_kept"):
        # the mean over the tokens read (only kept ones are read: `mean` and `mean_kept` coincide)
        w = (valid & kept.gather(1, index)).unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1)
    else:
        pooled = h[:, 0]
    return _scatter_back(h, index, valid, x.shape[1]), pooled


def encode_selected(backbone: BackboneModule, x: torch.Tensor, attention: torch.Tensor | None,
                    keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`backbone.encode(x, attention, keep)` reading only the positions where keep > 0 (see the module doc)."""
    if isinstance(backbone, VitBackbone):
        return _vit(backbone, x, keep)
    if isinstance(backbone, BertBackbone):
        return _bert(backbone, x, attention, keep)
    raise ValueError("model.predictor_attention: selected needs a ViT or BERT-like predictor (a CNN reads pixels)")
