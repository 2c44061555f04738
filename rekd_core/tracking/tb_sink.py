"""Events as TensorBoard event files (torch.utils.tensorboard, which needs the `tensorboard` package)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..store.runstore import RunStore
from .artifacts import rationale_markdown, rationale_pictures
from .events import config_params, scalars


class TensorBoardSink:
    """Writes one run's scalars, config (text) and rationale pictures into `logdir`.

    live=True: a resumed run appends to the same folder, its first event's step (+1) becoming
    SummaryWriter's purge_step, so TensorBoard drops what an earlier process logged after the
    checkpoint and the replayed steps are shown once. live=False (export): the caller hands a
    folder cleared of earlier event files."""

    name = "tensorboard"

    def __init__(self, store: RunStore, logdir: Path, *, live: bool) -> None:
        self.store = store
        self.logdir = logdir
        self.live = live
        self.writer: Any = None

    def _open(self, event: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        earlier = self.live and any(self.logdir.glob("events.out.tfevents.*"))
        purge = int(event.get("step", 0)) + 1 if earlier else None
        self.writer = SummaryWriter(log_dir=str(self.logdir), purge_step=purge, flush_secs=10)
        if purge is None:
            params = config_params(json.loads((self.store.root / "config.json").read_text()))
            table = "| key | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in params.items())
            self.writer.add_text("config", table, global_step=0)

    def event(self, event: dict[str, Any]) -> None:
        if self.writer is None:
            self._open(event)
        step = int(event.get("step", 0))
        wall = event.get("time")
        for tag, value in scalars(event).items():
            self.writer.add_scalar(tag, value, global_step=step, walltime=wall)
        if event.get("type") == "start":
            facts = {k: v for k, v in event.items() if k not in ("id", "time", "type")}
            self.writer.add_text("run", f"```\n{json.dumps(facts, indent=1)}\n```", global_step=step, walltime=wall)
        elif event.get("type") == "error":
            self.writer.add_text("error", str(event.get("message")), global_step=step, walltime=wall)

    def finish(self, state: str | None) -> None:
        """Close the writer; a run that ended (state not None) first gets its rationale pictures."""
        if self.writer is None:
            return
        if state is not None:
            step = int(self.store.status().get("step", 0))
            for caption, strip in rationale_pictures(self.store):
                self.writer.add_image(f"rationales/{caption}", strip, global_step=step, dataformats="HWC")
            text = rationale_markdown(self.store)
            if text:
                self.writer.add_text("rationales", text, global_step=step)
            self.writer.add_text("state", state, global_step=step)
        self.writer.close()
        self.writer = None

    def where(self) -> str:
        return str(self.logdir)
