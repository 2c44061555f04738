"""The run directory, the durable record of one run (DESIGN.md):

runs/<run_id>/config.json  events.jsonl  status.json  results.json
              checkpoints/{last,previous,best}.safetensors   (previous: the `last` a save replaced)
              examples/inputs.json, inputs.safetensors, step-<7-digit step>.json
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, config_to_dict, parse_config
from .atomic import atomic_write_bytes, atomic_write_json

RUN_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")  # \Z: no trailing newline
# the states a run ends in (status.json `state`): nothing trains it again, and nothing waits on it
TERMINAL_STATES = ("completed", "failed", "cancelled")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "run"
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{slug}-{secrets.token_hex(2)}"


class RunStore:
    """Reads and writes one run directory. Every write is atomic or append-only."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._next_event_id: int | None = None

    # --- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, cfg: ExperimentConfig) -> RunStore:
        store = cls(root)
        store.root.mkdir(parents=True, exist_ok=True)
        if not (store.root / "config.json").exists():
            atomic_write_json(store.root / "config.json", config_to_dict(cfg))
            store.write_status(state="queued", created=now_iso())
        return store

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def examples(self) -> Path:
        return self.root / "examples"

    def config(self) -> ExperimentConfig:
        return parse_config(json.loads((self.root / "config.json").read_text()))

    # --- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        p = self.root / "status.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def write_status(self, **fields: Any) -> dict[str, Any]:
        st = self.status()
        st.update(fields)
        st["updated"] = now_iso()
        atomic_write_json(self.root / "status.json", st)
        return st

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write_json(self.root / "results.json", results)

    def results(self) -> dict[str, Any] | None:
        p = self.root / "results.json"
        return json.loads(p.read_text()) if p.exists() else None

    # --- events -----------------------------------------------------------------------------
    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        out = []
        for line in self.events_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash: everything before it is intact
        return out

    def append_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Give the event the next id (monotonic over the run's life) and append it."""
        if self._next_event_id is None:
            evs = self.events()
            self._next_event_id = (evs[-1]["id"] + 1) if evs else 1
        event = {"id": self._next_event_id, "time": time.time(), **event}
        self._next_event_id += 1
        with open(self.events_path, "a") as f:
            f.write(json.dumps(event) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return event

    def truncate_events_after(self, step: int) -> None:
        """On resume, drop the events of steps after the checkpoint: training replays them.

        Ids stay dense: the replayed events take the ids of the dropped ones, so the file has
        no gap and no duplicate step. On CPU a resumed run replays them with the same values;
        a live reader that saw the dropped ones skips their ids (it has seen them).
        """
        evs = self.events()
        kept = [e for e in evs if e.get("step", 0) <= step and e.get("type") not in ("finished", "test", "error")]
        if len(kept) != len(evs):
            atomic_write_bytes(self.events_path, "".join(json.dumps(e) + "\n" for e in kept).encode())
        self._next_event_id = (kept[-1]["id"] + 1) if kept else 1
