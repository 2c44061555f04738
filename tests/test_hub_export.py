"""`rekd export RUN --format hf OUT`: the folder, `RekdModel.from_pretrained`, and explain on it.

The round trip is exact: the exported model gives the run's own predictions, probabilities,
selection probabilities and masks, bit for bit, on images and texts; an REKD run ships its student
alone; the model card's figures are read from the run. The API test (a real uvicorn) is marked
`service`; the rest is in the fast tier.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors import safe_open

from conftest import tiny_text, tiny_vision
from rekd_core.analysis.explain import explain, load_run
from rekd_core.analysis.hub_export import dataset_name, export_hf
from rekd_core.cli import main as engine_main
from rekd_core.config import parse_config
from rekd_core.data.load import load_dataset
from rekd_core.store.checkpoint import load_checkpoint
from rekd_core.store.hub import RekdModel, is_export
from rekd_core.train.trainer import train

TEXTS = ["A gorgeous, witty film; the ending drags though.", "dull, long and badly acted",
         "the best movie of the year, truly moving", "Not bad.\tNot good either!"]


def images(n: int = 6) -> list[np.ndarray]:
    return list(load_dataset("fashion_mnist", max_eval=n).test.x[:n, 0].numpy())


def rekd_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rekd", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.fixture(scope="module")
def exported(teacher_runs, tmp_path_factory):
    """Each tiny run (vision RE, text RE, a vision REKD student) and its export."""
    root = tmp_path_factory.mktemp("hub")
    student = tiny_vision("rekd")
    student["model"]["teacher_run"] = str(teacher_runs["vision"])
    train(parse_config(student), root / "student")
    runs = {"vision": teacher_runs["vision"], "text": teacher_runs["text"], "student": root / "student"}
    return {k: (run, export_hf(run, root / f"{k}-hf")) for k, run in runs.items()}


def assert_same_explanation(a, b) -> None:
    assert (a.label, a.label_index) == (b.label, b.label_index)
    assert a.probabilities == b.probabilities
    assert a.mask == b.mask and a.selection_prob == b.selection_prob
    assert a.positions == b.positions and a.faithfulness == b.faithfulness
    assert a.checkpoint_step == b.checkpoint_step


# --- the folder ------------------------------------------------------------------------------------
def test_folder_holds_config_weights_preprocessing_and_card(exported):
    run, out = exported["vision"]
    assert is_export(out) and not is_export(run)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "examples"} <= names
    cfg = json.loads((out / "config.json").read_text())
    tensors, meta = load_checkpoint(run / "checkpoints" / "best.safetensors")
    assert cfg["class_names"] == meta["class_names"] and cfg["num_labels"] == 10
    assert cfg["task"] == "vision" and cfg["mode"] == "re" and cfg["pipeline_tag"] == "image-classification"
    assert cfg["experiment"] == json.loads((run / "config.json").read_text())
    assert cfg["checkpoint"]["step"] == meta["step"] and cfg["checkpoint"]["which"] == "best"
    assert cfg["mask"]["grid"] == [4, 4] and cfg["rekd_version"]
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["format"] == "pt"
        stored = {k: f.get_tensor(k) for k in f.keys()}
    model_keys = {k for k in tensors if k.startswith("model.")}
    assert set(stored) == model_keys  # the model's weights alone (a `last` checkpoint has optimizer state too)
    assert all(torch.equal(stored[k], tensors[k]) for k in model_keys)
    assert (out / "model.safetensors").stat().st_mode == (out / "config.json").stat().st_mode  # shareable
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["size"] == {"height": 28, "width": 28} and pre["in_chans"] == 1 and pre["grid"] == [4, 4]
    assert pre["image_mean"] == [0.5] and pre["image_std"] == [0.5] and pre["rescale_factor"] == 1 / 255


def test_text_folder_carries_its_tokenizer(exported):
    run, out = exported["text"]
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert not (out / "preprocessor_config.json").exists()
    model = RekdModel.from_pretrained(out)
    # read from the folder, not from the run's tokenizer source
    assert Path(model.featurizer.tokenizer.name_or_path).resolve() == out.resolve()
    assert len(model.featurizer.tokenizer) == len(load_run(run).featurizer.tokenizer)


# --- the round trip ------------------------------------------------------------------------------
def test_round_trip_vision_is_exact(exported):
    run_dir, out = exported["vision"]
    run, model = load_run(run_dir), RekdModel.from_pretrained(out)
    assert model.class_names == run.class_names and model.step == run.step and not model.training
    xs = images()
    for x in xs:
        assert_same_explanation(explain(run, x), explain(out, x))
        assert_same_explanation(explain(run, x), explain(model.as_run(), Image.fromarray(x)))
    inputs = model.preprocess(xs)
    got = model(inputs)
    z = run.model.generate(inputs)
    mask = run.model.select(z, inputs.selectable)
    assert torch.equal(got.mask, mask) and torch.equal(got.logits, run.model.predict(inputs, mask))
    assert [r["label"] for r in model.predict(xs)] == [explain(run, x).label for x in xs]


def test_round_trip_text_is_exact(exported):
    run_dir, out = exported["text"]
    run, model = load_run(run_dir), RekdModel.from_pretrained(out)
    for text in TEXTS:
        a, b = explain(run, text), explain(out, text)
        assert_same_explanation(a, b)
        assert a.masked_input == b.masked_input
    inputs = model.preprocess(TEXTS)
    got = model(inputs)
    z = run.model.generate(inputs)
    mask = run.model.select(z, inputs.selectable)
    assert torch.equal(got.mask, mask * inputs.selectable) and torch.equal(got.logits, run.model.predict(inputs, mask))
    assert torch.equal(got.probabilities, torch.softmax(got.logits, -1))


def test_rekd_export_ships_the_student_alone(exported, teacher_runs):
    run_dir, out = exported["student"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["mode"] == "rekd" and "rekd-rekd" in ModelCard.load(out / "README.md").data.tags
    teacher = load_checkpoint(teacher_runs["vision"] / "checkpoints" / "best.safetensors")[0]
    student = load_checkpoint(run_dir / "checkpoints" / "best.safetensors")[0]
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    assert set(stored) == {k for k in student if k.startswith("model.")}
    assert not any(torch.equal(stored[k], teacher[k]) for k in stored if k in teacher and stored[k].numel() > 1)
    x = images(1)[0]
    a, b = explain(run_dir, x), explain(out, x)
    assert a.teacher is not None and b.teacher is None  # the folder holds no teacher, and follows no path to one
    a.teacher = None
    assert_same_explanation(a, b)


# --- the model card ------------------------------------------------------------------------------
def test_card_figures_are_read_from_the_run(exported, tmp_path):
    run_dir, _ = exported["vision"]
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    results = json.loads((run / "results.json").read_text())
    results["test"]["accuracy"] = 0.4321  # a figure no model here reaches by chance: it must come from the run
    (run / "results.json").write_text(json.dumps(results))
    out = export_hf(run, tmp_path / "hf")
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "rekd" and card.data.pipeline_tag == "image-classification"
    assert {"rationale-extraction", "interpretability"} <= set(card.data.tags)
    assert any(r.metric_type == "accuracy" and r.metric_value == 0.4321 for r in card.data.eval_results)
    text = card.text
    assert "| accuracy |" in text and "43.2 %" in text
    step = json.loads((out / "config.json").read_text())["checkpoint"]["step"]
    dev = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    dev = [e for e in dev if e["type"] == "eval" and e["step"] == step][-1]
    assert f"| {dev['faithfulness']['comprehensiveness']:.3f} |" in text
    assert f"| {dev['faithfulness']['sufficiency']:.3f} |" in text
    assert f"dev (step {step})" in text and "not measured" in text  # fashion_mnist has no evidence
    for w in results["test"].get("warnings", []):
        assert w["message"] in text
    pngs = sorted((out / "examples").glob("*.png"))
    assert pngs and all(f"]({p.relative_to(out)})" in text for p in pngs)
    assert Image.open(pngs[0]).size[0] > Image.open(pngs[0]).size[1]  # the input beside its rationale


def test_text_card_shows_the_rationale_in_bold(exported):
    run_dir, out = exported["text"]
    text = (out / "README.md").read_text()
    first = json.loads((run_dir / "examples" / "inputs.json").read_text())["items"][0]["text"]
    ex = explain(out, first)
    kept = [first[p["span"][0]:p["span"][1]] for p, m in zip(ex.positions, ex.mask) if m]
    line = next(x for x in text.splitlines() if x.startswith("1. "))
    assert line.count("**") >= 4 + (2 if kept else 0)  # true/predicted labels, then the kept tokens
    for word in kept:
        assert word.replace("-", "\\-") in line.split("kept: ", 1)[1]


def test_plausibility_is_on_the_card_when_the_data_has_evidence(tmp_path):
    cfg = tiny_vision("re", max_steps=3, eval_every=3, checkpoint_every=3)
    cfg["data"]["dataset"] = "fashion_mnist_clutter"
    cfg["model"]["student"].update(img_size=64, patch_size=8)  # an 8 x 8 grid of the 64 px canvas
    train(parse_config(cfg), tmp_path / "gt")
    out = export_hf(tmp_path / "gt", tmp_path / "gt-hf")
    test = json.loads((tmp_path / "gt" / "results.json").read_text())["test"]
    card = (out / "README.md").read_text()
    assert "| plausibility precision (rationale that is evidence) |" in card
    assert f"{test['plausibility']['precision']:.3f} |" in card and "not measured" not in card


def test_a_cls_run_exports_and_reads_the_whole_input(tmp_path):
    train(parse_config(tiny_vision("cls", max_steps=3, eval_every=3, checkpoint_every=3)), tmp_path / "cls")
    out = export_hf(tmp_path / "cls", tmp_path / "cls-hf")
    model = RekdModel.from_pretrained(out)
    x = images(2)
    got = model(model.preprocess(x))
    assert torch.equal(got.mask, torch.ones(2, 16))  # no generator: the predictor reads every patch
    for img in x:
        assert_same_explanation(explain(tmp_path / "cls", img), explain(out, img))
    card = (out / "README.md").read_text()
    assert "no rationale" in card and "comprehensiveness" not in card.split("## Results", 1)[1].split("\n\n")[1]


def test_the_card_names_your_own_data_without_its_path():
    assert dataset_name("fashion_mnist") == "fashion_mnist"
    assert dataset_name("hf:glue:sst2") == "glue"
    assert dataset_name("csv:/home/alice/private/reviews.csv") == "csv:reviews.csv"


# --- the command line --------------------------------------------------------------------------
def test_cli_export_then_explain_the_folder(exported, tmp_path):
    run_dir, _ = exported["text"]
    out = tmp_path / "shared"
    r = rekd_cli("export", str(run_dir), "--format", "hf", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out) and is_export(out)
    r = rekd_cli("explain", str(out), "--text", TEXTS[0])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = explain(run_dir, TEXTS[0])
    assert got["label"] == want.label and got["mask"] == want.mask and got["probabilities"] == want.probabilities
    vision_run, out_v = exported["vision"]
    img = tmp_path / "x.png"
    Image.fromarray(images(1)[0]).save(img)
    r = rekd_cli("explain", str(out_v), str(img))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = explain(vision_run, images(1)[0])
    assert got["label"] == want.label and got["selected_positions"] == [i for i, m in enumerate(want.mask) if m]


def test_cli_refusals_name_the_problem(exported, tmp_path, capsys):
    run_dir, _ = exported["vision"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    r = rekd_cli("export", str(run_dir), "--format", "hf", str(busy))
    assert r.returncode == 2 and str(busy) in r.stderr and "not empty" in r.stderr
    assert (busy / "notes.txt").read_text() == "mine"  # untouched
    # the rest in-process: the engine's commands as `rekd` runs them
    for args, why in ((["hf"], "give the output folder"), (["pt", str(tmp_path / "o")], "'pt'; allowed: hf"),
                      (["hf", str(tmp_path / "o"), str(tmp_path / "p")], "give one output folder")):
        assert engine_main(["export", str(run_dir), "--format", *args]) == 2
        assert why in capsys.readouterr().err
    assert engine_main(["export", str(run_dir), str(tmp_path / "o"), "--format", "hf"]) == 0  # OUT first works too
    assert capsys.readouterr().out.strip() == str(tmp_path / "o") and is_export(tmp_path / "o")


# --- refusals ----------------------------------------------------------------------------------
def test_refusals(exported, tmp_path):
    run_dir, out = exported["vision"]
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text(json.dumps(tiny_vision()))
    with pytest.raises(FileNotFoundError, match="no checkpoint to export"):
        export_hf(untrained, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        export_hf(tmp_path, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        export_hf(tmp_path / "nowhere", tmp_path / "c")
    with pytest.raises(ValueError, match="already an exported model folder"):
        export_hf(out, tmp_path / "d")
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        export_hf(run_dir, afile)
    with pytest.raises(FileExistsError, match=str(run_dir)):  # the run directory itself is not empty
        export_hf(run_dir, run_dir)
    assert not list(tmp_path.glob(".*part*"))  # nothing half-written is left
    # loading: a run directory, a folder without weights, damaged weights
    with pytest.raises(FileNotFoundError, match="no model.safetensors; not an exported rekd model"):
        RekdModel.from_pretrained(run_dir)
    impostor = tmp_path / "impostor"  # weights beside a config.json that is not an export's
    impostor.mkdir()
    shutil.copy(run_dir / "config.json", impostor / "config.json")
    shutil.copy(out / "model.safetensors", impostor / "model.safetensors")
    with pytest.raises(ValueError, match="not that of an exported rekd model"):
        RekdModel.from_pretrained(impostor)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        (tmp_path / "half").mkdir()
        shutil.copy(out / "config.json", tmp_path / "half" / "config.json")
        RekdModel.from_pretrained(tmp_path / "half")
    bigger = tmp_path / "bigger"  # a config.json that describes another model than the weights hold
    shutil.copytree(out, bigger)
    cfg = json.loads((bigger / "config.json").read_text())
    cfg["experiment"]["model"]["student"]["embed_dim"] = 4096
    (bigger / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="do not fit the model config.json describes"):
        RekdModel.from_pretrained(bigger)  # refused from the shapes, on the meta device: nothing allocated
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    data = bytearray((damaged / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (damaged / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        RekdModel.from_pretrained(damaged)


def test_re_export_replaces_the_previous_one(exported, tmp_path):
    text_run, _ = exported["text"]
    vision_run, _ = exported["vision"]
    out = export_hf(text_run, tmp_path / "hf")
    assert (out / "tokenizer.json").exists()
    export_hf(vision_run, out)  # a previous export is replaced whole: no stale tokenizer
    assert not (out / "tokenizer.json").exists() and (out / "preprocessor_config.json").exists()
    assert RekdModel.from_pretrained(out).task == "vision"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_save_pretrained_round_trips_card_and_examples(exported, tmp_path):
    _, out = exported["vision"]
    model = RekdModel.from_pretrained(out)
    again = tmp_path / "again"
    model.save_pretrained(again)  # what push_to_hub uploads
    assert (again / "README.md").read_text() == (out / "README.md").read_text()
    names = sorted(p.name for p in (out / "examples").iterdir())
    assert names and sorted(p.name for p in (again / "examples").iterdir()) == names
    x = images(1)[0]
    assert_same_explanation(explain(out, x), explain(again, x))


@pytest.mark.slow
def test_pretrained_encoder_exports_its_config_not_its_weights(tmp_path):
    """A run on the offline MiniLM: the folder carries the encoder's config.json; loading reads no weights
    but the exported ones, and explains exactly as the run does."""
    cfg = tiny_text("re", max_steps=2, eval_every=2, checkpoint_every=2)
    cfg["model"]["student"] = {"kind": "bert", "pretrained": "minilm-l6", "keep_layers": 1, "pooling": "mean"}
    cfg["model"]["dropped_token"] = "mask"
    try:
        train(parse_config(cfg), tmp_path / "run")
    except RuntimeError as err:  # no offline MiniLM package here
        pytest.skip(str(err))
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    enc = json.loads((out / "backbone" / "config.json").read_text())
    assert enc["num_hidden_layers"] == 1 and not list((out / "backbone").glob("*.safetensors"))
    for text in TEXTS[:2]:
        assert_same_explanation(explain(tmp_path / "run", text), explain(out, text))


def test_api_refuses_a_folder_over_the_budget_and_odd_paths(exported, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from backend.routes import explain as explain_route
    from service.settings import Settings, get_settings

    _, out = exported["text"]
    shutil.copytree(out, tmp_path / "model")
    app = FastAPI()
    app.include_router(explain_route.router)
    fixed = Settings(runs_dir=tmp_path, max_params=1000)
    app.dependency_overrides[get_settings] = lambda: fixed
    client = TestClient(app)
    r = client.post("/api/explain", data={"model_dir": "model", "text": "fine"})
    assert r.status_code == 422 and "over this server's budget of 1,000" in r.json()["detail"]
    # odd paths are refused as input, never a 500
    r = client.post("/api/explain", data={"model_dir": "", "text": "fine"})  # an empty field is no field
    assert r.status_code == 422 and "exactly one model" in r.json()["detail"]
    for given in (".", "..", "~", "a" * 300, "model/" + "b" * 300, "x\x00y", "/", "model/../../.."):
        r = client.post("/api/explain", data={"model_dir": given, "text": "fine"})
        assert r.status_code == 422 and r.json()["detail"].startswith("model_dir"), (given, r.text)


# --- the API, on a real server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from tests.support.service import start_service  # imported here: only this test starts processes

    tmp = tmp_path_factory.mktemp("hub-api")
    svc = start_service(tmp, workers=0)
    yield svc
    svc.stop()


@pytest.mark.service
def test_api_explains_with_an_exported_folder(exported, api, tmp_path):
    text_run, text_out = exported["text"]
    vision_run, vision_out = exported["vision"]
    shared = api.runs_dir / "exports"
    shared.mkdir(exist_ok=True)
    shutil.copytree(text_out, shared / "text-model")
    shutil.copytree(vision_out, shared / "vision-model")
    want = explain(text_run, TEXTS[0])
    with api.client() as c:
        for given in ("exports/text-model", str((shared / "text-model").resolve())):  # relative: under runs
            r = c.post("/api/explain", data={"model_dir": given, "text": TEXTS[0]})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["label"] == want.label and body["mask"] == want.mask
            assert body["probabilities"] == want.probabilities and body["run"] == "text-model"
            assert body["teacher"] is None
        import io

        buf = io.BytesIO()
        Image.fromarray(images(1)[0]).save(buf, format="PNG")
        r = c.post("/api/explain", data={"model_dir": "exports/vision-model"},
                   files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["mask"] == explain(vision_run, images(1)[0]).mask
        # refusals, before anything is loaded
        outside = tmp_path / "elsewhere"
        shutil.copytree(text_out, outside)
        r = c.post("/api/explain", data={"model_dir": str(outside), "text": "fine"})
        assert r.status_code == 422 and "outside the folders" in r.json()["detail"]
        assert r.json()["detail"].startswith("model_dir:")
        r = c.post("/api/explain", data={"model_dir": "exports", "text": "fine"})
        assert r.status_code == 422 and "not an exported model folder" in r.json()["detail"]
        r = c.post("/api/explain", data={"model_dir": "../../etc", "text": "fine"})
        assert r.status_code == 422 and "outside the folders" in r.json()["detail"]
        r = c.post("/api/explain", data={"model_dir": "exports/text-model", "run_id": "x", "text": "fine"})
        assert r.status_code == 422 and "exactly one model" in r.json()["detail"]
        r = c.post("/api/explain", data={"text": "fine"})
        assert r.status_code == 422 and "exactly one model" in r.json()["detail"]
        r = c.post("/api/explain", data={"model_dir": "exports/vision-model", "text": "fine"})
        assert r.status_code == 422 and "explains images" in r.json()["detail"]
        (shared / "text-model" / "model.safetensors").write_bytes(b"not safetensors")
        r = c.post("/api/explain", data={"model_dir": "exports/text-model", "text": "fine"})
        assert r.status_code == 409 and "cannot be read" in r.json()["detail"]
