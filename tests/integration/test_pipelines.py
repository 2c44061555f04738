"""Pipelines and teacher dependencies against real parts: redis-server, two Celery worker
processes, uvicorn. Two workers, so a student can be delivered while its teacher trains."""

from __future__ import annotations

import json
import time

import pytest
import redis

from backend.routes.pipelines import send_pipeline
from conftest import tiny_vision
from rekd_core.config import parse_config
from rekd_core.presets import Stage
from rekd_core.store.runstore import RunStore
from service import keys
from service.settings import Settings
from tests.support.service import sse_events, start_service
from worker.runner import run_training

# every stage of demo-fmnist shrunk to seconds: 4 steps, a few hundred images, a 32-wide ViT
SMALL = ["train.max_steps=4", "train.eval_every=2", "train.checkpoint_every=2", "train.log_every=2",
         "train.eval_examples=8", "data.max_train=256", "data.max_eval=64", "model.student.embed_dim=32",
         "model.student.depth=1", "model.student.num_heads=2"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    # each step waits 0.05 s first (REKD_STEP_DELAY_S): a run lasts about steps x 0.05 s on any machine
    s = start_service(tmp_path_factory.mktemp("pipes"), workers=2, step_delay_s=0.05)
    yield s
    s.stop()


def events(svc, run_id: str) -> list[dict]:
    path = svc.runs_dir / run_id / "events.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def first(evs: list[dict], kind: str) -> dict:
    return next(e for e in evs if e["type"] == kind)


def test_pipeline_trains_the_teacher_then_the_students(svc):
    with svc.client() as c:
        r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": SMALL})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["name"] == "demo-fmnist"
        assert [(x["role"], x["state"]) for x in body["runs"]] == [
            ("teacher", "queued"), ("cls", "queued"), ("re", "queued"), ("rekd", "queued")]
        ids = {x["role"]: x["id"] for x in body["runs"]}
        for role, run_id in ids.items():
            assert sse_events(c, run_id, timeout=120)[-1]["state"] == "completed", role
        runs = {r["id"]: r for r in c.get("/api/runs").json()}
        assert {role: runs[i]["name"] for role, i in ids.items()} == {
            role: f"demo-fmnist-{role}" for role in ("teacher", "cls", "re", "rekd")}
        assert {role: runs[i]["mode"] for role, i in ids.items()} == {
            "teacher": "re", "cls": "cls", "re": "re", "rekd": "rekd"}

    teacher, rekd = ids["teacher"], ids["rekd"]
    cfg = json.loads((svc.runs_dir / rekd / "config.json").read_text())
    assert cfg["model"]["teacher_run"] == str((svc.runs_dir / teacher).resolve())
    t_evs, s_evs = events(svc, teacher), events(svc, rekd)
    assert [e["type"] for e in t_evs].count("start") == 1  # the teacher trained once
    assert first(s_evs, "start")["time"] > first(t_evs, "finished")["time"]
    t_st, s_st = RunStore(svc.runs_dir / teacher).status(), RunStore(svc.runs_dir / rekd).status()
    assert s_st["started"] >= t_st["finished"] and s_st["attempts"] == 1
    assert first(s_evs, "start")["params"]["teacher"] > 0  # it distilled from that teacher


def test_a_cancelled_teacher_fails_its_student_which_never_trains(svc):
    with svc.client() as c:
        r = c.post("/api/pipelines", json={"name": "demo-fmnist", "overrides": SMALL})
        assert r.status_code == 201, r.text
        ids = {x["role"]: x["id"] for x in r.json()["runs"]}
        assert c.post(f"/api/runs/{ids['teacher']}/cancel").status_code == 202
        assert sse_events(c, ids["teacher"], timeout=60)[-1]["state"] == "cancelled"
        last = sse_events(c, ids["rekd"], timeout=60)[-1]
        assert last["type"] == "finished" and last["state"] == "failed"
        assert last["error"].startswith(f"teacher run {ids['teacher']} ended cancelled")
        st = c.get(f"/api/runs/{ids['rekd']}").json()
        assert st["state"] == "failed" and "teacher run" in st["error"] and st["attempts"] == 0
        # the students that do not distil are not held back by it
        for role in ("cls", "re"):
            assert sse_events(c, ids[role], timeout=60)[-1]["state"] == "completed"
    student = svc.runs_dir / ids["rekd"]
    assert "start" not in [e["type"] for e in events(svc, ids["rekd"])]
    assert not (student / "checkpoints").exists()


def test_a_hand_posted_student_waits_for_its_running_teacher(svc):
    with svc.client() as c:
        # 160 steps x 0.05 s: still training 7 s after its first log, long enough for the student to find
        # it running however fast the machine
        r = c.post("/api/runs", json={"config": tiny_vision("re", max_steps=160, log_every=10, eval_every=10**6,
                                                            checkpoint_every=10**6)})
        assert r.status_code == 201, r.text
        teacher = r.json()["id"]
        sse_events(c, teacher, until="log", timeout=60)
        student_cfg = tiny_vision("rekd", max_steps=4)
        student_cfg["model"]["teacher_run"] = teacher  # by run id
        r = c.post("/api/runs", json={"config": student_cfg})
        assert r.status_code == 201, r.text
        student = r.json()["id"]
        deadline = time.monotonic() + 30
        while (st := c.get(f"/api/runs/{student}").json())["waiting_for"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert st["waiting_for"] == teacher and st["state"] == "queued" and st["attempts"] == 0
        assert c.get(f"/api/runs/{teacher}").json()["state"] == "running"
        assert sse_events(c, student, timeout=90)[-1]["state"] == "completed"
        st = c.get(f"/api/runs/{student}").json()
        assert st["waiting_for"] is None and st["attempts"] == 1  # waiting is not an attempt
        assert st["config"]["model"]["teacher_run"] == str((svc.runs_dir / teacher).resolve())
    t_evs = events(svc, teacher)
    assert t_evs[-1]["state"] == "completed"
    assert first(events(svc, student), "start")["time"] > t_evs[-1]["time"]


def test_a_teacher_chained_to_a_group_of_students(svc):
    """More than one distilled student: they follow the teacher as a Celery group."""
    from celery import Celery

    app = Celery("test-sender", broker=svc.redis_url)  # a client of the service's broker, as the API is
    teacher = svc.runs_dir / "group-teacher"
    RunStore.create(teacher, parse_config(tiny_vision("re", max_steps=4)))
    stages = [(Stage("teacher", "-"), teacher.name)]
    for name in ("group-a", "group-b"):
        cfg = tiny_vision("rekd", max_steps=2, eval_every=2, checkpoint_every=2)
        cfg["model"]["teacher_run"] = str(teacher.resolve())
        RunStore.create(svc.runs_dir / name, parse_config(cfg))
        stages.append((Stage("rekd", "-", needs_teacher=True), name))
    send_pipeline(app, svc.env["REKD_QUEUE"], stages)
    with svc.client() as c:
        for _, run_id in stages:
            assert sse_events(c, run_id, timeout=60)[-1]["state"] == "completed", run_id
    done = first(events(svc, teacher.name), "finished")["time"]
    assert all(first(events(svc, n), "start")["time"] > done for n in ("group-a", "group-b"))


def test_the_runner_fails_or_defers_a_student_by_its_teachers_state(svc, tmp_path):
    """The worker's decision on its own, without the queue: failed, missing, not yet ended."""
    settings = Settings(redis_url=svc.redis_url, runs_dir=tmp_path)
    r = redis.Redis.from_url(svc.redis_url)
    teacher = RunStore.create(tmp_path / "t", parse_config(tiny_vision("re")))

    def student(run_id: str, teacher_dir) -> RunStore:
        cfg = tiny_vision("rekd")
        cfg["model"]["teacher_run"] = str(teacher_dir)
        return RunStore.create(tmp_path / run_id, parse_config(cfg))

    def run(run_id: str) -> dict:
        return run_training(run_id, settings=settings, r=r, worker_id="test")

    waiting = student("s-wait", teacher.root)
    for state in ("queued", "running"):
        teacher.write_status(state=state)
        assert run("s-wait") == {"run_id": "s-wait", "state": "waiting", "waiting_for": "t"}
        st = waiting.status()
        assert st["state"] == "queued" and st["waiting_for"] == "t" and st.get("attempts", 0) == 0
        assert not r.exists(keys.lease("s-wait"))  # released for the next delivery

    teacher.write_status(state="failed", error="RuntimeError: out of memory")
    out = run("s-wait")
    assert out["state"] == "failed" and out["error"] == "teacher run t ended failed: RuntimeError: out of memory"
    st = waiting.status()
    assert st["state"] == "failed" and st["waiting_for"] is None and st.get("attempts", 0) == 0
    assert [e["type"] for e in waiting.events()] == ["error", "finished"]

    missing = student("s-missing", tmp_path / "gone")
    assert run("s-missing")["error"] == f"teacher run gone is missing: no directory {tmp_path / 'gone'}"
    assert missing.status()["state"] == "failed" and not missing.checkpoints.exists()
