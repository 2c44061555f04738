"""The optimizer a run trains with: AdamW, its parameters in groups by learning rate."""

from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..model.models import RationaleModel


def build_optimizer(model: RationaleModel, cfg: ExperimentConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over (backbones at optim.lr, fresh heads at optim.head_lr) and, with optim.generator_lr or
    optim.selector_lr, the generator's backbone and its selector in groups of their own; fused kernels on CUDA."""
    body, heads = model.param_groups()
    o = cfg.optim
    if o.generator_lr is None and o.selector_lr is None:
        groups = [{"params": body, "lr": o.lr}, {"params": heads, "lr": o.head_lr or o.lr}]
    else:
        gen_body, gen_head = model.generator_parameters()
        mine = {id(p) for p in gen_body + gen_head}
        groups = [{"params": [p for p in body if id(p) not in mine], "lr": o.lr},
                  {"params": [p for p in heads if id(p) not in mine], "lr": o.head_lr or o.lr},
                  {"params": gen_body + gen_head, "lr": o.generator_lr or o.lr}]
        if o.selector_lr is not None:  # one group fewer otherwise, so checkpoints from before it still resume
            groups[-1]["params"] = gen_body
            groups.append({"params": gen_head, "lr": o.selector_lr})
        groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                             fused=device.type == "cuda")
