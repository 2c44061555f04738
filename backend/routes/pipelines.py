"""Pipelines: a teacher and the students that go with it, launched in one request.

The order lives in the broker, with Celery's own canvas: the teacher and the students that
distil from it go as one chain (the students are sent when the teacher's task returns), the
other students right away. The teacher's task returns whether its run completed or not, so the
worker checks the teacher's state before training a student (worker/runner.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from rekd_core.config import ConfigError, ExperimentConfig, override_key
from rekd_core.presets import PIPELINES, Pipeline, Stage, get_pipeline
from rekd_core.store.runstore import RunStore, new_run_id, now_iso
from service.send import client, send_run

from ..deps import SettingsDep, TokenDep
from .datasets import check_datasets
from .runs import check_size, check_teachers, override_strings, overrides_field

router = APIRouter(tags=["pipelines"])

# Each stage sets these itself: overriding them for every stage would turn the students into
# copies of one another or point the distilled one at another teacher.
RESERVED = ("mode", "name", "model.teacher_run")


class StageInfo(BaseModel):
    role: str = Field(description="teacher, cls, re or rekd")
    preset: str
    overrides: list[str] = Field(description="applied to the preset for this stage")
    needs_teacher: bool = Field(description="distils from the teacher stage's run (started after it)")


class PipelineInfo(BaseModel):
    name: str
    summary: str
    stages: list[StageInfo]


class PipelineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is refused by name, never ignored

    name: str = Field(description="a pipeline of `GET /api/pipelines`", examples=["demo-fmnist"],
                      json_schema_extra={"enum": list(PIPELINES)})
    overrides: dict[str, Any] | list[str] = overrides_field(
        "applied to every stage: `{\"train.seed\": 1}` or `[\"train.seed=1\"]`")


class PipelineRun(BaseModel):
    id: str
    role: str
    state: str


class PipelineCreated(BaseModel):
    name: str
    runs: list[PipelineRun] = Field(description="one run per stage, in stage order")


@router.get("/api/pipelines", response_model=list[PipelineInfo])
def list_pipelines() -> list[PipelineInfo]:
    return [PipelineInfo(name=p.name, summary=p.summary,
                         stages=[StageInfo(role=s.role, preset=s.preset, overrides=list(s.overrides),
                                           needs_teacher=s.needs_teacher) for s in p.stages])
            for p in PIPELINES.values()]


def _refused(loc: list[str | int], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


def _plan(pipeline: Pipeline, overrides: list[str], teacher_dir: str) -> list[ExperimentConfig]:
    """Every stage's config, or a 422 naming each refused override (all stages checked first)."""
    configs: list[ExperimentConfig] = []
    errors: dict[tuple[str, str], list[str]] = {}
    for stage in pipeline.stages:
        try:
            configs.append(stage.build(overrides, teacher_run=teacher_dir if stage.needs_teacher else None))
        except ConfigError as err:
            for e in err.errors:
                errors.setdefault((e["field"], e["message"]), []).append(stage.role)
    if errors:
        detail = []
        for (field, msg), roles in errors.items():
            if len(roles) < len(pipeline.stages):
                msg = f"{msg} (in stage{'s' if len(roles) > 1 else ''} {', '.join(roles)})"
            path = [] if field == "(config)" else field.split(".")
            detail.append(_refused(["overrides", *path], msg))
        raise HTTPException(422, detail)
    return configs


def send_pipeline(app: Any, queue: str, stages: list[tuple[Stage, str]]) -> None:
    """Queue the runs of one pipeline (stage, run id) on `app`'s broker, by task name
    (service/send.py): the API process never imports the task module (nor torch through it).
    """
    teacher = next(run_id for stage, run_id in stages if stage.role == "teacher")
    # the teacher first, the students that distil from it chained after it: it is the longest
    send_run(app, teacher, queue, [(run_id, queue) for stage, run_id in stages if stage.needs_teacher])
    for stage, run_id in stages:
        if stage.role != "teacher" and not stage.needs_teacher:
            send_run(app, run_id, queue)


def _enqueue(queue: str, stages: list[tuple[Stage, str]]) -> None:
    send_pipeline(client(), queue, stages)


@router.post("/api/pipelines", status_code=201, response_model=PipelineCreated, dependencies=[TokenDep],
             responses={422: {"description": "unknown pipeline or a refused override: each error names its field"},
                        503: {"description": "the queue is unreachable; the runs were recorded as failed"}})
def create_pipeline(body: PipelineCreate, settings: SettingsDep) -> PipelineCreated:
    try:
        pipeline = get_pipeline(body.name)
    except ConfigError as err:
        raise HTTPException(422, [_refused(["name"], str(err))]) from None
    overrides = override_strings(body.overrides)
    reserved = [_refused(["overrides", *key.split(".")], f"{key} is set by each stage of the pipeline")
                for key in map(override_key, overrides) if key in RESERVED]
    if reserved:
        raise HTTPException(422, reserved)
    # the teacher's id before the configs: the distilled students' configs name its directory
    # (its name is the stage's own: `name` is not overridable)
    teacher_id = new_run_id(pipeline.teacher.build().name)
    configs = _plan(pipeline, overrides, str(settings.run_dir(teacher_id).resolve()))
    # every check a worker would make, now: paths, data, each student against the teacher stage, size
    check_datasets(configs, settings)  # user data: a malformed file is refused now, not by every run later
    teacher_cfg = next(cfg for stage, cfg in zip(pipeline.stages, configs) if stage.role == "teacher")
    check_teachers([(cfg, teacher_cfg) for stage, cfg in zip(pipeline.stages, configs) if stage.needs_teacher],
                   ["body", "config"])
    check_size(configs, settings, ["body", "config"])
    ids = [teacher_id if stage.role == "teacher" else new_run_id(cfg.name)
           for stage, cfg in zip(pipeline.stages, configs)]
    # every run on disk before anything is queued: a broker failure loses nothing
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    for run_id, cfg in zip(ids, configs):
        RunStore.create(settings.run_dir(run_id), cfg)
    try:
        _enqueue(settings.queue, list(zip(pipeline.stages, ids)))
    except Exception as err:  # broker unreachable: the runs stay on disk, marked, not silently lost
        for run_id in ids:
            RunStore(settings.run_dir(run_id)).write_status(state="failed", error=f"could not queue: {err}",
                                                            finished=now_iso())
        raise HTTPException(503, f"the queue is unreachable ({err}); the pipeline's runs were recorded "
                                 "as failed") from None
    return PipelineCreated(name=pipeline.name, runs=[PipelineRun(id=run_id, role=stage.role, state="queued")
                                                     for stage, run_id in zip(pipeline.stages, ids)])
