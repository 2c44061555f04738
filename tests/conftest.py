import json
import os
from pathlib import Path

import pytest
import torch

# Tests are small: one thread is faster than contending for two, and keeps results repeatable.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SERVICE_DIRS = {"integration", "reliability", "browser"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `service` every test that starts real processes (Redis, Celery, uvicorn, Chromium): those
    in the integration, reliability and browser folders and any module using the service harness.
    The fast tier, `pytest -m "not slow and not service"`, leaves them out."""
    for item in items:
        module = getattr(item, "module", None)
        uses_harness = module is not None and any(
            getattr(module, name, None) is not None for name in ("start_service", "launch_run"))
        if uses_harness or _SERVICE_DIRS & set(Path(str(item.path)).parts):
            item.add_marker(pytest.mark.service)


def tiny_vision(mode: str = "re", **train):
    return {
        "name": f"t-vision-{mode}", "task": "vision", "mode": mode,
        "data": {"dataset": "fashion_mnist", "max_train": 256, "max_eval": 64},
        "model": {"student": {"kind": "vit", "img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32,
                              "depth": 1, "num_heads": 2, "mlp_ratio": 2.0}},
        "schedule": {"tau_update_every": 2},
        "optim": {"lr": 3e-3},
        "train": {"max_steps": 6, "batch_size": 32, "eval_every": 3, "checkpoint_every": 3, "log_every": 2,
                  "eval_examples": 8, **train},
    }


def tiny_text(mode: str = "re", **train):
    return {
        "name": f"t-text-{mode}", "task": "text", "mode": mode,
        "data": {"dataset": "rotten_tomatoes", "max_train": 128, "max_eval": 32, "max_len": 32},
        "model": {"student": {"kind": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                              "intermediate_size": 64}},
        "loss": {"p_target": 0.2},
        "schedule": {"tau_update_every": 2},
        "optim": {"lr": 1e-3},
        "train": {"max_steps": 6, "batch_size": 16, "eval_every": 3, "checkpoint_every": 3, "log_every": 2,
                  "eval_examples": 6, **train},
    }


@pytest.fixture(scope="session")
def teacher_runs(tmp_path_factory):
    """A trained (tiny) RE teacher per modality, shared by the tests that distil from one."""
    from rekd_core.config import parse_config
    from rekd_core.train.trainer import train

    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for name, make in (("vision", tiny_vision), ("text", tiny_text)):
        run_dir = root / name
        train(parse_config(make("re")), run_dir)
        out[name] = run_dir
    return out


def run_history(run: Path) -> list[dict]:
    """The run's metric history: every log and eval event, less ids and wall-clock fields."""
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k not in ("id", "time", "samples_per_s")}
            for e in events if e["type"] in ("log", "eval")]


def same_final_weights(a: Path, b: Path) -> None:
    """The two runs' last checkpoints hold bit-identical tensors (weights and optimizer state)."""
    from rekd_core.store.checkpoint import load_checkpoint

    ta, _ = load_checkpoint(a / "checkpoints" / "last.safetensors")
    tb, _ = load_checkpoint(b / "checkpoints" / "last.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
