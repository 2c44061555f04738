"""A sweep against real parts: redis-server, two worker processes started with `rekd worker
--queues`, uvicorn; submitted with `rekd sweep` (the CLI), then checked through the API and
against the run directories."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import httpx
import pytest

from conftest import tiny_vision
from rekd.services import free_port
from tests.support.service import ROOT, start_service

QUEUES = "sweep-cpu,sweep-gpu"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    # each step waits 0.05 s first (REKD_STEP_DELAY_S, in s.env, so for the workers below too): a run
    # lasts about steps x 0.05 s on any machine
    s = start_service(tmp_path_factory.mktemp("sweeps"), workers=0, step_delay_s=0.05)
    for i in range(2):  # workers as a deployment starts them, on named queues
        log = open(s.log_dir / f"qworker{i}.log", "wb")
        s.procs[f"qworker{i}"] = subprocess.Popen([sys.executable, "-m", "rekd", "worker", "--queues", QUEUES],
                                                  env=s.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True)
    s.wait_workers(2)
    yield s
    s.stop()


def spec(name: str, student_steps: int = 4, teacher_steps: int = 6) -> dict:
    student = tiny_vision("re", max_steps=student_steps, eval_every=2, checkpoint_every=2)
    teacher = tiny_vision("re", max_steps=teacher_steps)
    return {"name": name, "base": {"config": student}, "axes": {"train.seed": [0, 1], "mode": ["re", "rekd"]},
            "teacher": {"config": teacher, "seeds": [0, 1]}, "queue": "sweep-cpu", "teacher_queue": "sweep-gpu"}


def events(svc, run_id: str) -> list[dict]:
    return [json.loads(x) for x in (svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()]


def test_a_sweep_over_two_workers_from_the_cli(svc, tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec("itest")))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "rekd", "sweep", str(path), "--api", svc.base, "--poll", "0.5",
                          "--set", "data.max_eval=64"], env=svc.env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 < 240
    sweep_id = re.search(r"sweep (\S+): 6 runs queued", out.stderr).group(1)
    assert "completed" in out.stderr.splitlines()[-1]
    with svc.client() as c:
        v = c.get(f"/api/sweeps/{sweep_id}").json()
        table_md = c.get(f"/api/sweeps/{sweep_id}/table").text
        assert [s["id"] for s in c.get("/api/sweeps").json()] == [sweep_id]
        listed = {r["id"] for r in c.get("/api/runs").json()}
    assert out.stdout == table_md  # the CLI printed the table
    assert v["state"] == "completed" and v["progress"] == 1 and v["done"] == v["n_runs"] == 6
    assert v["axes"] == ["mode"] and [r["label"] for r in v["table"]] == ["mode=re", "mode=rekd"]
    every = v["teachers"] + v["runs"]
    assert listed == {x["id"] for x in every}  # .sweeps is no run

    # routed: teachers on sweep-gpu, students on sweep-cpu; both workers took runs
    status = {x["id"]: json.loads((svc.runs_dir / x["id"] / "status.json").read_text()) for x in every}
    assert {status[t["id"]]["queue"] for t in v["teachers"]} == {"sweep-gpu"}
    assert {status[r["id"]]["queue"] for r in v["runs"]} == {"sweep-cpu"}
    assert len({st["worker"] for st in status.values()}) == 2

    # one teacher per seed, trained once; each rekd student distilled from its seed's, after it ended
    teachers = {t["seed"]: t["id"] for t in v["teachers"]}
    assert sorted(teachers) == [0, 1]
    for tid in teachers.values():
        assert [e["type"] for e in events(svc, tid)].count("start") == 1
    for r in v["runs"]:
        cfg = json.loads((svc.runs_dir / r["id"] / "config.json").read_text())
        assert cfg["train"]["seed"] == r["seed"] and cfg["data"]["max_eval"] == 64
        if r["cell"]["mode"] == "rekd":
            tid = teachers[r["seed"]]
            assert r["teacher"] == tid and cfg["model"]["teacher_run"] == str((svc.runs_dir / tid).resolve())
            start = next(e for e in events(svc, r["id"]) if e["type"] == "start")
            assert start["time"] > events(svc, tid)[-1]["time"] and start["params"]["teacher"] > 0

    # the table is mean ± sample std of the runs' own results.json
    for row in v["table"]:
        res = [json.loads((svc.runs_dir / r["id"] / "results.json").read_text())["test"]
               for r in v["runs"] if r["label"] == row["label"]]
        assert row["n"] == row["n_total"] == 2
        for key, get in (("accuracy", lambda t: t["accuracy"]), ("macro_f1", lambda t: t["macro_f1"]),
                         ("selected", lambda t: t["selected"]["mean"])):
            xs = [get(t) for t in res]
            assert row[f"{key}_mean"] == pytest.approx(statistics.mean(xs))
            assert row[f"{key}_std"] == pytest.approx(statistics.stdev(xs))
        acc = f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_std']:.1f}"
        assert f"| {row['label']} | 2/2 | {acc} |" in table_md


def test_cancel_a_running_sweep(svc):
    with svc.client() as c:
        # 200 steps x 0.05 s: a teacher trains for 10 s, so it is still running when the cancel comes
        r = c.post("/api/sweeps", json={"spec": spec("icancel", student_steps=200, teacher_steps=200)})
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while not any(x["state"] == "running" for x in c.get(f"/api/sweeps/{sweep_id}").json()["teachers"]):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        r = c.post(f"/api/sweeps/{sweep_id}/cancel")
        assert r.status_code == 202 and len(r.json()["runs"]) == 6
        deadline = time.monotonic() + 60
        while (v := c.get(f"/api/sweeps/{sweep_id}").json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert v["state"] == "cancelled"
        assert {x["state"] for x in v["teachers"] + v["runs"]} == {"cancelled"}
        assert all(row["n"] == 0 for row in v["table"])


def test_the_cli_starts_a_service_when_none_answers(tmp_path):
    cfg = tiny_vision("re", max_steps=4, eval_every=2, checkpoint_every=2)
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"name": "embedded", "base": {"config": cfg}, "axes": {"train.seed": [0, 1]}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKD_")}
    proc = subprocess.Popen([sys.executable, "-m", "rekd", "sweep", str(path), "--api",
                             f"http://127.0.0.1:{free_port()}", "--workers", "1", "--runs-dir", str(tmp_path / "runs"),
                             "--format", "csv", "--poll", "0.5"], env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, stderr
    assert "starting one here" in stderr
    assert stdout.splitlines()[0].startswith("label,n,n_total,accuracy_mean")
    assert stdout.splitlines()[1].startswith("all,2,2,")
    assert len(list((tmp_path / "runs").glob("*/results.json"))) == 2
    # everything it started has stopped: nothing answers on its API any more
    port = re.search(r"queued at http://127.0.0.1:(\d+)", stderr).group(1)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)


def test_a_sweep_survives_the_death_of_its_teachers_worker(tmp_path):
    """The teacher's worker is killed mid-run: another worker resumes the teacher (reconciler),
    and the students chained to it follow it again, long before the broker's visibility timeout."""
    s = start_service(tmp_path, workers=0, step_delay_s=0.05, REKD_LEASE_TTL_S="4", REKD_RECONCILE_EVERY_S="1")
    try:
        s.start_worker()
        s.wait_workers(1)
        # 80 steps x 0.05 s: seen past step 40, the teacher has 2 s or more to go when its worker dies
        teacher = tiny_vision("re", max_steps=80, checkpoint_every=20, eval_every=40, log_every=20)
        student = tiny_vision("rekd", max_steps=4, eval_every=2, checkpoint_every=2)
        body = {"name": "idie", "base": {"config": student}, "axes": {"train.seed": [0, 1]},
                "teacher": {"config": teacher, "seeds": [0]}}
        with s.client() as c:
            r = c.post("/api/sweeps", json={"spec": body})
            assert r.status_code == 201, r.text
            sweep_id = r.json()["id"]
            tid = c.get(f"/api/sweeps/{sweep_id}").json()["teachers"][0]["id"]
            deadline = time.monotonic() + 60
            while c.get(f"/api/runs/{tid}").json()["step"] < 40:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            s.kill("worker0")
            s.start_worker()
            deadline = time.monotonic() + 180
            while (v := c.get(f"/api/sweeps/{sweep_id}").json())["state"] == "running":
                assert time.monotonic() < deadline, v
                time.sleep(0.5)
        assert v["state"] == "completed" and v["done"] == 3
        st = json.loads((s.runs_dir / tid / "status.json").read_text())
        starts = [e for e in events(s, tid) if e["type"] == "start"]
        assert st["attempts"] == 2 and [e["resumed"] for e in starts] == [False, True]
        for run in v["runs"]:
            assert run["teacher"] == tid and run["state"] == "completed"
    finally:
        s.stop()
