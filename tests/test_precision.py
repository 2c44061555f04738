"""train.precision: auto picks bf16 only where it pays (a CUDA device with bf16), fp32 on a CPU."""

import pytest
import torch

from rekd_core.config import ConfigError
from rekd_core.presets import get_preset
from rekd_core.train.trainer import resolve_precision


def test_auto_is_fp32_on_a_cpu_and_the_named_choices_are_kept():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is False
    assert resolve_precision("fp32", cpu) is False
    assert resolve_precision("bf16", cpu) is True  # asked for: honoured, even where it is slow


def test_auto_follows_the_cuda_devices_bf16_support(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", cuda) is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda) is False
    assert resolve_precision("fp32", cuda) is False


def test_auto_is_the_default_and_a_wrong_value_names_the_choices():
    assert get_preset("demo-fmnist-teacher").build([]).train.precision == "auto"
    with pytest.raises(ConfigError) as err:
        get_preset("demo-fmnist-teacher").build(["train.precision=fp16"])
    text = str(err.value)
    assert "train.precision" in text and "auto" in text and "bf16" in text
