"""Whether a rationale is real, served: plausibility, input dependence, the mask-only probe and
warnings through the examples page, the metrics series and CSV, GET /api/runs/{id}/quality, the
run list, explain (with the input's ground truth), compare and the rationales export.

Real tiny runs: RE, REKD and CLS on cluttered Fashion-MNIST (ground truth), the same RE config on
plain Fashion-MNIST (none), a text RE run, and a copy of the clutter run rewritten to the format of
runs trained before these figures existed."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from backend.routes import compare, examples, explain, runs
from backend.routes import faithfulness as faithfulness_views
from backend.routes import metrics as metrics_views
from backend.routes import quality as quality_views
from conftest import tiny_vision
from rekd_core.analysis.rationale_metrics import per_example_plausibility
from rekd_core.config import parse_config
from rekd_core.data.load import load_for_config
from rekd_core.store.runstore import RunStore
from rekd_core.train.trainer import train
from service.settings import Settings, get_settings

QUALITY = ("plausibility", "input_dependence", "probe", "warnings")


def clutter(mode: str, **train_kw) -> dict:
    cfg = tiny_vision(mode, **train_kw)
    cfg["data"]["dataset"] = "fashion_mnist_clutter"
    cfg["model"]["student"].update(img_size=64, patch_size=8)  # an 8 x 8 grid of the 64 px canvas
    return cfg


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in QUALITY}


def as_before_the_figures(src: Path, dst: Path) -> None:
    """A copy of run `src` as a run trained before rationale quality was recorded."""
    shutil.copytree(src, dst)
    lines = [json.loads(x) for x in (dst / "events.jsonl").read_text().splitlines()]
    (dst / "events.jsonl").write_text("".join(json.dumps(_strip(e)) + "\n" for e in lines))
    res = json.loads((dst / "results.json").read_text())
    res["test"] = _strip(res["test"])
    (dst / "results.json").write_text(json.dumps(res))
    st = json.loads((dst / "status.json").read_text())
    st["test"] = _strip(st["test"])
    (dst / "status.json").write_text(json.dumps(st))
    inputs = json.loads((dst / "examples" / "inputs.json").read_text())
    inputs.pop("ground_truth"), inputs.pop("evidence")
    (dst / "examples" / "inputs.json").write_text(json.dumps(inputs))
    for snap_path in (dst / "examples").glob("step-*.json"):
        snap = json.loads(snap_path.read_text())
        for side in ("student", "teacher"):
            if snap.get(side):
                snap[side].pop("plausibility", None)
        snap_path.write_text(json.dumps(snap))


def drop_none(d):
    return {k: drop_none(v) for k, v in d.items() if v is not None} if isinstance(d, dict) else d


def events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]


def last_eval(run: Path, step: int | None = None) -> dict:
    return [e for e in events(run) if e["type"] == "eval" and (step is None or e["step"] == step)][-1]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, teacher_runs):
    root = tmp_path_factory.mktemp("quality-runs")
    train(parse_config(clutter("re")), root / "clutter-re")
    cfg = clutter("rekd", max_steps=4, eval_every=2, checkpoint_every=2)
    cfg["model"]["teacher_run"] = str(root / "clutter-re")
    train(parse_config(cfg), root / "clutter-rekd")
    train(parse_config(clutter("cls", max_steps=3, eval_every=3)), root / "clutter-cls")
    train(parse_config(tiny_vision("re")), root / "plain-re")  # the same run on data without ground truth
    shutil.copytree(teacher_runs["text"], root / "text-re")
    as_before_the_figures(root / "clutter-re", root / "old-re")
    # still training: no test result yet, its latest dev evaluation's warnings are the run's
    shutil.copytree(root / "clutter-re", root / "running-re")
    (root / "running-re" / "results.json").unlink()
    evs = [e for e in events(root / "running-re") if e["type"] not in ("test", "finished")]
    last = max(i for i, e in enumerate(evs) if e["type"] == "eval")
    evs[last]["warnings"] = [{"code": "mask_code", "message": "the mask alone predicts the label",
                              "detail": "edited for the test"}]
    (root / "running-re" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    st = json.loads((root / "running-re" / "status.json").read_text())
    st.pop("test"), st.update(state="running")
    (root / "running-re" / "status.json").write_text(json.dumps(st))
    return root


@pytest.fixture(scope="module")
def client(runs_dir):
    app = FastAPI()
    for module in (runs, examples, metrics_views, quality_views, faithfulness_views, explain, compare):
        app.include_router(module.router)
    fixed = Settings(runs_dir=runs_dir)
    app.dependency_overrides[get_settings] = lambda: fixed
    return TestClient(app)


def inputs_of(runs_dir: Path, run: str) -> dict:
    return json.loads((runs_dir / run / "examples" / "inputs.json").read_text())


def snapshot(runs_dir: Path, run: str, step: int) -> dict:
    return json.loads((runs_dir / run / "examples" / f"step-{step:07d}.json").read_text())


def test_the_fixture_runs_are_what_they_claim(runs_dir):
    assert "plausibility" in last_eval(runs_dir / "clutter-re")
    assert "plausibility" not in last_eval(runs_dir / "plain-re") and "probe" in last_eval(runs_dir / "plain-re")
    assert not set(QUALITY) & set(last_eval(runs_dir / "clutter-cls"))
    assert not set(QUALITY) & set(last_eval(runs_dir / "old-re"))


# --- the examples page -------------------------------------------------------------------------
@pytest.mark.parametrize("step", [3, 6])
def test_examples_page_carries_evidence_plausibility_and_the_steps_quality(client, runs_dir, step):
    page = client.get("/api/runs/clutter-re/examples", params={"step": step, "limit": 200}).json()
    inputs, snap, ev = inputs_of(runs_dir, "clutter-re"), snapshot(runs_dir, "clutter-re", step), \
        last_eval(runs_dir / "clutter-re", step)
    assert page["ground_truth"] == "benchmark" and len(page["items"]) == 8
    for it in page["items"]:
        i = it["index"]
        assert it["evidence"] == inputs["evidence"][i] and len(it["evidence"]) == 64
        pl = it["student"]["plausibility"]
        assert pl == {"precision": snap["student"]["plausibility"]["precision"][i],
                      "recall": snap["student"]["plausibility"]["recall"][i]}
        # the per-example scores are the mask against the evidence
        mask = torch.tensor([it["student"]["mask"]], dtype=torch.float32)
        want = per_example_plausibility(mask, torch.tensor([it["evidence"]], dtype=torch.float32), torch.ones(1, 64))
        assert pl == pytest.approx({"precision": want["precision"][0], "recall": want["recall"][0]})
    q = page["quality"]
    assert q["step"] == step and q["accuracy"] == pytest.approx(ev["accuracy"])
    assert q["plausibility"]["f1"] == pytest.approx(ev["plausibility"]["f1"])
    assert q["plausibility"]["random"]["precision"] == pytest.approx(ev["plausibility"]["random"]["precision"])
    assert q["plausibility"]["ground_truth"] == "benchmark"
    assert q["input_dependence"]["fixed_mask"] == ev["input_dependence"]["fixed_mask"]
    assert q["input_dependence"]["fixed_plausibility"]["precision"] == pytest.approx(
        ev["input_dependence"]["fixed_plausibility"]["precision"])
    assert q["probe"] == pytest.approx(ev["probe"])
    assert page["warnings"] == q["warnings"] == ev["warnings"]


def test_examples_page_of_a_distilled_run_scores_the_teacher_too(client, runs_dir):
    page = client.get("/api/runs/clutter-rekd/examples", params={"limit": 200}).json()
    snap = snapshot(runs_dir, "clutter-rekd", page["step"])
    assert page["has_teacher"] and page["ground_truth"] == "benchmark"
    for it in page["items"]:
        assert it["teacher"]["plausibility"]["precision"] == snap["teacher"]["plausibility"]["precision"][it["index"]]


@pytest.mark.parametrize("run", ["plain-re", "clutter-cls", "old-re", "text-re"])
def test_examples_page_without_the_figures(client, run):
    r = client.get(f"/api/runs/{run}/examples", params={"limit": 200})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["ground_truth"] == ("benchmark" if run == "clutter-cls" else None)
    for it in page["items"]:
        assert it["student"]["plausibility"] is None
        assert (it["evidence"] is None) == (run != "clutter-cls")  # a CLS run on ground-truth data saves it
    q = page["quality"]
    assert q["plausibility"] is None and q["step"] == page["step"]
    if run in ("plain-re", "text-re"):  # a rationale, no ground truth: input dependence and the probe only
        assert 0 < q["input_dependence"]["distinct_share"] <= 1 and q["input_dependence"]["fixed_plausibility"] is None
        assert q["probe"]["chance"] > 0 and q["probe"]["gt_accuracy"] is None
    else:
        assert q["input_dependence"] is None and q["probe"] is None
        assert q["warnings"] == page["warnings"] == []


def test_text_evidence_is_cut_to_the_mask(client, runs_dir, tmp_path):
    # the text run has no ground truth: give its saved examples some, as user annotations would be saved
    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "text-re", root / "t")
    inputs = inputs_of(root, "t")
    width = inputs["num_positions"]
    inputs["ground_truth"] = "annotations"
    inputs["evidence"] = [[1 if j in (1, 2) else 0 for j in range(width)] for _ in inputs["rows"]]
    inputs["evidence"][1] = None
    (root / "t" / "examples" / "inputs.json").write_text(json.dumps(inputs))
    app = FastAPI()
    for views in (examples, metrics_views, quality_views, faithfulness_views):  # as backend.main mounts them
        app.include_router(views.router)
    app.dependency_overrides[get_settings] = lambda: Settings(runs_dir=root)
    page = TestClient(app).get("/api/runs/t/examples").json()
    assert page["ground_truth"] == "annotations"
    first, second = page["items"][:2]
    assert len(first["evidence"]) == len(first["student"]["mask"]) == len(first["positions"]) < width
    assert first["evidence"][:3] == [0, 1, 1] and second["evidence"] is None


# --- metrics -----------------------------------------------------------------------------------
FLAT = {"plausibility_precision": ("plausibility", "precision"), "plausibility_recall": ("plausibility", "recall"),
        "plausibility_f1": ("plausibility", "f1"), "plausibility_iou": ("plausibility", "iou"),
        "random_precision": ("plausibility", "random", "precision"),
        "distinct_share": ("input_dependence", "distinct_share"),
        "jaccard_distance": ("input_dependence", "jaccard_distance"),
        "fixed_accuracy": ("input_dependence", "fixed_accuracy"), "fixed_share": ("input_dependence", "fixed_share"),
        "probe_accuracy": ("probe", "accuracy"), "probe_chance": ("probe", "chance"),
        "probe_gt_accuracy": ("probe", "gt_accuracy")}


def dig(d: dict, path: tuple[str, ...]):
    for k in path:
        d = (d or {}).get(k)
    return d


@pytest.mark.parametrize("run", ["clutter-re", "plain-re", "clutter-cls", "old-re"])
def test_metrics_series_and_csv_carry_the_flat_figures(client, runs_dir, run):
    m = client.get(f"/api/runs/{run}/metrics").json()
    evs = [e for e in events(runs_dir / run) if e["type"] == "eval"]
    assert [p["step"] for p in m["eval"]] == [e["step"] for e in evs]
    test_ev = [e for e in events(runs_dir / run) if e["type"] == "test"][-1]
    for point, ev in [*zip(m["eval"], evs), (m["test"], test_ev)]:
        for name, path in FLAT.items():
            want = dig(ev, path)
            assert point[name] == (pytest.approx(want) if want is not None else None), (name, run)
    if run == "clutter-re":
        assert all(m["eval"][-1][k] is not None for k in FLAT)
    if run == "plain-re":
        assert m["eval"][-1]["plausibility_f1"] is None and m["eval"][-1]["distinct_share"] is not None
    r = client.get(f"/api/runs/{run}/metrics", params={"format": "csv"})
    header = r.text.splitlines()[0].split(",")
    assert set(FLAT) <= set(header)
    assert not [h for h in header if h.startswith(("input_dependence_", "probe_n", "plausibility_n"))]
    rows = [row for row in csv.DictReader(io.StringIO(r.text)) if row["kind"] == "eval"]
    for row, ev in zip(rows, evs):
        for name, path in FLAT.items():
            want = dig(ev, path)
            assert (row[name] == "") if want is None else float(row[name]) == pytest.approx(want)


# --- GET /api/runs/{id}/quality ----------------------------------------------------------------
def test_quality_of_a_finished_ground_truth_run(client, runs_dir):
    r = client.get("/api/runs/clutter-re/quality")
    assert r.status_code == 200, r.text
    q = r.json()
    ev = last_eval(runs_dir / "clutter-re")
    res = json.loads((runs_dir / "clutter-re" / "results.json").read_text())
    assert q["run_id"] == "clutter-re" and q["mode"] == "re" and q["ground_truth"] == "benchmark"
    assert q["dev"]["step"] == ev["step"] == 6 and q["dev"]["accuracy"] == pytest.approx(ev["accuracy"])
    for key in ("plausibility", "input_dependence", "probe"):
        assert drop_none(q["dev"][key]) == ev[key], key  # every figure, as recorded
    assert q["dev"]["warnings"] == ev["warnings"]
    test = res["test"]
    assert q["test"]["step"] == res["best_dev"]["step"]
    assert q["test"]["plausibility"]["f1"] == pytest.approx(test["plausibility"]["f1"])
    assert q["test"]["probe"]["accuracy"] == pytest.approx(test["probe"]["accuracy"])
    assert q["warnings"] == q["test"]["warnings"] == test["warnings"]


def test_quality_of_a_running_run_warns_from_its_latest_dev_evaluation(client, runs_dir):
    q = client.get("/api/runs/running-re/quality").json()
    assert q["test"] is None and q["dev"]["step"] == 6
    assert [w["detail"] for w in q["warnings"]] == ["edited for the test"]


@pytest.mark.parametrize("run, mode", [("plain-re", "re"), ("clutter-cls", "cls"), ("old-re", "re")])
def test_quality_without_the_figures(client, run, mode):
    q = client.get(f"/api/runs/{run}/quality").json()
    assert q["mode"] == mode and q["dev"] is not None and q["test"] is not None
    assert q["dev"]["plausibility"] is None and q["test"]["plausibility"] is None
    assert q["ground_truth"] == ("benchmark" if run == "clutter-cls" else None)
    if run == "plain-re":
        assert q["test"]["input_dependence"]["distinct_share"] > 0 and q["test"]["probe"]["accuracy"] is not None
    else:
        assert q["dev"]["input_dependence"] is None and q["test"]["probe"] is None and q["warnings"] == []


def test_quality_of_unknown_bad_and_untrained_runs(client, runs_dir):
    assert client.get("/api/runs/nope/quality").status_code == 404
    assert client.get("/api/runs/..%2Fetc/quality").status_code == 422
    RunStore.create(runs_dir / "queued", parse_config(clutter("re")))
    q = client.get("/api/runs/queued/quality").json()
    assert q == {"run_id": "queued", "mode": "re", "ground_truth": None, "dev": None, "test": None, "warnings": []}


def test_run_list_and_detail_carry_the_warnings(client, runs_dir):
    listed = {r["id"]: r for r in client.get("/api/runs").json()}
    res = json.loads((runs_dir / "clutter-re" / "results.json").read_text())
    assert listed["clutter-re"]["warnings"] == res["test"]["warnings"]
    assert [w["detail"] for w in listed["running-re"]["warnings"]] == ["edited for the test"]
    assert listed["clutter-cls"]["warnings"] == listed["old-re"]["warnings"] == []
    detail = client.get("/api/runs/clutter-re").json()
    assert detail["warnings"] == res["test"]["warnings"]


def test_openapi_documents_the_quality_fields(client):
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/api/runs/{run_id}/quality"]["get"]
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RunQuality")
    assert {"404", "422"} <= set(route["responses"])
    schemas = spec["components"]["schemas"]
    for name in ("PlausibilityScores", "InputDependence", "Probe", "RationaleWarning", "ExamplePlausibility"):
        props = schemas[name]["properties"]
        assert all(p.get("description") for p in props.values()), name
    assert {"ground_truth", "quality", "warnings"} <= set(schemas["ExamplesPage"]["properties"])
    assert "evidence" in schemas["ExampleItem"]["properties"] and "plausibility" in schemas["Side"]["properties"]
    assert {"plausibility_f1", "distinct_share", "probe_accuracy"} <= set(schemas["EvalPoint"]["properties"])
    assert "warnings" in schemas["RunSummary"]["properties"]
    body = schemas["Body_explain_input_api_explain_post"]["properties"]
    assert body["evidence"]["description"] and body["rationale"]["description"]
    assert {"evidence", "plausibility", "warnings"} <= set(schemas["ExplanationOut"]["properties"])


# --- explain with the input's ground truth -----------------------------------------------------
def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dev_example(runs_dir):
    """The first saved dev example of the clutter runs: image, evidence mask (pixels) and inputs.json's evidence."""
    cfg = RunStore(runs_dir / "clutter-re").config()
    bundle = load_for_config(cfg)
    inputs = inputs_of(runs_dir, "clutter-re")
    row = inputs["rows"][0]
    return (bundle.dev.x[row, 0].numpy(), bundle.dev.evidence.pixels[row].numpy(), inputs["evidence"][0])


def post(client, run_id, image, evidence=None, **form):
    files = {"file": ("x.png", image, "image/png")}
    if evidence is not None:
        files["evidence"] = ("mask.png", evidence, "image/png")
    return client.post("/api/explain", data={"run_id": run_id, **form}, files=files)


def check_scores(side: dict) -> None:
    m = torch.tensor([side["mask"]], dtype=torch.float32)
    want = per_example_plausibility(m, torch.tensor([side["evidence"]], dtype=torch.float32), torch.ones_like(m))
    assert side["plausibility"] == pytest.approx({"precision": want["precision"][0], "recall": want["recall"][0]})


def test_explain_an_image_with_its_evidence_mask(client, runs_dir, dev_example):
    image, mask, saved = dev_example
    r = post(client, "clutter-rekd", png(image), png((mask > 0).astype(np.uint8) * 255), checkpoint="last")
    assert r.status_code == 200, r.text
    ex = r.json()
    # the run's featurizer maps the uploaded mask exactly as it mapped the training data's evidence
    assert ex["evidence"] == saved and sum(saved) > 0
    check_scores(ex)
    assert ex["teacher"]["evidence"] == saved  # the teacher scored on its own positions (the same grid here)
    check_scores(ex["teacher"])
    res = json.loads((runs_dir / "clutter-rekd" / "results.json").read_text())
    assert ex["warnings"] == res["test"]["warnings"]
    teacher_res = json.loads((runs_dir / "clutter-re" / "results.json").read_text())
    assert ex["teacher"]["warnings"] == teacher_res["test"]["warnings"]
    # a mask at another size is resized to the image's; gray levels and colour count as evidence
    big = np.repeat(np.repeat(np.where(mask > 0, 7, 0).astype(np.uint8), 2, 0), 2, 1)
    rgb = np.stack([np.zeros_like(big), big, np.zeros_like(big)], -1)
    again = post(client, "clutter-rekd", png(image), png(rgb), checkpoint="last").json()
    assert again["evidence"] == saved and again["plausibility"] == ex["plausibility"]
    # without ground truth: no evidence, no scores, the warnings all the same
    plain = post(client, "clutter-rekd", png(image), checkpoint="last").json()
    assert plain["evidence"] is None and plain["plausibility"] is None and plain["warnings"] == ex["warnings"]


def test_explain_with_evidence_on_a_cls_run_and_a_run_without_ground_truth(client, dev_example):
    image, mask, saved = dev_example
    ex = post(client, "clutter-cls", png(image), png((mask > 0).astype(np.uint8))).json()
    assert ex["evidence"] == saved and ex["plausibility"] is None and ex["warnings"] == []  # CLS: no rationale
    small = np.asarray(Image.fromarray(image).resize((28, 28)))
    small_mask = np.asarray(Image.fromarray((mask > 0).astype(np.uint8) * 255).resize((28, 28), Image.NEAREST))
    ex = post(client, "plain-re", png(small), png(small_mask)).json()  # any image run takes a mask
    assert len(ex["evidence"]) == 16 and sum(ex["evidence"]) > 0
    check_scores(ex)


def test_explain_a_text_with_its_highlighted_rationale(client, runs_dir):
    text = "A gorgeous, witty film; the ending drags though. Witty it is not, witty it was."
    r = client.post("/api/explain", data={"run_id": "text-re", "text": text, "rationale": "witty film\n\n ending "})
    assert r.status_code == 200, r.text
    ex = r.json()
    marked = [text[p["span"][0]:p["span"][1]] for p, e in zip(ex["positions"], ex["evidence"]) if e]
    assert marked == ["witty", "film", "ending"] and len(ex["evidence"]) == len(ex["mask"])
    check_scores(ex)
    assert ex["warnings"] == client.get("/api/runs/text-re/quality").json()["warnings"]
    # every occurrence counts; matching is exact (the capitalised one is not marked)
    ex = client.post("/api/explain", data={"run_id": "text-re", "text": text, "rationale": "witty"}).json()
    assert [text[p["span"][0]:p["span"][1]] for p, e in zip(ex["positions"], ex["evidence"]) if e] == \
        ["witty", "witty"]
    blank = client.post("/api/explain", data={"run_id": "text-re", "text": text, "rationale": " \n"}).json()
    assert blank["evidence"] is None and blank["plausibility"] is None


def test_explain_ground_truth_refusals(client, runs_dir, dev_example):
    image, mask, _ = dev_example
    text = "A gorgeous, witty film."
    missing = "a sentence that the review never says " * 5
    r = client.post("/api/explain", data={"run_id": "text-re", "text": text, "rationale": f"witty\n{missing}"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("rationale: line 2") and "not in the text" in detail and len(detail) < 200
    r = client.post("/api/explain", data={"run_id": "text-re", "text": text},
                    files={"evidence": ("m.png", png(mask), "image/png")})
    assert r.status_code == 422 and r.json()["detail"].startswith("evidence:") and "explains texts" in r.text
    r = post(client, "clutter-re", png(image), rationale="a shirt")
    assert r.status_code == 422 and r.json()["detail"].startswith("rationale:") and "explains images" in r.text
    r = post(client, "clutter-re", png(image), b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    assert r.status_code == 422 and r.json()["detail"].startswith("evidence: the image is corrupt")
    r = post(client, "clutter-re", png(image), b"plain text, not a mask at all")
    assert r.status_code == 415 and r.json()["detail"].startswith("evidence:")
    strict = FastAPI()
    strict.include_router(explain.router)
    strict.dependency_overrides[get_settings] = lambda: Settings(runs_dir=runs_dir, max_image_pixels=64 * 64)
    big = png(np.ones((65, 65), dtype=np.uint8))
    r = post(TestClient(strict), "clutter-re", png(image), big)
    assert r.status_code == 422 and r.json()["detail"].startswith("evidence: image too large")


# --- compare and the rationales export -----------------------------------------------------------
def test_compare_shows_each_runs_quality_and_the_evidence(client, runs_dir):
    r = client.get("/api/compare", params={"runs": ["old-re", "clutter-cls", "clutter-re"], "filter": "all",
                                           "limit": 100})
    assert r.status_code == 200, r.text
    page = r.json()
    old, cls_run, re_run = page["runs"]
    ev = last_eval(runs_dir / "clutter-re")
    q = re_run["quality"]
    assert q["step"] == re_run["step"] == ev["step"] and q["ground_truth"] == "benchmark"
    assert q["plausibility_f1"] == pytest.approx(ev["plausibility"]["f1"])
    assert q["plausibility_precision"] == pytest.approx(ev["plausibility"]["precision"])
    assert q["distinct_share"] == pytest.approx(ev["input_dependence"]["distinct_share"])
    assert q["fixed_accuracy"] == pytest.approx(ev["input_dependence"]["fixed_accuracy"])
    assert q["probe_accuracy"] == pytest.approx(ev["probe"]["accuracy"])
    assert q["probe_chance"] == pytest.approx(ev["probe"]["chance"])
    assert q["warnings"] == ev["warnings"]
    for empty in (old["quality"], cls_run["quality"]):
        assert empty["plausibility_f1"] is None and empty["distinct_share"] is None and empty["warnings"] == []
    inputs = inputs_of(runs_dir, "clutter-re")
    snap = snapshot(runs_dir, "clutter-re", re_run["step"])
    for item in page["items"]:
        i = inputs["rows"].index(item["row"])
        # the old run saved none: the evidence comes from the first run that has it
        assert item["evidence"] == inputs["evidence"][i]
        old_side, cls_side, re_side = item["sides"]
        assert old_side["evidence"] is None and cls_side["evidence"] == re_side["evidence"] == inputs["evidence"][i]
        assert old_side["plausibility"] is None and cls_side["plausibility"] is None
        assert re_side["plausibility"] == {"precision": snap["student"]["plausibility"]["precision"][i],
                                           "recall": snap["student"]["plausibility"]["recall"][i]}


def test_comparison_table_has_the_quality_columns(client, runs_dir):
    params = {"runs": ["clutter-cls", "clutter-re", "old-re"]}
    md = client.get("/api/compare/table", params={**params, "format": "md"}).text.splitlines()
    head = [c.strip() for c in md[0].strip("|").split("|")]
    assert head[7:10] == ["plausibility F1 %", "distinct %", "probe acc %"]
    cls_row, re_row, old_row = ([c.strip() for c in line.strip("|").split("|")] for line in md[2:])
    ev = last_eval(runs_dir / "clutter-re")
    assert re_row[7] == f"{100 * ev['plausibility']['f1']:.1f}" and re_row[9] == f"{100 * ev['probe']['accuracy']:.1f}"
    assert cls_row[7:10] == old_row[7:10] == ["–", "–", "–"]
    rows = list(csv.DictReader(io.StringIO(client.get("/api/compare/table", params={**params, "format": "csv"}).text)))
    assert float(rows[1]["plausibility_f1"]) == pytest.approx(ev["plausibility"]["f1"])
    assert float(rows[1]["distinct_share"]) == pytest.approx(ev["input_dependence"]["distinct_share"])
    assert float(rows[1]["probe_chance"]) == pytest.approx(ev["probe"]["chance"])
    assert rows[1]["warnings"] == ";".join(w["code"] for w in ev["warnings"])
    assert rows[0]["plausibility_f1"] == rows[2]["probe_accuracy"] == rows[2]["warnings"] == ""
    tex = client.get("/api/compare/table", params={**params, "format": "tex"}).text
    assert tex.startswith(r"\begin{tabular}{l" + "r" * 11 + "}") and "plausibility F1 \\%" in tex


@pytest.mark.parametrize("run", ["clutter-rekd", "plain-re", "clutter-cls", "old-re"])
def test_rationales_export_carries_evidence_and_plausibility(client, runs_dir, run):
    lines = [json.loads(x) for x in client.get(f"/api/runs/{run}/rationales").text.splitlines()]
    inputs = inputs_of(runs_dir, run)
    snap = snapshot(runs_dir, run, lines[0]["step"])
    for i, line in enumerate(lines):
        assert line["evidence"] == (inputs.get("evidence") or [None] * len(lines))[i]
        assert line["ground_truth"] == inputs.get("ground_truth")
        for side in ("student", "teacher"):
            if line[side] is None:
                continue
            pl = (snap[side] or {}).get("plausibility")
            want = None if pl is None else {"precision": pl["precision"][i], "recall": pl["recall"][i]}
            assert line[side]["plausibility"] == want
        if run == "clutter-rekd":
            assert line["evidence_patches"] == [j for j, e in enumerate(line["evidence"]) if e]
            assert line["student"]["plausibility"] is not None and line["teacher"]["plausibility"] is not None


def test_an_old_run_still_serves_every_route(client):
    for path in ("", "/examples", "/metrics", "/metrics?format=csv", "/quality", "/rationales"):
        r = client.get(f"/api/runs/old-re{path}")
        assert r.status_code == 200, (path, r.text)
    r = post(client, "old-re", png(np.zeros((64, 64), dtype=np.uint8)))
    assert r.status_code == 200 and r.json()["warnings"] == []

