"""Events as one MLflow run (through MlflowClient: no global active run, so several runs in one
process never cross). Named mlflow_sink so that it cannot shadow the `mlflow` library."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..store.atomic import atomic_write_json
from ..store.runstore import RunStore
from .artifacts import write_artifacts
from .events import config_params, scalars, start_tags

DEFAULT_EXPERIMENT = "rekd"  # MLFLOW_EXPERIMENT_NAME, when set, wins
STATE_FILE = "tracking.json"  # in the run directory: the live MLflow run a resumed run continues
# rekd's terminal states as MLflow run statuses
_STATUS = {"completed": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
_MAX_PARAM = 6000  # MLflow's longest param value
_BATCH_PARAMS = 100  # MLflow's most params in one log_batch


def tracking_uri(uri: str | None) -> str:
    """`uri`, else MLFLOW_TRACKING_URI, else MLflow's own default (sqlite:///mlflow.db in the current
    directory; ./mlruns where that folder already holds MLflow data)."""
    if uri:
        return uri
    import mlflow

    return str(mlflow.get_tracking_uri())


def _artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts beside the database (mlartifacts/) rather than MLflow's
    default ./mlruns under whatever the current directory is; None: the store's own default."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.resolve().parent / "mlartifacts").as_uri()


def experiment_id(client: Any, uri: str) -> str:
    """The id of the experiment runs go to (MLFLOW_EXPERIMENT_NAME, else "rekd"), created if missing."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=_artifact_root(uri)))
    except Exception:  # another process created it between the two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


class MlflowSink:
    """Mirrors one rekd run into one MLflow run: params = the flattened config, metrics per step,
    tags from the start event, and at the end the artifacts (artifacts.write_artifacts) and the
    run's status (FINISHED, FAILED or KILLED).

    live=True: the MLflow run's id is kept in RUN/tracking.json, and a resumed run continues that
    MLflow run; live=False (export): always a new MLflow run."""

    name = "mlflow"

    def __init__(self, store: RunStore, uri: str | None, *, live: bool) -> None:
        self.store = store
        self.uri = tracking_uri(uri)
        self.live = live
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.logged: dict[str, int] = {}  # a continued MLflow run: per metric, the last step it holds

    def _previous(self) -> str | None:
        """The MLflow run this rekd run mirrored into before (same store), if it still exists."""
        path = self.store.root / STATE_FILE
        if not self.live or not path.exists():
            return None
        saved = json.loads(path.read_text()).get("mlflow") or {}
        if saved.get("tracking_uri") != self.uri or not saved.get("run_id"):
            return None
        try:
            run = self.client.get_run(saved["run_id"])
        except Exception:  # deleted from the store: start a new one
            return None
        self.experiment_id = run.info.experiment_id
        return str(saved["run_id"])

    def _open(self) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=self.uri)
        previous = self._previous()
        if previous is not None:
            self.run_id = previous
            self.client.update_run(previous, status="RUNNING")
            # a process that died after its last checkpoint logged steps the resumed run replays (with
            # the same values: resume is exact on CPU); MLflow cannot drop points, so skip those steps
            for key in self.client.get_run(previous).data.metrics:
                steps = [m.step for m in self.client.get_metric_history(previous, key)]
                self.logged[key] = max(steps, default=-1)
            return
        self.experiment_id = experiment_id(self.client, self.uri)
        cfg = json.loads((self.store.root / "config.json").read_text())
        tags = {"rekd.run_id": self.store.run_id, "rekd.run_dir": str(self.store.root.resolve()),
                "rekd.source": "live" if self.live else "export", "rekd.name": str(cfg.get("name")),
                "rekd.task": str(cfg.get("task")), "rekd.mode": str(cfg.get("mode")),
                "rekd.dataset": str(cfg.get("data", {}).get("dataset"))}
        run = self.client.create_run(self.experiment_id, run_name=self.store.run_id, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k[:250], v[:_MAX_PARAM]) for k, v in config_params(cfg).items()]
        for i in range(0, len(params), _BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + _BATCH_PARAMS])
        if self.live:
            atomic_write_json(self.store.root / STATE_FILE,
                              {"mlflow": {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                                          "run_id": self.run_id}})

    def event(self, event: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        if self.client is None:
            self._open()
        assert self.run_id is not None
        ms = int(float(event.get("time", 0)) * 1000)
        step = int(event.get("step", 0))
        metrics = [Metric(tag, value, ms, step) for tag, value in scalars(event).items()
                   if step > self.logged.get(tag, -1)]
        tags: list[Any] = []
        if event.get("type") == "start":
            tags = [RunTag(k, v[:_MAX_PARAM]) for k, v in start_tags(event).items()]
        elif event.get("type") == "error":
            tags = [RunTag("rekd.error", str(event.get("message"))[:_MAX_PARAM])]
        elif event.get("type") == "finished":
            tags = [RunTag("rekd.state", str(event.get("state")))]
        if metrics or tags:
            self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def finish(self, state: str | None) -> None:
        """Log the artifacts and set the MLflow status when the run has ended (state: its final
        state); None (suspended, handed to another worker): leave the MLflow run RUNNING."""
        if self.client is None or self.run_id is None or state is None:
            return
        with tempfile.TemporaryDirectory(prefix="rekd-track-") as tmp:
            write_artifacts(self.store, Path(tmp))
            self.client.log_artifacts(self.run_id, tmp)
        status = _STATUS.get(state)
        if status is not None:
            self.client.set_terminated(self.run_id, status=status)

    def where(self) -> str:
        return f"{self.uri} experiment {self.experiment_id} run {self.run_id}"
