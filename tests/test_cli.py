"""The `rekd` command line, run as a user would (a real subprocess of the installed entry point)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rekd_core.presets import PRESETS


def rekd(*args, cwd=None):
    exe = shutil.which("rekd")
    cmd = [exe] if exe else [sys.executable, "-m", "rekd"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=600)


def test_presets_lists_each_with_one_line():
    out = rekd("presets")
    assert out.returncode == 0
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(PRESETS)
    assert all(line.split()[0] in PRESETS for line in lines)
    offline = rekd("presets", "--offline").stdout.strip().splitlines()
    assert {line.split()[0] for line in offline} == {n for n, p in PRESETS.items() if p.offline}


def test_train_demo_preset_then_explain(tmp_path):
    run = tmp_path / "run"
    out = rekd("train", "--preset", "demo-fmnist-teacher", "--run-dir", str(run),
               "--set", "train.max_steps=6", "--set", "data.max_train=128", "--set", "data.max_eval=32",
               "--set", "train.eval_every=3", "--set", "train.log_every=2", "--set", "train.checkpoint_every=3")
    assert out.returncode == 0, out.stderr
    assert "step" in out.stderr and "tau" in out.stderr and "sel%" in out.stderr  # the progress bar
    assert "dev accuracy" in out.stderr and "test (best dev checkpoint" in out.stderr
    result = json.loads(out.stdout)
    assert result["state"] == "completed" and result["run_dir"] == str(run)
    for name in ("config.json", "events.jsonl", "status.json", "results.json"):
        assert (run / name).exists(), name

    img = tmp_path / "x.png"
    Image.fromarray((np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)).save(img)
    ex = rekd("explain", str(run), str(img))
    assert ex.returncode == 0, ex.stderr
    d = json.loads(ex.stdout)
    assert d["label"] in d["probabilities"] and isinstance(d["selected_positions"], list)


def test_bad_config_exits_2_naming_the_field(tmp_path):
    out = rekd("train", "--preset", "demo-fmnist-teacher", "--set", "train.device=tpu")
    assert out.returncode == 2
    assert "train.device" in out.stderr and "'auto', 'cpu' or 'cuda'" in out.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: re\nloss:\n  p_taget: 0.1\n")
    out = rekd("train", str(cfg))
    assert out.returncode == 2 and "loss.p_taget: unknown field" in out.stderr
    out = rekd("train", "--preset", "no-such-preset")
    assert out.returncode == 2 and "unknown preset" in out.stderr


@pytest.mark.parametrize("args", [["explain", "/nonexistent-run", "x.png"]])
def test_explain_without_a_run_is_a_clear_error(args, tmp_path):
    out = rekd(*args, cwd=tmp_path)
    assert out.returncode == 2 and "no checkpoint" in out.stderr
