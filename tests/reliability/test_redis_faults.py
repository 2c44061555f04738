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
    # each step waits 0.1 s first (REKD_STEP_DELAY_S): a run lasts about steps x 0.1 s on any machine
    s = start_service(tmp_path, workers=1, step_delay_s=0.1, REKD_LEASE_TTL_S="4", REKD_RECONCILE_EVERY_S="1")
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
        # 130 steps x 0.1 s: after step 10, at least 12 s to go, so it trains through the ~6 s outage and
        # on after Redis is back (its lease taken back), however fast the machine; checkpoints often,
        # so status moves
        cfg = tiny_vision("re", max_steps=130, log_every=5, eval_every=65, checkpoint_every=10)
        running = launch(c, cfg)
        queued = launch(c, tiny_vision("cls", max_steps=4, eval_every=2, checkpoint_every=2))
        first = sse_events(c, running, until="log")
        wait_step(c, running, 10)

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
        assert c.get(f"/api/runs/{running}").json()["state"] == "running"  # it trains on with Redis back
        after = sse_events(c, running, last_event_id=during[-1]["id"], timeout=300)
        evs = first + during + after
        assert evs[-1]["type"] == "finished" and evs[-1]["state"] == "completed"
        assert [e["id"] for e in evs] == list(range(1, len(evs) + 1))  # every event once, in order
        stored = [json.loads(x) for x in (svc.runs_dir / running / "events.jsonl").read_text().splitlines()]
        assert stored == evs
        assert [e["step"] for e in evs if e["type"] == "log"] == list(range(5, 131, 5))
        st = c.get(f"/api/runs/{running}").json()
        # trained on through the outage: one attempt, one start, and it moved while Redis was away
        assert st["attempts"] == 1 and [e["type"] for e in evs].count("start") == 1
        assert step_before > 10

        # the run queued before the outage is trained after it (its message survived in the AOF,
        # or, when Redis came back empty, the reconciler sent it again)
        assert sse_events(c, queued, timeout=180)[-1]["state"] == "completed"
        assert c.get("/api/health").json()["redis"] is True
