"""Faithfulness shown, not claimed: ERASER comprehensiveness / sufficiency of RE rationales (engine,
eval events, snapshots, examples / explain / faithfulness API) and the integrated-gradients baseline."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from backend.routes import examples, explain
from backend.routes import faithfulness as faithfulness_views
from backend.routes import metrics as metrics_views
from backend.routes import quality as quality_views
from conftest import tiny_text, tiny_vision
from rekd_core.analysis.explain import explain as explain_fn
from rekd_core.analysis.explain import load_run
from rekd_core.analysis.faithfulness import (
    complement_mask,
    erasure,
    full_mask,
    integrated_gradients,
    posthoc,
    rationale_faithfulness,
    topk_mask,
)
from rekd_core.analysis.faithfulness_report import example_inputs, faithfulness_report
from rekd_core.config import parse_config
from rekd_core.store.examples import list_snapshots
from rekd_core.store.runstore import RunStore
from rekd_core.train.trainer import train
from service.settings import Settings, get_settings

FIELDS = {"p_full", "p_rationale", "p_complement", "comprehensiveness", "sufficiency", "full_pred", "complement_pred"}
EVAL_FIELDS = {"comprehensiveness", "sufficiency", "p_full", "p_rationale", "p_complement", "complement_accuracy",
               "full_accuracy"}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, teacher_runs):
    """re-vision / re-text (the shared RE teachers), cls-vision / cls-text (completed CLS runs),
    rekd-vision / rekd-text (distilled), queued-cls (a CLS run never trained), cls-coarse (a CLS
    config on another patch grid, never trained)."""
    root = tmp_path_factory.mktemp("faith")
    shutil.copytree(teacher_runs["vision"], root / "re-vision")
    shutil.copytree(teacher_runs["text"], root / "re-text")
    train(parse_config(tiny_vision("cls")), root / "cls-vision")
    train(parse_config(tiny_text("cls")), root / "cls-text")
    for name, make in (("vision", tiny_vision), ("text", tiny_text)):
        cfg = make("rekd", max_steps=2, eval_every=2, checkpoint_every=2, log_every=2)
        cfg["model"]["teacher_run"] = str(root / f"re-{name}")
        train(parse_config(cfg), root / f"rekd-{name}")
    RunStore.create(root / "queued-cls", parse_config(tiny_vision("cls")))
    coarse = tiny_vision("cls")
    coarse["model"]["student"]["patch_size"] = 14
    RunStore.create(root / "cls-coarse", parse_config(coarse))
    return root


@pytest.fixture(scope="module")
def client(runs_dir):
    app = FastAPI()
    for views in (examples, metrics_views, quality_views, faithfulness_views):  # as backend.main mounts them
        app.include_router(views.router)
    app.include_router(explain.router)
    fixed = Settings(runs_dir=runs_dir)
    app.dependency_overrides[get_settings] = lambda: fixed
    return TestClient(app)


def _dev_inputs(run_dir, n=8):
    run = load_run(run_dir)
    inputs, y = example_inputs(RunStore(run_dir), run.featurizer, n, run.device)
    return run, inputs, y


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _image():
    from rekd_core.data.load import load_dataset

    return load_dataset("fashion_mnist", max_eval=4).test.x[0, 0].numpy()


# --- the math ----------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["vision", "text"])
def test_full_rationale_has_zero_sufficiency_and_an_all_masked_complement(runs_dir, modality):
    run, inputs, _ = _dev_inputs(runs_dir / f"re-{modality}")
    model = run.model
    full = full_mask(inputs)
    f = erasure(model.predict, inputs, full)
    assert torch.equal(f.sufficiency, torch.zeros_like(f.sufficiency))  # r = x: the same forward
    # the complement of everything is the all-masked input ([CLS]/[SEP] kept as the predictor keeps them)
    with torch.no_grad():
        q_none = model.predict(inputs, torch.zeros_like(full))
    p_none = torch.softmax(q_none, -1).gather(1, f.target[:, None])[:, 0]
    assert torch.allclose(f.p_complement, p_none)
    # an empty rationale leaves the whole input as its complement: nothing to lose, comprehensiveness 0
    empty = erasure(model.predict, inputs, torch.zeros_like(full))
    assert torch.allclose(empty.comprehensiveness, torch.zeros(len(inputs)), atol=1e-6)
    for t in (f.p_full, f.p_rationale, f.p_complement):
        assert ((t >= 0) & (t <= 1)).all()


@pytest.mark.parametrize("modality", ["vision", "text"])
def test_rationale_scores_use_one_deterministic_predictor(runs_dir, modality):
    run, inputs, _ = _dev_inputs(runs_dir / f"re-{modality}")
    m1, f1 = rationale_faithfulness(run.model, inputs)
    m2, f2 = rationale_faithfulness(run.model, inputs)
    assert torch.equal(m1, m2) and torch.equal(f1.p_complement, f2.p_complement)  # no Gumbel noise
    with torch.no_grad():
        q = run.model.predict(inputs, m1)
    # ŷ is the rationale's prediction and p_rationale its probability, as the RE model reports it
    assert torch.equal(f1.target, q.argmax(-1))
    assert torch.allclose(f1.p_rationale, torch.softmax(q, -1).max(-1).values)
    comp = complement_mask(inputs, m1)
    assert not (comp * (1 - inputs.selectable)).any()  # specials and padding are never "the complement"
    assert not (comp * m1 * inputs.selectable).any()
    assert torch.allclose(f1.comprehensiveness, f1.p_full - f1.p_complement)


def test_topk_mask_picks_the_highest_selectable_positions():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]])
    sel = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    m = topk_mask(scores, torch.tensor([2, 5]), sel)
    assert m.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]  # position 1 is not selectable; k clamps to 3


@pytest.mark.parametrize("modality", ["vision", "text"])
def test_integrated_gradients_completeness(runs_dir, modality):
    """Σ attributions = f(x) − f(baseline) (Sundararajan et al.'s completeness axiom), up to the
    quadrature error of 32 midpoint steps."""
    run, inputs, _ = _dev_inputs(runs_dir / f"cls-{modality}")
    model = run.model
    if modality == "text":
        # the tiny trained text model is nearly constant; a random one gives the axiom something to check
        torch.manual_seed(0)
        model = type(model)(run.config.model.student, num_classes=2, with_generator=False,
                            vocab_size=run.featurizer.vocab_size, max_len=run.featurizer.max_len).eval()
        with torch.no_grad():
            model.classifier.weight.mul_(20)
    with torch.no_grad():
        target = model.predict(inputs, full_mask(inputs)).argmax(-1)
    r = integrated_gradients(model, inputs, target, steps=32)
    gap = r.f_input - r.f_baseline
    assert gap.abs().max() > 1e-3  # a non-trivial check
    total = r.attributions.flatten(1).sum(1)
    assert torch.allclose(total, gap, atol=2e-3 + 0.02 * float(gap.abs().max()))
    assert r.per_position.shape == inputs.selectable.shape
    assert (r.per_position >= 0).all()
    if modality == "text":  # [CLS]/[SEP]/padding keep their own embedding: no attribution
        assert not (r.per_position * (1 - inputs.selectable)).any()


def test_posthoc_selection_has_the_requested_size(runs_dir):
    run, inputs, _ = _dev_inputs(runs_dir / "cls-vision")
    k = torch.arange(len(inputs)) % 5
    res = posthoc(run.model, inputs, k, steps=8)
    assert res.mask.sum(1).long().tolist() == k.tolist()
    with torch.no_grad():
        q_full = run.model.predict(inputs, full_mask(inputs))
    assert torch.equal(res.scores.target, q_full.argmax(-1))  # ŷ: the CLS model's own prediction


# --- the trainer and its snapshots -------------------------------------------------------------
def _events(run_dir):
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("run", ["re-vision", "re-text", "rekd-vision", "rekd-text"])
def test_eval_events_carry_dev_faithfulness(runs_dir, run):
    evals = [e for e in _events(runs_dir / run) if e["type"] == "eval"]
    assert evals
    for e in evals:
        f = e["faithfulness"]
        assert set(f) == EVAL_FIELDS
        assert all(-1.0 <= f[k] <= 1.0 for k in f)
        assert all(0.0 <= f[k] <= 1.0 for k in EVAL_FIELDS - {"comprehensiveness", "sufficiency"})
        assert f["comprehensiveness"] == pytest.approx(f["p_full"] - f["p_complement"], abs=1e-5)
        assert f["sufficiency"] == pytest.approx(f["p_full"] - f["p_rationale"], abs=1e-5)
    test = [e for e in _events(runs_dir / run) if e["type"] == "test"]
    assert test and "faithfulness" not in test[0]  # a dev-eval figure only


def test_cls_runs_have_no_faithfulness(runs_dir):
    evals = [e for e in _events(runs_dir / "cls-vision") if e["type"] == "eval"]
    assert evals and all("faithfulness" not in e for e in evals)
    snap = json.loads(sorted((runs_dir / "cls-vision" / "examples").glob("step-*.json"))[-1].read_text())
    assert "faithfulness" not in snap["student"]


@pytest.mark.parametrize("run", ["re-text", "rekd-vision", "rekd-text"])
def test_snapshots_carry_per_example_faithfulness(runs_dir, run):
    snap = json.loads(sorted((runs_dir / run / "examples").glob("step-*.json"))[-1].read_text())
    n = len(snap["labels"])
    sides = ["student", "teacher"] if run.startswith("rekd") else ["student"]
    for side in sides:
        f = snap[side]["faithfulness"]
        assert set(f) == FIELDS and all(len(v) == n for v in f.values())
        for i in range(n):
            assert f["comprehensiveness"][i] == pytest.approx(f["p_full"][i] - f["p_complement"][i], abs=2e-4)
            assert f["sufficiency"][i] == pytest.approx(f["p_full"][i] - f["p_rationale"][i], abs=2e-4)
            # p_rationale is the side's own prediction probability
            assert f["p_rationale"][i] == pytest.approx(max(snap[side]["probs"][i]), abs=2e-4)


def test_teacher_side_matches_the_teacher_run_itself(runs_dir):
    """The REKD snapshot's teacher scores are the teacher model's own (live predictor, own mask)."""
    snap = json.loads(sorted((runs_dir / "rekd-vision" / "examples").glob("step-*.json"))[-1].read_text())
    meta = json.loads((runs_dir / "rekd-vision" / "examples" / "inputs.json").read_text())
    teacher = load_run(runs_dir / "re-vision")
    inputs, _ = example_inputs(RunStore(runs_dir / "rekd-vision"), teacher.featurizer, len(meta["rows"]),
                               teacher.device)
    _, f = rationale_faithfulness(teacher.model, inputs)
    assert snap["teacher"]["faithfulness"]["p_complement"] == pytest.approx(f.p_complement.tolist(), abs=2e-4)


# --- the API -----------------------------------------------------------------------------------
@pytest.mark.parametrize("run", ["re-vision", "re-text", "rekd-vision"])
def test_examples_api_items_carry_faithfulness(client, run):
    page = client.get(f"/api/runs/{run}/examples", params={"limit": 50}).json()
    for item in page["items"]:
        for side in ["student", "teacher"] if run.startswith("rekd") else ["student"]:
            f = item[side]["faithfulness"]
            assert set(f) == FIELDS
            assert f["full_pred"] in page["class_names"] and f["complement_pred"] in page["class_names"]
            assert f["p_full"] == round(f["p_full"], 4)


def test_old_snapshots_without_faithfulness_still_load(client, runs_dir):
    old = runs_dir / "old-vision"
    if not old.exists():
        shutil.copytree(runs_dir / "re-vision", old)
        for p in (old / "examples").glob("step-*.json"):
            snap = json.loads(p.read_text())
            snap["student"].pop("faithfulness")
            p.write_text(json.dumps(snap))
    r = client.get("/api/runs/old-vision/examples")
    assert r.status_code == 200
    assert all(item["student"]["faithfulness"] is None for item in r.json()["items"])


def test_explain_api_carries_faithfulness(client):
    r = client.post("/api/explain", data={"run_id": "re-vision"},
                    files={"file": ("x.png", _png(_image()), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    f = body["faithfulness"]
    assert set(f) == FIELDS and f["p_rationale"] == pytest.approx(body["probabilities"][body["label"]], abs=1e-4)
    assert body["posthoc"] is None
    r = client.post("/api/explain", data={"run_id": "re-text", "text": "a warm, funny and moving film"})
    assert set(r.json()["faithfulness"]) == FIELDS
    r = client.post("/api/explain", data={"run_id": "rekd-text", "text": "dull and far too long"})
    assert set(r.json()["faithfulness"]) == FIELDS and set(r.json()["teacher"]["faithfulness"]) == FIELDS
    r = client.post("/api/explain", data={"run_id": "cls-text", "text": "dull"})
    assert r.status_code == 200 and r.json()["faithfulness"] is None


@pytest.mark.parametrize("run,base", [("re-vision", "cls-vision"), ("re-text", "cls-text"),
                                      ("rekd-vision", "cls-vision")])
def test_explain_api_with_a_posthoc_baseline(client, run, base):
    form = {"run_id": run, "baseline_run": base}
    if run.endswith("text"):
        r = client.post("/api/explain", data={**form, "text": "a warm, funny and moving film"})
    else:
        r = client.post("/api/explain", data=form, files={"file": ("x.png", _png(_image()), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    ph = body["posthoc"]
    assert ph["run_id"] == base and ph["method"] == "integrated_gradients"
    assert len(ph["mask"]) == len(ph["attributions"]) == len(body["mask"])
    assert sum(ph["mask"]) == sum(body["mask"])  # the same sparsity
    assert -1 <= ph["comprehensiveness"] <= 1 and -1 <= ph["sufficiency"] <= 1


def test_explain_in_process_with_baseline(runs_dir):
    ex = explain_fn(runs_dir / "re-vision", _image(), baseline=load_run(runs_dir / "cls-vision"))
    assert ex.posthoc is not None and sum(ex.posthoc["mask"]) == sum(ex.mask)
    assert ex.to_dict()["faithfulness"]["full_pred"] in ex.probabilities


@pytest.mark.parametrize("run,base,needle", [
    ("re-vision", "re-vision", "must be a CLS run"),
    ("re-vision", "cls-text", "text run"),
    ("re-vision", "queued-cls", "not completed"),
    ("re-vision", "cls-coarse", "patch grid"),
    ("re-vision", "no-such-run", "no run"),
    ("cls-vision", "cls-vision", "CLS run"),
])
def test_explain_with_an_unusable_baseline_is_422(client, run, base, needle):
    r = client.post("/api/explain", data={"run_id": run, "baseline_run": base},
                    files={"file": ("x.png", _png(_image()), "image/png")})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text


def test_faithfulness_endpoint_without_and_with_a_baseline(client, runs_dir):
    r = client.get("/api/runs/re-vision/faithfulness")
    assert r.status_code == 200, r.text
    body = r.json()
    snaps = list_snapshots(RunStore(runs_dir / "re-vision"))
    assert body["step"] == snaps[-1] and body["baseline"] is None and body["run_id"] == "re-vision"
    snap = json.loads((runs_dir / "re-vision" / "examples" / f"step-{snaps[-1]:07d}.json").read_text())
    n = len(snap["labels"])
    assert body["n"] == n
    mean_comp = sum(snap["student"]["faithfulness"]["comprehensiveness"]) / n
    assert body["rationale"]["comprehensiveness"] == pytest.approx(mean_comp)
    frac = sum(sum(m) for m in snap["student"]["mask"]) / (n * 16)
    assert body["rationale"]["selected_fraction"] == pytest.approx(frac)

    r = client.get("/api/runs/re-vision/faithfulness", params={"baseline": "cls-vision", "limit": 4,
                                                                "step": snaps[0]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n"] == 4 and body["step"] == snaps[0]
    b = body["baseline"]
    assert b["run_id"] == "cls-vision" and b["method"] == "integrated_gradients"
    assert b["selected_fraction"] == pytest.approx(body["rationale"]["selected_fraction"])
    for side in (body["rationale"], b):
        assert all(-1 <= side[k] <= 1 for k in ("comprehensiveness", "sufficiency"))

    r = client.get("/api/runs/re-text/faithfulness", params={"baseline": "cls-text"})
    assert r.status_code == 200, r.text
    assert r.json()["baseline"]["selected_fraction"] == pytest.approx(r.json()["rationale"]["selected_fraction"])


def test_faithfulness_report_recomputes_old_snapshots_from_their_checkpoint(runs_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs_dir / "re-vision", old)
    for p in (old / "examples").glob("step-*.json"):
        snap = json.loads(p.read_text())
        snap["student"].pop("faithfulness")
        p.write_text(json.dumps(snap))
    store = RunStore(old)
    last = list_snapshots(store)[-1]
    fresh = faithfulness_report(RunStore(runs_dir / "re-vision"), last)
    again = faithfulness_report(store, last)  # the 'last' checkpoint is of that step
    for k in ("comprehensiveness", "sufficiency", "selected_fraction"):
        assert again["rationale"][k] == pytest.approx(fresh["rationale"][k], abs=1e-3)


@pytest.mark.parametrize("run,params,code,needle", [
    ("nope", {}, 404, "no run"),
    ("cls-vision", {}, 422, "CLS run"),
    ("re-vision", {"baseline": "re-text"}, 422, "must be a CLS run"),
    ("re-vision", {"baseline": "cls-text"}, 422, "text run"),
    ("re-vision", {"baseline": "queued-cls"}, 422, "not completed"),
    ("re-vision", {"baseline": "cls-coarse"}, 422, "patch grid"),
    ("re-vision", {"baseline": "missing"}, 422, "no run"),
    ("re-vision", {"baseline": "../x"}, 422, "invalid run id"),
    ("re-vision", {"step": 99999}, 404, "no snapshot"),
    ("re-vision", {"limit": 0}, 422, None),
    ("queued-cls", {}, 422, "CLS run"),
])
def test_faithfulness_endpoint_refusals(client, run, params, code, needle):
    r = client.get(f"/api/runs/{run}/faithfulness", params=params)
    assert r.status_code == code, r.text
    if needle:
        assert needle in r.json()["detail"]


def test_metrics_and_openapi_show_faithfulness(client):
    evals = client.get("/api/runs/re-vision/metrics").json()["eval"]
    assert all(e["faithfulness_comprehensiveness"] is not None for e in evals)
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/runs/{run_id}/faithfulness"]["get"]
    assert {"200", "404", "409", "422"} <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FaithfulnessReport")
    props = spec["components"]["schemas"]["ExplanationOut"]["properties"]
    assert {"faithfulness", "posthoc"} <= set(props)
    assert "baseline_run" in spec["components"]["schemas"]["Body_explain_input_api_explain_post"]["properties"]
