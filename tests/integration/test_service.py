"""The service against real parts: redis-server, Celery worker processes, uvicorn, over HTTP."""

from __future__ import annotations

import json
import time

import pytest

from conftest import tiny_vision
from tests.support.service import sse_events, start_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    # short lease and reconcile period, so a killed worker's run is picked up within seconds; each step
    # waits 0.02 s first (REKD_STEP_DELAY_S), so a run lasts about steps x 0.02 s on any machine
    s = start_service(tmp_path_factory.mktemp("svc"), workers=1, step_delay_s=0.02, REKD_LEASE_TTL_S="4",
                      REKD_RECONCILE_EVERY_S="1")
    yield s
    s.stop()


def launch(c, cfg) -> str:
    r = c.post("/api/runs", json={"config": cfg})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "queued" and r.headers["location"] == f"/api/runs/{body['id']}"
    return body["id"]


def test_launch_stream_and_reconnect(svc):
    with svc.client() as c:
        cfg = tiny_vision("re", max_steps=12, log_every=2, eval_every=6, checkpoint_every=6)
        cfg["schedule"]["tau_update_every"] = 2
        t0 = time.monotonic()
        run_id = launch(c, cfg)
        evs = sse_events(c, run_id)
        assert evs[0]["type"] == "start" and evs[-1]["type"] == "finished" and evs[-1]["state"] == "completed"
        assert [e["id"] for e in evs] == list(range(1, len(evs) + 1))  # every event once, in order
        logs = [e for e in evs if e["type"] == "log"]
        taus = [e["tau"] for e in logs]
        assert taus[-1] < taus[0] and all(a >= b for a, b in zip(taus, taus[1:]))  # tau falls
        assert {"ce", "select", "re", "total"} <= set(logs[0]["loss"])
        assert time.monotonic() - t0 < 240

        # the stream equals the durable record
        stored = [json.loads(x) for x in (svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()]
        assert stored == evs

        # reconnect after event k: exactly the rest, no duplicate, no gap
        k = len(evs) // 2
        rest = sse_events(c, run_id, last_event_id=k)
        assert [e["id"] for e in rest] == list(range(k + 1, len(evs) + 1))
        assert rest == evs[k:]

        listed = {r["id"]: r for r in c.get("/api/runs").json()}
        assert listed[run_id]["state"] == "completed" and listed[run_id]["progress"] == 1.0
        detail = c.get(f"/api/runs/{run_id}").json()
        assert detail["config"]["mode"] == "re" and detail["results"]["test"]["accuracy"] >= 0
        assert detail["test_accuracy"] == detail["results"]["test"]["accuracy"]


def test_invalid_config_is_422_naming_the_field(svc):
    with svc.client() as c:
        cfg = tiny_vision("re")
        cfg["loss"] = {"alpha": 3}
        cfg["train"]["device"] = "tpu"
        r = c.post("/api/runs", json={"config": cfg})
        assert r.status_code == 422
        fields = {".".join(d["loc"][2:]): d["msg"] for d in r.json()["detail"]}
        assert "loss.alpha" in fields and "train.device" in fields
        assert "'auto', 'cpu' or 'cuda'" in fields["train.device"]
        r = c.post("/api/runs", json={"preset": "nope"})
        assert r.status_code == 422 and "unknown preset" in r.text
        assert c.post("/api/runs", json={}).status_code == 422
        before = set(p.name for p in svc.runs_dir.iterdir())
        assert before == set(p.name for p in svc.runs_dir.iterdir())  # nothing created for refused configs


def test_preset_with_overrides(svc):
    with svc.client() as c:
        r = c.post("/api/runs", json={"preset": "demo-fmnist-student", "overrides": {
            "mode": "cls", "train.max_steps": 2, "data.max_train": 64, "data.max_eval": 16, "train.eval_every": 2}})
        assert r.status_code == 201, r.text
        evs = sse_events(c, r.json()["id"])
        assert evs[-1]["state"] == "completed"
        assert c.get("/api/presets").status_code == 200
        assert any(p["name"] == "demo-fmnist-student" for p in c.get("/api/presets").json())


def test_delete_refuses_a_live_run(svc):
    with svc.client() as c:
        # 1000 steps x 0.02 s: live for 20 s, however fast the machine
        run_id = launch(c, tiny_vision("re", max_steps=1000, log_every=1, checkpoint_every=1000, eval_every=1000))
        sse_events(c, run_id, until="log")
        assert c.delete(f"/api/runs/{run_id}").status_code == 409
        c.post(f"/api/runs/{run_id}/cancel")
        sse_events(c, run_id, until="finished", timeout=60)


def test_browse_examples_and_explain_over_http(svc):
    import io

    import numpy as np
    from PIL import Image

    from conftest import tiny_text

    with svc.client() as c:
        vision = launch(c, tiny_vision("re", max_steps=4, eval_every=2, checkpoint_every=2))
        text = launch(c, tiny_text("re", max_steps=4, eval_every=2, checkpoint_every=2))
        for run_id in (vision, text):
            assert sse_events(c, run_id)[-1]["state"] == "completed"

        page = c.get(f"/api/runs/{vision}/examples", params={"limit": 3}).json()
        assert page["steps"] == [2, 4] and page["step"] == 4 and len(page["items"]) == 3
        assert page["items"][0]["image"].startswith("data:image/png;base64,")
        old = c.get(f"/api/runs/{vision}/examples", params={"step": 2}).json()
        assert old["step"] == 2
        metrics = c.get(f"/api/runs/{vision}/metrics").json()
        assert [p["step"] for p in metrics["eval"]] == [2, 4]

        buf = io.BytesIO()
        Image.fromarray((np.arange(784) % 255).astype(np.uint8).reshape(28, 28)).save(buf, format="PNG")
        r = c.post("/api/explain", data={"run_id": vision}, files={"file": ("x.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        ex = r.json()
        assert ex["modality"] == "vision" and len(ex["mask"]) == 16 and ex["label"] in ex["probabilities"]
        r = c.post("/api/explain", data={"run_id": text, "text": "a witty, gorgeous film"})
        assert r.status_code == 200, r.text
        assert r.json()["modality"] == "text"
        # a modality that does not match the run, and a corrupt image, are refused clearly
        assert c.post("/api/explain", data={"run_id": vision, "text": "words"}).status_code == 422
        corrupt = ("x.png", b"\x89PNG\r\n\x1a\nxx", "image/png")
        bad = c.post("/api/explain", data={"run_id": vision}, files={"file": corrupt})
        assert bad.status_code == 422
        assert c.get("/openapi.json").json()["paths"].keys() >= {
            "/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/events", "/api/runs/{run_id}/examples",
            "/api/runs/{run_id}/metrics", "/api/explain", "/api/presets", "/api/health"}


def test_clone_queues_the_exact_config_again_with_edits_and_remembers_its_origin(svc):
    with svc.client() as c:
        cfg = tiny_vision("re", max_steps=2, eval_every=2, checkpoint_every=2)
        first = launch(c, cfg)
        assert sse_events(c, first)[-1]["state"] == "completed"
        r = c.post(f"/api/runs/{first}/clone")
        assert r.status_code == 201, r.text
        again = r.json()["id"]
        assert again != first and r.headers["location"] == f"/api/runs/{again}"
        edited = c.post(f"/api/runs/{first}/clone", json={"overrides": {"train.max_steps": 4, "optim.lr": 0.01}})
        assert edited.status_code == 201, edited.text
        edited_id = edited.json()["id"]
        for rid in (again, edited_id):
            assert sse_events(c, rid)[-1]["state"] == "completed"
        original = c.get(f"/api/runs/{first}").json()
        same = c.get(f"/api/runs/{again}").json()
        changed = c.get(f"/api/runs/{edited_id}").json()
        assert same["config"] == original["config"] and same["cloned_from"] == first
        assert changed["config"]["train"]["max_steps"] == 4 and changed["config"]["optim"]["lr"] == 0.01
        assert changed["cloned_from"] == first and changed["total_steps"] == 4
        listed = {x["id"]: x for x in c.get("/api/runs").json()}
        assert listed[again]["cloned_from"] == first and listed[first]["cloned_from"] is None
        # a bad edit names its field and queues nothing; an unknown run is 404
        before = {p.name for p in svc.runs_dir.iterdir()}
        bad = c.post(f"/api/runs/{first}/clone", json={"overrides": {"loss.alpha": 3}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-2:] == ["loss", "alpha"]
        assert {p.name for p in svc.runs_dir.iterdir()} == before
        assert c.post("/api/runs/nope/clone").status_code == 404


def test_run_history_survives_a_restart_of_every_process(svc, tmp_path):
    with svc.client() as c:
        cls = launch(c, tiny_vision("cls", max_steps=4, eval_every=2, checkpoint_every=2))
        re_ = launch(c, tiny_vision("re", max_steps=4, eval_every=2, checkpoint_every=2))
        for rid in (cls, re_):
            assert sse_events(c, rid)[-1]["state"] == "completed"
        before = {r["id"]: r for r in c.get("/api/runs").json()}
        metrics = c.get(f"/api/runs/{re_}/metrics").json()
        compared = c.get("/api/compare", params={"runs": [cls, re_], "filter": "all"}).json()
    # a new redis-server (empty), new workers and a new API server: only the run directories remain
    fresh = start_service(tmp_path, workers=1, runs_dir=svc.runs_dir)
    try:
        with fresh.client() as c:
            after = {r["id"]: r for r in c.get("/api/runs").json()}
            assert after == before
            assert c.get(f"/api/runs/{re_}/metrics").json() == metrics
            assert c.get("/api/compare", params={"runs": [cls, re_], "filter": "all"}).json() == compared
            replay = sse_events(c, re_)  # the stream of a finished run, replayed from its events.jsonl
            assert replay[-1]["state"] == "completed" and [e["id"] for e in replay] == list(range(1, len(replay) + 1))
    finally:
        fresh.stop()
