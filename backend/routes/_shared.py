"""Helpers shared by the routes that read one run's saved examples (examples, faithfulness, compare,
explain): the run files come from rekd_core.store.examples; this module turns them into HTTP
answers (409 / 404) and JSON-safe values."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from fastapi import HTTPException
from PIL import Image
from safetensors import safe_open

from rekd_core.store.examples import list_snapshots, read_inputs
from rekd_core.store.runstore import RunStore


def png_data_url(image: np.ndarray) -> str:
    """A uint8 (H, W), (H, W, C) or (C, H, W) array as a data:image/png;base64 URL."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def finite(value: Any) -> float | None:
    # JSON has no NaN/inf and FastAPI refuses to emit them: a diverged loss must not turn into a 500
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def inputs_or_409(store: RunStore) -> dict[str, Any]:
    """The run's examples/inputs.json; 409 before training has written it."""
    inputs = read_inputs(store)
    if inputs is None:
        raise HTTPException(409, f"run {store.run_id!r} has no saved examples yet (written when training starts)")
    return inputs


def pick_step(store: RunStore, step: int | None) -> tuple[list[int], int]:
    """(every snapshot step, the one asked for or else the latest); 409 without any, 404 for a missing step."""
    steps = list_snapshots(store)
    if not steps:
        raise HTTPException(409, f"run {store.run_id!r} has no rationale snapshot yet (one is saved at each eval)")
    if step is None:
        return steps, steps[-1]
    if step not in steps:
        raise HTTPException(404, f"run {store.run_id!r} has no snapshot at step {step}; available: {steps}")
    return steps, step


def example_evidence(inputs: dict[str, Any], i: int, keep: int | None = None) -> list[int] | None:
    """Example `i`'s ground truth from inputs.json, 0/1 per position cut to `keep` (None without)."""
    evidence = inputs.get("evidence")
    if not isinstance(evidence, list) or i >= len(evidence) or not isinstance(evidence[i], list):
        return None
    return [int(v) for v in evidence[i][:keep]]


def example_images(store: RunStore, indices: list[int]) -> dict[int, str]:
    """PNG data URLs of the stored dev images at `indices` (shared with the run comparison)."""
    path = store.examples / "inputs.safetensors"
    if not indices or not path.exists():
        return {}
    # safe_open reads just the requested rows, and safetensors has no pickle to execute
    with safe_open(str(path), framework="numpy") as f:
        images = f.get_slice("images")
        return {i: png_data_url(images[i : i + 1][0]) for i in indices}
