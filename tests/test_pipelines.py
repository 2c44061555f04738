"""Pipelines (teacher, then students), the config schema endpoint, and how a distilled run's
teacher is named and checked, without a broker: the send is replaced where a test needs it."""

from __future__ import annotations

import json

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.routes import pipelines, runs
from conftest import tiny_vision
from rekd_core.config import ConfigError, ExperimentConfig, parse_config
from rekd_core.presets import PIPELINES, ROLES, Stage, get_pipeline
from rekd_core.store.runstore import RunStore
from service.settings import Settings, get_settings
from worker.runner import teacher_verdict


def client(runs_dir, **settings) -> TestClient:
    app = create_app()
    fixed = Settings(runs_dir=runs_dir, **settings)
    app.dependency_overrides[get_settings] = lambda: fixed
    return TestClient(app)


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def sent(monkeypatch, runs_dir):
    """What would have been queued: [(queue, [(role, run id), ...])]; each run is on disk by then."""
    out: list = []

    def fake_send(queue, stages):
        for _, run_id in stages:
            assert (runs_dir / run_id / "config.json").exists(), "queued before it was created"
        out.append((queue, [(s.role, run_id) for s, run_id in stages]))

    monkeypatch.setattr(pipelines, "_enqueue", fake_send)
    return out


# --- the schema ------------------------------------------------------------------------------------
def test_config_schema_is_the_experiment_configs(tmp_path):
    r = client(tmp_path).get("/api/config/schema")
    assert r.status_code == 200
    schema = r.json()
    assert schema == json.loads(json.dumps(ExperimentConfig.model_json_schema()))
    assert {"mode", "loss", "train"} <= set(schema["properties"]) and "$defs" in schema
    assert schema["$defs"]["TrainConfig"]["properties"]["max_steps"]["anyOf"]


# --- pipelines as data -----------------------------------------------------------------------------
def test_every_pipeline_is_teacher_then_cls_re_rekd_and_builds():
    assert set(PIPELINES) == {"demo-fmnist-clutter", "demo-rt-needle", "demo-fmnist", "demo-rt"}
    for name, p in PIPELINES.items():
        assert [s.role for s in p.stages] == list(ROLES) == ["teacher", "cls", "re", "rekd"]
        assert [s.needs_teacher for s in p.stages] == [False, False, False, True]
        assert p.teacher.preset == f"{name}-teacher"
        for stage in p.stages:
            cfg = stage.build(["train.seed=3"], teacher_run="/runs/t" if stage.needs_teacher else None)
            assert cfg.name == f"{name}-{stage.role}" and cfg.train.seed == 3
            assert cfg.mode == ("re" if stage.role == "teacher" else stage.role)
            assert cfg.model.teacher_run == ("/runs/t" if stage.role == "rekd" else None)


def test_a_distilled_stage_needs_the_teachers_run_and_takes_it_verbatim():
    rekd = get_pipeline("demo-fmnist").stages[-1]
    with pytest.raises(ConfigError, match="needs the teacher's run directory"):
        rekd.build()
    odd = "/data/runs: 2024/null"  # YAML would read this as a mapping; it is kept as given
    assert rekd.build(teacher_run=odd).model.teacher_run == odd


def test_unknown_pipeline_names_the_allowed_ones():
    allowed = "demo-fmnist-clutter, demo-rt-needle, demo-fmnist, demo-rt"
    with pytest.raises(ConfigError, match=f"unknown pipeline 'nope'; choose one of: {allowed}"):
        get_pipeline("nope")


def test_list_pipelines(tmp_path):
    body = client(tmp_path).get("/api/pipelines").json()
    assert [p["name"] for p in body] == ["demo-fmnist-clutter", "demo-rt-needle", "demo-fmnist", "demo-rt"]
    fm = body[2]
    assert fm["summary"] and fm["stages"][0] == {"role": "teacher", "preset": "demo-fmnist-teacher",
                                                 "overrides": ["name=demo-fmnist-teacher"], "needs_teacher": False}
    assert fm["stages"][3] == {"role": "rekd", "preset": "demo-fmnist-student",
                               "overrides": ["mode=rekd", "name=demo-fmnist-rekd"], "needs_teacher": True}


# --- POST /api/pipelines ---------------------------------------------------------------------------
def test_post_creates_every_run_then_sends_them(runs_dir, sent):
    c = client(runs_dir, queue="q-test")
    r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": ["train.seed=1"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "demo-fmnist" and [x["role"] for x in body["runs"]] == ["teacher", "cls", "re", "rekd"]
    assert all(x["state"] == "queued" for x in body["runs"])
    ids = {x["role"]: x["id"] for x in body["runs"]}
    assert sent == [("q-test", [(role, ids[role]) for role in ("teacher", "cls", "re", "rekd")])]
    for role, run_id in ids.items():
        store = RunStore(runs_dir / run_id)
        cfg = store.config()
        assert store.status()["state"] == "queued" and cfg.train.seed == 1 and cfg.name == f"demo-fmnist-{role}"
    teacher_dir = (runs_dir / ids["teacher"]).resolve()
    assert RunStore(teacher_dir.parent / ids["rekd"]).config().model.teacher_run == str(teacher_dir)


def test_post_accepts_overrides_as_a_mapping(runs_dir, sent):
    r = client(runs_dir).post("/api/pipelines", json={"name": "demo-rt", "overrides": {"train.max_steps": 3}})
    assert r.status_code == 201, r.text
    assert all(RunStore(runs_dir / x["id"]).config().train.max_steps == 3 for x in r.json()["runs"])


def test_post_unknown_pipeline_is_422_on_the_name(runs_dir, sent):
    r = client(runs_dir).post("/api/pipelines", json={"name": "nope"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "name"] and "demo-fmnist, demo-rt" in err["msg"]
    assert not runs_dir.exists() and sent == []


def test_post_bad_overrides_are_422_each_naming_its_field(runs_dir, sent):
    c = client(runs_dir)
    r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": ["train.max_steps=-1", "loss.alpha=3",
                                                                            "optim.nope=1"]})
    assert r.status_code == 422
    fields = {".".join(map(str, e["loc"][2:])): e["msg"] for e in r.json()["detail"]}
    assert r.json()["detail"][0]["loc"][:2] == ["body", "overrides"]
    assert fields == {"train.max_steps": "Input should be greater than 0",
                      "loss.alpha": "Input should be less than or equal to 1", "optim.nope": "unknown field"}
    # refused by some stages only (3 heads divide the teacher's 48 wide, not the students' 32): those are named
    r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": ["model.student.num_heads=3"]})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "overrides", "model", "student"]
    assert err["msg"] == "embed_dim (32) must be divisible by num_heads (3) (in stages cls, re, rekd)"
    r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": ["no-equals-sign"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "overrides"]
    assert "key.path=value" in r.json()["detail"][0]["msg"]
    for key in ("mode", "name", "model.teacher_run"):
        r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": [f"{key}=x"]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "overrides", *key.split(".")]
        assert "set by each stage" in r.json()["detail"][0]["msg"]
    assert not runs_dir.exists() and sent == []


def test_a_broker_failure_is_503_and_every_run_is_recorded_failed(tmp_path, monkeypatch):
    def down(queue, stages):
        raise ConnectionError("Error 111 connecting to localhost:6379")

    monkeypatch.setattr(pipelines, "_enqueue", down)
    r = client(tmp_path).post("/api/pipelines", json={"name": "demo-fmnist"})
    assert r.status_code == 503 and "recorded as failed" in r.json()["detail"]
    states = [RunStore(p).status() for p in tmp_path.iterdir()]
    assert len(states) == 4 and all(s["state"] == "failed" and "could not queue" in s["error"] for s in states)


def test_post_needs_the_token_when_one_is_set(runs_dir, sent):
    c = client(runs_dir, api_token="s3cret")
    assert c.post("/api/pipelines", json={"name": "demo-fmnist"}).status_code == 401
    assert c.get("/api/pipelines").status_code == 200
    ok = c.post("/api/pipelines", json={"name": "demo-fmnist"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 201


def test_send_pipeline_chains_the_distilled_students_to_the_teacher():
    """The messages themselves: the teacher carries the students that follow it; the rest go now."""
    app = Celery("t", broker="memory://")
    p = get_pipeline("demo-fmnist")
    extra = Stage("rekd", "demo-fmnist-student", needs_teacher=True)
    for stages, after in (([(s, s.role) for s in p.stages], "rekd"),
                          ([*[(s, s.role) for s in p.stages], (extra, "rekd2")], ["rekd", "rekd2"])):
        pipelines.send_pipeline(app, "q", stages)
        with app.connection() as conn:
            q = conn.SimpleQueue("q")
            msgs = []
            while True:
                try:
                    m = q.get(timeout=0.2)
                except q.Empty:
                    break
                msgs.append(m.payload)
                m.ack()
        assert [args for args, _, _ in msgs] == [["teacher"], ["cls"], ["re"]]
        (nxt,) = msgs[0][2]["chain"]
        if isinstance(after, str):
            assert nxt["args"] == [after] and nxt["immutable"] and nxt["options"]["queue"] == "q"
        else:
            assert nxt["subtask_type"] == "group"
            assert [t["args"] for t in nxt["kwargs"]["tasks"]] == [[a] for a in after]
            assert all(t["immutable"] and t["options"]["queue"] == "q" for t in nxt["kwargs"]["tasks"])
        assert all(m[2]["chain"] is None for m in msgs[1:])


# --- a distilled run's teacher, at POST /api/runs --------------------------------------------------
@pytest.fixture
def posted(monkeypatch):
    queued: list[str] = []
    monkeypatch.setattr(runs, "_enqueue", lambda run_id, queue: queued.append(run_id))
    return queued


def _rekd(teacher_run: str) -> dict:
    cfg = tiny_vision("rekd")
    cfg["model"]["teacher_run"] = teacher_run
    return cfg


def _refusal(r) -> str:
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "config", "model", "teacher_run"]
    return err["msg"]


def test_teacher_given_by_run_id_or_directory_is_stored_as_its_absolute_directory(tmp_path, runs_dir, posted,
                                                                                   monkeypatch):
    RunStore.create(runs_dir / "teacher-1", parse_config(tiny_vision("re")))  # queued: the worker will wait
    c = client(runs_dir)
    r = c.post("/api/runs", json={"config": _rekd("teacher-1")})
    assert r.status_code == 201, r.text
    want = str((runs_dir / "teacher-1").resolve())
    assert RunStore(runs_dir / r.json()["id"]).config().model.teacher_run == want
    monkeypatch.chdir(tmp_path)
    r = c.post("/api/runs", json={"config": _rekd("runs/teacher-1")})  # a path relative to the server's cwd
    assert r.status_code == 201, r.text
    assert RunStore(runs_dir / r.json()["id"]).config().model.teacher_run == want
    assert len(posted) == 2


def test_a_teacher_that_is_no_run_or_no_re_run_or_ended_badly_is_refused(tmp_path, runs_dir, posted):
    RunStore.create(runs_dir / "cls-run", parse_config(tiny_vision("cls")))
    RunStore.create(runs_dir / "failed-run", parse_config(tiny_vision("re"))).write_status(state="failed")
    (runs_dir / "empty").mkdir()
    c = client(runs_dir)
    msg = _refusal(c.post("/api/runs", json={"config": _rekd("no-such-run")}))
    assert "neither a run id under the runs directory nor an existing directory" in msg
    assert "must be an RE run" in _refusal(c.post("/api/runs", json={"config": _rekd("cls-run")}))
    assert "ended failed" in _refusal(c.post("/api/runs", json={"config": _rekd("failed-run")}))
    assert "not a run directory" in _refusal(c.post("/api/runs", json={"config": _rekd(str(runs_dir / "empty"))}))
    assert "outside" in _refusal(c.post("/api/runs", json={"config": _rekd(str(tmp_path))}))  # never read
    assert "outside" in _refusal(c.post("/api/runs", json={"config": _rekd("../runs/cls-run/../../nope")}))
    assert posted == [] and sorted(p.name for p in runs_dir.iterdir()) == ["cls-run", "empty", "failed-run"]


def test_init_from_is_resolved_to_a_run_directory_with_a_checkpoint(tmp_path, runs_dir, posted):
    cls = RunStore.create(runs_dir / "cls-1", parse_config(tiny_vision("cls")))
    cfg = tiny_vision("re")
    cfg["model"]["init_from"] = "cls-1"
    c = client(runs_dir)
    r = c.post("/api/runs", json={"config": cfg})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "config", "model", "init_from"]
    assert "no checkpoint" in r.json()["detail"][0]["msg"]
    cls.checkpoints.mkdir(parents=True, exist_ok=True)
    (cls.checkpoints / "best.safetensors").write_bytes(b"")
    r = c.post("/api/runs", json={"config": cfg})
    assert r.status_code == 201, r.text
    assert RunStore(runs_dir / r.json()["id"]).config().model.init_from == str((runs_dir / "cls-1").resolve())
    cfg["model"]["init_from"] = "nowhere"
    r = c.post("/api/runs", json={"config": cfg})
    assert r.status_code == 422 and "neither a run id" in r.json()["detail"][0]["msg"]


# --- the worker's view of a teacher ----------------------------------------------------------------
@pytest.mark.parametrize("state, verdict", [("completed", ("train", None)), ("queued", ("wait", "t")),
                                            ("running", ("wait", "t")),
                                            ("cancelled", ("fail", "teacher run t ended cancelled")),
                                            ("failed", ("fail", "teacher run t ended failed: ValueError: x"))])
def test_teacher_verdict(tmp_path, state, verdict):
    teacher = RunStore.create(tmp_path / "t", parse_config(tiny_vision("re")))
    teacher.write_status(state=state, error="ValueError: x" if state == "failed" else None)
    assert teacher_verdict(parse_config(_rekd(str(teacher.root)))) == verdict
    assert teacher_verdict(parse_config(tiny_vision("re"))) == ("train", None)  # no teacher, nothing to wait for


def test_a_pipeline_on_a_broken_data_file_is_refused_before_anything_is_queued(runs_dir, sent, tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_text("text,label\nfine film,pos\n,neg\n")
    r = client(runs_dir, data_roots=str(tmp_path)).post("/api/pipelines", json={
        "name": "demo-rt", "overrides": [f"data.dataset=csv:{bad}"]})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert "row 2" in err["msg"] and "column 'text'" in err["msg"]
    assert not runs_dir.exists() and sent == []
