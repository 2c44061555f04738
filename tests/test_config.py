"""Config schema: defaults, the reference variant, overrides, and refusals that name the field."""

import json
import subprocess
import sys
import textwrap

import pytest

from rekd_core.config import ConfigError, apply_overrides, load_config_file, parse_config
from rekd_core.presets import PRESETS, get_preset


def test_defaults_follow_the_paper_formula():
    cfg = parse_config({})
    assert cfg.variant == "paper"
    assert cfg.loss.teacher_predictor_mask == "own"
    assert cfg.loss.kd_rationale_input == "clean"
    assert cfg.loss.length_penalty == "per_example"
    assert cfg.loss.count_special is False
    assert (cfg.schedule.tau0, cfg.schedule.tau_final) == (5.0, 0.1)
    assert (cfg.loss.alpha, cfg.loss.lambda_R) == (0.5, 0.5)


def test_reference_variant_switches_every_difference_but_explicit_options_win():
    cfg = parse_config({"variant": "reference"})
    assert cfg.loss.teacher_predictor_mask == "student"
    assert cfg.loss.kd_rationale_input == "noisy"
    assert cfg.loss.length_penalty == "batch_mean"
    assert cfg.loss.count_special is True
    cfg = parse_config({"variant": "reference", "loss": {"kd_rationale_input": "clean"}})
    assert cfg.loss.kd_rationale_input == "clean"
    assert cfg.loss.teacher_predictor_mask == "student"


@pytest.mark.parametrize("data, field, allowed", [
    ({"mode": "distil"}, "mode", "'cls', 're' or 'rekd'"),
    ({"train": {"device": "tpu", "max_steps": 1}}, "train.device", "'auto', 'cpu' or 'cuda'"),
    ({"train": {"precision": "fp16", "max_steps": 1}}, "train.precision", "'auto', 'fp32' or 'bf16'"),
    ({"loss": {"distill": "all"}}, "loss.distill", "'both', 'rationale' or 'prediction'"),
    ({"loss": {"alpha": 1.5}}, "loss.alpha", "less than or equal to 1"),
    ({"loss": {"p_target": 0}}, "loss.p_target", "greater than 0"),
    ({"optim": {"lrr": 1}}, "optim.lrr", "unknown field"),
])
def test_bad_values_name_the_field_and_what_is_allowed(data, field, allowed):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    msg = str(err.value)
    assert field in msg and allowed in msg, msg


def test_rekd_without_teacher_is_refused():
    with pytest.raises(ConfigError, match="teacher_run"):
        parse_config({"mode": "rekd"})


def test_teacher_and_student_must_share_the_patch_grid():
    student = {"kind": "vit", "img_size": 28, "patch_size": 4, "in_chans": 1}
    teacher = {"kind": "vit", "img_size": 28, "patch_size": 7, "in_chans": 1}
    with pytest.raises(ConfigError, match="same positions"):
        parse_config({"model": {"student": student, "teacher": teacher}})


def test_grid_and_modality_checks():
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        parse_config({"model": {"student": {"kind": "vit", "img_size": 30, "patch_size": 4}}})
    with pytest.raises(ConfigError, match="needs 'bert'"):
        parse_config({"task": "text"})
    with pytest.raises(ConfigError, match="tau_final"):
        parse_config({"schedule": {"tau0": 0.1, "tau_final": 5}})


def test_overrides_parse_scalars_and_nest():
    base = {"optim": {"lr": 1e-5}}
    out = apply_overrides(base, ["optim.lr=3e-4", "train.max_steps=10", "model.share_backbone=true",
                                 "data.max_train=null", "name=my run"])
    assert out["optim"]["lr"] == 3e-4 and out["train"]["max_steps"] == 10
    assert out["model"]["share_backbone"] is True and out["data"]["max_train"] is None
    assert out["name"] == "my run"
    assert base == {"optim": {"lr": 1e-5}}  # not mutated
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(base, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"^override 'optim.lr.x': 'lr' is not a section$"):
        apply_overrides(base, ["optim.lr.x=1"])


def test_parsing_a_config_imports_no_torch():
    """config, its dataset names and its checks are plain Python: the CLI, the API and the UI's server
    side can parse configs without paying for torch (or numpy)."""
    code = textwrap.dedent("""
        import sys
        import rekd_core.config
        from rekd_core.presets import PRESETS
        for preset in PRESETS.values():
            preset.build(["train.max_steps=3"])
        rekd_core.config.parse_config({"task": "text", "data": {"dataset": "csv:/tmp/x.csv"},
                                       "model": {"student": {"kind": "bert"}}})
        heavy = sorted(m for m in ("torch", "numpy") if m in sys.modules)
        assert not heavy, heavy
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_yaml_and_json_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("mode: cls\ntrain:\n  max_steps: 5\n")
    assert parse_config(load_config_file(y)).mode == "cls"
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"mode": "re", "train": {"epochs": 2}}))
    assert parse_config(load_config_file(j)).train.epochs == 2


def test_every_preset_is_a_valid_config_and_round_trips():
    assert any(p.offline for p in PRESETS.values()) and any(not p.offline for p in PRESETS.values())
    for name, preset in PRESETS.items():
        cfg = preset.build()
        again = parse_config(cfg.model_dump(mode="json"))
        assert again == cfg, name
    assert get_preset("cifar10-teacher").build().model.student.name == "vit_base_patch16_224"
    assert get_preset("imdb-bert-mini").build().data.max_len == 256
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("nope")
