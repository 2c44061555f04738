"""End to end on real offline data with tiny models: CLS / RE / REKD for both modalities,
the run directory's contents, exact resume, and the teacher checks."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_text, tiny_vision
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from rekd_core.train.teacher import TeacherMismatch
from rekd_core.train.trainer import train

MAKERS = {"vision": tiny_vision, "text": tiny_text}


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("modality", ["vision", "text"])
@pytest.mark.parametrize("mode", ["cls", "re", "rekd"])
def test_few_steps_end_to_end(modality, mode, tmp_path, teacher_runs):
    cfg = MAKERS[modality](mode)
    if mode == "rekd":
        cfg["model"]["teacher_run"] = str(teacher_runs[modality])
    seen = []
    res = train(parse_config(cfg), tmp_path / "run", on_event=seen.append)
    run = tmp_path / "run"
    assert res["state"] == "completed" and res["step"] == 6
    assert 0.0 <= res["test"]["accuracy"] <= 1.0

    evs = _events(run)
    assert [e["id"] for e in evs] == list(range(1, len(evs) + 1))  # monotonic ids
    assert seen == evs  # the callback saw exactly what was stored
    types = [e["type"] for e in evs]
    assert types[0] == "start" and types[-2:] == ["test", "finished"]
    logs = [e for e in evs if e["type"] == "log"]
    assert [e["step"] for e in logs] == [2, 4, 6]
    for e in logs:
        assert e["loss"]["total"] == e["loss"]["total"]  # not NaN
        assert e["samples_per_s"] > 0 and 0 <= e["train_acc"] <= 1
        if mode != "cls":
            assert {"mean", "std", "min", "max"} <= set(e["selected"])
            assert {"ce", "select", "re"} <= set(e["loss"])
        if mode == "rekd":
            assert {"kd_r", "kd_y", "kd"} <= set(e["loss"]) and 0 <= e["iou"] <= 1
    evals = [e for e in evs if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6]
    assert all({"accuracy", "macro_f1"} <= set(e) for e in evals)
    if mode != "cls":
        assert all("selected" in e for e in evals)

    # durable record: config, status, checkpoints (safetensors, self-describing), snapshots
    store = RunStore(run)
    assert store.config() == parse_config(cfg)
    assert store.status()["state"] == "completed"
    for kind in ("last", "best"):
        assert (run / "checkpoints" / f"{kind}.safetensors").exists()
    tensors = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert any(k.startswith("optim.") for k in tensors) and any(k.startswith("model.") for k in tensors)
    inputs = json.loads((run / "examples" / "inputs.json").read_text())
    assert inputs["modality"] == modality and len(inputs["rows"]) == cfg["train"]["eval_examples"]
    snap = json.loads((run / "examples" / "step-0000006.json").read_text())
    assert len(snap["student"]["pred"]) == len(inputs["rows"])
    if mode != "cls":
        assert len(snap["student"]["mask"][0]) == inputs["num_positions"]
        assert set(v for row in snap["student"]["mask"] for v in row) <= {0, 1}
    if mode == "rekd":
        assert snap["teacher"] is not None and "mask" in snap["teacher"]
    else:
        assert snap["teacher"] is None


@pytest.mark.parametrize("modality, mode", [("vision", "re"), ("text", "rekd"), ("vision", "rekd")])
def test_stopped_and_resumed_run_ends_with_identical_weights(modality, mode, tmp_path, teacher_runs):
    cfg = MAKERS[modality](mode, max_steps=8, checkpoint_every=2, eval_every=4)
    if mode == "rekd":
        cfg["model"]["teacher_run"] = str(teacher_runs[modality])
        cfg["variant"] = "reference" if modality == "text" else "paper"  # both variants resume exactly
    config = parse_config(cfg)
    train(config, tmp_path / "straight")

    calls = {"n": 0}

    def stop_after_5():
        calls["n"] += 1
        return calls["n"] > 5  # polled before each step: stops with 5 steps done

    res = train(config, tmp_path / "resumed", should_stop=stop_after_5)
    assert res["state"] == "cancelled" and res["step"] == 5
    assert RunStore(tmp_path / "resumed").status()["state"] == "cancelled"
    res = train(config, tmp_path / "resumed")
    assert res["state"] == "completed"

    a = load_file(str(tmp_path / "straight" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the metric history is the same too: no duplicated or missing steps
    def history(run):
        return [(e["type"], e["step"], e.get("loss"), e.get("accuracy")) for e in _events(run)
                if e["type"] in ("log", "eval")]
    assert history(tmp_path / "straight") == history(tmp_path / "resumed")
    ids = [e["id"] for e in _events(tmp_path / "resumed")]
    assert ids == list(range(1, len(ids) + 1))  # dense: no gap, no reuse
    start = [e for e in _events(tmp_path / "resumed") if e["type"] == "start"]
    assert [e["resumed"] for e in start] == [False, True]


def test_teacher_must_match_the_student_positions(tmp_path, teacher_runs):
    cfg = tiny_vision("rekd")
    cfg["model"]["teacher_run"] = str(teacher_runs["vision"])
    cfg["model"]["student"]["patch_size"] = 4  # 7x7 grid against the teacher's 4x4
    with pytest.raises(TeacherMismatch, match="same patch grid"):
        train(parse_config(cfg), tmp_path / "bad")
    assert RunStore(tmp_path / "bad").status()["state"] == "failed"
    cfg = tiny_text("rekd")
    cfg["model"]["teacher_run"] = str(teacher_runs["text"])
    cfg["data"]["max_len"] = 48
    with pytest.raises(TeacherMismatch, match="one tokenizer"):
        train(parse_config(cfg), tmp_path / "bad-text")


def test_teacher_must_be_an_re_run(tmp_path):
    cls_run = tmp_path / "cls"
    train(parse_config(tiny_vision("cls", max_steps=2, eval_every=2, checkpoint_every=2)), cls_run)
    cfg = tiny_vision("rekd")
    cfg["model"]["teacher_run"] = str(cls_run)
    with pytest.raises(TeacherMismatch, match="must be an RE run"):
        train(parse_config(cfg), tmp_path / "s")


def test_teacher_outputs_are_cached_in_the_teacher_run(teacher_runs):
    caches = list((teacher_runs["vision"] / "cache").glob("teacher-train-*.safetensors"))
    assert caches, "REKD students should have cached the frozen teacher's outputs"
    t = load_file(str(caches[0]))
    assert t["z"].shape[1:] == (16, 2)  # 4x4 grid of 7 px patches, (drop, keep) logits


def test_finished_run_is_not_trained_again_and_other_configs_are_refused(tmp_path):
    cfg = parse_config(tiny_vision("cls", max_steps=2, eval_every=2, checkpoint_every=2))
    first = train(cfg, tmp_path / "r")
    n_events = len(_events(tmp_path / "r"))
    assert train(cfg, tmp_path / "r") == first
    assert len(_events(tmp_path / "r")) == n_events  # nothing re-emitted
    other = parse_config(tiny_vision("cls", max_steps=3, eval_every=2, checkpoint_every=2))
    with pytest.raises(ValueError, match="another config"):
        train(other, tmp_path / "r")


@pytest.mark.parametrize("modality", ["vision", "text"])
def test_a_live_teacher_trains_the_same_run_as_the_cached_one(modality, tmp_path, teacher_runs):
    # model.teacher_outputs=live runs the frozen teacher on each batch (the naive path) instead of
    # reading its cached outputs: the same targets, so the same run up to float rounding
    hist = {}
    for how in ("cached", "live"):
        cfg = MAKERS[modality]("rekd")
        cfg["model"].update(teacher_run=str(teacher_runs[modality]), teacher_outputs=how)
        res = train(parse_config(cfg), tmp_path / how)
        assert res["state"] == "completed"
        hist[how] = [e for e in _events(tmp_path / how) if e["type"] in ("log", "eval")]
    assert [e["step"] for e in hist["live"]] == [e["step"] for e in hist["cached"]]
    def numbers(e, prefix=""):
        for key, v in e.items():
            if isinstance(v, dict):
                yield from numbers(v, f"{prefix}{key}.")
            elif isinstance(v, float) and key not in ("time", "samples_per_s"):
                yield f"{prefix}{key}", v

    compared = set()
    for a, b in zip(hist["cached"], hist["live"]):
        got = dict(numbers(b))
        for key, va in numbers(a):
            assert got[key] == pytest.approx(va, rel=1e-3, abs=1e-4), (key, a["step"])
            compared.add(key)
    assert {"loss.kd_r", "loss.kd_y", "loss.total", "accuracy", "iou"} <= compared, compared
