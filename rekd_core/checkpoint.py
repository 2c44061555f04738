"""Checkpoints as single safetensors files: tensors plus JSON metadata in the header.

No pickle anywhere: weights and optimizer moments are tensors, everything else (step, tau,
RNG states, the run config) is JSON in the file's metadata, so a checkpoint describes itself
and is written atomically as one file (temp file, fsync, rename).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

META_KEY = "rekd"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(flat, tmp, metadata={META_KEY: json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint; a file that is not valid safetensors is refused."""
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except (OSError, ValueError, json.JSONDecodeError, Exception) as err:  # safetensors raises its own type
        raise ValueError(f"{path}: not a readable rekd checkpoint ({err})") from None
    return tensors, meta


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Flatten an optimizer state into tensors ('optim.<param>.<name>') and JSON param groups."""
    sd = opt.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{pid}.{name}"] = t
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def encode_bytes(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode()


def decode_bytes(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()
