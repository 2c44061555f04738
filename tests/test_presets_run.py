"""Every offline preset's model builds and takes one training step (timm-style registry test)."""

import math

import pytest

from rekd_core.presets import PRESETS
from rekd_core.train.trainer import train

# one step of every offline preset builds MiniLM-L6 and the largest offline ViTs: ~5 min on 2 cores,
# so the whole suite runs it and the fast tier leaves it out
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.offline and not n.endswith("student")])
def test_offline_preset_takes_a_step(name, tmp_path):
    cfg = PRESETS[name].build(["train.max_steps=1", "train.batch_size=4", "data.max_train=40",
                               "data.max_eval=20", "train.eval_examples=2"])
    res = train(cfg, tmp_path / "run")
    assert res["state"] == "completed"
    assert math.isfinite(res["test"]["accuracy"])


@pytest.mark.parametrize("name", ["fmnist-student", "rt-student"])
def test_student_presets_distil_from_their_teacher_preset(name, tmp_path):
    teacher = name.replace("student", "teacher")
    small = ["train.max_steps=1", "train.batch_size=4", "data.max_train=40", "data.max_eval=20",
             "train.eval_examples=2"]
    train(PRESETS[teacher].build(small), tmp_path / "t")
    cfg = PRESETS[name].build(small + ["mode=rekd", f"model.teacher_run={tmp_path / 't'}"])
    assert train(cfg, tmp_path / "s")["state"] == "completed"


def test_paper_vision_presets_build_their_architecture_without_weights():
    from rekd_core.model.backbones import VitBackbone

    for name in ("cifar10-teacher", "cifar10-vit-small", "cifar10-vit-tiny"):
        spec = PRESETS[name].build(["model.student.pretrained=false"]).model.student
        vit = VitBackbone(spec)
        assert vit.num_positions == 196
        assert vit.hidden_size == {"cifar10-teacher": 768, "cifar10-vit-small": 384, "cifar10-vit-tiny": 192}[name]
