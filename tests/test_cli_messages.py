"""The CLI's rough edges (issue 15, class 6), run as a user would: each failure is one message that
says what is wrong and how to fix it, exit status 2, never a traceback; `rekd validate` checks a
config (and its dataset and teacher run) without training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import tiny_vision


def rekd(*args, cwd=None):
    exe = shutil.which("rekd")
    cmd = [exe] if exe else [sys.executable, "-m", "rekd"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    """A tiny trained RE run on images (in-process: a few seconds)."""
    from rekd_core.config import parse_config
    from rekd_core.train.trainer import train

    run = tmp_path_factory.mktemp("cli") / "vision-re"
    train(parse_config(tiny_vision("re", max_steps=2, eval_every=2, checkpoint_every=2, eval_examples=2)), run)
    return run


def _failed(out, *needles: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout[-500:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    for needle in needles:
        assert needle in out.stderr, (needle, out.stderr)
    return out.stderr


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return str(path)


def test_malformed_yaml_or_json_names_the_file_and_line(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "mode: re\ntrain:\n  max_steps: [10\n  lr: 3\n")
    for command in ("train", "validate"):
        _failed(rekd(command, bad), "bad.yaml: not valid YAML at line 4", "Fix the syntax there")
    bad_json = _write(tmp_path / "bad.json", '{"mode": "re",\n "train": {,}}')
    _failed(rekd("validate", bad_json), "bad.json: not valid JSON at line 2, column 12")
    _failed(rekd("validate", str(tmp_path / "missing.yaml")), "missing.yaml: no such config file", "--preset")


def test_explain_a_missing_or_unreadable_input_says_so(vision_run, tmp_path):
    err = _failed(rekd("explain", str(vision_run), "missing.png", cwd=tmp_path),
                  "missing.png: no such file", "pass --text")
    assert "a text was given" not in err
    (tmp_path / "notes.txt").write_bytes(b"fine \xff film")
    _failed(rekd("explain", str(vision_run), "notes.txt", cwd=tmp_path),
            "notes.txt is not valid UTF-8: byte 5")
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    _failed(rekd("explain", str(vision_run), "fake.png", cwd=tmp_path), "fake.png: not an image that can be read")


def test_a_missing_local_dataset_is_missing_on_this_machine(tmp_path):
    gone = tmp_path / "gone"
    err = _failed(rekd("data", "inspect", f"folder:{gone}"), f"{gone}: no such folder on this machine",
                  f"({tmp_path} exists")
    assert "on the server" not in err
    cfg = tiny_vision("re")
    cfg["data"] = {"dataset": f"folder:{gone}"}
    err = _failed(rekd("validate", _write(tmp_path / "c.yaml", cfg)), "data.dataset:", "no such folder on this machine")
    assert "on the server" not in err
    err = _failed(rekd("train", _write(tmp_path / "c.yaml", cfg), "--runs-root", str(tmp_path / "runs")),
                  "data.dataset:", "no such folder on this machine")
    assert not (tmp_path / "runs").exists()


def test_a_backbone_without_kind_names_the_kinds(tmp_path):
    cfg = tiny_vision("re")
    del cfg["model"]["student"]["kind"]
    for command in ("train", "validate"):
        err = _failed(rekd(command, _write(tmp_path / "c.yaml", cfg)),
                      "model.student: no `kind`: set kind to 'vit' or 'cnn' (images) or 'bert' (texts)")
        assert "discriminator" not in err
    cfg["model"]["student"]["kind"] = "resnet"
    _failed(rekd("validate", _write(tmp_path / "c.yaml", cfg)), "model.student: kind 'resnet'")


def test_a_text_task_without_a_model_names_the_field_and_the_fix(tmp_path):
    path = _write(tmp_path / "t.yaml", {"task": "text", "mode": "re", "data": {"dataset": "rotten_tomatoes"}})
    for command in ("train", "validate"):
        err = _failed(rekd(command, path), "model.student.kind: none was given, so it is the default 'vit'",
                      "set model.student.kind to 'bert'")
        assert "(config)" not in err


def test_validate_checks_without_training(vision_run, tmp_path):
    out = rekd("validate", "--preset", "demo-fmnist-teacher", "--set", "train.max_steps=7", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and "preset demo-fmnist-teacher: valid" in lines[0], out.stdout
    assert "fashion_mnist" in lines[0] and "7 steps" in lines[0] and "parameters" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written

    student = tiny_vision("rekd")
    student["model"]["teacher_run"] = str(vision_run)
    good = rekd("validate", _write(tmp_path / "s.yaml", student))
    assert good.returncode == 0 and "teacher vision-re" in good.stdout, (good.stdout, good.stderr)

    student["model"]["student"]["patch_size"] = 4  # not the teacher's patch grid
    student["model"]["teacher_run"] = str(vision_run)
    _failed(rekd("validate", _write(tmp_path / "s.yaml", student)), "model.teacher_run:", "patch grid")
    student["model"]["student"]["patch_size"] = 7
    student["model"]["teacher_run"] = str(tmp_path / "no-such-run")
    _failed(rekd("validate", _write(tmp_path / "s.yaml", student)), "model.teacher_run:",
            "no such run directory on this machine")
    _failed(rekd("validate", "--preset", "demo-fmnist-teacher", "--set", "train.device=tpu"), "train.device")
    assert json.loads((vision_run / "config.json").read_text())["mode"] == "re"  # the teacher is untouched
