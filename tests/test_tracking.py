"""Experiment trackers (rekd_core.tracking): a tiny real run mirrored live to TensorBoard and MLflow,
read back with TensorBoard's own reader and MlflowClient on a real SQLite tracking store; the same
run exported after the fact by the `rekd export` command; the missing extra; a tracker that fails."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_vision
from rekd_core.config import parse_config
from rekd_core.store.runstore import RunStore
from rekd_core.train.trainer import train

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from rekd_core.tracking import (  # noqa: E402
    ENV,
    TrackingUnavailable,
    env_trackers,
    export_run,
    open_tracking,
)

REPO = Path(__file__).resolve().parents[1]


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The figures a tracker must show, read straight from events.jsonl (tag: [(step, value)])."""
    out: dict[str, list[tuple[int, float]]] = {}
    for e in _events(run):
        if e["type"] == "log":
            pairs = {"loss/total": e["loss"]["total"], "loss/select": e["loss"]["select"], "tau": e["tau"],
                     "selected/mean": e["selected"]["mean"], "train/accuracy": e["train_acc"], "lr": e["lr"]}
        elif e["type"] == "eval":
            pairs = {"eval/dev/accuracy": e["accuracy"], "eval/dev/macro_f1": e["macro_f1"],
                     "eval/dev/faithfulness/comprehensiveness": e["faithfulness"]["comprehensiveness"],
                     "eval/dev/probe/accuracy": e["probe"]["accuracy"]}
        elif e["type"] == "test":
            pairs = {"test/accuracy": e["accuracy"]}
        else:
            continue
        for tag, value in pairs.items():
            out.setdefault(tag, []).append((e["step"], float(value)))
    return out


def _check_tensorboard(logdir: Path, run: Path) -> EventAccumulator:
    files = list(logdir.glob("events.out.tfevents.*"))
    assert files, f"no event file in {logdir}"
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag, want in _expected(run).items():
        assert tag in scalars, (tag, sorted(scalars))
        got = [(s.step, s.value) for s in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want], tag  # every step once, in order
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), tag
    assert "config" in " ".join(acc.Tags()["tensors"])  # the config as a text summary
    images = acc.Tags()["images"]
    assert len(images) == 8 and all(t.startswith("rationales/") for t in images)
    img = acc.Images(images[0])[-1]
    assert img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and img.width > img.height > 28
    return acc


def _check_mlflow(client: MlflowClient, run_id: str, run: Path, *, source: str) -> None:
    mrun = client.get_run(run_id)
    assert mrun.info.status == "FINISHED"
    assert mrun.data.tags["rekd.run_id"] == run.name and mrun.data.tags["rekd.source"] == source
    assert mrun.data.tags["rekd.state"] == "completed" and mrun.data.tags["rekd.device"] == "cpu"
    params = mrun.data.params
    cfg = json.loads((run / "config.json").read_text())
    assert params["train.batch_size"] == str(cfg["train"]["batch_size"])
    assert params["model.student.embed_dim"] == "32" and params["mode"] == "re"
    assert params["data.dataset"] == "fashion_mnist" and params["optim.lr"] == "0.003"
    for tag, want in _expected(run).items():
        hist = sorted(client.get_metric_history(run_id, tag), key=lambda m: m.step)
        assert [m.step for m in hist] == [s for s, _ in want], tag
        assert [m.value for m in hist] == pytest.approx([v for _, v in want], rel=1e-6), tag
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.json", "results.json", "events.jsonl", "rationales.jsonl", "rationales"} <= top
    pngs = [a.path for a in client.list_artifacts(run_id, "rationales")]
    assert len(pngs) == 8 and all(p.endswith(".png") for p in pngs)
    local = Path(client.download_artifacts(run_id, "rationales.jsonl"))
    lines = [json.loads(x) for x in local.read_text().splitlines()]
    assert len(lines) == 8 and {"label_name", "student"} <= set(lines[0])
    assert lines[0]["student"]["rationale_patches"] == [j for j, m in enumerate(lines[0]["student"]["mask"]) if m]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny vision RE run mirrored live to both trackers (MLflow: a SQLite store in tmp)."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        mp.delenv(ENV, raising=False)
        run = root / "run"
        res = train(parse_config(tiny_vision("re", track=["tensorboard", "mlflow"])), run)
    assert res["state"] == "completed"
    return run, uri


def test_live_tensorboard_holds_every_step_of_events_jsonl(tracked):
    run, _ = tracked
    _check_tensorboard(run / "tensorboard", run)


def test_live_mlflow_run_holds_params_metrics_and_artifacts(tracked):
    run, uri = tracked
    saved = json.loads((run / "tracking.json").read_text())["mlflow"]
    assert saved["tracking_uri"] == uri
    client = MlflowClient(tracking_uri=uri)
    assert client.get_experiment(saved["experiment_id"]).name == "rekd"
    found = client.search_runs([saved["experiment_id"]], f"tags.`rekd.run_id` = '{run.name}'")
    assert [r.info.run_id for r in found] == [saved["run_id"]]
    _check_mlflow(client, saved["run_id"], run, source="live")
    # artifacts beside the database, not in whatever folder the test ran from
    assert (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / saved["run_id"]).is_dir()


def _rekd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rekd", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, **(env or {})})


def test_export_to_tensorboard_replays_events_and_replaces_on_reexport(tracked, tmp_path):
    run, _ = tracked
    out = _rekd("export", str(run), "--to", "tensorboard", "--tracking-uri", str(tmp_path / "tb"))
    assert out.returncode == 0, out.stderr
    logdir = Path(out.stdout.strip().splitlines()[-1])
    assert logdir == tmp_path / "tb" / run.name
    _check_tensorboard(logdir, run)
    assert export_run(run, "tensorboard", uri=str(tmp_path / "tb")) == str(logdir)  # again, in-process
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # replaced, not doubled
    _check_tensorboard(logdir, run)


def test_export_to_mlflow_makes_a_new_run_with_the_same_figures(tracked, tmp_path):
    run, _ = tracked
    uri = f"sqlite:///{tmp_path / 'exported.db'}"
    out = _rekd("export", str(run), "--to", "mlflow", env={"MLFLOW_TRACKING_URI": uri,
                                                           "MLFLOW_EXPERIMENT_NAME": "exports"})
    assert out.returncode == 0, out.stderr
    printed = out.stdout.strip().splitlines()[-1]
    assert printed.startswith(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exports")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and printed.endswith(runs[0].info.run_id)
    _check_mlflow(client, runs[0].info.run_id, run, source="export")


def test_missing_extra_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the tracking extra were not installed
    monkeypatch.delenv(ENV, raising=False)
    cfg = parse_config(tiny_vision("re", track=["mlflow"]))
    with pytest.raises(TrackingUnavailable, match=r"train\.track: 'mlflow' needs the tracking extra: "
                                                   r"pip install 'rekd\[tracking\]'"):
        open_tracking(cfg, RunStore.create(tmp_path / "a", cfg))
    # through train(): the run fails at once, its status saying why
    with pytest.raises(TrackingUnavailable):
        train(cfg, tmp_path / "b")
    status = RunStore(tmp_path / "b").status()
    assert status["state"] == "failed" and "train.track" in status["error"] and "rekd[tracking]" in status["error"]
    # the service-wide setting names itself
    monkeypatch.setenv(ENV, "mlflow")
    plain = parse_config(tiny_vision("re"))
    with pytest.raises(TrackingUnavailable, match=f"{ENV}: 'mlflow' needs the tracking extra"):
        open_tracking(plain, RunStore.create(tmp_path / "c", plain))


def test_no_tracker_asked_for_imports_nothing_and_starts_no_thread(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delenv(ENV, raising=False)
    cfg = parse_config(tiny_vision("re"))
    tracking = open_tracking(cfg, RunStore.create(tmp_path / "run", cfg))
    assert tracking.sinks == [] and tracking._thread is None
    tracking({"type": "log", "step": 1})
    tracking.close()
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "tracking.json").exists()


def test_track_settings_are_checked():
    assert env_trackers("tensorboard, MLflow,tensorboard") == ["tensorboard", "mlflow"]
    assert env_trackers("") == []
    with pytest.raises(ValueError, match=r"REKD_TRACK: unknown tracker 'wandb'; allowed: tensorboard, mlflow"):
        env_trackers("wandb")
    assert parse_config(tiny_vision("re", track="tensorboard,mlflow")).train.track == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError, match=r"train\.track"):
        parse_config(tiny_vision("re", track=["wandb"]))


def test_export_refuses_what_is_not_a_run_or_a_tracker(tmp_path, tracked):
    with pytest.raises(ValueError, match="not a run directory"):
        export_run(tmp_path, "tensorboard")
    with pytest.raises(ValueError, match=r"export --to: 'wandb' is not a tracker; allowed: tensorboard, mlflow"):
        export_run(tracked[0], "wandb")


def test_a_tracker_that_fails_does_not_fail_the_run(tmp_path, monkeypatch, caplog):
    """MLflow server down (nothing listens on the port): the run completes, TensorBoard still gets
    everything, and the failure is one warning. The trackers come from REKD_TRACK, as in a service."""
    monkeypatch.setenv(ENV, "mlflow,tensorboard")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: refused at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="rekd_core.tracking"):
        res = train(parse_config(tiny_vision("re")), run)
    assert res["state"] == "completed" and RunStore(run).status()["state"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if "tracking: mlflow failed" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    _check_tensorboard(run / "tensorboard", run)


def test_resumed_run_continues_the_same_mlflow_run_and_tensorboard_folder(tmp_path, monkeypatch):
    """A worker loses the run after step 4 (preempted: it writes nothing more), its checkpoint is at
    step 3; the resumed run replays step 4. Both trackers continue where they were and show each
    step once, as events.jsonl does."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(ENV, raising=False)
    cfg = parse_config(tiny_vision("re", track=["tensorboard", "mlflow"]))
    run = tmp_path / "run"
    calls = iter(range(100))
    first = train(cfg, run, should_stop=lambda: "preempt" if next(calls) == 5 else False)
    assert first == {"state": "preempted", "step": 5}
    saved = json.loads((run / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(saved["run_id"]).info.status == "RUNNING"  # not ended: someone resumes it
    assert [m.step for m in client.get_metric_history(saved["run_id"], "loss/total")] == [2, 4]
    assert train(cfg, run)["state"] == "completed"
    assert json.loads((run / "tracking.json").read_text())["mlflow"] == saved
    assert len(client.search_runs([saved["experiment_id"]])) == 1
    assert [e["step"] for e in _events(run) if e["type"] == "log"] == [2, 4, 6]
    _check_tensorboard(run / "tensorboard", run)  # every step once
    _check_mlflow(client, saved["run_id"], run, source="live")


def test_text_rationales_are_highlighted(tmp_path):
    """A text run's artifacts: the selected tokens marked in the HTML page and bold in TensorBoard's text
    (pure logic on a hand-written snapshot, so that the masks are known)."""
    from rekd_core.tracking.artifacts import rationale_markdown, write_artifacts

    store = RunStore(tmp_path / "run")
    store.examples.mkdir(parents=True)
    positions = [{"index": i, "token": t, "span": [0, 0], "selectable": i > 0}
                 for i, t in enumerate(["[CLS]", "a", "<great>", "film"])]
    (store.examples / "inputs.json").write_text(json.dumps({
        "split": "dev", "rows": [7], "labels": [1], "class_names": ["neg", "pos"], "modality": "text",
        "num_positions": 4, "items": [{"text": "a <great> film", "positions": positions}]}))
    (store.examples / "step-0000005.json").write_text(json.dumps({
        "step": 5, "tau": 0.1, "labels": [1], "teacher": None,
        "student": {"pred": [1], "probs": [[0.2, 0.8]], "mask": [[0, 0, 1, 0]], "sel_prob": [[0, 0.1, 0.9, 0.2]]}}))
    written = {p.name: p for p in write_artifacts(store, tmp_path / "out")}
    assert set(written) == {"rationales.jsonl", "rationales.html"}  # no config/results in this bare folder
    line = json.loads(written["rationales.jsonl"].read_text())
    assert line["step"] == 5 and line["label_name"] == "pos" and line["student"]["rationale_tokens"] == ["<great>"]
    page = written["rationales.html"].read_text()
    assert "a <mark>&lt;great&gt;</mark> film" in page and "<great>" not in page  # escaped
    assert "a **<great>** film" in rationale_markdown(store)


@pytest.mark.service
def test_a_service_worker_mirrors_every_run_by_rekd_track(tmp_path):
    """The real service (redis, Celery worker, API): REKD_TRACK in the worker's environment mirrors a
    run submitted over HTTP whose config names no tracker."""
    from tests.support.service import launch_run, sse_events, start_service  # imported here: the harness
    # at module level would mark every test of this file `service`

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    svc = start_service(tmp_path, workers=1, REKD_TRACK="tensorboard,mlflow", MLFLOW_TRACKING_URI=uri)
    try:
        with svc.client() as c:
            run_id = launch_run(c, tiny_vision("re"))
            events = sse_events(c, run_id, timeout=300)
        assert events[-1]["type"] == "finished" and events[-1]["state"] == "completed"
    finally:
        svc.stop()
    run = svc.runs_dir / run_id
    assert json.loads((run / "config.json").read_text())["train"]["track"] == []
    _check_tensorboard(run / "tensorboard", run)
    saved = json.loads((run / "tracking.json").read_text())["mlflow"]
    _check_mlflow(MlflowClient(tracking_uri=uri), saved["run_id"], run, source="live")
