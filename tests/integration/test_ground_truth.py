"""The ground-truth demo teachers, trained and scored as a user would (the `rekd` command): the
cluttered-vision teacher's rationales must depend on the input and land on the item far more often
than chance; the text teacher's (top-k) rationales must be non-empty, of the configured size, input
dependent and scored against the review."""

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


def test_the_text_demo_teacher_keeps_a_fifth_of_every_text_and_is_scored_on_the_review(tmp_path):
    # the preset's mechanics (MiniLM's first 2 layers, a full-input warm-up, then top-k), shortened:
    # whether it learns in its full budget is measured in docs/configs.md, not asserted here
    run = tmp_path / "teacher"
    short = ["train.max_steps=24", "schedule.full_input_steps=12", "train.eval_every=12", "train.checkpoint_every=12",
             "data.max_train=800", "data.max_eval=64"]
    out = rekd("train", "--preset", "demo-rt-needle-teacher", "--run-dir", str(run),
               *[a for s in short for a in ("--set", s)])
    assert out.returncode == 0, out.stderr[-2000:]

    out = rekd("evaluate", str(run), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    assert r["split"] == "test" and r["dataset"] == "rotten_tomatoes_needle" and r["n"] == 64
    # top-k: round(20 % of each text's real tokens), never empty, so the share barely varies
    assert r["selected"]["min"] > 0.15 and r["selected"]["max"] < 0.25, r["selected"]
    dep, pl = r["input_dependence"], r["plausibility"]
    assert dep["distinct_share"] >= 0.9, dep  # texts differ in length and content: so do their top-k sets
    # scored where the review is in view: at 128 tokens a review set late in a long text can fall past the end
    assert pl["ground_truth"] == "benchmark" and 60 <= pl["n"] <= 64
    assert 0 < pl["random"]["precision"] < 1 and 0 <= pl["precision"] <= 1
    assert 0 <= r["probe"]["accuracy"] <= 1


def test_the_text_demo_teacher_learns_from_its_rationale(tmp_path):
    # the whole demo preset, as the UI's demo button trains it (~3 min here): a fifth of each text,
    # chosen per text, from which the predictor does better than the majority class and than one
    # fixed mask for every text. Measured (seed 0, test, 200 texts): 59.5 % against 58.0 % for the
    # majority class, macro-F1 0.59 against a constant's 0.37, a fixed mask 54.5 %: a weak teacher,
    # but not a constant one (docs/configs.md)
    run = tmp_path / "teacher"
    out = rekd("train", "--preset", "demo-rt-needle-teacher", "--run-dir", str(run))
    assert out.returncode == 0, out.stderr[-2000:]
    test = json.loads((run / "results.json").read_text())["test"]
    majority = test["probe"]["chance"]  # the mask-only probe's chance: the majority class's share of test
    assert majority == pytest.approx(0.58, abs=0.01)
    assert test["accuracy"] > majority, test["accuracy"]
    assert test["macro_f1"] > 0.45, test["macro_f1"]  # a constant prediction's macro-F1 is ~0.37
    dep = test["input_dependence"]
    assert dep["distinct_share"] >= 0.9, dep
    assert 0.15 < test["selected"]["min"] and test["selected"]["max"] < 0.25  # top-k: never empty
    assert "constant_rationale" not in {w["code"] for w in test["warnings"]}, test["warnings"]
