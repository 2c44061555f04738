"""Experiment trackers: a run's events mirrored to TensorBoard and MLflow, live or after the fact.

Live: `train.track` (or, when that is empty, the REKD_TRACK environment variable, e.g.
"tensorboard,mlflow", so that a whole service mirrors every run) names the trackers; train()
opens them with open_tracking() and feeds them every event it stores. After the fact:
export_run() replays events.jsonl (`rekd export RUN --to tensorboard|mlflow`).

Both need the optional extra (pip install 'rekd[tracking]'); the libraries are imported only when a
tracker is asked for, so without the extra nothing changes. See docs/tracking.md for the tag names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, cast, get_args

from ..config import ExperimentConfig
from ..store.runstore import RunStore
from .mirror import Sink, Tracking

Tracker = Literal["tensorboard", "mlflow"]
TRACKERS: tuple[str, ...] = get_args(Tracker)
ENV = "REKD_TRACK"
TB_FOLDER = "tensorboard"  # the live TensorBoard logdir inside the run directory
# the module whose absence means the extra is missing
_NEEDS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


class TrackingUnavailable(RuntimeError):
    """A tracker was asked for but its library is not installed."""


def env_trackers(value: str | None = None) -> list[Tracker]:
    """The trackers REKD_TRACK names ("tensorboard,mlflow"; empty or unset: none)."""
    text = os.environ.get(ENV, "") if value is None else value
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"{ENV}: unknown tracker {name!r}; allowed: {', '.join(TRACKERS)} "
                             "(comma-separated)")
    return [cast(Tracker, n) for n in dict.fromkeys(names)]


def requested(cfg: ExperimentConfig) -> tuple[list[Tracker], str]:
    """(the trackers this run mirrors to, the setting that named them: train.track or REKD_TRACK)."""
    if cfg.train.track:
        return list(cfg.train.track), "train.track"
    return env_trackers(), ENV


def require(name: str, setting: str) -> None:
    """Import `name`'s library, or TrackingUnavailable naming the setting and the extra."""
    try:
        __import__(_NEEDS[name])
    except ImportError:
        raise TrackingUnavailable(f"{setting}: {name!r} needs the tracking extra: "
                                  "pip install 'rekd[tracking]'") from None


def _sink(name: str, store: RunStore, *, live: bool, where: str | None = None) -> Sink:
    if name == "tensorboard":
        from .tb_sink import TensorBoardSink

        logdir = store.root / TB_FOLDER if where is None else Path(where) / store.run_id
        return TensorBoardSink(store, logdir, live=live)
    from .mlflow_sink import MlflowSink

    return MlflowSink(store, where, live=live)


def open_tracking(cfg: ExperimentConfig, store: RunStore) -> Tracking:
    """The live mirror for one run: a Tracking that does nothing when no tracker is asked for."""
    names, setting = requested(cfg)
    for name in names:
        require(name, setting)
    return Tracking([_sink(name, store, live=True) for name in names])


def export_run(run_dir: Path, to: str, *, uri: str | None = None) -> str:
    """Replay the run's events.jsonl and artifacts into a tracker; returns where they went.

    to="tensorboard": event files in `uri`/<run id> (default: RUN/tensorboard); earlier event files
    there are removed first, so a re-export replaces (the live mirror's included: the export is the
    whole of events.jsonl). to="mlflow": a new MLflow run each time (tag rekd.source=export) in the
    store at `uri` (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the current folder)."""
    if to not in TRACKERS:
        raise ValueError(f"export --to: {to!r} is not a tracker; allowed: {', '.join(TRACKERS)}")
    store = RunStore(run_dir)
    if not (store.root / "config.json").exists() or not store.events_path.exists():
        raise ValueError(f"{run_dir} is not a run directory with events (no config.json or events.jsonl)")
    events = store.events()
    if not events:
        raise ValueError(f"{run_dir} has no events yet: nothing to export")
    require(to, "export --to")
    sink = _sink(to, store, live=False, where=uri)
    if to == "tensorboard":
        logdir = Path(sink.where())
        for old in logdir.glob("events.out.tfevents.*"):
            old.unlink()
    for event in events:
        sink.event(event)
    sink.finish(str(store.status().get("state") or "unknown"))
    return sink.where()
