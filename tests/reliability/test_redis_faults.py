"""Redis killed (SIGKILL) and restarted in the middle of a run (guarantee 3).

Two ways back: from its append-only file (how `rekd up` runs it), and empty (a Redis without
persistence, or one replaced). Either way the running run trains on through the outage and
finishes in its first attempt, the run queued behind it is trained, and an SSE client that
reconnects with Last-Event-ID during and after the outage sees every event exactly once.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import tiny_vision
from tests.support.service import launch_run as launch
from tests.support.service import sse_events, start_service


@pytest.fixture
def svc(tmp_path):
    s = start_service(tmp_path, workers=1, REKD_LEASE_TTL_S="4", REKD_RECONCILE_EVERY_S="1")
    yield s
    s.stop()


def wait_step(c: httpx.Client, run_id: str, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while c.get(f"/api/runs/{run_id}").json()["step"] < step:
        assert time.monotonic() < deadline, f"run {run_id} did not reach step {step}"
        time.sleep(0.2)


@pytest.mark.parametrize("keep_data", [True, False], ids=["back-from-its-aof", "back-empty"])
def test_redis_killed_mid_run_loses_no_run_and_no_event(svc, keep_data):
    with svc.client() as c:
        # long enough to outlast the outage on any machine; checkpoints often, so status moves
        cfg = tiny_vision("re", max_steps=1500, log_every=20, eval_every=750, checkpoint_every=100)
        running = launch(c, cfg)
        queued = launch(c, tiny_vision("cls", max_steps=4, eval_every=2, checkpoint_every=2))
        first = sse_events(c, running, until="log")
        wait_step(c, running, 100)

        svc.kill_redis()
        t_down = time.monotonic()
        # the API keeps answering: health says what is wrong, reads work, and a run it cannot
        # queue is refused (503), not acknowledged and then lost
        h = c.get("/api/health").json()
        assert h["redis"] is False and "Redis unreachable" in h["detail"]
        assert c.get(f"/api/runs/{running}").json()["state"] == "running"
        refused = c.post("/api/runs", json={"config": tiny_vision("cls")})
        assert refused.status_code == 503 and "queue is unreachable" in refused.json()["detail"]
        # a client reconnecting mid-outage is served from the run's events.jsonl
        during = sse_events(c, running, last_event_id=first[-1]["id"], limit=3, timeout=60)
        while time.monotonic() - t_down < 6:  # longer than the 4 s lease: it expires meanwhile
            time.sleep(0.2)
        step_before = c.get(f"/api/runs/{running}").json()["step"]

        svc.restart_redis(keep_data=keep_data)
        after = sse_events(c, running, last_event_id=during[-1]["id"], timeout=300)
        evs = first + during + after
        assert evs[-1]["type"] == "finished" and evs[-1]["state"] == "completed"
        assert [e["id"] for e in evs] == list(range(1, len(evs) + 1))  # every event once, in order
        stored = [json.loads(x) for x in (svc.runs_dir / running / "events.jsonl").read_text().splitlines()]
        assert stored == evs
        assert [e["step"] for e in evs if e["type"] == "log"] == list(range(20, 1501, 20))
        st = c.get(f"/api/runs/{running}").json()
        # trained on through the outage: one attempt, one start, and it moved while Redis was away
        assert st["attempts"] == 1 and [e["type"] for e in evs].count("start") == 1
        assert step_before > 100

        # the run queued before the outage is trained after it (its message survived in the AOF,
        # or, when Redis came back empty, the reconciler sent it again)
        assert sse_events(c, queued, timeout=180)[-1]["state"] == "completed"
        assert c.get("/api/health").json()["redis"] is True
