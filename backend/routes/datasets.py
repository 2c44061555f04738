"""GET /api/datasets: the built-in datasets; POST /api/datasets/inspect: check and summarise a
dataset before training on it.

The dataset is a registry name or the user's own data as a *server-side* path or HF id
(`folder:/abs/dir`, `csv:/abs/file.csv`, `jsonl:/abs/file.jsonl`, `hf:<id>[:<config>]`): the
whole dataset is read and checked as training would read it, and what is wrong comes back as a
422 naming the file, row and column.

Security: this route reads files and echoes a few rows (texts, file names) back, so it reads only
under the data roots (Settings.allowed_data_roots: the runs directory's data/ folder, the built-in
datasets' own folders and REKD_DATA_ROOTS; symlinks resolved), here and wherever a run is queued
(check_paths): a path elsewhere is refused at its field without being opened, stat'ed for its
contents or echoed. It is also guarded like the mutating routes: with REKD_API_TOKEN set it
needs `Authorization: Bearer <token>` (TokenDep). Relative paths are refused; files must be
regular files (no devices, FIFOs or /proc entries) and tables are capped in size
(rekd_core.data.userdata.MAX_TABLE_BYTES); messages quote at most a short excerpt of a header or a
path (rekd_core.config.excerpt).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rekd_core.checks import config_paths, outside_roots
from rekd_core.config import DataConfig, ExperimentConfig, excerpt, validation_errors
from rekd_core.data.load import inspect_dataset, load_dataset
from rekd_core.data.registry import DATASETS, DatasetUnavailable
from rekd_core.data.sources import check_available
from rekd_core.data.spec import DatasetError, check_task, parse_spec
from rekd_core.data.userdata import options_for
from service.settings import Settings

from ..deps import SettingsDep, TokenDep

router = APIRouter(tags=["datasets"])


def _dataset_forms(schema: dict[str, Any]) -> None:
    """The forms data.dataset takes, in the schema: a registry name, or a kind and its target."""
    schema["anyOf"] = [{"enum": list(DATASETS)}, {"pattern": "^(folder|csv|jsonl):/"}, {"pattern": "^hf:[A-Za-z0-9]"}]


class DatasetInspect(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error naming it, never ignored

    dataset: str = Field(description="registry name, folder:/abs/dir, csv:/abs/file.csv, jsonl:/abs/file.jsonl "
                                     "or hf:<id>[:<config>]; a path must lie in a data root (REKD_DATA_ROOTS)",
                         json_schema_extra=lambda s: _dataset_forms(s))
    task: Literal["vision", "text"]
    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = "split"
    image_column: str = "image"
    rationale_column: str = Field("rationale", min_length=1,
                                  description="csv/jsonl: the column of ground-truth rationales, used when present")
    image_size: int = Field(224, gt=0, le=1024, description="the student's img_size: images are resized to it")
    in_chans: Literal[1, 3] = Field(3, description="the student's in_chans: 1 gray, 3 RGB")


class DatasetExample(BaseModel):
    split: str
    label: str
    text: str | None = None
    source: str | None = Field(None, description="the image file (relative to the folder) or the table row")


class DatasetSummary(BaseModel):
    kind: str = Field(description="folder, csv, jsonl, hf or registry")
    name: str = Field(description="a readable name, e.g. 'pets (folder)'")
    modality: Literal["vision", "text"]
    class_names: list[str]
    counts: dict[str, int] = Field(description="examples per split (train, dev, test) as training splits them")
    per_class: dict[str, dict[str, int]]
    examples: list[DatasetExample]
    ground_truth: dict[str, int] = Field(
        default_factory=lambda: {"train": 0, "dev": 0, "test": 0},
        description="examples per split (train, dev, test) that carry a ground-truth rationale: an image with a "
                    "mask beside it (x.png + x.mask.png), a row with a rationale column (character spans or "
                    "substrings), or a built-in benchmark's evidence. Training scores every rationale against it as "
                    "plausibility; on your own data that is agreement with your annotations, not proof of evidence")
    seconds: float = Field(description="time to read and check the data")


class DatasetEntry(BaseModel):
    """A built-in dataset, usable by name as `data.dataset`."""

    name: str
    modality: Literal["vision", "text"]
    num_classes: int
    description: str
    ground_truth: bool = Field(description="a benchmark built so that the evidence for each label is known: every "
                                           "rationale is scored against it (plausibility)")
    how_to_get: str = Field(description="what installs it where it is missing")


@router.get("/api/datasets", response_model=list[DatasetEntry])
def list_datasets() -> list[DatasetEntry]:
    """The built-in datasets (your own data goes by `folder:`, `csv:`, `jsonl:` or `hf:` instead)."""
    return [DatasetEntry(name=d.name, modality=d.modality, num_classes=d.num_classes, description=d.description,
                         ground_truth=d.ground_truth, how_to_get=d.how_to_get) for d in DATASETS.values()]


def outside_message(path: str | Path, settings: Settings, what: str = "data") -> str:
    """Short (error bodies are cut at 300 characters): the path, where it may go instead, how to allow more."""
    extra = [p for p in (settings.data_roots or "").split(os.pathsep) if p.strip()]
    also = f"; allowed too: {excerpt(', '.join(extra), 100)}" if extra else ""
    return (f"{excerpt(path)} is outside the folders this server reads {what} from: use "
            f"{excerpt((settings.runs_dir / ('data' if what == 'data' else '')).resolve(), 60)}, or add a folder to "
            f"REKD_DATA_ROOTS{also}")


def _check(paths: dict[str, str], settings: Settings, loc: list[str]) -> None:
    roots = settings.allowed_data_roots()
    errors = [{"loc": [*loc, *field.split(".")], "type": "value_error", "msg": outside_message(path, settings)}
              for field, path in paths.items() if outside_roots(path, roots)]
    if errors:
        raise HTTPException(422, errors)


def check_data_paths(data: DataConfig, settings: Settings, loc: list[str]) -> None:
    """422 naming the field when the dataset's file or folder, or data.root, lies outside the data
    roots (symlinks resolved: a link inside a root cannot point out of it). Nothing is read."""
    spec = parse_spec(data.dataset)
    paths = {"dataset": spec.target if spec is not None and spec.kind != "hf" else None, "root": data.root}
    _check({k: v for k, v in paths.items() if v is not None}, settings, loc)


def check_paths(cfg: ExperimentConfig, settings: Settings, loc: list[str]) -> None:
    """check_data_paths for every local path a run config names: its data, data.root, a tokenizer
    folder, a pretrained encoder's folder or weights file (loc: where the config sits in the body)."""
    _check(config_paths(cfg), settings, loc)


def _refused(msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", "dataset"], "msg": msg, "type": "value_error"}])


@router.post("/api/datasets/inspect", response_model=DatasetSummary, dependencies=[TokenDep],
             responses={422: {"description": "the dataset cannot be used: the message names the file, row and "
                                             "column"}})
async def inspect(body: DatasetInspect, settings: SettingsDep) -> DatasetSummary:
    fields = body.model_dump(include={"text_column", "label_column", "split_column", "image_column",
                                      "rationale_column"})
    try:
        data = DataConfig(dataset=body.dataset, **fields)
    except ValidationError as err:
        raise HTTPException(422, [{"loc": ["body", *e["field"].split(".")], "msg": e["message"],
                                   "type": "value_error"} for e in validation_errors(err)]) from None
    try:
        check_task(data.dataset, body.task)  # no file read: before the path checks, which say less
    except DatasetError as err:
        raise _refused(str(err)) from None
    check_data_paths(data, settings, ["body"])
    try:
        # reading a folder of images takes a while: off the event loop
        summary = await run_in_threadpool(inspect_dataset, data, body.task, image_size=body.image_size,
                                          in_chans=body.in_chans)
    except (DatasetError, ValueError) as err:
        raise _refused(str(err)) from None
    return DatasetSummary(**summary)


def check_dataset(cfg: ExperimentConfig, settings: Settings) -> ExperimentConfig:
    """Read user data now, as training will, so a malformed file is a 422 before the run is queued;
    a built-in dataset is checked to be there (its files or package: data.check_available, the
    check its loader starts with), not loaded (some are large)."""
    check_paths(cfg, settings, ["body", "config"])
    d = cfg.data
    if parse_spec(d.dataset) is None:
        try:
            check_available(d.dataset, d.root)
        except DatasetUnavailable as err:
            raise HTTPException(422, [{"loc": ["body", "config", "data", "dataset"], "msg": str(err),
                                       "type": "value_error"}]) from None
        return cfg
    try:
        load_dataset(d.dataset, dev_fraction=d.dev_fraction, split_seed=d.split_seed, max_train=d.max_train,
                     max_eval=d.max_eval, root=d.root, options=options_for(cfg))
    except ValueError as err:  # DatasetError: names the file, row and column
        raise HTTPException(422, [{"loc": ["body", "config", "data", "dataset"], "msg": str(err),
                                   "type": "value_error"}]) from None
    return cfg


def check_datasets(configs: list[ExperimentConfig], settings: Settings) -> None:
    """check_dataset for a pipeline's or a sweep's runs, reading each distinct dataset once (the
    paths of every run checked first)."""
    for cfg in configs:
        check_paths(cfg, settings, ["body", "config"])
    seen: set[tuple[Any, ...]] = set()
    for cfg in configs:
        student = cfg.model.student
        key = (cfg.task, cfg.data.model_dump_json(), getattr(student, "img_size", None),
               getattr(student, "in_chans", None))
        if key not in seen:
            seen.add(key)
            check_dataset(cfg, settings)


__all__: list[Any] = ["router", "check_data_paths", "check_paths", "check_dataset", "check_datasets",
                      "outside_message"]
