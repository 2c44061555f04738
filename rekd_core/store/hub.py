"""A trained run as a Hugging Face-format model folder: share it, load it with `from_pretrained`, push it.

`rekd export RUN --format hf OUT` (export_hf) writes:

    OUT/config.json               what rebuilds the model: the run's experiment config, class names,
                                  task and mode, mask settings, rekd version, the checkpoint exported
    OUT/model.safetensors         the rationale model's weights at that checkpoint (an REKD run's
                                  student only: its teacher stays behind), with a SHA-256 of them
    OUT/tokenizer.json, ...       text: the shared tokenizer (save_pretrained), so loading needs no network
    OUT/backbone/config.json      text on a pretrained encoder: its architecture (the weights are in
                                  model.safetensors, so the encoder's own checkpoint is not needed)
    OUT/preprocessor_config.json  images: size, channels, normalisation, patch grid
    OUT/README.md                 the model card: test and dev figures, faithfulness, plausibility,
                                  the run's warnings and example rationales
    OUT/examples/*.png            images: the card's example rationales

`RekdModel.from_pretrained(OUT)` (huggingface_hub's PyTorchModelHubMixin, so a Hub repo id works
too, and `push_to_hub`) rebuilds it; its predictions and masks are those of the run's own checkpoint.
`rekd explain OUT INPUT` and POST /api/explain (`model_dir`) read such a folder like a run directory:
analysis/explain.py's load_run tells them apart (`is_export`).

A folder is read only inside itself: the tokenizer and encoder config come from the folder, never
from the paths in the stored experiment config (which names the run's data and teacher as they were).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from huggingface_hub.repocard_data import EvalResult
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .. import __version__
from ..config import ExperimentConfig, TextBackbone, config_to_dict, parse_config
from ..data.features import Inputs, TextFeaturizer, VisionFeaturizer, build_featurizer, to_device_inputs
from ..model.backbones import BertBackbone, architecture_only
from ..model.masks import selection_probs
from ..model.runmodel import LoadedRun, build_model
from .checkpoint import DIGEST_KEY, load_checkpoint, tensors_digest

if TYPE_CHECKING:
    from ..analysis.explain import Explanation

FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
PREPROCESSOR = "preprocessor_config.json"
BACKBONE_DIR = "backbone"
CARD = "README.md"
EXAMPLES_DIR = "examples"
CARD_EXAMPLES = 4  # example rationales on the model card
PIPELINE_TAGS = {"vision": "image-classification", "text": "text-classification"}
MODE_NAMES = {"cls": "classifier (no rationale: CLS baseline)", "re": "rationale-extraction (RE) model",
              "rekd": "REKD student (rationale-extraction knowledge distillation)"}


def is_export(path: str | Path) -> bool:
    """Whether `path` is an exported model folder (config.json + model.safetensors), not a run directory."""
    p = Path(path)
    try:
        return (p / CONFIG).is_file() and (p / WEIGHTS).is_file()
    except (OSError, ValueError):  # a name too long, a NUL: no folder of any kind
        return False


def _export_config(path: Path) -> dict[str, Any]:
    """config.json of an exported folder; ValueError when it is none (naming the path)."""
    try:
        data = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        raise ValueError(f"{path}: its config.json cannot be read as JSON; not an exported rekd model") from None
    if not isinstance(data, dict) or "rekd_format" not in data:
        raise ValueError(f"{path}: config.json is not that of an exported rekd model (no 'rekd_format'); a run "
                         "directory is exported with `rekd export RUN --format hf OUT`")
    if data["rekd_format"] != FORMAT_VERSION:
        raise ValueError(f"{path}: exported with format {data['rekd_format']!r}; this rekd ({__version__}) reads "
                         f"format {FORMAT_VERSION}")
    return data


def _buildable(experiment: dict[str, Any], folder: Path | None) -> ExperimentConfig:
    """The run's config as this folder rebuilds it: weights never come from a pretrained source (they
    are all in model.safetensors) and, from a folder, the tokenizer and encoder config are its own."""
    d = copy.deepcopy(experiment)
    student = d["model"]["student"]
    if student.get("kind") in ("vit", "cnn"):
        if "pretrained" in student:
            student["pretrained"] = False  # timm's architecture needs no weights file
    elif folder is not None:
        d["data"]["tokenizer"] = str(folder)
        if student.get("pretrained"):
            student["pretrained"] = str(folder / BACKBONE_DIR)
    return parse_config(d)


@dataclass
class RationaleOutput:
    """What the model computed for a batch: the mask is exactly what the predictor saw."""

    logits: torch.Tensor  # (B, C)
    probabilities: torch.Tensor  # (B, C)
    mask: torch.Tensor  # (B, L) 1 = the predictor read this position (all selectable ones for a CLS model)
    selection_prob: torch.Tensor  # (B, L) the generator's keep probability (the mask itself for CLS)


class RekdModel(nn.Module, PyTorchModelHubMixin, library_name="rekd",
                tags=["rationale-extraction", "interpretability"]):
    """An exported rekd model: `RekdModel.from_pretrained(folder or Hub repo id)`.

    `model` is the RationaleModel (generator + predictor), `featurizer` turns images or texts into its
    inputs, `class_names` names its outputs. `explain(x)` gives what `rekd explain` gives; `forward`
    takes prepared `Inputs` (`preprocess`). `save_pretrained` / `push_to_hub` write the same folder
    (model card and example images included when it was loaded from one).
    """

    def __init__(self, config: dict[str, Any], folder: str | None = None) -> None:
        super().__init__()
        if "rekd_format" not in config or "experiment" not in config:
            raise ValueError("config: not that of an exported rekd model (needs 'rekd_format' and 'experiment')")
        self.config = config
        self.folder = Path(folder) if folder is not None else None
        self.experiment = _buildable(config["experiment"], self.folder)
        self.class_names: list[str] = list(config["class_names"])
        self.featurizer = build_featurizer(self.experiment)
        with architecture_only():  # every weight comes from the checkpoint
            self.model = build_model(self.experiment, self.experiment.model.student,
                                     num_classes=len(self.class_names), featurizer=self.featurizer,
                                     with_generator=self.experiment.mode != "cls")
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        self.card: str | None = None  # README.md text, written by save_pretrained / push_to_hub

    # --- what it is ----------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.experiment.task

    @property
    def step(self) -> int:
        return int(self.config.get("checkpoint", {}).get("step", 0))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- building ------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best") -> RekdModel:
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
        model = cls(config)
        model.load_state_dict(weights, strict=True)
        return model

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", strict: bool = True, config: dict[str, Any] | None = None,
                         **model_kwargs: Any) -> RekdModel:
        # a folder is read as it is; a Hub repo id is downloaded whole (tokenizer, card, images)
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir,
                                            force_download=force_download, token=token,
                                            local_files_only=local_files_only))
        return load_folder(folder, device=map_location)

    # --- saving --------------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        weights = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        config = copy.deepcopy(self.config)
        config.setdefault("checkpoint", {})["sha256"] = tensors_digest(weights)  # of what is written now
        (save_directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        save_file(weights, str(save_directory / WEIGHTS),
                  metadata={"format": "pt", DIGEST_KEY: config["checkpoint"]["sha256"]})
        # safetensors writes 0600; a folder to share is readable like its other files
        shutil.copymode(save_directory / CONFIG, save_directory / WEIGHTS)
        feat = self.featurizer
        if isinstance(feat, TextFeaturizer):
            feat.tokenizer.save_pretrained(str(save_directory))
            spec = self.experiment.model.student
            if isinstance(spec, TextBackbone) and spec.pretrained:
                bert = cast(BertBackbone, self.model.predictor).bert
                bert.config.save_pretrained(str(save_directory / BACKBONE_DIR))
        else:
            (save_directory / PREPROCESSOR).write_text(json.dumps(_preprocessor(feat), indent=2) + "\n")
        source = self.folder
        if source is not None and source.resolve() != save_directory.resolve() and (source / EXAMPLES_DIR).is_dir():
            shutil.copytree(source / EXAMPLES_DIR, save_directory / EXAMPLES_DIR, dirs_exist_ok=True)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        # the exported card (figures, examples) travels with the model; the mixin's template otherwise
        if self.card is not None:
            return ModelCard(self.card)
        return super().generate_model_card(*args, **kwargs)

    # --- using ---------------------------------------------------------------------------------
    def preprocess(self, items: Any) -> Inputs:
        """One image (PIL or array) or text, or a list of them (images of one size), as model inputs."""
        from ..analysis.explain import _image_array, normalise_text

        many = isinstance(items, (list, tuple))
        batch = list(items) if many else [items]
        feat, dev = self.featurizer, self.device
        if isinstance(feat, TextFeaturizer):
            if not all(isinstance(t, str) for t in batch):
                raise ValueError("this model reads texts; give a text or a list of texts")
            enc = feat.encode([normalise_text(t) for t in batch])
            return to_device_inputs(feat._inputs(enc["ids"], enc["attention"], enc["special"]), dev)
        if any(isinstance(t, str) for t in batch):
            raise ValueError("this model reads images; give an image (PIL or array) or a list of them")
        arrays = [_image_array(t) for t in batch]
        tensors = [torch.from_numpy(a.copy()) for a in arrays]
        tensors = [t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1) for t in tensors]
        if len({tuple(t.shape) for t in tensors}) > 1:
            raise ValueError("images in one batch must share one size and channel count; explain them one by one")
        x = feat.pixels(torch.stack(tensors).to(dev))
        return Inputs(x=x, attention=None, selectable=torch.ones(len(tensors), feat.num_positions, device=dev),
                      keep=None)

    def forward(self, inputs: Inputs) -> RationaleOutput:
        """The deterministic rationale (argmax Z, or top-k) and the prediction made from it alone
        (under autograd if the caller wants gradients w.r.t. the inputs; `predict` runs without)."""
        m = self.model
        if m.with_generator:
            z = m.generate(inputs)
            mask = m.select(z, inputs.selectable)
            logits = m.predict(inputs, mask)
            sel = selection_probs(z)
            mask = mask * inputs.selectable[:, :mask.shape[1]]
        else:
            logits = m.predict(inputs, None)
            mask = sel = inputs.selectable
        return RationaleOutput(logits=logits, probabilities=torch.softmax(logits.float(), -1), mask=mask,
                               selection_prob=sel)

    @torch.no_grad()
    def predict(self, items: Any) -> list[dict[str, Any]]:
        """Per item: {label, label_index, probabilities (class -> p), mask (per position)}."""
        out = self(self.preprocess(items))
        rows = []
        for probs, mask in zip(out.probabilities.tolist(), out.mask.tolist()):
            k = int(np.argmax(probs))
            rows.append({"label": self.class_names[k], "label_index": k,
                         "probabilities": dict(zip(self.class_names, probs)), "mask": [int(v) for v in mask]})
        return rows

    def explain(self, inp: Any, *, evidence: Any = None) -> Explanation:
        """What `rekd explain` gives for one image or text: rationale, positions, faithfulness, ..."""
        from ..analysis.explain import explain

        return explain(self.as_run(), inp, evidence=evidence)

    def as_run(self) -> ExportedRun:
        """This model as analysis/explain.py reads a trained run."""
        return ExportedRun(self)


class ExportedRun(LoadedRun):
    """An exported model in the shape of a LoadedRun (what explain() takes). It has no teacher and no
    events: its warnings are those stored at export."""

    def __init__(self, hub: RekdModel) -> None:  # nothing to read: the model is built
        self.hub = hub
        self.run_dir = hub.folder if hub.folder is not None else Path(hub.config["checkpoint"]["run"])
        self.checkpoint_path = self.run_dir / WEIGHTS
        self.meta = hub.config
        self.config = parse_config(hub.config["experiment"])  # as trained (baseline checks compare it)
        self.class_names = hub.class_names
        self.step = hub.step
        self.device = hub.device
        self.featurizer = hub.featurizer
        self.model = hub.model
        self.warnings: list[dict[str, str]] = [
            {k: str(w.get(k, "")) for k in ("code", "message", "detail")}
            for w in hub.config.get("warnings") or [] if isinstance(w, dict)]


def load_folder(folder: str | Path, device: str | torch.device = "cpu") -> RekdModel:
    """An exported folder's model, its weights checked against the SHA-256 they were written with."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    for name in (CONFIG, WEIGHTS):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: no {name}; not an exported rekd model (a run is exported with "
                                    "`rekd export RUN --format hf OUT`)")
    config = _export_config(root)
    # shapes first, on the meta device: a config.json that describes another (say a far larger) model
    # than model.safetensors holds is refused before anything is allocated
    with torch.device("meta"):
        skeleton = RekdModel(config, folder=str(root))
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = weights_shapes(root)
    if want != have:
        odd = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
        raise ValueError(f"{root / WEIGHTS}: its tensors do not fit the model config.json describes (first "
                         f"difference: {odd[0][:120]})")
    model = RekdModel(config, folder=str(root))
    tensors, _ = load_checkpoint(root / WEIGHTS)
    model.load_state_dict(tensors, strict=True)
    card = root / CARD
    model.card = card.read_text(encoding="utf-8") if card.is_file() else None
    return model.to(device)


def weights_shapes(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the folder's model.safetensors, from its header alone (nothing loaded)."""
    path = Path(folder) / WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error type
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None


def weights_parameter_count(folder: str | Path) -> int:
    """How many numbers the folder's model holds (the API's REKD_MAX_PARAMS check), from the header."""
    return sum(int(np.prod(shape)) for shape in weights_shapes(folder).values())


def load_export(folder: str | Path, device: str | torch.device = "cpu") -> ExportedRun:
    """An exported folder as explain() reads a run (analysis/explain.py's load_run)."""
    return load_folder(folder, device).as_run()


# --- config.json and preprocessor_config.json --------------------------------------------------
def _preprocessor(feat: VisionFeaturizer) -> dict[str, Any]:
    """The image settings in the vocabulary of Hugging Face image processors (VisionFeaturizer.pixels)."""
    s = feat.spec
    return {"image_processor_type": "rekd", "do_resize": True, "size": {"height": s.img_size, "width": s.img_size},
            "resample": "bilinear", "antialias": True, "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True, "image_mean": [0.5] * s.in_chans, "image_std": [0.5] * s.in_chans,
            "in_chans": s.in_chans, "channels": "averaged to gray when in_chans is 1, gray repeated when 3",
            "patch_size": s.patch_size, "grid": list(s.grid), "num_positions": feat.num_positions}


def _config_of(root: Path, cfg: ExperimentConfig, class_names: list[str], *, which: str, step: int,
               weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    from ..analysis.quality import run_warnings

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
    model = RekdModel.from_run(run_dir, checkpoint)
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
    from ..analysis.quality import _read_json, last_event

    dev = last_event(run_dir, "eval", step=step) or last_event(run_dir, "eval")
    test = _read_json(run_dir / "results.json").get("test")
    return dev, test if isinstance(test, dict) else None, (dev or {}).get("step")


def _results_table(dev: dict[str, Any] | None, test: dict[str, Any] | None, dev_step: Any) -> list[str]:
    from ..analysis.quality import figure

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

    from ..analysis.explain import explain
    from .examples import read_inputs
    from .runstore import RunStore

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
        "## Use", "", "```python", "from rekd_core.store.hub import RekdModel", "",
        'model = RekdModel.from_pretrained("path/or/hub-id")  # this folder, or its Hub repo',
        "ex = model.explain(image_or_text)  # .label, .probabilities, .mask, .positions, .faithfulness",
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
