"""Safe by default: with REKD_DATA_ROOTS unset, the API reads user data only under the runs
directory's data/ folder and the bundled datasets, and no message echoes what it read elsewhere.

Against a real server started as `rekd up` starts it (no REKD_DATA_ROOTS): a table outside the
default roots (its header a secret), the server's own environment (/proc/self/environ) and a
run directory outside the runs folder (its config a secret) are refused at the field, for the
inspect route, a run (dataset, data.root, model.teacher_run, model.init_from, the tokenizer and
a local weights file), a pipeline and a sweep, without a byte of them coming back; a table
inside the runs directory's data/ folder and the bundled datasets keep working; and every
message quotes at most a short excerpt of a long input.
"""

from __future__ import annotations

import json

import pytest

from conftest import tiny_text, tiny_vision
from tests.support.service import start_service

SECRET = "hunter2-column-SECRET"
ENV_SECRET = "env-value-SECRET-42"
ROWS = [("a great, wonderful film", "pos"), ("an awful, boring mess", "neg")] * 20


def write_csv(path, header="text,label"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f'"{t} #{i}",{y}\n' for i, (t, y) in enumerate(ROWS)))
    return path


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("door-data")
    s = start_service(tmp, workers=0, REKD_DATA_ROOTS="", REKD_DOOR_TEST_SECRET=ENV_SECRET)
    s.inside = write_csv(s.runs_dir / "data" / "reviews.csv")  # the default root: <runs>/data
    s.secret = write_csv(tmp / "private" / "secret.csv", header=f"{SECRET},other")
    outside_run = tmp / "private" / "a-run"
    outside_run.mkdir()
    (outside_run / "config.json").write_text(json.dumps({"mode": SECRET}))
    (outside_run / "checkpoints").mkdir()
    (outside_run / "checkpoints" / "best.safetensors").write_text(SECRET)
    s.outside_run = outside_run
    yield s
    s.stop()


def text_cfg(dataset: str, **data):
    c = tiny_text("re", max_steps=2)
    c["data"] = {**c["data"], "dataset": dataset, **data}
    return c


def refused_at(r, field: str) -> str:
    assert r.status_code == 422, r.text
    assert SECRET not in r.text and ENV_SECRET not in r.text, r.text
    hit = [e for e in r.json()["detail"] if e["loc"][-1] == field]
    assert hit, r.json()
    return hit[0]["msg"]


def test_a_file_outside_the_default_roots_is_refused_unread(svc):
    with svc.client() as c:
        ok = c.post("/api/datasets/inspect", json={"dataset": f"csv:{svc.inside}", "task": "text"})
        assert ok.status_code == 200 and sum(ok.json()["counts"].values()) == len(ROWS), ok.text
        for spec in (f"csv:{svc.secret}", "csv:/proc/self/environ", "jsonl:/proc/self/environ", "csv:/etc/passwd",
                     f"folder:{svc.secret.parent}", f"csv:{svc.runs_dir}/data/../../private/secret.csv"):
            msg = refused_at(c.post("/api/datasets/inspect", json={"dataset": spec, "task": "text"
                                    if not spec.startswith("folder") else "vision"}), "dataset")
            assert "REKD_DATA_ROOTS" in msg and str(svc.runs_dir / "data") in msg, msg
        # the message names the column it missed, inside the roots too, without echoing a whole header
        r = c.post("/api/datasets/inspect", json={"dataset": f"csv:{svc.inside}", "task": "text",
                                                  "text_column": "body"})
        assert r.status_code == 422 and "body" in r.text


def test_runs_pipelines_and_sweeps_refuse_paths_outside_the_roots_before_writing(svc):
    with svc.client() as c:
        before = sorted(p.name for p in svc.runs_dir.iterdir())
        refused_at(c.post("/api/runs", json={"config": text_cfg(f"csv:{svc.secret}")}), "dataset")
        refused_at(c.post("/api/runs", json={"config": text_cfg("csv:/proc/self/environ")}), "dataset")
        refused_at(c.post("/api/runs", json={"config": text_cfg("rotten_tomatoes", root=str(svc.secret.parent))}),
                   "root")
        refused_at(c.post("/api/runs", json={"config": text_cfg("rotten_tomatoes", tokenizer=str(svc.secret.parent))}),
                   "tokenizer")
        vis = tiny_vision("re", max_steps=2)
        vis["model"]["student"]["pretrained"] = str(svc.secret)
        refused_at(c.post("/api/runs", json={"config": vis}), "pretrained")
        # a run directory outside the runs folder: its config.json is never read (nor echoed)
        rekd = tiny_vision("rekd", max_steps=2)
        rekd["model"]["teacher_run"] = str(svc.outside_run)
        refused_at(c.post("/api/runs", json={"config": rekd}), "teacher_run")
        init = tiny_vision("re", max_steps=2)
        init["model"]["init_from"] = str(svc.outside_run)
        refused_at(c.post("/api/runs", json={"config": init}), "init_from")
        refused_at(c.post("/api/pipelines", json={"name": "demo-rt", "overrides": [f"data.dataset=csv:{svc.secret}"]}),
                   "dataset")
        refused_at(c.post("/api/sweeps", json={"preset": "sweep-rt", "overrides": [f"data.dataset=csv:{svc.secret}"]}),
                   "dataset")
        assert sorted(p.name for p in svc.runs_dir.iterdir()) == before
        # inside the roots, and the bundled datasets from their own folders: accepted
        ok = c.post("/api/runs", json={"config": text_cfg(f"csv:{svc.inside}")})
        assert ok.status_code == 201, ok.text
        fm = tiny_vision("re", max_steps=2)
        fm["data"]["root"] = "/usr/share/datasets/fashion-mnist"
        ok = c.post("/api/runs", json={"config": fm})
        assert ok.status_code == 201, ok.text
        # a clone edited to read outside is refused like a new run
        r = c.post(f"/api/runs/{ok.json()['id']}/clone", json={"overrides": [f"data.root={svc.secret.parent}"]})
        refused_at(r, "root")


def test_messages_quote_a_bounded_excerpt_of_long_input(svc):
    long = "A" * 5000
    with svc.client() as c:
        for body in ({"dataset": f"csv:/{long}", "task": "text"}, {"dataset": long, "task": "text"},
                     {"dataset": f"zip:{long}", "task": "text"}):
            r = c.post("/api/datasets/inspect", json=body)
            assert r.status_code == 422 and len(r.text) < 2000 and "A" * 200 not in r.text, r.text[:300]
        for cfg in (text_cfg(long), text_cfg(f"csv:/{long}"), text_cfg("rotten_tomatoes", root=f"/{long}")):
            r = c.post("/api/runs", json={"config": cfg})
            assert r.status_code == 422 and len(r.text) < 2000 and "A" * 200 not in r.text, r.text[:300]
        rekd = tiny_vision("rekd", max_steps=2)
        rekd["model"]["teacher_run"] = long
        r = c.post("/api/runs", json={"config": rekd})
        assert r.status_code == 422 and len(r.text) < 2000 and "A" * 200 not in r.text, r.text[:300]
