"""A run that outlasts the broker's visibility timeout is trained by one worker (guarantee 4).

Redis redelivers a message left unacknowledged for longer than the visibility timeout (3 s
here): the run's message reaches the second, idle worker while the first still trains it.
The lease makes that copy a no-op; the run trains once, in one attempt, in one sequence.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import tiny_vision
from tests.support.service import sse_events, start_service


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    # each step waits 0.1 s first (REKD_STEP_DELAY_S): the run below lasts over 11 s on any machine
    s = start_service(tmp_path_factory.mktemp("vt"), workers=2, step_delay_s=0.1, REKD_VISIBILITY_TIMEOUT_S="3",
                      REKD_LEASE_TTL_S="4", REKD_RECONCILE_EVERY_S="1")
    yield s
    s.stop()


def test_a_run_longer_than_the_visibility_timeout_is_trained_by_exactly_one_worker(svc):
    with svc.client() as c:
        # 110 steps x the 0.1 s step delay: over 11 s however fast the machine, past 3 timeouts
        # (the idle worker's broker sweep runs every second, so the copy comes back after ~3-4 s)
        cfg = tiny_vision("re", max_steps=110, log_every=10, eval_every=55, checkpoint_every=20)
        r = c.post("/api/runs", json={"config": cfg})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        t0 = time.monotonic()
        evs = sse_events(c, run_id, timeout=300)
        assert time.monotonic() - t0 > 3 * 3  # it did outlast the timeout, several times over
        assert evs[-1]["state"] == "completed"
        assert [e["id"] for e in evs] == list(range(1, len(evs) + 1))
        assert [e["type"] for e in evs].count("start") == 1
        assert [e["step"] for e in evs if e["type"] == "log"] == list(range(10, 111, 10))
        st = c.get(f"/api/runs/{run_id}").json()
        assert st["attempts"] == 1
        stored = [json.loads(x) for x in (svc.runs_dir / run_id / "events.jsonl").read_text().splitlines()]
        assert stored == evs

    # the redelivery did happen (else this test proves nothing), and was turned away by the lease
    logs = "".join(p.read_text(errors="replace") for p in svc.log_dir.glob("worker*.log"))
    assert logs.count(f"run {run_id} is leased by another worker") >= 1
    finished = [line for line in logs.splitlines() if "rekd.train_run" in line and "succeeded" in line]
    assert sum("'state': 'completed'" in line for line in finished) == 1
