"""Sweeps without a broker: expansion, teacher assignment, refusals, aggregation and its
renderings, the stored sweep, the API (the send replaced) and the messages send_run builds."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.routes import sweeps as sweeps_route
from rekd_core.config import ConfigError, parse_config
from rekd_core.presets import get_preset
from rekd_core.store.runstore import RunStore
from rekd_core.sweeps import (
    SWEEPS,
    SweepStore,
    aggregate,
    cell_label,
    get_sweep,
    parse_spec,
    plan,
    render,
    run_record,
)
from service.send import send_run
from service.settings import Settings, get_settings

SPEC = {"name": "t", "base": {"preset": "demo-fmnist-student"},
        "axes": {"train.seed": [0, 1, 2], "mode": ["re", "rekd"], "loss.alpha": [0.5, 0]},
        "teacher": {"preset": "demo-fmnist-teacher", "seeds": [0, 1]}}


def test_plan_expands_cells_and_seeds_with_one_teacher_per_teacher_seed():
    p = plan(parse_spec(SPEC), ["train.max_steps=5"], teacher_dir=lambda s: f"/runs/teacher-{s}")
    assert [c for c in p.cells] == [{"mode": m, "loss.alpha": a} for m in ("re", "rekd") for a in (0.5, 0)]
    assert len(p.students) == 4 * 3
    assert [(t.seed, t.config.train.seed, t.config.mode) for t in p.teachers] == [(0, 0, "re"), (1, 1, "re")]
    assert all(r.config.train.max_steps == 5 for r in p.teachers + p.students)  # overrides reach teachers too
    for r in p.students:
        assert r.config.train.seed == r.seed and r.config.mode == r.cell["mode"]
        assert r.config.loss.alpha == r.cell["loss.alpha"]
        if r.cell["mode"] == "rekd":
            # its own seed's teacher if there is one, else the first teacher seed's
            assert r.teacher_seed == (r.seed if r.seed in (0, 1) else 0)
            assert r.config.model.teacher_run == f"/runs/teacher-{r.teacher_seed}"
        else:
            assert r.teacher_seed is None
    assert len({r.config.name for r in p.students}) == len(p.students)
    assert p.students[0].label == "mode=re, loss.alpha=0.5"


def test_teachers_only_for_seeds_a_student_uses():
    spec = {**SPEC, "axes": {"train.seed": [0], "mode": ["rekd"]}, "teacher": {"preset": "demo-fmnist-teacher",
                                                                            "seeds": [0, 5]}}
    assert [t.seed for t in plan(parse_spec(spec)).teachers] == [0]
    no_rekd = {**SPEC, "axes": {"mode": ["cls", "re"]}}
    assert plan(parse_spec(no_rekd)).teachers == []


@pytest.mark.parametrize("spec, overrides, field", [
    ({**SPEC, "axes": {"loss.alpah": [0.5]}}, [], "axes.loss.alpah"),
    ({**SPEC, "axes": {"loss.alpha": [0.5, 3]}}, [], "axes.loss.alpha"),
    ({**SPEC, "axes": {"preset": ["nope"]}}, [], "axes.preset"),
    ({**SPEC, "base": {"preset": "nope"}}, [], "base"),
    ({**SPEC, "teacher": None}, [], "teacher"),
    (SPEC, ["train.max_steps=-1"], "base.train.max_steps"),
    (SPEC, ["mode=cls"], "overrides.mode"),
])
def test_refusals_name_the_field(spec, overrides, field):
    with pytest.raises(ConfigError) as err:
        plan(parse_spec(spec), overrides)
    assert field in [e["field"] for e in err.value.errors], err.value.errors


def test_spec_shape_is_checked():
    for bad, field in (({**SPEC, "axes": {"name": ["x"]}}, "axes"), ({**SPEC, "axes": {"train.seed": ["a"]}}, "axes"),
                       ({**SPEC, "bogus": 1}, "bogus"), ({**SPEC, "base": {}}, "base")):
        with pytest.raises(ConfigError) as err:
            parse_spec(bad)
        assert any(e["field"].startswith(field) for e in err.value.errors), err.value.errors


def test_every_sweep_preset_expands():
    sizes = {}
    for name in SWEEPS:
        p = plan(get_sweep(name))
        sizes[name] = (len(p.teachers), len(p.students))
        ref = get_sweep(name).reference
        if name.startswith("paper-"):  # the paper's published table, one number per cell
            assert set(ref) == {cell_label(c) for c in p.cells} and len(ref) == 6
        else:
            assert ref == {}  # no published number is invented
    assert get_sweep("paper-cifar10").reference["preset=cifar10-vit-tiny, mode=rekd"] == 0.936
    assert get_sweep("paper-imdb").reference["preset=imdb-bert-mini, mode=re"] == 0.863
    assert sizes["sweep-fmnist"] == sizes["sweep-rt"] == (1, 15)
    assert sizes["sweep-fmnist-clutter"] == (1, 30)  # a ViT and a CNN student (cross-architecture), 3 modes, 5 seeds
    kinds = {(s.config.model.student.kind, s.config.mode) for s in plan(get_sweep("sweep-fmnist-clutter")).students}
    assert kinds == {(k, m) for k in ("vit", "cnn") for m in ("cls", "re", "rekd")}
    assert sizes["paper-cifar10"] == sizes["paper-cifar100"] == sizes["paper-imdb"] == (10, 60)
    p = plan(get_sweep("paper-cifar10"))
    assert {s.config.model.student.name for s in p.students} == {"vit_small_patch16_224", "vit_tiny_patch16_224"}
    assert p.teachers[0].config.model.student.name == "vit_base_patch16_224"


def _runs():
    acc = {"mode=re": [0.6, 0.7, 0.65], "mode=rekd": [0.8, 0.7]}
    out = []
    for label, xs in acc.items():
        for i, x in enumerate(xs):
            out.append({"label": label, "state": "completed", "test_accuracy": x, "macro_f1": x - 0.1,
                        "selected": 0.15 + i / 100})
    out.append({"label": "mode=rekd", "state": "running", "test_accuracy": None, "macro_f1": None, "selected": None})
    return out, acc


def test_aggregate_is_mean_and_sample_std_of_the_finished_runs():
    runs, acc = _runs()
    table = aggregate(runs, [{"mode": "re"}, {"mode": "rekd"}, {"mode": "cls"}])
    assert [(r["label"], r["n"], r["n_total"]) for r in table] == [("mode=re", 3, 3), ("mode=rekd", 2, 3),
                                                                    ("mode=cls", 0, 0)]
    for row in table[:2]:
        xs = acc[row["label"]]
        assert row["accuracy_mean"] == pytest.approx(statistics.mean(xs))
        assert row["accuracy_std"] == pytest.approx(statistics.stdev(xs))
        assert row["macro_f1_mean"] == pytest.approx(statistics.mean(xs) - 0.1)
        assert row["reference"] is None
    assert table[2]["accuracy_mean"] is None  # nothing finished yet: a partial table


def test_render_md_csv_tex_and_the_paper_column_only_with_a_reference():
    runs, _ = _runs()
    cells = [{"mode": "re"}, {"mode": "rekd"}]
    plain = aggregate(runs, cells)
    md = render(plain, "md")
    assert md.splitlines()[0] == "| cell | n | test accuracy % | macro-F1 % | selected % |"
    assert "| mode=re | 3/3 | 65.0 ± 5.0 | 55.0 ± 5.0 | 16.0 ± 1.0 |" in md
    assert "paper" not in md and "paper" not in render(plain, "tex") and "reference" not in render(plain, "csv")
    ref = aggregate(runs, cells, {"mode=rekd": 0.812})  # a fake published number
    md = render(ref, "md")
    assert md.splitlines()[0].endswith("| paper accuracy % |")
    assert md.splitlines()[2].endswith("| – |") and md.splitlines()[3].endswith("| 81.2 |")
    rows = list(csv.DictReader(io.StringIO(render(ref, "csv"))))
    assert rows[1]["reference"] == "0.812" and float(rows[0]["accuracy_mean"]) == pytest.approx(0.65)
    tex = render(ref, "tex")
    assert tex.startswith(r"\begin{tabular}{lrrrrr}") and r"65.0 $\pm$ 5.0" in tex and "paper accuracy \\%" in tex
    with pytest.raises(ValueError):
        render(ref, "html")


def _quality_runs():
    """A CLS cell (no figures), an RE cell on ground-truth data (all three; one older run has none), and
    an REKD cell without ground truth (distinct share and probe only)."""
    def run(label, **figures):
        return {"label": label, "state": "completed", "test_accuracy": 0.7, "macro_f1": 0.6, "selected": None,
                **figures}
    return [run("mode=cls"), run("mode=cls"),
            run("mode=re", plausibility_f1=0.30, distinct_share=0.9, probe_accuracy=0.20),
            run("mode=re", plausibility_f1=0.40, distinct_share=0.7, probe_accuracy=0.30),
            run("mode=re"),  # trained before the figures were recorded
            run("mode=rekd", distinct_share=0.05, probe_accuracy=0.9)]


def test_aggregate_and_render_the_rationale_quality_figures():
    cells = [{"mode": "cls"}, {"mode": "re"}, {"mode": "rekd"}]
    table = aggregate(_quality_runs(), cells)
    cls_row, re_row, rekd_row = table
    assert re_row["plausibility_f1_mean"] == pytest.approx(0.35) and re_row["plausibility_f1_n"] == 2
    assert re_row["plausibility_f1_std"] == pytest.approx(statistics.stdev([0.3, 0.4]))
    assert re_row["distinct_share_mean"] == pytest.approx(0.8) and re_row["probe_accuracy_mean"] == pytest.approx(0.25)
    assert rekd_row["plausibility_f1_mean"] is None and rekd_row["plausibility_f1_n"] == 0
    assert rekd_row["distinct_share_std"] == 0.0 and rekd_row["probe_accuracy_n"] == 1
    assert all(cls_row[f"{k}_mean"] is None and cls_row[f"{k}_n"] == 0
               for k in ("plausibility_f1", "distinct_share", "probe_accuracy"))
    md = render(table, "md").splitlines()
    assert md[0] == ("| cell | n | test accuracy % | macro-F1 % | selected % | plausibility F1 % | distinct masks % "
                     "| mask-only probe % |")
    assert md[2].endswith("| – | – | – |")
    assert md[3].endswith("| 35.0 ± 7.1 (n=2) | 80.0 ± 14.1 (n=2) | 25.0 ± 7.1 (n=2) |")  # 2 of its 3 runs
    assert md[4].endswith("| – | 5.0 ± 0.0 | 90.0 ± 0.0 |")
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert float(rows[1]["plausibility_f1_mean"]) == pytest.approx(0.35) and rows[1]["plausibility_f1_n"] == "2"
    assert rows[2]["plausibility_f1_mean"] == rows[0]["distinct_share_mean"] == ""
    assert rows[0]["probe_accuracy_n"] == "0"
    tex = render(table, "tex")
    assert tex.startswith(r"\begin{tabular}{l" + "r" * 7 + "}") and r"35.0 $\pm$ 7.1 (n=2)" in tex
    # without ground truth anywhere: no plausibility column; with no figure at all: the table as before
    no_gt = aggregate([r for r in _quality_runs() if r["label"] != "mode=re"], cells)
    assert "plausibility" not in render(no_gt, "md") and "distinct masks %" in render(no_gt, "md")
    assert "plausibility" not in render(no_gt, "csv") and "probe_accuracy_mean" in render(no_gt, "csv")
    runs, _ = _runs()
    assert "distinct" not in render(aggregate(runs, [{"mode": "re"}]), "md")


def test_run_record_reads_the_test_figures_of_a_run_directory(tmp_path):
    run = tmp_path / "r"
    store = RunStore.create(run, parse_config(get_preset("demo-fmnist-student").build(["mode=re"])))
    warning = {"code": "constant_rationale", "message": "m", "detail": "d"}
    store.write_results({"test": {"accuracy": 0.5, "macro_f1": 0.4, "selected": {"mean": 0.1},
                                  "plausibility": {"f1": 0.25}, "input_dependence": {"distinct_share": 0.5},
                                  "probe": {"accuracy": 0.3, "chance": 0.1}, "warnings": [warning]}})
    store.write_status(state="completed")
    rec = run_record(run)
    assert (rec["plausibility_f1"], rec["distinct_share"], rec["probe_accuracy"]) == (0.25, 0.5, 0.3)
    assert rec["warnings"] == ["constant_rationale"]
    store.write_results({"test": {"accuracy": 0.5, "macro_f1": 0.4}})  # an older run: none of them
    rec = run_record(run)
    assert rec["plausibility_f1"] is rec["distinct_share"] is rec["probe_accuracy"] is None and rec["warnings"] == []


# --- the API, the send replaced ------------------------------------------------------------------

@pytest.fixture
def api(tmp_path, monkeypatch):
    sent: list = []
    monkeypatch.setattr(sweeps_route, "_enqueue", lambda sends: sent.extend(sends))
    app = create_app()
    fixed = Settings(runs_dir=tmp_path / "runs", queue="default-q", data_roots=str(tmp_path))
    app.dependency_overrides[get_settings] = lambda: fixed
    return TestClient(app), fixed.runs_dir, sent


def test_post_sweep_creates_runs_and_chains_students_to_their_teacher(api):
    c, runs_dir, sent = api
    spec = {**SPEC, "queue": "cpu", "teacher_queue": "gpu"}
    r = c.post("/api/sweeps", json={"spec": spec, "overrides": ["train.max_steps=5"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["runs"] == 2 + 12 and body["state"] == "running"
    detail = c.get(f"/api/sweeps/{body['id']}").json()
    assert detail["axes"] == ["mode", "loss.alpha"] and detail["state"] == "running" and detail["progress"] == 0
    teachers = {t["seed"]: t["id"] for t in detail["teachers"]}
    assert set(teachers) == {0, 1}
    by_id = {run_id: (queue, then) for run_id, queue, then in sent}
    for seed, tid in teachers.items():
        queue, then = by_id[tid]
        assert queue == "gpu"
        followers = [x["id"] for x in detail["runs"] if x["teacher"] == tid]
        assert then == [(f, "cpu") for f in followers] and len(followers) == 2 * (2 if seed == 0 else 1)
        assert RunStore(runs_dir / tid).status()["then"] == followers
    for x in detail["runs"]:
        cfg = json.loads((runs_dir / x["id"] / "config.json").read_text())
        assert cfg["train"]["max_steps"] == 5 and RunStore(runs_dir / x["id"]).status()["queue"] == "cpu"
        if x["cell"]["mode"] == "rekd":
            assert x["id"] not in by_id  # sent by its teacher's chain only
            assert cfg["model"]["teacher_run"] == str((runs_dir / x["teacher"]).resolve())
        else:
            assert by_id[x["id"]] == ("cpu", [])
    assert [r["label"] for r in detail["table"]] == ["mode=re, loss.alpha=0.5", "mode=re, loss.alpha=0",
                                                     "mode=rekd, loss.alpha=0.5", "mode=rekd, loss.alpha=0"]
    assert all(row["n"] == 0 and row["n_total"] == 3 for row in detail["table"])
    # GET /api/runs lists the runs, not the .sweeps folder
    listed = c.get("/api/runs").json()
    assert len(listed) == 14 and (runs_dir / ".sweeps").is_dir()
    (summary,) = c.get("/api/sweeps").json()
    assert summary == {"id": body["id"], "name": "t", "state": "running", "created": detail["created"],
                       "n_runs": 14, "done": 0, "failed": 0, "cancelled": 0}


def test_post_sweep_refusals_are_422_naming_the_field(api):
    c, runs_dir, sent = api
    r = c.post("/api/sweeps", json={"preset": "nope"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "preset"]
    r = c.post("/api/sweeps", json={"spec": {**SPEC, "axes": {"loss.alpah": [1]}}})
    assert r.status_code == 422 and ["body", "spec", "axes", "loss", "alpah"] in [d["loc"] for d in r.json()["detail"]]
    r = c.post("/api/sweeps", json={"preset": "sweep-fmnist", "overrides": ["train.max_steps=0"]})
    assert r.status_code == 422 and "train.max_steps" in r.text
    assert c.post("/api/sweeps", json={}).status_code == 422
    assert sent == [] and not runs_dir.exists()


def test_a_sweep_over_a_missing_image_folder_is_refused_before_anything_is_queued(api, tmp_path):
    c, runs_dir, sent = api
    r = c.post("/api/sweeps", json={"preset": "sweep-fmnist",
                                    "overrides": [f"data.dataset=folder:{tmp_path / 'nowhere'}"]})
    assert r.status_code == 422 and "no such folder" in r.text
    assert sent == [] and not runs_dir.exists()


def test_table_endpoint_and_state_from_the_run_directories(api):
    c, runs_dir, _ = api
    spec = {"name": "u", "base": {"preset": "demo-fmnist-student"}, "axes": {"train.seed": [0, 1], "mode": ["re"]}}
    sweep_id = c.post("/api/sweeps", json={"spec": spec}).json()["id"]
    record = SweepStore(runs_dir).load(sweep_id)
    for i, x in enumerate(record["runs"]):  # finished runs, as a worker leaves them
        store = RunStore(runs_dir / x["id"])
        store.write_results({"test": {"accuracy": 0.5 + i / 10, "macro_f1": 0.4, "selected": {"mean": 0.15}}})
        store.write_status(state="completed", step=10, total_steps=10)
    detail = c.get(f"/api/sweeps/{sweep_id}").json()
    assert detail["state"] == "completed" and detail["progress"] == 1
    (row,) = detail["table"]
    assert row["n"] == 2 and row["accuracy_mean"] == pytest.approx(0.55)
    assert row["accuracy_std"] == pytest.approx(statistics.stdev([0.5, 0.6]))
    r = c.get(f"/api/sweeps/{sweep_id}/table", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="{sweep_id}.csv"'
    assert r.text.splitlines()[1].startswith("mode=re,2,2,0.55")
    assert "| mode=re | 2/2 | 55.0 ± 7.1 |" in c.get(f"/api/sweeps/{sweep_id}/table").text
    assert "distinct" not in c.get(f"/api/sweeps/{sweep_id}/table").text  # no run has the figures
    assert row["plausibility_f1_mean"] is None and row["distinct_share_n"] == 0
    for i, x in enumerate(record["runs"]):  # now with the rationale figures of the test split
        RunStore(runs_dir / x["id"]).write_results({"test": {
            "accuracy": 0.5, "macro_f1": 0.4, "selected": {"mean": 0.15}, "input_dependence": {"distinct_share": 0.5},
            "probe": {"accuracy": 0.2 + i / 10, "chance": 0.1},
            "warnings": [{"code": "mask_code", "message": "m", "detail": "d"}] if i else []}})
    detail = c.get(f"/api/sweeps/{sweep_id}").json()
    (row,) = detail["table"]
    assert row["probe_accuracy_mean"] == pytest.approx(0.25) and row["probe_accuracy_n"] == 2
    assert row["plausibility_f1_mean"] is None and row["distinct_share_std"] == 0
    assert [r["probe_accuracy"] for r in detail["runs"]] == pytest.approx([0.2, 0.3])
    assert [r["warnings"] for r in detail["runs"]] == [[], ["mask_code"]]
    md = c.get(f"/api/sweeps/{sweep_id}/table").text
    assert md.splitlines()[0].endswith("| distinct masks % | mask-only probe % |") and "| 25.0 ± 7.1 |" in md
    assert "probe_accuracy_mean" in c.get(f"/api/sweeps/{sweep_id}/table", params={"format": "csv"}).text
    assert c.get(f"/api/sweeps/{sweep_id}/table", params={"format": "html"}).status_code == 422
    assert c.get("/api/sweeps/nope").status_code == 404


def test_send_run_chains_a_group_of_students_on_their_queues():
    app = Celery("t", broker="memory://")
    send_run(app, "teacher", "gpu", [("a", "cpu"), ("b", "cpu")])
    send_run(app, "solo", "cpu")
    with app.connection() as conn:
        (t,) = _drain(conn, "gpu")
        assert t[0] == ["teacher"]
        (nxt,) = t[2]["chain"]
        assert nxt["subtask_type"] == "group"
        assert [(x["args"], x["options"]["queue"]) for x in nxt["kwargs"]["tasks"]] == [(["a"], "cpu"), (["b"], "cpu")]
        assert [m[0] for m in _drain(conn, "cpu")] == [["solo"]]


def _drain(conn, name):
    q = conn.SimpleQueue(name)
    out = []
    while True:
        try:
            m = q.get(timeout=0.2)
        except q.Empty:
            return out
        out.append(m.payload)
        m.ack()
