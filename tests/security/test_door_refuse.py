"""Refused at the door: every check a worker would make before training runs when the run is
requested, and a failure is a 422 at the field, with nothing written or queued.

Against a real server (no worker: a run that got through would only be queued): a distilled run
whose teacher has another patch grid, dataset, modality, tokenizer or max_len; a model over the
parameter budget (REKD_MAX_PARAMS); a built-in dataset whose files are missing; a misspelt key of
any request body. Each for a run, and where it applies for a clone, a pipeline and a sweep.
"""

from __future__ import annotations

import pytest

from conftest import tiny_text, tiny_vision
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from tests.support.service import start_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("door-refuse")
    s = start_service(tmp, workers=0)
    for name, make in (("teacher-vision", tiny_vision), ("teacher-text", tiny_text)):
        RunStore.create(s.runs_dir / name, parse_config(make("re"))).write_status(state="completed")
    (s.runs_dir / "data" / "empty").mkdir(parents=True)
    yield s
    s.stop()


def student(kind: str, teacher: str = "", **edits):
    cfg = (tiny_vision if kind == "vision" else tiny_text)("rekd", max_steps=2)
    cfg["model"]["teacher_run"] = teacher or f"teacher-{kind}"
    for path, value in edits.items():
        node = cfg
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def refused(r, *loc: str) -> str:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    hit = [e for e in detail if e["loc"][-len(loc):] == list(loc)]
    assert hit, detail
    return hit[0]["msg"]


def nothing_written(svc, before):
    assert sorted(p.name for p in svc.runs_dir.iterdir()) == before


def test_an_incompatible_teacher_is_refused_in_every_form(svc):
    with svc.client() as c:
        before = sorted(p.name for p in svc.runs_dir.iterdir())
        cases = [
            (student("vision", model__student__patch_size=4), "patch grid"),
            (student("vision", model__student__img_size=56, model__student__patch_size=14), "patch grid"),
            (student("vision", model__student__in_chans=3), "patch grid"),
            (student("vision", data__dataset="mnist_5k"), "dataset"),
            (student("text", teacher="teacher-vision"), "vision"),  # modality
            (student("text", data__tokenizer="bert-base-uncased"), "tokenizer"),
            (student("text", data__max_len=16), "max_len"),
        ]
        for cfg, word in cases:
            msg = refused(c.post("/api/runs", json={"config": cfg}), "config", "model", "teacher_run")
            assert word in msg, msg
        nothing_written(svc, before)
        ok = c.post("/api/runs", json={"config": student("vision")})
        assert ok.status_code == 201, ok.text
        # a clone edited into a mismatch is refused like a new run
        refused(c.post(f"/api/runs/{ok.json()['id']}/clone", json={"overrides": ["model.student.patch_size=4"]}),
                "model", "teacher_run")
        # a sweep whose students on one axis value no longer match their teacher
        spec = {"name": "mismatch", "base": {"preset": "fmnist-student"},
                "axes": {"mode": ["rekd"], "data.dataset": ["fashion_mnist", "mnist_5k"]},
                "teacher": {"preset": "fmnist-teacher"}}
        before = sorted(p.name for p in svc.runs_dir.iterdir())
        msg = refused(c.post("/api/sweeps", json={"spec": spec}), "model", "teacher_run")
        assert "mnist_5k" in msg, msg
        nothing_written(svc, before)


def test_a_model_over_the_parameter_budget_is_refused(svc):
    with svc.client() as c:
        before = sorted(p.name for p in svc.runs_dir.iterdir())
        vit = tiny_vision("re", max_steps=2)
        vit["model"]["student"]["embed_dim"] = 100_000
        msg = refused(c.post("/api/runs", json={"config": vit}), "config", "model", "student")
        assert "REKD_MAX_PARAMS" in msg, msg
        bert = tiny_text("re", max_steps=2)
        bert["model"]["student"].update(hidden_size=65_536, intermediate_size=65_536)
        refused(c.post("/api/runs", json={"config": bert}), "config", "model", "student")
        huge_grid = tiny_vision("re", max_steps=2)
        huge_grid["model"]["student"].update(img_size=70_000, patch_size=7)
        r = c.post("/api/runs", json={"config": huge_grid})
        assert r.status_code == 422 and "img_size" in r.text, r.text
        refused(c.post("/api/pipelines", json={"name": "demo-fmnist",
                                               "overrides": ["model.student.embed_dim=100000"]}), "model", "student")
        refused(c.post("/api/sweeps", json={"preset": "sweep-fmnist",
                                            "overrides": ["model.student.embed_dim=100000"]}), "model", "student")
        nothing_written(svc, before)


def test_a_builtin_dataset_that_is_not_there_is_refused(svc):
    with svc.client() as c:
        before = sorted(p.name for p in svc.runs_dir.iterdir())
        empty = str(svc.runs_dir / "data" / "empty")
        vis = tiny_vision("re", max_steps=2)
        vis["data"].update(dataset="cifar10", root=empty)
        vis["model"]["student"].update(img_size=32, patch_size=8, in_chans=3)
        msg = refused(c.post("/api/runs", json={"config": vis}), "config", "data", "dataset")
        assert "unavailable" in msg, msg
        txt = tiny_text("re", max_steps=2)
        txt["data"]["root"] = empty
        refused(c.post("/api/runs", json={"config": txt}), "config", "data", "dataset")
        refused(c.post("/api/pipelines", json={"name": "demo-rt", "overrides": [f"data.root={empty}"]}), "dataset")
        nothing_written(svc, before)


def test_a_misspelt_key_of_any_request_body_is_refused_by_name(svc):
    with svc.client() as c:
        before = sorted(p.name for p in svc.runs_dir.iterdir())
        refused(c.post("/api/runs", json={"preset": "fmnist-student", "overides": ["optim.lr=1"]}), "overides")
        refused(c.post("/api/runs", json={"config": tiny_vision("re"), "overide": {}}), "overide")
        refused(c.post("/api/pipelines", json={"name": "demo-fmnist", "overides": []}), "overides")
        refused(c.post("/api/sweeps", json={"preset": "sweep-fmnist", "overides": []}), "overides")
        refused(c.post("/api/datasets/inspect", json={"dataset": "digits", "task": "vision", "txt_column": "x"}),
                "txt_column")
        nothing_written(svc, before)
        ok = c.post("/api/runs", json={"config": tiny_vision("re", max_steps=2)})
        assert ok.status_code == 201, ok.text
        refused(c.post(f"/api/runs/{ok.json()['id']}/clone", json={"overides": ["train.seed=1"]}), "overides")


def test_the_worker_makes_the_same_size_check_before_training(svc, tmp_path):
    """A run that reached the queue some other way (written by hand, queued before the budget was
    lowered) is failed by the worker with the door's message, without an attempt being counted."""
    import redis

    from service.settings import Settings
    from worker.runner import run_training

    settings = Settings(redis_url=svc.redis_url, runs_dir=tmp_path, max_params=10_000)
    RunStore.create(tmp_path / "too-big", parse_config(tiny_vision("re", max_steps=2)))  # 22k parameters
    out = run_training("too-big", settings=settings, r=redis.Redis.from_url(svc.redis_url), worker_id="w")
    status = RunStore(tmp_path / "too-big").status()
    assert out["state"] == status["state"] == "failed" and "REKD_MAX_PARAMS" in status["error"], status
    assert int(status.get("attempts", 0)) == 0 and not (tmp_path / "too-big" / "checkpoints").exists()
