"""Checkpoints as single safetensors files: tensors plus JSON metadata in the header.

No pickle anywhere: weights and optimizer moments are tensors, everything else (step, tau,
RNG states, the run config) is JSON in the file's metadata, so a checkpoint describes itself
and is written atomically as one file (atomic.py: temp file, fsync, rename, fsync of the directory).

The header also carries a SHA-256 of every tensor's bytes: safetensors checks the file's
structure but not its contents, so a bit flipped on disk would otherwise load silently.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import atomic_path

META_KEY = "rekd"
DIGEST_KEY = "rekd.sha256"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes, in name order (independent of file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                    previous: Path | None = None) -> None:
    """Write atomically (atomic.py); with `previous`, the file being replaced is kept there (a
    fallback if the new one is ever found damaged). A crash at any point leaves a loadable file at
    `path` or at `previous`, and at worst a stray `.part` file."""
    with atomic_path(path, previous=previous) as tmp:
        flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(flat, str(tmp), metadata={META_KEY: json.dumps(meta), DIGEST_KEY: tensors_digest(flat)})


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint, verified against the digest it was written with.
    A file that is not valid safetensors, or whose contents changed since, is refused."""
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            meta = json.loads(header.get(META_KEY, "{}"))
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    except (OSError, ValueError, json.JSONDecodeError, Exception) as err:  # safetensors raises its own type
        raise ValueError(f"{path}: not a readable rekd checkpoint ({err})") from None
    # files written before digests existed carry none; everything written since is checked
    if DIGEST_KEY in header and tensors_digest(tensors) != header[DIGEST_KEY]:
        raise ValueError(f"{path}: damaged rekd checkpoint (its contents do not match the SHA-256 it was saved with)")
    if torch.device(device).type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
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
