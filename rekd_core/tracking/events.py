"""A run's events as tracker data: the config as flat params, each event as named scalars.

Tag names (the same in TensorBoard and MLflow; TensorBoard groups by the part before the first `/`):

  log events   loss/<term> (total, ce, select, re, kd_r, kd_y, kd …), tau, lr, epoch, train/accuracy,
               selected/{mean,std,min,max} (share of positions kept), agreement/iou (teacher–student
               masks, REKD), perf/samples_per_s
  eval events  eval/<split>/<figure>, nested figures joined by `/`: eval/dev/accuracy, eval/dev/macro_f1,
               eval/dev/selected/mean, eval/dev/faithfulness/comprehensiveness, eval/dev/probe/accuracy …
  test event   test/<figure> in the same way: test/accuracy, test/macro_f1 …

Every numeric field of an event becomes a scalar (so a figure the trainer adds later is mirrored
without a change here); lists, strings, booleans and example counts (`n`) are left out.
"""

from __future__ import annotations

import json
import math
from typing import Any

# log-event fields whose own names read badly as tags
_LOG_RENAMES = {"train_acc": "train/accuracy", "samples_per_s": "perf/samples_per_s", "iou": "agreement/iou"}
# bookkeeping, not figures: an event's identity, and sample counts
_SKIP = {"id", "time", "type", "step", "split", "checkpoint_step", "n", "folds", "total_steps",
         "steps_per_epoch"}


def flatten(data: dict[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested dicts joined by `sep`, other values as they are."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, sep, name + sep))
        else:
            out[name] = value
    return out


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """The run's config (config_to_dict) as flat string params: `train.batch_size` -> "32"; strings as
    they are, everything else as JSON (true, null, [..]) so that a param reads back unambiguously."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flatten(config).items()}


def _numeric(data: dict[str, Any], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        if key in _SKIP or key == "tau" and prefix:  # an eval's tau repeats the log event's
            continue
        if isinstance(value, dict):
            out.update(_numeric(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def scalars(event: dict[str, Any]) -> dict[str, float]:
    """The event's figures as {tag: value}; {} for events that carry none (start, checkpoint, finished)."""
    kind = event.get("type")
    if kind == "log":
        flat = _numeric(event, "")
        return {_LOG_RENAMES.get(k, k): v for k, v in flat.items()}
    if kind == "eval":
        return _numeric(event, f"eval/{event.get('split', 'dev')}/")
    if kind == "test":
        return _numeric(event, "test/")
    return {}


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def start_tags(event: dict[str, Any]) -> dict[str, str]:
    """A start event's facts (device, parameter counts, split sizes, classes) as `rekd.*` tags."""
    tags: dict[str, str] = {}
    for key, value in flatten(event).items():
        if key in ("id", "time", "type", "step", "resumed"):
            continue
        tags[f"rekd.{key}"] = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return tags
