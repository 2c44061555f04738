"""Sweeps: a base config plus axes, expanded into runs; their results aggregated per cell.

Pure engine code (no web or queue imports): the service queues what `plan` returns and
`SweepStore` keeps a sweep as one JSON file under `<runs_dir>/.sweeps/`. The run directories
stay the source of truth: a sweep's state and table are always recomputed from its runs'
status.json / results.json (`collect`, `aggregate`).

A sweep's axes are config paths (`loss.alpha`, `mode`, `model.student`, ...) plus `preset`, which
picks the base preset per cell (e.g. the student backbone). The seed axis (`train.seed`) repeats
every cell; the other axes define the cells of the table. Students in mode `rekd` distil from the
teacher run of their own seed if that seed is in `teacher.seeds`, else from `teacher.seeds[0]`:
one teacher per teacher seed, not one per student.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .analysis.quality import flat_figures, warnings_of
from .analysis.tables import render_rows
from .config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    not_a_teacher,
    override_key,
    parse_config,
    set_path,
    validation_errors,
)
from .presets import get_preset
from .store.atomic import atomic_write_json
from .store.runstore import TERMINAL_STATES

SEED_AXIS = "train.seed"
PRESET_AXIS = "preset"
# set by the sweep itself for each run: an axis or a sweep-wide override may not touch them
RESERVED = ("name", "model.teacher_run")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseSpec(_Strict):
    """What every run starts from: a preset or a full config, then overrides."""

    preset: str | None = Field(None, description="a preset name (`rekd presets`)")
    config: dict[str, Any] | None = Field(None, description="a full config, instead of a preset")
    overrides: list[str] = Field(default_factory=list, description="`key.path=value` strings")

    @model_validator(mode="after")
    def _one(self) -> BaseSpec:
        if (self.preset is None) == (self.config is None):
            raise ValueError("give exactly one of `preset` or `config`")
        return self

    def data(self, preset: str | None = None) -> dict[str, Any]:
        name = preset or self.preset
        src = get_preset(name).config if name else (self.config or {})
        return apply_overrides(src, self.overrides)


class TeacherSpec(BaseSpec):
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="one teacher run per seed; a student distils from the teacher of its "
                                         "own seed if it is here, else from the first")


class SweepSpec(_Strict):
    name: str = Field(min_length=1, max_length=60)
    base: BaseSpec
    axes: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="config path -> values; `train.seed` repeats every cell, `preset` picks the base preset")
    teacher: TeacherSpec | None = Field(None, description="needed when a cell has mode rekd")
    queue: str | None = Field(None, description="queue of the student runs (None: the service's default)")
    teacher_queue: str | None = Field(None, description="queue of the teacher runs (None: `queue`)")
    reference: dict[str, float] = Field(
        default_factory=dict, description="cell label -> published test accuracy (0..1), shown beside ours")

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in axes.items():
            if not values:
                raise ValueError(f"axis {path!r} has no values")
            if path in RESERVED:
                raise ValueError(f"axis {path!r}: {path} is set by the sweep for each run")
        if any(isinstance(s, bool) or not isinstance(s, int) for s in axes.get(SEED_AXIS, [])):
            raise ValueError(f"axis {SEED_AXIS!r}: seeds must be integers")
        return axes

    @property
    def cell_axes(self) -> list[str]:
        return [a for a in self.axes if a != SEED_AXIS]


def parse_spec(data: dict[str, Any]) -> SweepSpec:
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        errors = validation_errors(err)
        raise ConfigError("invalid sweep:\n  " + "\n  ".join(f"{e['field']}: {e['message']}" for e in errors),
                          errors) from None


def fmt_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def cell_label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in cell.items()) or "all"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def _set_axis(data: dict[str, Any], path: str, value: Any) -> None:
    """config.set_path with a copy of an axis value; its error names the axis."""
    try:
        set_path(data, path, json.loads(json.dumps(value)))
    except ConfigError as err:
        raise ConfigError(f"axis {path!r}: {err}", err.errors) from None


@dataclass
class PlannedRun:
    role: str  # "teacher" or "student"
    seed: int
    config: ExperimentConfig
    cell: dict[str, Any] = field(default_factory=dict)
    teacher_seed: int | None = None  # the teacher a rekd student distils from

    @property
    def label(self) -> str:
        return "teacher" if self.role == "teacher" else cell_label(self.cell)


@dataclass
class Plan:
    teachers: list[PlannedRun]
    students: list[PlannedRun]
    cells: list[dict[str, Any]]


class SweepError(ConfigError):
    """A refused sweep; each error's `field` is a path in the spec (`axes.loss.alpha`, `base.overrides`)."""


def plan(spec: SweepSpec, overrides: list[str] | None = None,
         teacher_dir: Callable[[int], str] | None = None) -> Plan:
    """Every run of the sweep, validated (all of them before any error is raised).

    `overrides` apply to every run (teachers too). `teacher_dir(seed)` is the run directory a
    rekd student is given as `model.teacher_run` (the service knows it before queueing anything).
    """
    overrides = list(overrides or [])
    errors: dict[tuple[str, str], None] = {}
    for item in overrides:
        key = override_key(item)
        if key in (*RESERVED, "mode", SEED_AXIS):
            errors[("overrides." + key, f"{key} is set per run by the sweep (use an axis)")] = None
    teacher_dir = teacher_dir or (lambda seed: f"<teacher seed {seed}>")
    seeds: list[int | None] = list(spec.axes[SEED_AXIS]) if SEED_AXIS in spec.axes else [None]
    cell_axes = spec.cell_axes
    cells = [dict(zip(cell_axes, combo)) for combo in itertools.product(*(spec.axes[a] for a in cell_axes))]

    def where(field: str, cell: dict[str, Any]) -> str:
        for axis in cell:
            if field == axis or field.startswith(axis + "."):
                return f"axes.{axis}"
        return "base" if field == "(config)" else f"base.{field}"

    students: list[PlannedRun] = []
    needs_teacher: set[int] = set()
    for cell in cells:
        for seed in seeds:
            try:
                data = apply_overrides(spec.base.data(cell.get(PRESET_AXIS)), overrides)
            except ConfigError as err:
                field = f"axes.{PRESET_AXIS}" if PRESET_AXIS in cell else "base"
                errors[(field, str(err))] = None
                continue
            for path, value in cell.items():
                if path != PRESET_AXIS:
                    try:
                        _set_axis(data, path, value)
                    except ConfigError as err:
                        errors[(f"axes.{path}", err.errors[0]["message"])] = None
            if seed is not None:
                _set_axis(data, SEED_AXIS, seed)
            run_seed = int(data.get("train", {}).get("seed", 0))
            data["name"] = _slug(f"{spec.name}-{cell_label(cell)}-s{run_seed}")[:100]
            t_seed = None
            if data.get("mode") == "rekd":
                if spec.teacher is None:
                    errors[("teacher", f"cell {cell_label(cell)!r} has mode rekd: the sweep needs a teacher")] = None
                    data.setdefault("model", {})["teacher_run"] = "<no teacher>"
                else:
                    t_seed = run_seed if run_seed in spec.teacher.seeds else spec.teacher.seeds[0]
                    data.setdefault("model", {})["teacher_run"] = teacher_dir(t_seed)
                    needs_teacher.add(t_seed)
            try:
                cfg = parse_config(data)
            except ConfigError as err:
                for e in err.errors:
                    errors[(where(e["field"], cell), e["message"])] = None
                continue
            students.append(PlannedRun("student", run_seed, cfg, cell, t_seed))
    teachers: list[PlannedRun] = []
    if spec.teacher is not None:
        for seed in spec.teacher.seeds:
            if seed not in needs_teacher:
                continue
            try:
                data = apply_overrides(spec.teacher.data(), overrides)
                _set_axis(data, SEED_AXIS, seed)
                data["name"] = _slug(f"{spec.name}-teacher-s{seed}")[:100]
                cfg = parse_config(data)
            except ConfigError as err:
                for e in err.errors:
                    f = e["field"]
                    errors[(f"teacher.{f}" if f != "(config)" else "teacher", e["message"])] = None
                continue
            why = not_a_teacher(cfg)
            if why:
                errors[("teacher.mode", why)] = None
                continue
            teachers.append(PlannedRun("teacher", seed, cfg))
    if errors:
        errs = [{"field": f, "message": m} for f, m in errors]
        raise SweepError("invalid sweep:\n  " + "\n  ".join(f"{e['field']}: {e['message']}" for e in errs), errs)
    return Plan(teachers, students, cells)


# --- results -----------------------------------------------------------------------------------

def run_record(run_dir: Path) -> dict[str, Any]:
    """State, progress and final test metrics of one run, read from its directory."""
    try:
        st = json.loads((run_dir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        st = {}
    try:
        res = json.loads((run_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        res = {}
    state = st.get("state", "missing" if not run_dir.is_dir() else "unknown")
    test = res.get("test") or {} if state == "completed" else {}
    total, step = st.get("total_steps"), int(st.get("step", 0) or 0)
    progress = 1.0 if state in TERMINAL_STATES else (min(step / total, 1.0) if total else 0.0)
    sel = test.get("selected")
    flat = flat_figures(test)
    return {"state": state, "progress": progress, "worker": st.get("worker"),
            "test_accuracy": test.get("accuracy"), "macro_f1": test.get("macro_f1"),
            "selected": sel.get("mean") if isinstance(sel, dict) else None,
            **{k: flat[k] for k in QUALITY_FIGURES},
            "warnings": [w["code"] for w in warnings_of(test)]}


def _mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


# the test split's rationale figures (analysis/quality.py) a sweep table shows per cell, when its runs have them
QUALITY_FIGURES = ("plausibility_f1", "distinct_share", "probe_accuracy")


def aggregate(runs: list[dict[str, Any]], cells: list[dict[str, Any]],
              reference: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per cell (in `cells` order): mean and sample std over the completed runs.

    `runs` are dicts with `label`, `state`, `test_accuracy`, `macro_f1`, `selected` and optionally
    the `QUALITY_FIGURES`; rows of cells with no finished run yet have n = 0 and None numbers (a
    partial table while the sweep runs). Each quality figure gets `<figure>_mean`, `_std` and `_n`:
    over the completed runs that have it (CLS runs, data without ground truth and runs trained
    before the figures existed do not), None with n = 0 when none has.
    """
    reference = reference or {}
    rows = []
    for cell in cells:
        label = cell_label(cell)
        mine = [r for r in runs if r["label"] == label]
        done = [r for r in mine if r["state"] == "completed" and r.get("test_accuracy") is not None]
        row: dict[str, Any] = {"label": label, "cell": cell, "n": len(done), "n_total": len(mine)}
        for key, col in (("accuracy", "test_accuracy"), ("macro_f1", "macro_f1"), ("selected", "selected")):
            xs = [float(r[col]) for r in done if r.get(col) is not None]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(xs)
        for key in QUALITY_FIGURES:
            xs = [float(r[key]) for r in done if r.get(key) is not None]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(xs)
            row[f"{key}_n"] = len(xs)
        row["reference"] = reference.get(label)
        rows.append(row)
    return rows


def _pct(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f} ± {100 * (std or 0.0):.1f}"


COLUMNS = ("cell", "n", "test accuracy %", "macro-F1 %", "selected %")
QUALITY_TITLES = {"plausibility_f1": "plausibility F1 %", "distinct_share": "distinct masks %",
                  "probe_accuracy": "mask-only probe %"}


def _quality_columns(table: list[dict[str, Any]]) -> list[str]:
    """The quality figures some cell of the table has (the others get no column)."""
    return [k for k in QUALITY_FIGURES if any(r.get(f"{k}_n") for r in table)]


def _figure_cell(r: dict[str, Any], key: str) -> str:
    """mean ± std; "(n=k)" added when fewer of the cell's finished runs have the figure."""
    cell = _pct(r.get(f"{key}_mean"), r.get(f"{key}_std"))
    k = r.get(f"{key}_n") or 0
    return cell if not k or k == r["n"] else f"{cell} (n={k})"


def _table_cells(table: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    with_ref = any(r.get("reference") is not None for r in table)
    quality = _quality_columns(table)
    head = list(COLUMNS) + [QUALITY_TITLES[k] for k in quality] + (["paper accuracy %"] if with_ref else [])
    body = []
    for r in table:
        row = [r["label"], f"{r['n']}/{r['n_total']}", _pct(r["accuracy_mean"], r["accuracy_std"]),
               _pct(r["macro_f1_mean"], r["macro_f1_std"]), _pct(r["selected_mean"], r["selected_std"])]
        row += [_figure_cell(r, k) for k in quality]
        if with_ref:
            row.append("–" if r.get("reference") is None else f"{100 * r['reference']:.1f}")
        body.append(row)
    return head, body


def render(table: list[dict[str, Any]], fmt: str = "md") -> str:
    """The aggregated table as Markdown, CSV (raw fractions, one column per number) or LaTeX.

    The test split's plausibility F1, distinct-mask share and mask-only probe accuracy get a column
    each (mean ± std; in CSV `_mean`, `_std`, `_n`) when some cell's runs have them; a cell without
    shows "–" (empty in CSV)."""
    if fmt == "csv":
        with_ref = any(r.get("reference") is not None for r in table)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        quality = [f"{k}_{s}" for k in _quality_columns(table) for s in ("mean", "std", "n")]
        cols = ["label", "n", "n_total", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std",
                "selected_mean", "selected_std"] + quality + (["reference"] if with_ref else [])
        w.writerow(cols)
        for r in table:
            w.writerow(["" if r.get(c) is None else r[c] for c in cols])
        return buf.getvalue()
    head, body = _table_cells(table)
    return render_rows(head, body, fmt)


# --- the stored sweep ---------------------------------------------------------------------------

class SweepStore:
    """`<runs_dir>/.sweeps/<id>.json`: the spec, the run ids and their cells. Nothing else is kept:
    states, progress and the table are recomputed from the run directories on every read."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.runs_dir = Path(runs_dir)
        self.root = self.runs_dir / ".sweeps"

    def path(self, sweep_id: str) -> Path:
        return self.root / f"{sweep_id}.json"

    def save(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(record["id"]), record)

    def load(self, sweep_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(sweep_id).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def ids(self) -> list[str]:
        return [p.stem for p in self.root.glob("*.json")] if self.root.is_dir() else []

    def view(self, record: dict[str, Any]) -> dict[str, Any]:
        """The sweep as the API shows it: runs with their states and results, progress, the table."""
        teachers = []
        for t in record["teachers"]:
            rec = run_record(self.runs_dir / t["id"])
            teachers.append({"id": t["id"], "seed": t["seed"], "state": rec["state"], "progress": rec["progress"],
                             "worker": rec["worker"], "test_accuracy": rec["test_accuracy"],
                             "warnings": rec["warnings"]})
        runs = []
        for r in record["runs"]:
            rec = run_record(self.runs_dir / r["id"])
            runs.append({"id": r["id"], "cell": r["cell"], "label": cell_label(r["cell"]), "seed": r["seed"],
                         "teacher": r.get("teacher"), **rec})
        every = teachers + runs
        states = [x["state"] for x in every]
        if any(s not in TERMINAL_STATES for s in states):
            state = "running"
        elif record.get("cancelled"):
            state = "cancelled"
        elif all(s == "completed" for s in states):
            state = "completed"
        else:
            state = "failed"
        progress = sum(x["progress"] for x in every) / len(every) if every else 1.0
        table = aggregate(runs, record["cells"], record["spec"].get("reference"))
        return {"id": record["id"], "name": record["name"], "state": state, "created": record["created"],
                "spec": record["spec"], "overrides": record.get("overrides", []), "axes": record["axes"],
                "teachers": teachers, "runs": runs, "progress": progress, "table": table,
                "n_runs": len(every), "done": states.count("completed"),
                "failed": states.count("failed"), "cancelled": states.count("cancelled")}


# --- presets -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPreset:
    name: str
    summary: str
    spec: dict[str, Any]
    offline: bool


# The paper's published test accuracies (mean of 10 seeds, its main table; DESIGN.md), per student
# as (CLS, RE, REKD): the aggregated table shows them in a "paper" column beside ours.
PAPER_ACCURACY: dict[str, tuple[float, float, float]] = {
    "cifar10-vit-small": (0.981, 0.889, 0.968), "cifar10-vit-tiny": (0.968, 0.797, 0.936),
    "cifar100-fine-vit-small": (0.944, 0.779, 0.845), "cifar100-fine-vit-tiny": (0.903, 0.645, 0.777),
    "imdb-bert-small": (0.889, 0.881, 0.906), "imdb-bert-mini": (0.877, 0.863, 0.892),
}


def _paper(key: str, students: tuple[str, str]) -> dict[str, Any]:
    reference = {cell_label({PRESET_AXIS: s, "mode": mode}): acc
                 for s in students for mode, acc in zip(("cls", "re", "rekd"), PAPER_ACCURACY[s])}
    return {"name": f"paper-{key}", "base": {"preset": students[0]},
            "axes": {PRESET_AXIS: list(students), "mode": ["cls", "re", "rekd"], SEED_AXIS: list(range(10))},
            "teacher": {"preset": f"{key}-teacher", "seeds": list(range(10))},
            "reference": reference}


# Offline sweeps, sized for 2 workers on a 2-core CPU. One teacher (seed 0) for every student:
# `teacher.seeds` makes it one per seed. Measured here (one thread per run): fmnist-student does
# 400 steps in 12 s wall (1000: ~25 s), fmnist-teacher 3.3 steps/s (1500: ~8 min); so the offline
# presets' own step counts already finish well under an hour (the teacher is the critical path,
# CLS / RE students train beside it) and keep their results comparable with bench/reproduce.py.
def _offline(name: str, student: str, teacher: str) -> dict[str, Any]:
    return {"name": name, "base": {"preset": student},
            "axes": {"mode": ["cls", "re", "rekd"], SEED_AXIS: list(range(5))},
            "teacher": {"preset": teacher, "seeds": [0]}, "reference": {}}


def _clutter() -> dict[str, Any]:
    """The cluttered benchmark, where rationales are scored on the item: the ViT student and a CNN
    student over the same patch grid (REKD across architectures), each as CLS / RE / REKD."""
    spec = _offline("sweep-fmnist-clutter", "fmnist-clutter-student", "fmnist-clutter-teacher")
    spec["axes"] = {PRESET_AXIS: ["fmnist-clutter-student", "fmnist-clutter-student-cnn"], **spec["axes"]}
    return spec


SWEEPS: dict[str, SweepPreset] = {p.name: p for p in (
    SweepPreset("paper-cifar10", "paper protocol, CIFAR-10: ViT-Base RE teacher per seed, ViT-Small and ViT-Tiny "
                "students as CLS / RE / REKD, 10 seeds", _paper("cifar10", ("cifar10-vit-small", "cifar10-vit-tiny")),
                False),
    SweepPreset("paper-cifar100", "paper protocol, CIFAR-100 (fine): ViT-Base teacher per seed, ViT-Small / ViT-Tiny "
                "as CLS / RE / REKD, 10 seeds",
                {**_paper("cifar100-fine", ("cifar100-fine-vit-small", "cifar100-fine-vit-tiny")),
                 "name": "paper-cifar100"}, False),
    SweepPreset("paper-imdb", "paper protocol, IMDB: BERT-base RE teacher per seed, BERT-Small and BERT-Mini as "
                "CLS / RE / REKD, 10 seeds", _paper("imdb", ("imdb-bert-small", "imdb-bert-mini")), False),
    SweepPreset("sweep-fmnist", "offline, Fashion-MNIST: one RE teacher (fmnist-teacher, seed 0), the small student "
                "(fmnist-student) as CLS / RE / REKD, 5 seeds",
                _offline("sweep-fmnist", "fmnist-student", "fmnist-teacher"), True),
    SweepPreset("sweep-fmnist-clutter", "offline, ground truth: one cluttered Fashion-MNIST RE teacher "
                "(fmnist-clutter-teacher, seed 0); the small ViT student and a CNN student over the same patch grid "
                "(cross-architecture) as CLS / RE / REKD, 5 seeds", _clutter(), True),
    SweepPreset("sweep-rt", "offline, Rotten Tomatoes: one from-scratch BERT RE teacher (rt-teacher-scratch, seed 0), "
                "the small student (rt-student) as CLS / RE / REKD, 5 seeds",
                _offline("sweep-rt", "rt-student", "rt-teacher-scratch"), True),
)}


def get_sweep(name: str) -> SweepSpec:
    try:
        return parse_spec(SWEEPS[name].spec)
    except KeyError:
        raise ConfigError(f"unknown sweep preset {name!r}; choose one of: {', '.join(SWEEPS)}",
                          [{"field": "preset", "message": f"unknown sweep preset {name!r}; choose one of: "
                                                          f"{', '.join(SWEEPS)}"}]) from None
