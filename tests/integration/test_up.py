"""`rekd up`: one command brings up Redis (embedded), a worker and the API; Ctrl-C stops them all."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import tiny_vision
from rekd.services import free_port, wait_for_port
from tests.support.service import sse_events

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_rekd_up_runs_everything_and_stops_everything(tmp_path, sig):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKD_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    log = tmp_path / "up.log"  # a file, not a pipe: an unread pipe that fills would block every process
    mine, other = tmp_path / "mine", tmp_path / "other"  # a folder given with --data, and one not given
    for folder in (mine, other):
        folder.mkdir()
        (folder / "reviews.csv").write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(20)))
    proc = subprocess.Popen([sys.executable, "-m", "rekd", "up", "--port", str(port), "--runs-dir", str(tmp_path),
                             "--data", str(mine)],
                            env=env, cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=120, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            deadline = time.monotonic() + 90
            while not c.get("/api/health").json()["workers"] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert c.get("/api/health").json()["ok"]
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            assert len(children) >= 3  # redis-server, the worker and the API
            page = c.get("/")  # the web UI, on the same port
            assert page.status_code == 200 and "gradio" in page.text.lower()
            assert c.get("/ui-assets/plotly.min.js").status_code == 200  # its charts, served locally
            r = c.post("/api/runs", json={"config": tiny_vision("cls", max_steps=2, eval_every=2,
                                                                 checkpoint_every=2)})
            assert r.status_code == 201
            assert sse_events(c, r.json()["id"])[-1]["state"] == "completed"
            # --data: that folder's files may be read by the API, a folder not given may not
            ok = c.post("/api/datasets/inspect", json={"dataset": f"csv:{mine / 'reviews.csv'}", "task": "text"})
            assert ok.status_code == 200, ok.text
            refused = c.post("/api/datasets/inspect", json={"dataset": f"csv:{other / 'reviews.csv'}", "task": "text"})
            assert refused.status_code == 422, refused.text
        assert (tmp_path / ".redis").is_dir()  # the embedded Redis keeps its data under the runs dir
    finally:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # fail, but leave nothing running for the tests after this one
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])
            proc.kill()
            raise
    out = log.read_text(errors="replace")
    assert f"http://127.0.0.1:{port}" in out and "[worker0]" in out and "[api]" in out
    assert proc.returncode == 0
    # nothing it started is left
    time.sleep(1)
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert left == [], left


def test_up_refuses_a_public_bind_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKD_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "rekd", "up", "--host", "0.0.0.0", "--runs-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "REKD_API_TOKEN" in out.stderr
