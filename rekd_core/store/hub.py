"""A trained run as a Hugging Face-format model folder: share it, load it with `from_pretrained`, push it.

`rekd export RUN --format hf OUT` (analysis/hub_export.py: export_hf, which needs the analysis for
the model card) writes:

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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .. import __version__
from ..config import ExperimentConfig, TextBackbone, parse_config
from ..data.features import Inputs, TextFeaturizer, VisionFeaturizer, build_featurizer, to_device_inputs
from ..data.inputs import image_array, normalise_text
from ..model.backbones import BertBackbone, architecture_only
from ..model.masks import selection_probs
from ..model.runmodel import LoadedRun, build_model
from .checkpoint import DIGEST_KEY, load_checkpoint, tensors_digest

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
        arrays = [image_array(t) for t in batch]
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


def _preprocessor(feat: VisionFeaturizer) -> dict[str, Any]:
    """The image settings in the vocabulary of Hugging Face image processors (VisionFeaturizer.pixels)."""
    s = feat.spec
    return {"image_processor_type": "rekd", "do_resize": True, "size": {"height": s.img_size, "width": s.img_size},
            "resample": "bilinear", "antialias": True, "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True, "image_mean": [0.5] * s.in_chans, "image_std": [0.5] * s.in_chans,
            "in_chans": s.in_chans, "channels": "averaged to gray when in_chans is 1, gray repeated when 3",
            "patch_size": s.patch_size, "grid": list(s.grid), "num_positions": feat.num_positions}
