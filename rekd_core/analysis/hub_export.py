"""`rekd export RUN --format hf OUT`: a trained run as a Hugging Face-format model folder (the
format, and RekdModel which loads it, are store/hub.py's), with a model card whose figures and
example rationales are read from the run and explained by the exported model itself. Here, not in
store/, because the card needs the analysis: the run's warnings and explain()."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from huggingface_hub import ModelCardData
from huggingface_hub.repocard_data import EvalResult

from .. import __version__
from ..config import ExperimentConfig, TextBackbone, config_to_dict, parse_config
from ..data.features import TextFeaturizer
from ..store.checkpoint import load_checkpoint, tensors_digest
from ..store.examples import read_inputs
from ..store.hub import (
    CARD_EXAMPLES,
    EXAMPLES_DIR,
    FORMAT_VERSION,
    MODE_NAMES,
    PIPELINE_TAGS,
    RekdModel,
    _export_config,
    is_export,
)
from ..store.runstore import RunStore
from .explain import explain
from .quality import _read_json, last_event, run_warnings


# --- config.json and preprocessor_config.json --------------------------------------------------
def _config_of(root: Path, cfg: ExperimentConfig, class_names: list[str], *, which: str, step: int,
               weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    feat_settings: dict[str, Any] = {"selection": cfg.model.selection, "span": cfg.model.span,
                                     "p_target": cfg.loss.p_target, "share_backbone": cfg.model.share_backbone,
                                     "with_generator": cfg.mode != "cls"}
    if cfg.task == "text":
        feat_settings.update(max_len=cfg.data.max_len, dropped_token=cfg.model.dropped_token,
                             count_special=bool(cfg.loss.count_special), tokenizer=cfg.data.tokenizer)
    else:
        spec = cfg.model.student
        feat_settings.update(grid=list(cast(Any, spec).grid), patch_size=cast(Any, spec).patch_size)
    return {
        "rekd_format": FORMAT_VERSION, "rekd_version": __version__, "library_name": "rekd",
        "loader": "rekd_core.store.hub.RekdModel.from_pretrained",
        "task": cfg.task, "mode": cfg.mode, "pipeline_tag": PIPELINE_TAGS[cfg.task],
        "class_names": class_names, "num_labels": len(class_names),
        "id2label": {str(i): c for i, c in enumerate(class_names)},
        "label2id": {c: i for i, c in enumerate(class_names)},
        "backbone": cfg.model.student.model_dump(mode="json"),
        "mask": feat_settings,
        "checkpoint": {"run": str(root.resolve()), "run_id": root.name, "which": which, "step": step,
                       "sha256": tensors_digest(weights)},
        "experiment": config_to_dict(cfg),
        "warnings": run_warnings(root),
    }


def model_from_run(run_dir: str | Path, checkpoint: str = "best") -> RekdModel:
    """The model of a run directory's checkpoint (`best`, else `last`), ready to save_pretrained."""
    root = Path(run_dir)
    if is_export(root):
        raise ValueError(f"{root}: is already an exported model folder; export a run directory")
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root}: not a run directory (no config.json)")
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint: {checkpoint!r}; allowed: 'best', 'last'")
    path = root / "checkpoints" / f"{checkpoint}.safetensors"
    if not path.exists() and checkpoint == "best":
        path = root / "checkpoints" / "last.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{root}: no checkpoint to export (looked for checkpoints/{checkpoint}"
                                ".safetensors): train the run first")
    tensors, meta = load_checkpoint(path)
    cfg = parse_config(meta["config"])
    weights = {k: v for k, v in tensors.items() if k.startswith("model.")}
    config = _config_of(root, cfg, list(meta["class_names"]), which=path.stem, step=int(meta.get("step", 0)),
                        weights=weights)
    model = RekdModel(config)
    model.load_state_dict(weights, strict=True)
    return model


# --- export ------------------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    """Refuse a target that is a file, or a non-empty folder that is not a previous export."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            _export_config(out)
        except ValueError:
            raise FileExistsError(f"{out}: is not empty and is not a previous rekd export; give a new or empty "
                                  "folder (a previous export is replaced)") from None


def export_hf(run_dir: Path, out: Path, *, checkpoint: str = "best") -> Path:
    """Write the run's `checkpoint` (best, else last) as a Hugging Face-format folder at `out` (see
    the module doc) and return it. A previous export there is replaced whole; the folder is built
    beside it and moved into place, so a failure leaves the old one (or nothing) there."""
    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    _check_out(out)
    model = model_from_run(run_dir, checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.parent / f".{out.name}.part-{secrets.token_hex(3)}"
    part.mkdir()
    try:
        examples = _card_examples(model, run_dir, part)
        model.card = model_card(model, run_dir, examples)
        model.save_pretrained(part)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{secrets.token_hex(3)}"
            os.replace(out, old)
        os.replace(part, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return out


# --- the model card ------------------------------------------------------------------------------
# (label, path in an eval event / test result, format): rows of the card's results table
_FIGURES: list[tuple[str, tuple[str, ...], str]] = [
    ("accuracy", ("accuracy",), "pct"),
    ("macro F1", ("macro_f1",), "num"),
    ("share of positions selected", ("selected", "mean"), "pct"),
    ("comprehensiveness ↑ (p(ŷ \\| x) − p(ŷ \\| x without the rationale))", ("faithfulness", "comprehensiveness"),
     "num"),
    ("sufficiency ↓ (p(ŷ \\| x) − p(ŷ \\| the rationale alone))", ("faithfulness", "sufficiency"), "num"),
    ("plausibility precision (rationale that is evidence)", ("plausibility", "precision"), "num"),
    ("plausibility recall (evidence selected)", ("plausibility", "recall"), "num"),
    ("plausibility F1", ("plausibility", "f1"), "num"),
    ("plausibility IoU", ("plausibility", "iou"), "num"),
    ("precision of a random rationale of that size", ("plausibility", "random", "precision"), "num"),
    ("share of distinct masks (input dependence)", ("input_dependence", "distinct_share"), "pct"),
    ("accuracy with one fixed mask for every input", ("input_dependence", "fixed_accuracy"), "pct"),
    ("mask-only probe accuracy", ("probe", "accuracy"), "pct"),
    ("probe chance", ("probe", "chance"), "pct"),
]


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if kind == "pct" else f"{value:.3f}"


def _results(run_dir: Path, step: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None, int | None]:
    """(the dev evaluation at the exported step, else the latest; the test result; that eval's step)."""
    dev = last_event(run_dir, "eval", step=step) or last_event(run_dir, "eval")
    test = _read_json(run_dir / "results.json").get("test")
    return dev, test if isinstance(test, dict) else None, (dev or {}).get("step")


def _results_table(dev: dict[str, Any] | None, test: dict[str, Any] | None, dev_step: Any) -> list[str]:
    from .quality import figure

    rows = []
    for label, path, kind in _FIGURES:
        d, t = figure(dev, path), figure(test, path)
        if d is None and t is None:
            continue
        rows.append(f"| {label} | {_fmt(d, kind)} | {_fmt(t, kind)} |")
    if not rows:
        return ["No evaluation was recorded for this run."]
    return [f"| figure | dev (step {dev_step}) | test |", "|---|---:|---:|", *rows]


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _bold_rationale(text: str, positions: list[dict[str, Any]], mask: list[int]) -> str:
    """The text with each run of selected tokens in **bold** (markdown-escaped)."""
    spans = [tuple(p["span"]) for p, m in zip(positions, mask) if m and p.get("selectable", True)]
    merged: list[list[int]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if merged and a <= merged[-1][1] + 1 and not text[merged[-1][1]:a].strip():
            merged[-1][1] = max(merged[-1][1], b)  # adjacent tokens (or one space apart) read as one phrase
        else:
            merged.append([a, b])
    parts, at = [], 0
    for a, b in merged:
        parts.append(_md(text[at:a]))
        parts.append(f"**{_md(text[a:b])}**")
        at = b
    parts.append(_md(text[at:]))
    return "".join(parts)


def _render(image: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """The input beside its rationale (unselected patches blanked), enlarged so small images show."""
    pair = np.concatenate([image, np.full_like(image[:, :4], 255), masked], axis=1)
    scale = max(1, 112 // max(image.shape[0], 1))
    return pair.repeat(scale, 0).repeat(scale, 1)


def _card_examples(model: RekdModel, run_dir: Path, out: Path) -> list[str]:
    """Markdown for the first saved dev examples, explained by the exported model (images: PNGs in out)."""
    from PIL import Image


    store = RunStore(run_dir)
    inputs = read_inputs(store)
    if not inputs:
        return []
    run = model.as_run()
    labels, names = inputs.get("labels") or [], model.class_names
    lines: list[str] = []
    if isinstance(model.featurizer, TextFeaturizer):
        for i, item in enumerate((inputs.get("items") or [])[:CARD_EXAMPLES]):
            ex = explain(run, item["text"])
            truth = names[labels[i]] if i < len(labels) else "?"
            lines.append(f"{i + 1}. true **{_md(truth)}**, predicted **{_md(ex.label)}** "
                         f"(p = {ex.probabilities[ex.label]:.2f}),"
                         f" {sum(ex.mask)} token(s) kept: {_bold_rationale(item['text'], ex.positions, ex.mask)}")
        return lines
    path = store.examples / "inputs.safetensors"
    if not path.exists():
        return []
    images = load_checkpoint(path)[0]["images"][:CARD_EXAMPLES]
    (out / EXAMPLES_DIR).mkdir(exist_ok=True)
    for i, img in enumerate(images):
        arr = img.numpy()
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
        ex = explain(run, arr)
        name = f"{EXAMPLES_DIR}/example-{i}.png"
        Image.fromarray(_render(arr, ex.masked_input)).save(out / name)
        truth = names[labels[i]] if i < len(labels) else "?"
        lines.append(f"| ![example {i}]({name}) | {_md(truth)} | {_md(ex.label)} "
                     f"({ex.probabilities[ex.label]:.2f}) | {sum(ex.mask)} of {len(ex.mask)} |")
    if lines:
        lines = ["| input, rationale | true | predicted (p) | patches kept |", "|---|---|---|---|", *lines]
    return lines


def dataset_name(spec: str) -> str:
    """The dataset as a card names it: a built-in name or a Hub id as given, your own data by its
    kind and file or folder name only (a server path is no business of the card's readers)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind == "hf":
        return rest.partition(":")[0] if sep else spec
    return f"{kind}:{Path(rest).name}"


def _card_data(model: RekdModel, test: dict[str, Any] | None, dev: dict[str, Any] | None) -> ModelCardData:
    cfg = model.experiment
    data = dataset_name(cfg.data.dataset)
    results = []
    for split, metrics in (("test", test), ("validation", dev)):
        for name, value in (("accuracy", (metrics or {}).get("accuracy")),
                            ("comprehensiveness", ((metrics or {}).get("faithfulness") or {}).get("comprehensiveness")),
                            ("sufficiency", ((metrics or {}).get("faithfulness") or {}).get("sufficiency"))):
            if isinstance(value, (int, float)) and np.isfinite(value):
                results.append(EvalResult(task_type=PIPELINE_TAGS[cfg.task], dataset_type=data,
                                          dataset_name=data, dataset_split=split, metric_type=name,
                                          metric_value=round(float(value), 4), metric_name=f"{split} {name}"))
    return ModelCardData(library_name="rekd", pipeline_tag=PIPELINE_TAGS[cfg.task], model_name=cfg.name,
                         tags=["rationale-extraction", "interpretability", "rekd", f"rekd-{cfg.mode}"],
                         metrics=["accuracy"], eval_results=results or None)


def model_card(model: RekdModel, run_dir: Path, examples: list[str]) -> str:
    """README.md: YAML front matter (library, tags, pipeline, results) and the figures read from the run."""
    cfg, step = model.experiment, model.step
    ck = model.config["checkpoint"]
    dev, test, dev_step = _results(run_dir, step)
    if isinstance(cfg.model.student, TextBackbone):
        what = "tokens"
        enc = cfg.model.student.pretrained or (f"a {cfg.model.student.num_layers}-layer BERT "
                                               f"({cfg.model.student.hidden_size} wide)")
        arch = f"text encoder {enc}, at most {cfg.data.max_len} tokens"
    else:
        grid = cast(Any, cfg.model.student).grid
        what = f"patches ({grid[0]}×{grid[1]} grid)"
        arch = f"{cfg.model.student.kind} on {cfg.model.student.img_size} px images, patches of " \
               f"{cfg.model.student.patch_size} px"
    classes = ", ".join(model.class_names)
    lines = [
        f"# {cfg.name}", "",
        f"A rekd {MODE_NAMES[cfg.mode]} for {cfg.task} classification on "
        f"`{dataset_name(cfg.data.dataset)}` ({len(model.class_names)} classes: {_md(classes)}), exported from run "
        f"`{ck['run_id']}` at step {step} (its `{ck['which']}` checkpoint). "
        + (f"A generator picks {what} and the predictor classifies from those alone, so the highlighted part "
           "*is* what the decision used." if cfg.mode != "cls" else "It reads the whole input (no rationale)."),
        "", f"Architecture: {arch}.", "",
        "## Use", "", "```python", "from rekd_core.analysis.explain import explain",
        "from rekd_core.store.hub import RekdModel", "",
        'model = RekdModel.from_pretrained("path/or/hub-id")  # this folder, or its Hub repo',
        "ex = explain(model.as_run(), image_or_text)  # .label, .probabilities, .mask, .positions, .faithfulness",
        "```", "", "or `rekd explain <folder> <image | --text TEXT>`.", "",
        "## Results", "", *_results_table(dev, test, dev_step), "",
        "Comprehensiveness and sufficiency are ERASER's faithfulness scores (higher comprehensiveness: removing the "
        "rationale hurts the prediction; lower sufficiency: the rationale alone keeps it). Plausibility compares "
        "the rationale with known evidence, where the dataset has some"
        + ("." if figure_known(dev, test, "plausibility") else ": this one has none, so it was not measured."),
        "",
    ]
    warns = model.as_run().warnings
    if warns:
        lines += ["## Warnings", "", *[f"- **{_md(w['message'])}**: {_md(w['detail'])}" for w in warns], ""]
    lines += ["## Example rationales", ""]
    lines += examples or ["No examples were saved with this run."]
    lines += ["", "## Training", "",
              f"Mode `{cfg.mode}`" + (f", distilled from teacher run `{Path(cfg.model.teacher_run).name}`"
                                      if cfg.mode == "rekd" and cfg.model.teacher_run else "")
              + f"; {cfg.train.max_steps} steps; rekd {__version__}. The full experiment config is in "
              "`config.json` (`experiment`), with the dataset and run paths as they were on the machine that "
              "trained it.", ""]
    return f"---\n{_card_data(model, test, dev).to_yaml()}\n---\n\n" + "\n".join(lines)


def figure_known(dev: dict[str, Any] | None, test: dict[str, Any] | None, key: str) -> bool:
    return any(isinstance((m or {}).get(key), dict) for m in (dev, test))
