"""REKD_DATA_ROOTS: a server told where user data lives reads nothing from anywhere else.

Against a real server: a table inside the allowed folder is inspected and queued; one outside it,
one reached through a symlink that points out of it, and a data.root outside it are refused with
a 422 naming the field, for the inspect route, a run, a clone, a pipeline and a sweep; nothing
is written to the runs directory for a refused request.
"""

from __future__ import annotations

import pytest

from conftest import tiny_text
from tests.support.service import start_service

ROWS = [("a great, wonderful film", "pos"), ("an awful, boring mess", "neg")] * 20


def write_csv(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\n" + "".join(f'"{t} #{i}",{y}\n' for i, (t, y) in enumerate(ROWS)))
    return path


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roots")
    allowed = tmp / "data"
    s = start_service(tmp, workers=0, REKD_DATA_ROOTS=str(allowed))
    s.inside = write_csv(allowed / "reviews.csv")
    s.outside = write_csv(tmp / "elsewhere" / "reviews.csv")
    s.link = allowed / "link.csv"
    s.link.symlink_to(s.outside)  # inside the root by name, outside it in fact
    yield s
    s.stop()


def cfg(dataset: str, **data):
    c = tiny_text("re", max_steps=2)
    c["data"] = {"dataset": dataset, "max_len": 16, **data}
    return c


def refused(r, field: str) -> str:
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    hit = [e for e in errors if e["loc"][-1] == field]
    assert hit and "REKD_DATA_ROOTS" in hit[0]["msg"], errors
    return hit[0]["msg"]


def test_inspect_reads_inside_the_roots_only(svc):
    with svc.client() as c:
        ok = c.post("/api/datasets/inspect", json={"dataset": f"csv:{svc.inside}", "task": "text"})
        assert ok.status_code == 200 and sum(ok.json()["counts"].values()) == len(ROWS), ok.text
        for path in (svc.outside, svc.link, svc.inside.parent / ".." / "elsewhere" / "reviews.csv"):
            r = c.post("/api/datasets/inspect", json={"dataset": f"csv:{path}", "task": "text"})
            msg = refused(r, "dataset")
            assert "wonderful" not in r.text  # not a row of the file leaks back
            assert str(svc.inside.parent) in msg  # the message says where data may come from


def test_runs_clones_pipelines_and_sweeps_are_refused_before_anything_is_written(svc):
    with svc.client() as c:
        before = set(p.name for p in svc.runs_dir.iterdir())
        refused(c.post("/api/runs", json={"config": cfg(f"csv:{svc.outside}")}), "dataset")
        refused(c.post("/api/runs", json={"config": cfg(f"csv:{svc.link}")}), "dataset")
        # a registry dataset read from a folder outside the roots
        refused(c.post("/api/runs", json={"config": cfg("rotten_tomatoes", root=str(svc.outside.parent))}), "root")
        refused(c.post("/api/pipelines", json={"name": "demo-rt", "overrides": [f"data.dataset=csv:{svc.outside}"]}),
                "dataset")
        refused(c.post("/api/sweeps", json={"preset": "sweep-rt", "overrides": [f"data.dataset=csv:{svc.outside}"]}),
                "dataset")
        assert set(p.name for p in svc.runs_dir.iterdir()) == before

        ok = c.post("/api/runs", json={"config": cfg(f"csv:{svc.inside}")})
        assert ok.status_code == 201, ok.text
        # a clone edited to read from outside is refused like a new run
        r = c.post(f"/api/runs/{ok.json()['id']}/clone", json={"overrides": [f"data.dataset=csv:{svc.outside}"]})
        refused(r, "dataset")
        assert len(list(svc.runs_dir.iterdir())) == len(before) + 1
