"""Per-example run comparison, comparison tables and rationale exports, over real tiny runs."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.routes import compare
from conftest import tiny_text, tiny_vision
from rekd_core.analysis.compare import check_filter, matches, summary
from rekd_core.config import parse_config
from rekd_core.train.trainer import train
from service.settings import Settings, get_settings


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, teacher_runs):
    """Three vision runs on one dev subset (CLS, RE with another seed, the RE teacher), one text run."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(teacher_runs["vision"], root / "re-a")
    shutil.copytree(teacher_runs["text"], root / "text-re")
    train(parse_config(tiny_vision("cls", max_steps=6)), root / "cls")
    train(parse_config(tiny_vision("re", max_steps=3, eval_every=3, seed=7)), root / "re-b")
    return root


@pytest.fixture(scope="module")
def client(runs_dir):
    app = FastAPI()
    app.include_router(compare.router)
    fixed = Settings(runs_dir=runs_dir)
    app.dependency_overrides[get_settings] = lambda: fixed
    return TestClient(app)


def test_patterns_filters_and_summary_counts():
    outs = [{"preds": [1, 1], "pattern": "11", "correct": [True, True]},
            {"preds": [1, 2], "pattern": "10", "correct": [True, False]},
            {"preds": [0, 2], "pattern": "01", "correct": [False, True]},
            {"preds": [0, 3], "pattern": "00", "correct": [False, False]}]
    s = summary(outs, 2)
    assert s["patterns"] == {"11": 1, "10": 1, "01": 1, "00": 1} and s["disagree"] == 3
    assert s["accuracy"] == [0.5, 0.5] and s["agreement"][0][1] == 0.25 and s["agreement"][0][0] == 1.0
    assert [o["pattern"] for o in outs if matches(o, "1x")] == ["11", "10"]
    assert [o["pattern"] for o in outs if matches(o, "disagree")] == ["10", "01", "00"]
    for bad in ("1", "102", "abc"):
        with pytest.raises(ValueError, match="per run"):
            check_filter(bad, 2)


def test_compare_lists_disagreements_with_each_runs_rationale(client, runs_dir):
    r = client.get("/api/compare", params={"runs": ["cls", "re-a", "re-b"], "filter": "all", "limit": 100})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [x["id"] for x in page["runs"]] == ["cls", "re-a", "re-b"] and page["modality"] == "vision"
    n = page["summary"]["n"]
    assert n == page["total"] == len(page["items"]) == 8  # train.eval_examples of tiny_vision
    assert sum(page["summary"]["patterns"].values()) == n and len(page["summary"]["patterns"]) == 8
    for item in page["items"]:
        assert item["image"].startswith("data:image/png;base64,")
        cls_side, re_side, _ = item["sides"]
        assert cls_side["mask"] is None and len(re_side["mask"]) == 16  # CLS has no rationale; RE does
        assert cls_side["faithfulness"] is None and -1 <= re_side["faithfulness"]["comprehensiveness"] <= 1
        right = "".join("1" if s["pred"] == item["label"] else "0" for s in item["sides"])
        assert right == item["pattern"]
    # the counts agree with the listed examples, pattern by pattern
    for pattern, count in page["summary"]["patterns"].items():
        only = client.get("/api/compare", params={"runs": ["cls", "re-a", "re-b"], "filter": pattern,
                                                  "limit": 100}).json()
        assert only["total"] == count and all(i["pattern"] == pattern for i in only["items"])
    dis = client.get("/api/compare", params={"runs": ["cls", "re-a", "re-b"]}).json()
    assert dis["filter"] == "disagree" and dis["total"] == page["summary"]["disagree"]
    assert all(len({s["pred"] for s in i["sides"]}) > 1 for i in dis["items"])


def test_compare_refuses_what_cannot_line_up(client):
    r = client.get("/api/compare", params={"runs": ["cls", "text-re"]})
    assert r.status_code == 422 and "different modalities" in r.json()["detail"]
    r = client.get("/api/compare", params={"runs": ["cls"]})
    assert r.status_code == 422
    r = client.get("/api/compare", params={"runs": ["cls", "nope"]})
    assert r.status_code == 404
    r = client.get("/api/compare", params={"runs": ["cls", "re-a"], "filter": "1"})
    assert r.status_code == 422 and "2 characters" in r.json()["detail"]
    r = client.get("/api/compare", params={"runs": ["cls", "cls"]})
    assert r.status_code == 422 and "twice" in r.json()["detail"]


def test_comparison_table_in_three_formats(client, runs_dir):
    params = {"runs": ["cls", "re-a"]}
    md = client.get("/api/compare/table", params={**params, "format": "md"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    lines = md.text.splitlines()
    assert lines[0].startswith("| run | mode | test acc %") and len(lines) == 4
    rows = list(csv.DictReader(io.StringIO(client.get("/api/compare/table", params={**params, "format": "csv"}).text)))
    assert [r["run"] for r in rows] == ["cls", "re-a"] and [r["mode"] for r in rows] == ["cls", "re"]
    results = json.loads((runs_dir / "cls" / "results.json").read_text())
    assert float(rows[0]["test_accuracy"]) == pytest.approx(results["test"]["accuracy"])
    assert rows[0]["selected"] == "" and 0 <= float(rows[1]["selected"]) <= 1
    # no ground truth (plain Fashion-MNIST): no plausibility; the RE run's masks still have input dependence
    assert rows[0]["distinct_share"] == rows[1]["plausibility_f1"] == "" and 0 < float(rows[1]["distinct_share"]) <= 1
    assert "plausibility F1 %" in lines[0] and lines[3].split("|")[8].strip() == "–"
    tex = client.get("/api/compare/table", params={**params, "format": "tex"}).text
    assert tex.startswith(r"\begin{tabular}{l" + "r" * 11 + "}") and r"\bottomrule" in tex and "re-a" in tex


@pytest.mark.parametrize("run", ["re-a", "text-re"])
def test_rationales_export_is_one_json_object_per_example(client, run, runs_dir):
    r = client.get(f"/api/runs/{run}/rationales")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in r.headers["content-disposition"]
    lines = [json.loads(x) for x in r.text.splitlines()]
    inputs = json.loads((runs_dir / run / "examples" / "inputs.json").read_text())
    assert [x["row"] for x in lines] == inputs["rows"]
    first = lines[0]
    assert first["label_name"] == inputs["class_names"][first["label"]]
    assert len(first["student"]["probs"]) == len(inputs["class_names"]) and set(first["student"]["mask"]) <= {0, 1}
    if run == "text-re":
        chosen = [p["token"] for p in inputs["items"][0]["positions"]
                  if p["selectable"] and first["student"]["mask"][p["index"]]]
        assert first["rationale_tokens"] == chosen and first["text"] == inputs["items"][0]["text"]
    else:
        assert first["rationale_patches"] == [j for j, m in enumerate(first["student"]["mask"]) if m]
    old = client.get(f"/api/runs/{run}/rationales", params={"step": 3})
    assert old.status_code == 200 and json.loads(old.text.splitlines()[0])["step"] == 3
    assert client.get(f"/api/runs/{run}/rationales", params={"step": 5}).status_code == 404
    assert client.get("/api/runs/nope/rationales").status_code == 404
    assert client.get("/api/runs/..%2f..%2fetc/rationales").status_code in (404, 422)


def test_tiny_text_runs_line_up_too(tmp_path, teacher_runs):
    root = tmp_path
    shutil.copytree(teacher_runs["text"], root / "a")
    train(parse_config(tiny_text("cls", max_steps=3, eval_every=3)), root / "b")
    app = FastAPI()
    app.include_router(compare.router)
    fixed = Settings(runs_dir=root)
    app.dependency_overrides[get_settings] = lambda: fixed
    page = TestClient(app).get("/api/compare", params={"runs": ["a", "b"], "filter": "all"}).json()
    assert page["modality"] == "text" and page["summary"]["n"] == 6
    assert all(item["text"] and item["sides"][0]["positions"] for item in page["items"])
