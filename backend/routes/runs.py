"""Runs: launch, list, inspect, cancel, delete, and the live event stream (SSE)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from rekd_core.analysis.quality import run_warnings
from rekd_core.checks import RunRefused, check_model_size, outside_roots
from rekd_core.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_to_dict,
    excerpt,
    parse_config,
    teacher_mismatch,
)
from rekd_core.data.spec import dataset_label
from rekd_core.presets import PRESETS, get_preset
from rekd_core.store.runstore import RUN_ID_RE, TERMINAL_STATES, RunStore, new_run_id, now_iso
from rekd_core.train.init_from import init_mismatch
from service import keys
from service.events import StreamPublisher
from service.keys import TRAIN_TASK
from service.lease import Lease
from service.send import client
from service.settings import Settings

from ..deps import AsyncRedisDep, SettingsDep, SyncRedisDep, TokenDep
from ..quality import RationaleWarning, warnings_out
from ..runs_fs import run_dir_or_404
from .datasets import check_dataset, check_paths, outside_message

log = logging.getLogger(__name__)
router = APIRouter(tags=["runs"])
OVERRIDE_KEY = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"


def refuse_null(value: Any) -> Any:
    """A `mode="before"` field validator: an optional key is left out, never sent as null (the schema,
    SkipJsonSchema[None], says so too); the default None, meaning absent, is not validated."""
    if value is None:
        raise ValueError("null is not allowed: leave the key out instead")
    return value


def overrides_field(description: str = "`{\"optim.lr\": 3e-4}` or `[\"optim.lr=3e-4\"]`") -> Any:
    """`overrides` as every request body takes it; the schema states the shape of a key.path."""
    return Field(default_factory=list, description=description, json_schema_extra={"anyOf": [
        {"type": "object", "propertyNames": {"pattern": f"^\\s*{OVERRIDE_KEY}\\s*$"}, "additionalProperties": True},
        {"type": "array", "items": {"type": "string", "pattern": f"^\\s*{OVERRIDE_KEY}\\s*="}}]})


class RunCreate(BaseModel):
    """A full config, or a preset name plus overrides (`{"optim.lr": 3e-4}` or `["optim.lr=3e-4"]`):
    exactly one of `config` and `preset`. Any other key is refused (422 naming it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["config"]}, {"required": ["preset"]}]})

    config: dict[str, Any] | SkipJsonSchema[None] = Field(
        None, description="a full experiment config (GET /api/config/schema)")
    preset: str | SkipJsonSchema[None] = Field(None, description="a preset name (GET /api/presets)",
                                               json_schema_extra={"enum": list(PRESETS)})
    overrides: dict[str, Any] | list[str] = overrides_field()

    _given = field_validator("config", "preset", mode="before")(refuse_null)

    @model_validator(mode="after")
    def _one(self) -> RunCreate:
        if (self.config is None) == (self.preset is None):
            raise ValueError("give exactly one of `config` or `preset`")
        return self


class RunCreated(BaseModel):
    id: str
    state: str


class RunSummary(BaseModel):
    id: str
    name: str | None = None
    state: str
    mode: str | None = None
    task: str | None = None
    dataset: str | None = None
    step: int = 0
    total_steps: int | None = None
    progress: float = 0.0
    tau: float | None = None
    best_dev_accuracy: float | None = None
    test_accuracy: float | None = None
    attempts: int = 0
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    waiting_for: str | None = Field(None, description="queued until this teacher run completes")
    cloned_from: str | None = Field(None, description="the run this one was cloned from")
    warnings: list[RationaleWarning] = Field(
        default_factory=list, description="whether the rationale is real: the test result's warnings once the run "
                                          "has completed, else its latest dev evaluation's ([] when none; always [] "
                                          "for CLS runs); details in GET /api/runs/{id}/quality")


class RunDetail(RunSummary):
    config: dict[str, Any]
    results: dict[str, Any] | None = None


class CancelResult(BaseModel):
    id: str
    state: str


def summarize(root: Path) -> RunSummary:
    store = RunStore(root)
    st = store.status()
    try:
        cfg = json.loads((root / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        cfg = {}
    total = st.get("total_steps")
    step = int(st.get("step", 0))
    best = st.get("best_dev") or {}
    test = st.get("test") or {}
    return RunSummary(
        id=root.name, name=cfg.get("name"), state=st.get("state", "unknown"), mode=cfg.get("mode"),
        task=cfg.get("task"), dataset=dataset_label((cfg.get("data") or {}).get("dataset") or "") or None,
        step=step, total_steps=total,
        progress=min(step / total, 1.0) if total else 0.0, tau=st.get("tau"),
        best_dev_accuracy=best.get("accuracy") if best.get("accuracy", -1) >= 0 else None,
        test_accuracy=test.get("accuracy"), attempts=int(st.get("attempts", 0)), created=st.get("created"),
        started=st.get("started"), finished=st.get("finished"), error=st.get("error"),
        waiting_for=st.get("waiting_for"), cloned_from=st.get("cloned_from"),
        warnings=warnings_out(run_warnings(root, st)),
    )


def _enqueue(run_id: str, queue: str) -> None:
    client().send_task(TRAIN_TASK, args=[run_id], queue=queue)


def override_strings(overrides: dict[str, Any] | list[str]) -> list[str]:
    """`{"optim.lr": 3e-4}` or `["optim.lr=3e-4"]` as `key=value` strings."""
    if isinstance(overrides, list):
        return overrides
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]


def _config_from(body: RunCreate) -> Any:
    overrides = override_strings(body.overrides)
    try:
        if body.preset is not None:
            return get_preset(body.preset).build(overrides)
        return parse_config(apply_overrides(body.config or {}, overrides))
    except ConfigError as err:
        where = "preset" if body.preset is not None and "unknown preset" in str(err) else "config"
        raise HTTPException(422, [{"loc": ["body", where, *e["field"].split(".")], "msg": e["message"],
                                   "type": "value_error"} for e in err.errors]) from None


def _teacher_refused(msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", "config", "model", "teacher_run"], "msg": msg,
                                "type": "value_error"}])


def resolve_teacher(cfg: ExperimentConfig, settings: Settings) -> ExperimentConfig:
    """A distilled run's teacher as an absolute run directory, checked now rather than on a worker.

    `model.teacher_run` may name a run of this service by id, or give a directory. The teacher
    must be an RE run that has not ended without completing; one still queued or running is
    fine: the worker waits for it.
    """
    given = cfg.model.teacher_run
    if cfg.mode != "rekd" or not given:
        return resolve_init(cfg, settings)
    path = run_path(given, settings, _teacher_refused)
    teacher = _run_config(path, given, _teacher_refused)
    why = teacher_mismatch(cfg, teacher)  # the trainer's own check (it compares the classes too)
    if why:
        raise _teacher_refused(f"teacher run {excerpt(path.name)}: {why}")
    state = RunStore(path).status().get("state")
    if state in ("failed", "cancelled"):
        raise _teacher_refused(f"teacher run {excerpt(path.name)} ended {state}; distil from a completed (or still "
                               "queued or running) RE run")
    data = config_to_dict(cfg)
    data["model"]["teacher_run"] = str(path)
    return resolve_init(parse_config(data), settings)


def run_path(given: str, settings: Settings, refused: Any) -> Path:
    """A run named by id (under the runs directory) or by path: a path must lie inside the runs
    directory or a data root (checked before anything under it is read)."""
    by_id = settings.runs_dir / given
    if RUN_ID_RE.fullmatch(given) and (by_id / "config.json").is_file():
        return by_id.resolve()
    neither = f"{excerpt(given)!r} is neither a run id under the runs directory nor an existing directory"
    if outside_roots(given, settings.allowed_run_roots()):  # nothing there is looked at
        raise refused(neither if RUN_ID_RE.fullmatch(given) else outside_message(given, settings, "runs"))
    if Path(given).is_dir():
        return Path(given).resolve()
    raise refused(neither)


def _run_config(path: Path, given: str, refused: Any) -> ExperimentConfig:
    try:
        return parse_config(json.loads((path / "config.json").read_text()))
    except (OSError, ValueError):  # unreadable, not JSON, or not a config: never quoted
        raise refused(f"{excerpt(given)!r} is not a run directory (no readable config.json holding a "
                      "run config)") from None


def resolve_init(cfg: ExperimentConfig, settings: Settings) -> ExperimentConfig:
    """`model.init_from` as an absolute run directory (a run id of this service, or a directory) that
    holds a checkpoint, checked now rather than on a worker."""
    given = cfg.model.init_from
    if not given:
        return cfg

    def refused(msg: str) -> HTTPException:
        return HTTPException(422, [{"loc": ["body", "config", "model", "init_from"], "msg": msg,
                                    "type": "value_error"}])

    path = run_path(given, settings, refused)
    if not any((path / "checkpoints" / f"{k}.safetensors").exists() for k in ("best", "last")):
        raise refused(f"run {excerpt(path.name)} has no checkpoint to start from (train it first)")
    theirs = _run_config(path, given, refused)
    why = init_mismatch(cfg, theirs.model.student.model_dump(mode="json"))  # the trainer's own check
    if why:
        raise refused(f"run {excerpt(path.name)}: {why}")
    data = config_to_dict(cfg)
    data["model"]["init_from"] = str(path)
    return parse_config(data)


@router.post("/api/runs", status_code=201, response_model=RunCreated, dependencies=[TokenDep],
             responses={422: {"description": "invalid config: each error names its field"}})
def create_run(body: RunCreate, settings: SettingsDep, response: Response) -> RunCreated:
    return _launch(body, settings, response)


class RunClone(BaseModel):
    """Changes to the cloned config, as in `POST /api/runs` (`{"optim.lr": 3e-4}` or `["seed=1"]`)."""

    model_config = ConfigDict(extra="forbid")

    overrides: dict[str, Any] | list[str] = overrides_field()


@router.post("/api/runs/{run_id}/clone", status_code=201, response_model=RunCreated, dependencies=[TokenDep],
             responses={404: {"description": "no such run"},
                        422: {"description": "an override is invalid: each error names its field"}})
def clone_run(run_id: str, settings: SettingsDep, response: Response, body: RunClone | None = None) -> RunCreated:
    """Queue a new run with this run's exact config (finished, failed or cancelled alike), edited by
    `overrides`; the new run records where it came from (`cloned_from`)."""
    root = run_dir_or_404(settings, run_id)
    cfg = json.loads((root / "config.json").read_text())
    return _launch(RunCreate(config=cfg, overrides=body.overrides if body else []), settings, response,
                   cloned_from=run_id)


def check_size(configs: list[ExperimentConfig], settings: Settings, loc: list[str]) -> None:
    """422 at model.student for a model over REKD_MAX_PARAMS, or one that cannot be built (the
    worker's own check, rekd_core.checks.check_model_size; each distinct model counted once)."""
    seen: set[str] = set()
    for cfg in configs:
        key = json.dumps([cfg.task, cfg.mode, config_to_dict(cfg)["model"], cfg.data.tokenizer, cfg.data.max_len,
                          cfg.data.dataset])
        if key in seen:
            continue
        seen.add(key)
        try:
            check_model_size(cfg, settings.max_params, fetch=False)
        except RunRefused as err:
            raise HTTPException(422, [{"loc": [*loc, *err.field.split(".")], "msg": err.message,
                                       "type": "value_error"}]) from None


def check_teachers(pairs: list[tuple[ExperimentConfig, ExperimentConfig]], loc: list[str]) -> None:
    """422 at model.teacher_run when a planned student (a pipeline's, a sweep's) does not fit the
    teacher planned with it (rekd_core.checks.teacher_mismatch, the trainer's own check)."""
    errors: dict[str, None] = {}
    for student, teacher in pairs:
        why = teacher_mismatch(student, teacher)
        if why:
            errors[f"{excerpt(student.name)}: {why}"] = None
    if errors:
        raise HTTPException(422, [{"loc": [*loc, "model", "teacher_run"], "msg": msg, "type": "value_error"}
                                  for msg in errors])


def admit(cfg: ExperimentConfig, settings: Settings) -> ExperimentConfig:
    """Every check a worker would make before training, made now: the paths it names (nothing
    outside the data roots is read), its teacher and init run, its data (user data read whole, a
    built-in dataset's files present), its size. A failure is a 422 at the field."""
    check_paths(cfg, settings, ["body", "config"])
    cfg = check_dataset(resolve_teacher(cfg, settings), settings)
    check_size([cfg], settings, ["body", "config"])
    return cfg


def _launch(body: RunCreate, settings: Settings, response: Response, **status: Any) -> RunCreated:
    cfg = admit(_config_from(body), settings)
    run_id = new_run_id(cfg.name)
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore.create(settings.run_dir(run_id), cfg)
    if status:
        store.write_status(**status)  # before it is queued: no worker writes the status yet
    try:
        _enqueue(run_id, settings.queue)
    except Exception as err:  # broker unreachable: the run stays on disk, marked, not silently lost
        RunStore(settings.run_dir(run_id)).write_status(state="failed", error=f"could not queue: {err}",
                                                        finished=now_iso())
        raise HTTPException(503, f"the queue is unreachable ({err}); the run was recorded as failed") from None
    response.headers["Location"] = f"/api/runs/{run_id}"
    return RunCreated(id=run_id, state="queued")


@router.get("/api/runs", response_model=list[RunSummary])
def list_runs(settings: SettingsDep) -> list[RunSummary]:
    if not settings.runs_dir.exists():
        return []
    runs = [summarize(p.parent) for p in settings.runs_dir.glob("*/config.json")]
    return sorted(runs, key=lambda r: r.created or "", reverse=True)


@router.get("/api/runs/{run_id}", response_model=RunDetail, responses={404: {"description": "no such run"}})
def get_run(run_id: str, settings: SettingsDep) -> RunDetail:
    root = run_dir_or_404(settings, run_id)
    cfg = json.loads((root / "config.json").read_text())
    return RunDetail(**summarize(root).model_dump(), config=cfg, results=RunStore(root).results())


@router.post("/api/runs/{run_id}/cancel", response_model=CancelResult, status_code=202, dependencies=[TokenDep],
             responses={404: {"description": "no such run"}, 409: {"description": "the run has already ended"}})
def cancel_run(run_id: str, settings: SettingsDep, r: SyncRedisDep) -> CancelResult:
    root = run_dir_or_404(settings, run_id)
    state = RunStore(root).status().get("state")
    if state in TERMINAL_STATES:
        raise HTTPException(409, f"run {run_id} has already ended ({state})")
    return CancelResult(id=run_id, state=cancel_one(root, settings, r))


def cancel_one(root: Path, settings: Settings, r: Any) -> str:
    """Cancel a run that has not ended: "cancelled" if it had not started, else "cancelling"."""
    run_id = root.name
    store = RunStore(root)
    r.set(keys.cancel(run_id), "1", ex=7 * 24 * 3600)
    # Not started yet? Take its lease for a moment so no worker can start it meanwhile, and
    # end it here; a worker that receives its message later finds it cancelled and skips it.
    lease = Lease(r, run_id, "api-cancel", ttl_s=10)
    if lease.acquire():
        try:
            if store.status().get("state") == "queued":
                store.write_status(state="cancelled", finished=now_iso())
                publish = StreamPublisher(r, run_id, settings.stream_maxlen)
                publish(store.append_event({"type": "finished", "step": 0, "state": "cancelled"}))
                return "cancelled"
        finally:
            lease.release()
    return "cancelling"  # the worker stops at its next step


@router.delete("/api/runs/{run_id}", status_code=204, dependencies=[TokenDep],
               responses={404: {"description": "no such run"}, 409: {"description": "the run has not ended"}})
def delete_run(run_id: str, settings: SettingsDep, r: SyncRedisDep) -> Response:
    root = run_dir_or_404(settings, run_id)
    state = RunStore(root).status().get("state")
    if state not in TERMINAL_STATES:
        raise HTTPException(409, f"run {run_id} is {state}; cancel it first, then delete it")
    shutil.rmtree(root)
    try:
        r.delete(keys.stream(run_id), keys.cancel(run_id))
    except redis.RedisError:
        pass  # the stream expires on its own
    return Response(status_code=204)


# --- Server-Sent Events -----------------------------------------------------------------------

class _FileTail:
    """New events of a run's events.jsonl since the last read (the durable copy of the stream)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # rewritten on resume: read it again, ids already sent are skipped
            self.offset = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line being written is read next time
        self.offset += end
        out = []
        for line in chunk[:end].splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def _sse(event: dict[str, Any]) -> ServerSentEvent:
    # raw_data: the data line is the event exactly as events.jsonl holds it (the stream equals the record)
    return ServerSentEvent(id=str(event["id"]), event=event["type"], raw_data=json.dumps(event))


async def event_stream(root: Path, run_id: str, last: int, r: Any) -> AsyncIterator[ServerSentEvent]:
    """Every event with id > last, exactly once, ending after the `finished` event.

    The file is read first (late joiners and finished runs), then the live Redis stream is
    followed with blocking reads; if Redis is away or an id is skipped, the file fills in.
    FastAPI frames each event and sends a `: ping` comment after 15 s without one.
    """
    tail = _FileTail(root / "events.jsonl")
    key = keys.stream(run_id)
    yield ServerSentEvent(retry=1000)  # a browser's EventSource reconnects after 1 s, with Last-Event-ID
    while True:
        for ev in [e for e in tail.read() if e["id"] > last]:
            last = ev["id"]
            yield _sse(ev)
            if ev["type"] == "finished":
                return
        try:
            resp = await r.xread({key: f"{last}-0"}, block=1000, count=200)
        except (redis.RedisError, OSError):
            resp = None
            await asyncio.sleep(1.0)
        for _, entries in resp or []:
            for _sid, fields in entries:
                ev = json.loads(fields[b"data"] if b"data" in fields else fields["data"])
                if ev["id"] <= last:
                    continue
                if ev["id"] != last + 1:
                    break  # a gap in the live stream: the file has the missing ones (next loop)
                last = ev["id"]
                yield _sse(ev)
                if ev["type"] == "finished":
                    return


def _run_root(run_id: str, settings: SettingsDep) -> Path:
    # a dependency, so that an unknown run is a plain 404 before the stream (the generator) starts
    return run_dir_or_404(settings, run_id)


@router.get("/api/runs/{run_id}/events", response_class=EventSourceResponse, responses={
    200: {"description": "text/event-stream of the run's events: `id` (dense, from 1), `event` (the type) and "
                         "`data` (the event as JSON, as events.jsonl stores it); send `Last-Event-ID` (or "
                         "`?after=`) to resume after an id"},
    404: {"description": "no such run"}})
async def run_events(run_id: str, root: Annotated[Path, Depends(_run_root)], r: AsyncRedisDep,
                     last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
                     after: Annotated[int | None, Query(ge=0, description="same as Last-Event-ID")] = None,
                     ) -> AsyncIterable[ServerSentEvent]:
    last = last_event_id if last_event_id is not None else (after or 0)
    async for ev in event_stream(root, run_id, last, r):
        yield ev
