"""The experiment config: the one schema the CLI, the API, the UI and the stored run share.

Defaults follow the paper's formula (DESIGN.md). Every place where the public reference code
differs is a named option in `LossConfig`; `variant: reference` switches all of them at once
(an option given explicitly still wins).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data.spec import check_spec, check_task, parse_spec
from .excerpts import EXCERPT, excerpt  # noqa: F401  (re-exported: the API quotes through config)

Task = Literal["vision", "text"]
Mode = Literal["cls", "re", "rekd"]

class _Strict(BaseModel):
    # extra="forbid": a misspelt key is an error that names it, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PatchGrid(_Strict):
    """An image model over a grid of square patches: the positions a rationale selects."""

    img_size: int = Field(224, gt=0, le=1024, description="side in pixels the images are resized to (at most 1024)")
    patch_size: int = Field(16, gt=0, le=1024)
    in_chans: int = Field(3, gt=0, le=16)

    @model_validator(mode="after")
    def _grid(self) -> PatchGrid:
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size ({self.img_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        return self

    @property
    def grid(self) -> tuple[int, int]:
        n = self.img_size // self.patch_size
        return (n, n)


class VisionBackbone(PatchGrid):
    """A timm ViT: `name` is any timm model name; the overrides shape it (None keeps timm's)."""

    kind: Literal["vit"] = "vit"
    name: str = "vit_tiny_patch16_224"
    embed_dim: int | None = Field(None, gt=0)
    depth: int | None = Field(None, gt=0, le=64)
    num_heads: int | None = Field(None, gt=0, le=1024)
    mlp_ratio: float | None = Field(None, gt=0)
    pretrained: bool | str = Field(
        False, description="True: timm's weights (network or HF cache); a path: a local weights file"
    )

    @model_validator(mode="after")
    def _heads(self) -> VisionBackbone:
        if self.embed_dim and self.num_heads and self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        return self


class CnnBackbone(PatchGrid):
    """A small convolutional network: another family than the ViT, over the same patch grid (its
    feature map is pooled to the grid, so its generator scores the same positions; a mask zeroes
    the unselected patches' pixels). For distilling across architectures."""

    kind: Literal["cnn"] = "cnn"
    channels: int = Field(32, gt=0, le=1024, description="channels of the first block; each block doubles them")
    depth: int = Field(3, ge=1, le=6, description="conv blocks (3x3 conv, batch norm, GELU; stride 2 after the first)")


class TextBackbone(_Strict):
    """A BERT-family encoder: pretrained (hub id or local path) or randomly initialised."""

    kind: Literal["bert"] = "bert"
    pretrained: str | None = Field(
        None, description="hub id or local path for from_pretrained; 'minilm-l6' = the offline MiniLM-L6"
    )
    pooling: Literal["cls", "mean", "mean_kept"] = Field(
        "cls", description="the predictor's summary of the text: the [CLS] state, the mean of the real tokens' "
        "states (what sentence-embedding models such as MiniLM-L6 were trained to produce), or mean_kept: the "
        "mean over the tokens the predictor reads (a rationale's; every real token on the full input), so the "
        "dropped tokens' states do not swamp the summary")
    keep_layers: int | None = Field(
        None, gt=0, le=64, description="pretrained only: keep the first N transformer layers (a smaller, faster "
        "encoder that keeps the pretrained embeddings); None keeps all")
    # Used only when pretrained is None (random init from a BertConfig).
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(2, gt=0, le=64)
    num_heads: int = Field(2, gt=0, le=1024)
    intermediate_size: int = Field(512, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads(self) -> TextBackbone:
        if self.pretrained is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


ImageBackbone = VisionBackbone | CnnBackbone
Backbone = VisionBackbone | CnnBackbone | TextBackbone


class BenchmarkConfig(_Strict):
    """How the ground-truth benchmarks are generated (rekd_core/data/benchmarks.py); deterministic from `seed`.

    Used by `fashion_mnist_clutter` and `mnist_5k_clutter` (canvas, clutter, fragment) and by
    `rotten_tomatoes_needle` (filler_words); ignored by every other dataset.
    """

    seed: int = Field(0, description="seed of the placements and fillers (the source splits never depend on it)")
    canvas: int = Field(64, ge=32, le=256, description="vision: side in pixels of the canvas the 28 px item is "
                        "placed on, at a random position")
    clutter: int = Field(6, ge=0, le=64, description="vision: distractor fragments cut from other images of the "
                         "same split, placed off the item")
    fragment: int = Field(12, ge=4, le=28, description="vision: side in pixels of each distractor fragment")
    filler_words: int = Field(30, ge=0, le=1000, description="text: words of plot-synopsis sentences (from other "
                              "films) around the review snippet")


class DataConfig(_Strict):
    dataset: str = Field(
        "fashion_mnist", description="a registry name, or your own data: folder:/abs/dir (one sub-folder per class), "
        "csv:/abs/file.csv, jsonl:/abs/file.jsonl or hf:<id>[:<config>] (see rekd_core/data/userdata.py)"
    )
    dev_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    max_train: int | None = Field(None, gt=0, description="stratified subsample of train (demos)")
    max_eval: int | None = Field(None, gt=0, description="stratified subsample of dev and test")
    root: str | None = Field(None, description="local folder of the dataset files, if not the default")
    # text only
    tokenizer: str = Field(
        "minilm-l6", description="one tokenizer shared by teacher and student: hub id, path or 'minilm-l6'"
    )
    max_len: int = Field(64, gt=2, le=4096, description="tokens per text, [CLS] and [SEP] included (a "
                         "pretrained encoder allows at most its own position count, usually 512)")
    # user data (csv:, jsonl:, hf:) only
    text_column: str = Field("text", min_length=1, description="csv/jsonl/hf: the column holding the texts")
    label_column: str = Field("label", min_length=1, description="csv/jsonl/hf: the column holding the labels")
    split_column: str | None = Field(
        "split", description="csv/jsonl: a column of train/dev/test, used when the file has it (null: never)"
    )
    image_column: str = Field("image", min_length=1, description="hf: the column holding the images")
    rationale_column: str = Field(
        "rationale", min_length=1, description="csv/jsonl: a column of ground-truth rationales (character spans or "
        "highlighted substrings), used when the file has it")
    # ground truth (built-in benchmarks, or your own masks / rationale column)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    evidence_cover: float = Field(
        0.25, gt=0, le=1, description="a patch counts as ground-truth evidence when at least this fraction of its "
        "pixels is evidence (text: a token counts when it overlaps an evidence span)")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        # syntax only: the files are read (and checked row by row) before a run is queued
        return check_spec(value)


class ModelConfig(_Strict):
    student: VisionBackbone | CnnBackbone | TextBackbone = Field(discriminator="kind", default_factory=VisionBackbone)
    teacher: VisionBackbone | CnnBackbone | TextBackbone | None = Field(
        None, discriminator="kind", description="the teacher's architecture (informational when teacher_run is set)"
    )
    teacher_run: str | None = Field(None, description="run directory of the trained RE teacher (mode rekd)")
    teacher_checkpoint: Literal["best", "last"] = "best"
    teacher_outputs: Literal["cached", "live"] = Field(
        "cached", description="cached: the frozen teacher's Z and Q computed once per split and kept in its run "
        "directory (shared by every student); live: computed from each batch, one teacher forward pass per "
        "step (the reference code's way: slower, the naive path of bench/bench_run.py)")
    share_backbone: bool = Field(
        False, description="one backbone for generator and predictor (default: two separate ones)"
    )
    # --- against degenerate RE training (off by default: the paper's formula) ---
    init_from: str | None = Field(
        None, description="run directory of a finished run with the same student architecture and classes (e.g. a "
        "CLS run): its predictor (backbone and classifier) starts this one's predictor, its backbone this one's "
        "generator backbone")
    selection: Literal["argmax", "topk"] = Field(
        "argmax", description="how a mask is read from the generator: argmax (paper: keep where the keep-logit "
        "wins; training samples it with Gumbel noise) or topk (keep exactly round(loss.p_target x positions) per "
        "input, the highest-scoring ones; training ranks the Gumbel-perturbed scores; never an empty rationale)")
    span: int = Field(
        1, ge=1, le=32, description="text: the selection unit in tokens; 1 (paper) selects single tokens, N > 1 "
        "consecutive runs of N tokens as one (the generator's score of a run is its tokens' mean, Gumbel noise "
        "is drawn per run), so a rationale reads as phrases")
    dropped_token: Literal["zero", "mask", "pad"] = Field(
        "zero", description="text: what a token left out of the rationale becomes: zero (paper: its word embedding "
        "zeroed), mask or pad (the tokenizer's [MASK] / [PAD] embedding, which a pretrained encoder knows)")
    predictor_attention: Literal["full", "selected"] = Field(
        "full", description="full (paper): the predictor reads all L positions, the unselected ones as zero "
        "embeddings; selected: only the selected positions (gathered, each with its position embedding), so its "
        "cost scales with p_target; a change of the model, not the paper's formula; ViT and BERT-like only")


class LossConfig(_Strict):
    alpha: float = Field(0.5, ge=0, le=1, description="L = α · L_RE + (1 − α) · L_KD; 1 is plain RE, 0 is pure KD")
    lambda_R: float = Field(0.5, ge=0, description="weight of the rationale KD term")
    lambda_select: float = Field(0.01, ge=0, description="weight of the selection-length penalty")
    p_target: float = Field(0.15, gt=0, le=1, description="target fraction of selected positions")
    distill: Literal["both", "rationale", "prediction"] = "both"
    # --- paper formula vs public reference code (see DESIGN.md) ---
    teacher_predictor_mask: Literal["own", "student"] | None = Field(
        None, description="paper: own (teacher predictor reads its own mask); reference: student"
    )
    kd_rationale_input: Literal["clean", "noisy"] | None = Field(
        None, description="paper: clean softmax(Z/tau); reference: noisy Gumbel samples softmax((Z+G)/tau)"
    )
    length_penalty: Literal["per_example", "batch_mean"] | None = Field(
        None, description="paper: mean over examples of (sum M - L p)^2; reference: (batch-mean sum M - L p)^2"
    )
    count_special: bool | None = Field(
        None, description="paper: False (L counts real tokens only); reference: True (padding and specials count)"
    )


PAPER_CHOICES: dict[str, Any] = {
    "teacher_predictor_mask": "own",
    "kd_rationale_input": "clean",
    "length_penalty": "per_example",
    "count_special": False,
}
REFERENCE_CHOICES: dict[str, Any] = {
    "teacher_predictor_mask": "student",
    "kd_rationale_input": "noisy",
    "length_penalty": "batch_mean",
    "count_special": True,
}


class ScheduleConfig(_Strict):
    tau0: float = Field(5.0, gt=0)
    tau_final: float = Field(0.1, gt=0)
    tau_update_every: int = Field(100, gt=0, description="tau changes every this many steps")
    # --- against degenerate RE training (0: off, the paper's formula) ---
    full_input_steps: int = Field(
        0, ge=0, description="RE/REKD: the first N steps train the predictor on the full input (cross-entropy "
        "only, the generator idle); then the generator's backbone starts from the predictor's, and tau anneals "
        "over the steps after them")
    warmup_keep: float = Field(
        1.0, gt=0, le=1, description="during the full-input steps, each position is kept at random with this "
        "probability (1: the whole input); below 1 the predictor learns from partial inputs like the rationales "
        "it will read")
    sparsity_warmup_steps: int = Field(
        0, ge=0, description="RE/REKD: after the full-input steps, the selection target falls linearly from "
        "every position to loss.p_target over N steps")


class OptimConfig(_Strict):
    lr: float = Field(1e-5, gt=0)
    head_lr: float | None = Field(
        None, gt=0, description="lr of the freshly initialised heads (selector, classifier); None: lr"
    )
    generator_lr: float | None = Field(
        None, gt=0, description="lr of the generator (its backbone and selector head); None: as the predictor's "
        "(lr and head_lr)")
    selector_lr: float | None = Field(
        None, gt=0, description="lr of the generator's selector head alone (a pretrained generator backbone "
        "moved slowly at generator_lr, its fresh head fast); None: the generator's lr")
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float | None = Field(None, gt=0)


class TrainConfig(_Strict):
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0, description="wins over epochs when both are set")
    batch_size: int = Field(32, gt=0, le=8192)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on a CUDA device that supports it, fp32 elsewhere (on this "
        "project's CPUs bf16 autocast was slower than fp32); fp32 or bf16 force one"
    )
    eval_every: int = Field(200, gt=0, description="steps between dev evaluations")
    checkpoint_every: int = Field(200, gt=0, description="steps between resumable checkpoints")
    log_every: int = Field(20, gt=0, description="steps between log events")
    eval_examples: int = Field(48, ge=0, description="dev examples whose rationales are saved per eval")
    threads: int | None = Field(None, gt=0, le=256, description="torch CPU threads (None: torch's default)")
    compile: bool = Field(
        False, description="torch.compile the student's backbones; opt-in: measured on a 2-core CPU it cost "
        "~15-20 s of compilation and saved nothing per step (text recompiles as batch lengths vary)"
    )
    track: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list, description="mirror the run's events live to these experiment trackers: "
        "tensorboard (event files in the run's tensorboard/ folder), mlflow (MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db); needs the tracking extra (pip install 'rekd[tracking]'); empty: the REKD_TRACK "
        "environment variable's list, if set (see docs/tracking.md)"
    )

    @field_validator("track", mode="before")
    @classmethod
    def _track_list(cls, v: Any) -> Any:
        # `-s train.track=mlflow` or `tensorboard,mlflow` from the command line: a comma-separated string
        if isinstance(v, str):
            v = [part.strip() for part in v.split(",") if part.strip()]
        if isinstance(v, list) and len(set(map(str, v))) != len(v):
            raise ValueError("name each tracker once")
        return v

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        return self


class ExperimentConfig(_Strict):
    name: str = "experiment"
    task: Task = "vision"
    mode: Mode = "re"
    variant: Literal["paper", "reference"] = Field(
        "paper", description="fills every unset paper-vs-reference option of `loss` with that side's choice"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(max_steps=100))

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        choices = REFERENCE_CHOICES if self.variant == "reference" else PAPER_CHOICES
        for key, value in choices.items():
            if getattr(self.loss, key) is None:
                object.__setattr__(self.loss, key, value)
        want = ("vit", "cnn") if self.task == "vision" else ("bert",)
        for role in ("student", "teacher"):
            spec = getattr(self.model, role)
            if spec is not None and spec.kind not in want:
                needs = " or ".join(repr(k) for k in want)
                given = (f"none was given, so it is the default {spec.kind!r} (for images)"
                         if role == "student" and "student" not in self.model.model_fields_set
                         else f"{spec.kind!r}")
                raise ValueError(f"model.{role}.kind: {given}, but task {self.task!r} needs {needs}: set "
                                 f"model.{role}.kind to {want[0]!r}"
                                 + (" (pretrained: minilm-l6 for the offline MiniLM)" if want[0] == "bert" else "")
                                 + ", or start from a preset of that task (`rekd presets`)")
        if self.model.span > 1 and self.task != "text":
            raise ValueError(f"model.span: {self.model.span}, but spans of tokens apply to task 'text' only (task "
                             f"{self.task!r} selects patches): set model.span to 1")
        if self.mode == "rekd":
            if not self.model.teacher_run:
                raise ValueError("mode 'rekd' needs model.teacher_run (the run directory of a trained RE teacher)")
        grid = _grid_mismatch(self.model.teacher, self.model.student)
        if grid:
            raise ValueError("teacher and student must see the same positions: model.teacher has img_size/patch_size/"
                             f"in_chans {grid[0]}, model.student {grid[1]}")
        check_task(self.data.dataset, self.task)
        if self.schedule.tau_final > self.schedule.tau0:
            raise ValueError("schedule.tau_final must not exceed schedule.tau0 (tau anneals downwards)")
        return self


# --- which runs can teach which: the one rule, applied here to model.teacher and, between two
# configs, by the API (a run, pipeline or sweep requested), `rekd validate`, sweeps and the trainer

def _grid_mismatch(teacher: Backbone | None, student: Backbone | None) -> tuple[str, str] | None:
    """(the teacher's, the student's) img_size/patch_size/in_chans when both read patch grids and these
    differ, else None: an image teacher and its student must select the same positions (texts: the
    same data.tokenizer and max_len, which teacher_mismatch compares)."""
    if isinstance(teacher, PatchGrid) and isinstance(student, PatchGrid):
        t = f"{teacher.img_size}/{teacher.patch_size}/{teacher.in_chans}"
        s = f"{student.img_size}/{student.patch_size}/{student.in_chans}"
        if t != s:
            return t, s
    return None


def not_a_teacher(teacher: ExperimentConfig) -> str | None:
    """Why a run with config `teacher` can teach no run at all (None: it can): a teacher is an RE run."""
    if teacher.mode != "re":
        return f"the teacher must be an RE run (it has mode {teacher.mode!r})"
    return None


def teacher_mismatch(student: ExperimentConfig, teacher: ExperimentConfig, *,
                     student_classes: Sequence[str] | None = None,
                     teacher_classes: Sequence[str] | None = None) -> str | None:
    """Why `teacher` (an RE run's config) cannot teach `student`, or None when it can: an RE run of
    the same task, dataset (labels from the same column; the same classes where both are known),
    that sees the same positions (the same patch grid, or one tokenizer and max_len).

    The class lists are compared when both are known (the trainer knows them; the API knows the
    teacher's only once it has a checkpoint)."""
    why = not_a_teacher(teacher)
    if why:
        return why
    if teacher.task != student.task:
        return (f"the teacher is a {teacher.task} run and this is a {student.task} run: teacher and student must "
                "read the same modality")
    t, s = teacher.data, student.data
    if t.dataset != s.dataset:
        return (f"the teacher was trained on dataset {excerpt(t.dataset)!r}, this run uses {excerpt(s.dataset)!r}: "
                "distil on the teacher's dataset")
    if parse_spec(s.dataset) is not None and t.label_column != s.label_column:
        return (f"the teacher read its labels from column {excerpt(t.label_column)!r} (data.label_column), this "
                f"run from {excerpt(s.label_column)!r}")
    if student_classes is not None and teacher_classes is not None and list(student_classes) != list(teacher_classes):
        return (f"the teacher's classes ({excerpt(', '.join(map(str, teacher_classes)))}) are not this run's "
                f"({excerpt(', '.join(map(str, student_classes)))})")
    if student.task == "text":
        if (t.tokenizer, t.max_len) != (s.tokenizer, s.max_len):
            return ("teacher and student must share one tokenizer and max_len: teacher has "
                    f"{excerpt(t.tokenizer)!r}/{t.max_len}, student {excerpt(s.tokenizer)!r}/{s.max_len}")
        return None
    grid = _grid_mismatch(teacher.model.student, student.model.student)
    if grid:
        return ("teacher and student must see the same patch grid: teacher has img_size/patch_size/in_chans "
                f"{grid[0]}, student {grid[1]}")
    return None


class ConfigError(ValueError):
    """A config that was refused; `errors` names each field and what it allows."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [{"field": "(config)", "message": message}]


def validation_errors(err: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in err.errors():
        parts = [excerpt(p, 60) for p in e["loc"] if not str(p).startswith("function-after")]
        # drop pydantic's union-member tags (e.g. 'vit', 'cnn', 'bert') from the field path
        loc = ".".join(p for p in parts if p not in ("vit", "cnn", "bert")) or "(config)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "literal_error":
            shown = repr(e.get("input"))
            msg = f"got {shown if len(shown) <= 60 else shown[:60] + '…'}; {msg}"
        elif e["type"] in ("union_tag_not_found", "union_tag_invalid"):
            # pydantic's words are about its discriminator; say which architectures there are
            got = "no `kind`" if e["type"] == "union_tag_not_found" else f"kind {e['ctx']['tag'][:60]!r}"
            msg = f"{got}: set kind to 'vit' or 'cnn' (images) or 'bert' (texts)"
        field_named = re.match(r"((?:model|data|loss|schedule|optim|train)(?:\.\w+)+): (.+)", msg, re.S)
        if loc == "(config)" and field_named:  # a whole-config check that names its field
            loc, msg = field_named.groups()
        out.append({"field": loc, "message": msg})
    return out


def parse_config(data: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        errors = validation_errors(err)
        text = "invalid config:\n  " + "\n  ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ConfigError(text, errors) from None


def _parse_value(text: str) -> Any:
    # Numbers first (YAML 1.1 reads "3e-4" as a string), then YAML scalars: true -> bool,
    # null -> None, [1, 2] -> list; anything else stays a string.
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at the dotted config path `path` (e.g. `loss.alpha`) of the nested dict `data`, in
    place, making the missing sections; ConfigError (its field: `path`) when a part of the way is not a
    section."""
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{part!r} is not a section", [{"field": path, "message": f"{part!r} is not a section"}])
        node = nxt
    node[parts[-1]] = value


def override_key(item: str) -> str:
    """The config path an override `key.path=value` sets."""
    return item.split("=", 1)[0].strip()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings to a nested dict (a deep copy is returned)."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, value = item.split("=", 1)
        try:
            set_path(out, key.strip(), _parse_value(value))
        except ConfigError as err:
            raise ConfigError(f"override {key!r}: {err}") from None
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    return data


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
