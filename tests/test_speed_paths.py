"""The default (engine) step and bench/bench_step.py's naive reference step train the same thing.

Same initial weights, same batches, same Gumbel noise (both draw from generators seeded alike;
on the CPU the streams are identical) and same dropout masks: the losses of every step agree to
float rounding, for CLS / RE / REKD (paper and reference variants) on both modalities.
"""

import sys
from pathlib import Path

import pytest
import torch

from rekd_core.config import parse_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_step  # noqa: E402

VIT = {"kind": "vit", "img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32, "depth": 1,
       "num_heads": 2, "mlp_ratio": 2.0}
VIT_T = {**VIT, "embed_dim": 48, "depth": 2}
BERT = {"kind": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}
BERT_T = {**BERT, "hidden_size": 48, "num_layers": 2}


def _cfg(modality: str, mode: str, variant: str):
    text = modality == "text"
    return parse_config({
        "task": modality, "mode": mode, "variant": variant,
        "data": {"dataset": "rotten_tomatoes" if text else "fashion_mnist", "max_len": 24},
        "model": {"student": BERT if text else VIT, "teacher": BERT_T if text else VIT_T,
                  "teacher_run": "(built in process)" if mode == "rekd" else None},
        "loss": {"lambda_select": 0.05, "p_target": 0.2},
        "schedule": {"tau_update_every": 1},
        "optim": {"lr": 3e-3, "head_lr": 1e-2, "grad_clip": 1.0},
        "train": {"max_steps": 4, "batch_size": 8, "device": "cpu"},
    })


@pytest.mark.parametrize("modality", ["vision", "text"])
@pytest.mark.parametrize("mode,variant", [("cls", "paper"), ("re", "paper"), ("rekd", "paper"),
                                          ("rekd", "reference")])
def test_default_and_naive_paths_give_the_same_losses(modality, mode, variant):
    cfg = _cfg(modality, mode, variant)
    device = torch.device("cpu")
    stream = bench_step.make_stream(cfg, 3, 3 * cfg.train.batch_size, device, seed=0)
    naive, default, _ = bench_step.make_paths(cfg, 3, stream, device, autocast=False, seed=0)
    bench_step.interleave(naive, default, cfg, total=4, warmup=1, device=device, seed=0)
    ln, ld = naive.losses(), default.losses()
    assert len(ln) == len(ld) == 4
    assert ln[0] > 0
    # the weights moved (the steps trained), and both paths moved them alike
    assert ln[-1] != ln[0]
    torch.testing.assert_close(torch.tensor(ld), torch.tensor(ln), rtol=1e-4, atol=1e-5)
    for pn, pd in zip(naive.model.parameters(), default.model.parameters(), strict=True):
        torch.testing.assert_close(pd, pn, rtol=1e-3, atol=1e-4)
