"""A process SIGKILLed in the middle of a checkpoint save loses nothing (guarantee 2).

The child is a real training process; a wrapper around the real save kills it with SIGKILL
at the worst moments: with half the new file written, and between the two renames of a save.
The run is then resumed and must end exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_history, same_final_weights, tiny_vision
from rekd_core.config import parse_config
from rekd_core.store.checkpoint import load_checkpoint
from rekd_core.train.trainer import train

ROOT = Path(__file__).resolve().parents[2]
CFG = tiny_vision("re", max_steps=12, log_every=2, eval_every=4, checkpoint_every=4)

# Runs in the child: train, and SIGKILL ourselves inside the save of `last` at step 8.
CHILD = textwrap.dedent('''
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from rekd_core.store import checkpoint
    from rekd_core.config import parse_config
    from rekd_core.train.trainer import train

    where, cfg, run_dir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    real_save, real_replace = checkpoint.save_file, os.replace

    def dying_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        meta = json.loads(metadata["rekd"])
        if meta.get("step") == 8 and meta.get("kind") == "last":
            if where == "mid-write":
                with open(filename, "r+b") as f:   # the data on disk when the kill lands
                    f.truncate(os.path.getsize(filename) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            os.replace = dying_replace             # the renames inside the save (store/atomic.py)

    def dying_replace(src, dst):
        real_replace(src, dst)                     # last -> previous has happened
        os.kill(os.getpid(), signal.SIGKILL)       # ... and the new file never arrives

    checkpoint.save_file = dying_save
    train(parse_config(cfg), run_dir)
''')


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    train(parse_config(CFG), run)
    return run


@pytest.mark.parametrize("where", ["mid-write", "between-renames"])
def test_kill_during_a_checkpoint_save_keeps_the_previous_one_and_resumes_exactly(where, tmp_path, reference):
    run = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", CHILD, where, json.dumps(CFG), str(run)], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                           capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]

    ckpts = run / "checkpoints"
    assert list(ckpts.glob(".*.part")), "the interrupted save left its temp file behind"
    if where == "mid-write":
        # the half-written file never took the name: `last` is still the intact step-4 checkpoint
        _, meta = load_checkpoint(ckpts / "last.safetensors")
        assert meta["step"] == 4
    else:
        # killed between the renames: no `last`, and the one it replaced is intact as `previous`
        assert not (ckpts / "last.safetensors").exists()
        _, meta = load_checkpoint(ckpts / "previous.safetensors")
        assert meta["step"] == 4

    res = train(parse_config(CFG), run)
    assert res["state"] == "completed"
    assert not list(ckpts.glob(".*.part"))  # the stray temp file is cleaned up on resume
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert [s["step"] for s in events if s["type"] == "start"] == [0, 4]
    assert [e["step"] for e in events if e["type"] == "log"] == list(range(2, 13, 2))  # no gap, no repeat
    same_final_weights(run, reference)
    assert run_history(run) == run_history(reference)


def test_a_damaged_checkpoint_is_refused_on_load_and_the_previous_one_used(tmp_path, reference):
    run = tmp_path / "run"
    calls = iter(range(100))
    # a clean stop at step 6 (as at a worker shutdown): `last` is step 6, `previous` step 4
    res = train(parse_config(CFG), run, should_stop=lambda: "suspend" if next(calls) == 6 else False)
    assert res == {"state": "suspended", "step": 6}
    ckpts = run / "checkpoints"
    last = ckpts / "last.safetensors"
    data = bytearray(last.read_bytes())
    data[-5] ^= 0x01  # one bit of one tensor flipped on disk: still well-formed safetensors
    last.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        load_checkpoint(last)
    assert load_checkpoint(ckpts / "previous.safetensors")[1]["step"] == 4

    assert train(parse_config(CFG), run)["state"] == "completed"
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert [s["step"] for s in events if s["type"] == "start"] == [0, 4]  # from `previous`
    same_final_weights(run, reference)
    assert run_history(run) == run_history(reference)
