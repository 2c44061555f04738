"""Sweeps: a base config plus axes (seeds, modes, ablations), expanded into runs and queued at once.

The order lives in the broker, with Celery's canvas: each teacher run goes as a chain whose
next step is the group of students that distil from it; the other students are sent right away.
A sweep is one JSON file under `<runs_dir>/.sweeps/` (its run ids and cells); its state and its
aggregated table are recomputed from the run directories on every read (rekd_core/sweeps.py).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from rekd_core.config import ConfigError, ExperimentConfig
from rekd_core.store.runstore import RUN_ID_RE, TERMINAL_STATES, RunStore, new_run_id, now_iso
from rekd_core.sweeps import SWEEPS, SweepStore, get_sweep, parse_spec, plan, render
from service.send import client, send_run

from ..deps import SettingsDep, SyncRedisDep, TokenDep
from .datasets import check_datasets
from .runs import cancel_one, check_size, check_teachers, override_strings, overrides_field, refuse_null

router = APIRouter(tags=["sweeps"])


class SweepCreate(BaseModel):
    """A sweep preset or a spec (exactly one), plus overrides; any other key is refused (422 naming it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["preset"]}, {"required": ["spec"]}]})

    preset: str | SkipJsonSchema[None] = Field(None, description="a sweep preset, e.g. sweep-fmnist",
                                               examples=["sweep-fmnist"], json_schema_extra={"enum": list(SWEEPS)})
    spec: dict[str, Any] | SkipJsonSchema[None] = Field(
        None, description="a SweepSpec (name, base, axes, teacher, queue, ...)")
    overrides: dict[str, Any] | list[str] = overrides_field(
        "applied to every run, teachers too: `[\"train.max_steps=50\"]`")

    _given = field_validator("preset", "spec", mode="before")(refuse_null)

    @model_validator(mode="after")
    def _one(self) -> SweepCreate:
        if (self.preset is None) == (self.spec is None):
            raise ValueError("give exactly one of `preset` or `spec`")
        return self


class _TeacherRecord(TypedDict):
    id: str
    seed: int
    config: ExperimentConfig


class _RunRecord(TypedDict):
    id: str
    cell: dict[str, Any]
    seed: int
    teacher: str | None  # the teacher run's id
    config: ExperimentConfig


class SweepCreated(BaseModel):
    id: str
    runs: int = Field(description="runs queued, teachers included")
    state: str


class SweepSummary(BaseModel):
    id: str
    name: str
    state: str
    created: str
    n_runs: int
    done: int = Field(description="runs completed")
    failed: int = Field(description="runs failed")
    cancelled: int = Field(0, description="runs cancelled")


WARNINGS_DOC = ("codes of the test result's rationale warnings (`constant_rationale`, `mask_code`; details in "
                "GET /api/runs/{id}/quality); [] when none or not finished")


class TeacherOut(BaseModel):
    id: str
    seed: int
    state: str
    progress: float
    worker: str | None = None
    test_accuracy: float | None = None
    warnings: list[str] = Field(default_factory=list, description=WARNINGS_DOC)


class SweepRunOut(BaseModel):
    id: str
    cell: dict[str, Any] = Field(description="axis path -> value (the non-seed axes)")
    label: str = Field(description="the cell as text, e.g. `mode=re, loss.alpha=0.5`")
    seed: int
    teacher: str | None = Field(None, description="the teacher run it distils from (mode rekd)")
    state: str
    progress: float
    worker: str | None = None
    test_accuracy: float | None = None
    macro_f1: float | None = None
    selected: float | None = Field(None, description="mean selected fraction on test (None for cls)")
    plausibility_f1: float | None = Field(None, description="test rationale-evidence F1 (data with ground truth)")
    distinct_share: float | None = Field(None, description="test share of distinct masks (None for cls)")
    probe_accuracy: float | None = Field(None, description="test accuracy of a classifier that sees only the mask "
                                                           "(None for cls)")
    warnings: list[str] = Field(default_factory=list, description=WARNINGS_DOC)


class TableRow(BaseModel):
    label: str
    cell: dict[str, Any]
    n: int = Field(description="runs of the cell that completed (the numbers are over these)")
    n_total: int
    accuracy_mean: float | None = None
    accuracy_std: float | None = Field(None, description="sample std (0 with one run)")
    macro_f1_mean: float | None = None
    macro_f1_std: float | None = None
    selected_mean: float | None = None
    selected_std: float | None = None
    plausibility_f1_mean: float | None = Field(None, description="test plausibility F1, over the runs that have it "
                                                                 "(data with ground truth, RE / REKD)")
    plausibility_f1_std: float | None = None
    plausibility_f1_n: int = Field(0, description="completed runs with a plausibility F1")
    distinct_share_mean: float | None = Field(None, description="test share of distinct masks (RE / REKD runs)")
    distinct_share_std: float | None = None
    distinct_share_n: int = Field(0, description="completed runs with a distinct share")
    probe_accuracy_mean: float | None = Field(None, description="test mask-only probe accuracy (RE / REKD runs)")
    probe_accuracy_std: float | None = None
    probe_accuracy_n: int = Field(0, description="completed runs with a probe accuracy")
    reference: float | None = Field(None, description="the published accuracy, from the spec's `reference`")


class SweepDetail(BaseModel):
    id: str
    name: str
    state: Literal["running", "completed", "failed", "cancelled"]
    created: str
    spec: dict[str, Any]
    overrides: list[str]
    axes: list[str] = Field(description="the non-seed axes: they define the cells")
    teachers: list[TeacherOut]
    runs: list[SweepRunOut]
    progress: float = Field(description="0..1 over every run, teachers included")
    table: list[TableRow] = Field(description="per cell, over the runs finished so far; fractions 0..1")
    n_runs: int
    done: int = Field(description="runs completed")
    failed: int = Field(description="runs failed")
    cancelled: int = Field(0, description="runs cancelled")


class CancelOut(BaseModel):
    id: str
    state: str
    runs: dict[str, str] = Field(description="run id -> cancelled (had not started) or cancelling")


def _refused(where: str, errors: list[dict[str, str]]) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", where, *([] if e["field"] in ("(config)", where) else
                                                           e["field"].split("."))],
                                "msg": f"{e['field']}: {e['message']}", "type": "value_error"} for e in errors])


def _enqueue(sends: list[tuple[str, str, list[tuple[str, str]]]]) -> None:
    app = client()
    for run_id, queue, then in sends:
        send_run(app, run_id, queue, then)


@router.post("/api/sweeps", status_code=201, response_model=SweepCreated, dependencies=[TokenDep],
             responses={422: {"description": "unknown preset, bad axis path or value: each error names its field"},
                        503: {"description": "the queue is unreachable; the runs were recorded as failed"}})
def create_sweep(body: SweepCreate, settings: SettingsDep, response: Response) -> SweepCreated:
    where = "preset" if body.preset is not None else "spec"
    overrides = override_strings(body.overrides)
    try:
        spec = get_sweep(body.preset) if body.preset is not None else parse_spec(body.spec or {})
    except ConfigError as err:
        raise _refused(where, err.errors) from None
    teacher_ids: dict[int, str] = {}

    def teacher_dir(seed: int) -> str:
        if seed not in teacher_ids:
            teacher_ids[seed] = new_run_id(f"{spec.name}-teacher-s{seed}")
        return str(settings.run_dir(teacher_ids[seed]).resolve())

    try:
        p = plan(spec, overrides, teacher_dir)
    except ConfigError as err:
        raise _refused(where if body.preset is None else "overrides", err.errors) from None
    # every check a worker would make, now: paths, data, each student against its teacher, size
    configs = [t.config for t in p.teachers] + [s.config for s in p.students]
    check_datasets(configs, settings)
    by_seed = {t.seed: t.config for t in p.teachers}
    check_teachers([(s.config, by_seed[s.teacher_seed]) for s in p.students if s.teacher_seed in by_seed],
                   ["body", "config"])
    check_size(configs, settings, ["body", "config"])
    queue = spec.queue or settings.queue
    t_queue = spec.teacher_queue or queue
    sweep_id = new_run_id(spec.name)
    teachers: list[_TeacherRecord] = [{"id": teacher_ids[t.seed], "seed": t.seed, "config": t.config}
                                      for t in p.teachers]
    runs: list[_RunRecord] = [
        {"id": new_run_id(s.config.name), "cell": s.cell, "seed": s.seed,
         "teacher": teacher_ids[s.teacher_seed] if s.teacher_seed is not None else None, "config": s.config}
        for s in p.students]
    # every run on disk, and the sweep's file, before anything is queued: a broker failure loses nothing
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    sends: list[tuple[str, str, list[tuple[str, str]]]] = []
    for t in teachers:
        then = [r["id"] for r in runs if r["teacher"] == t["id"]]
        RunStore.create(settings.run_dir(t["id"]), t["config"]).write_status(queue=t_queue, then=then, sweep=sweep_id)
        sends.append((t["id"], t_queue, [(rid, queue) for rid in then]))
    for r in runs:
        RunStore.create(settings.run_dir(r["id"]), r["config"]).write_status(queue=queue, sweep=sweep_id)
        if r["teacher"] is None:
            sends.append((r["id"], queue, []))
    store = SweepStore(settings.runs_dir)
    store.save({"id": sweep_id, "name": spec.name, "created": now_iso(), "spec": spec.model_dump(mode="json"),
                "overrides": overrides, "axes": spec.cell_axes, "cells": p.cells, "queue": queue,
                "teacher_queue": t_queue, "cancelled": False,
                "teachers": [{"id": t["id"], "seed": t["seed"]} for t in teachers],
                "runs": [{k: v for k, v in r.items() if k != "config"} for r in runs]})
    try:
        _enqueue(sends)
    except Exception as err:  # broker unreachable: the runs stay on disk, marked, not silently lost
        for run_id in [t["id"] for t in teachers] + [r["id"] for r in runs]:
            RunStore(settings.run_dir(run_id)).write_status(state="failed", error=f"could not queue: {err}",
                                                            finished=now_iso())
        raise HTTPException(503, f"the queue is unreachable ({err}); the sweep's runs were recorded as failed") \
            from None
    response.headers["Location"] = f"/api/sweeps/{sweep_id}"
    return SweepCreated(id=sweep_id, runs=len(teachers) + len(runs), state="running")


def _record_or_404(settings: Any, sweep_id: str) -> dict[str, Any]:
    if not RUN_ID_RE.fullmatch(sweep_id):
        raise HTTPException(422, f"invalid sweep id {sweep_id[:80]!r}")
    record = SweepStore(settings.runs_dir).load(sweep_id)
    if record is None:
        raise HTTPException(404, f"no sweep {sweep_id!r}")
    return record


@router.get("/api/sweeps", response_model=list[SweepSummary])
def list_sweeps(settings: SettingsDep) -> list[SweepSummary]:
    store = SweepStore(settings.runs_dir)
    out = []
    for sweep_id in store.ids():
        record = store.load(sweep_id)
        if record is None:
            continue
        v = store.view(record)
        out.append(SweepSummary(id=v["id"], name=v["name"], state=v["state"], created=v["created"],
                                n_runs=v["n_runs"], done=v["done"], failed=v["failed"], cancelled=v["cancelled"]))
    return sorted(out, key=lambda s: (s.created, s.id), reverse=True)


@router.get("/api/sweeps/{sweep_id}", response_model=SweepDetail,
            responses={404: {"description": "no such sweep"}},
            description="The sweep: spec, teachers, runs (state, test accuracy, macro-F1, selected fraction, "
                        "rationale quality and warnings), "
                        "progress 0..1 and the aggregated table (mean ± sample std per cell over the finished "
                        "runs; fractions 0..1), recomputed from the run directories.")
def get_sweep_detail(sweep_id: str, settings: SettingsDep) -> dict[str, Any]:
    return SweepStore(settings.runs_dir).view(_record_or_404(settings, sweep_id))


_MEDIA = {"md": "text/markdown", "csv": "text/csv", "tex": "application/x-tex"}


@router.get("/api/sweeps/{sweep_id}/table", responses={
    200: {"description": "the aggregated table as text: per cell mean ± std of test accuracy, macro-F1, "
                         "selected, and (when the runs have them) plausibility F1, distinct masks and mask-only "
                         "probe accuracy, – in a cell without", "content": {m: {} for m in _MEDIA.values()}},
    404: {"description": "no such sweep"}})
def sweep_table(sweep_id: str, settings: SettingsDep,
                format: Literal["md", "csv", "tex"] = Query("md")) -> Response:
    record = _record_or_404(settings, sweep_id)
    text = render(SweepStore(settings.runs_dir).view(record)["table"], format)
    return Response(text, media_type=f"{_MEDIA[format]}; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{sweep_id}.{format}"'})


@router.post("/api/sweeps/{sweep_id}/cancel", status_code=202, response_model=CancelOut, dependencies=[TokenDep],
             responses={404: {"description": "no such sweep"}})
def cancel_sweep(sweep_id: str, settings: SettingsDep, r: SyncRedisDep) -> CancelOut:
    store = SweepStore(settings.runs_dir)
    record = _record_or_404(settings, sweep_id)
    record["cancelled"] = True
    store.save(record)
    out: dict[str, str] = {}
    # students first: a student cancelled before its teacher is not failed for the teacher's sake
    for run_id in [x["id"] for x in record["runs"]] + [x["id"] for x in record["teachers"]]:
        root = settings.run_dir(run_id)
        if root.is_dir() and RunStore(root).status().get("state") not in TERMINAL_STATES:
            out[run_id] = cancel_one(root, settings, r)
    return CancelOut(id=sweep_id, state=store.view(record)["state"], runs=out)
