"""The cluttered-vision demo teacher, trained and scored as a user would (the `rekd` command):
its rationales must depend on the input and land on the item far more often than chance."""

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def rekd(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("rekd")
    cmd = [exe] if exe else [sys.executable, "-m", "rekd"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=900)


def test_the_cluttered_demo_teacher_finds_the_item(tmp_path):
    run = tmp_path / "teacher"
    out = rekd("train", "--preset", "demo-fmnist-clutter-teacher", "--run-dir", str(run))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "on evidence P" in out.stderr and "distinct masks" in out.stderr  # shown at every evaluation

    out = rekd("evaluate", str(run), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r["split"] == "test" and r["dataset"] == "fashion_mnist_clutter" and r["n"] == 500
    dep, pl, probe = r["input_dependence"], r["plausibility"], r["probe"]
    assert dep["distinct_share"] >= 0.5, dep
    assert pl["ground_truth"] == "benchmark" and pl["n"] == 500
    assert pl["precision"] >= 2 * pl["random"]["precision"], pl
    assert 0 <= probe["accuracy"] <= 1 and probe["chance"] == pytest.approx(0.1, abs=0.02)
    assert {w["code"] for w in r["warnings"]} <= {"constant_rationale", "mask_code"}

    # the same figures the run stored for its test split (best-dev checkpoint), recomputed
    stored = json.loads((run / "results.json").read_text())["test"]
    assert stored["plausibility"]["precision"] == pytest.approx(pl["precision"], abs=1e-6)
    assert stored["input_dependence"]["distinct"] == dep["distinct"]

    text = rekd("evaluate", str(run))
    assert text.returncode == 0 and "on the evidence" in text.stdout and "mask-only probe" in text.stdout
