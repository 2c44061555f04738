"""The checks a run must pass before it trains: one function owns each.

The API calls them when a run, a pipeline, a sweep or a clone is requested (a failure is a 422 at
the field, before anything is written or queued); the worker and the trainer call the same
functions before training, so a run refused there could not have been accepted at the door.

- a distilled run's teacher: `rekd_core.config.teacher_mismatch` (an RE run of the same task,
  dataset (and classes, where known) that sees the same positions: the same patch grid, or one
  tokenizer and max_len); model.init_from's run: `rekd_core.train.init_from.init_mismatch`.
- `check_model_size`: the model a run would build (generator and predictor, teacher excluded: it is
  a trained run already) has at most `max_params` parameters (REKD_MAX_PARAMS). Counted by building
  the model on PyTorch's meta device: shapes only, no memory, the very code that builds it for
  training, so every check the constructors make (heads dividing the width, a pretrained encoder's
  layers, vocabulary and positions) runs too.
- dataset availability is `rekd_core.data.sources.check_available` (a built-in dataset's files or
  package are there), user data is read whole by `rekd_core.data.load.load_dataset`.
- `outside_roots`: a path a request names (data, data.root, a tokenizer or weights folder, a run
  directory) lies inside the folders the service may read (the API only; the CLI is unconfined).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import ExperimentConfig
from .data.features import MINILM_ALIASES, build_featurizer, resolve_text_source
from .data.registry import DATASETS
from .data.spec import parse_spec
from .excerpts import excerpt
from .model.models import count_parameters
from .model.runmodel import build_model

DEFAULT_MAX_PARAMS = 500_000_000  # ViT-Base (86 M) and BERT-base (110 M) as RE: generator + predictor, twice that


class RunRefused(ValueError):
    """A run that cannot train: `field` is the config path at fault (e.g. model.teacher_run)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ----------------------------------------------------------------------------------- model size


def _num_classes(cfg: ExperimentConfig) -> int:
    info = DATASETS.get(cfg.data.dataset)
    return info.num_classes if info is not None else 2  # user data: a few classes; the heads are tiny


def _hub_only(name: str | None, files: tuple[str, ...]) -> bool:
    """Whether a tokenizer / encoder name is a hub id that is not in the local Hugging Face cache
    (reading it would go to the network)."""
    if not name:
        return False
    try:
        source = resolve_text_source(name)
    except RuntimeError:
        return False  # the offline alias without its package: building says so
    if os.path.isdir(source):
        return False
    try:  # optional here (it comes with transformers): without it nothing is cached
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return True
    try:
        return not any(isinstance(try_to_load_from_cache(source, f), str) for f in files)
    except Exception:  # not a valid repo id: building says so
        return False


def count_model_parameters(cfg: ExperimentConfig, num_classes: int | None = None, *,
                           fetch: bool = True) -> int | None:
    """Parameters of the model `cfg` trains, built on the meta device (no memory, no weights read).

    Raises RunRefused at the field when the model cannot be built: the tokenizer or a pretrained
    encoder cannot be loaded, or a constructor refuses the shape. With `fetch` False (the API),
    nothing is fetched from the network: a tokenizer or encoder named by a hub id that is not in the
    local cache cannot be counted yet (None), and the worker counts it before training."""
    if not fetch and cfg.task == "text":
        pretrained = [getattr(b, "pretrained", None) for b in (cfg.model.student,)]
        if _hub_only(cfg.data.tokenizer, ("tokenizer_config.json", "tokenizer.json", "vocab.txt")) or any(
                isinstance(p, str) and _hub_only(p, ("config.json",)) for p in pretrained):
            return None
    try:
        featurizer = build_featurizer(cfg)
    except Exception as err:  # a tokenizer that is not there: the worker would stop here too
        raise RunRefused("data.tokenizer", f"cannot be loaded ({_reason(err)})") from None
    spec = cfg.model.student
    try:
        with torch.device("meta"):
            model = build_model(cfg, spec, num_classes=num_classes or _num_classes(cfg), featurizer=featurizer,
                                with_generator=cfg.mode != "cls")
    except (OSError, ImportError) as err:  # a pretrained encoder or weights file that cannot be read
        field = "model.student.pretrained" if getattr(spec, "pretrained", None) else "model.student"
        raise RunRefused(field, f"cannot be loaded ({_reason(err)})") from None
    except Exception as err:  # a shape the constructors refuse
        raise RunRefused("model.student", f"cannot be built ({_reason(err)})") from None
    return count_parameters(model)


def check_model_size(cfg: ExperimentConfig, max_params: int, num_classes: int | None = None, *,
                     fetch: bool = True) -> int | None:
    """The parameter count (None: not countable without the network, see count_model_parameters),
    or RunRefused at model.student when it is over `max_params`."""
    n = count_model_parameters(cfg, num_classes, fetch=fetch)
    if n is not None and n > max_params:
        what = "generator and predictor" if cfg.mode != "cls" and not cfg.model.share_backbone else "the model"
        raise RunRefused("model.student", f"{n:,} parameters ({what}) is over this server's budget of "
                                          f"{max_params:,} (REKD_MAX_PARAMS): make the model smaller")
    return n


def _reason(err: BaseException) -> str:
    return excerpt(f"{type(err).__name__}: {err}".replace("\n", " "), 200)


# ----------------------------------------------------------------------------------- paths


def local_path(value: str | None) -> Path | None:
    """A tokenizer / pretrained-encoder name as a local path, or None for a hub id or an alias.

    Hugging Face reads a name as a local folder when one exists under it (relative to the working
    directory too); an absolute, `~` or `.` path is always a path."""
    if not value:
        return None
    if value in MINILM_ALIASES:
        return None
    if value.startswith(("/", "~", ".")) or os.path.isabs(value) or os.path.exists(value):
        return Path(value).expanduser()
    return None


def outside_roots(path: str | Path, roots: Sequence[Path]) -> bool:
    """Whether `path`, resolved (symlinks and `..` followed, nothing read), lies outside every root."""
    try:
        real = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL: not a path to read
        return True
    return not any(real == r or real.is_relative_to(r) for r in roots)


def config_paths(cfg: ExperimentConfig) -> dict[str, str]:
    """Every local path a config makes a worker read, by field (run directories excepted)."""
    out: dict[str, str] = {}
    d = cfg.data
    try:
        spec = parse_spec(d.dataset)
    except ValueError:
        spec = None
    if spec is not None and spec.kind != "hf":
        out["data.dataset"] = spec.target
    elif spec is not None and local_path(spec.target) is not None:  # hf: a local folder by that name
        out["data.dataset"] = spec.target
    if d.root is not None:
        out["data.root"] = d.root
    if cfg.task == "text" and local_path(d.tokenizer) is not None:
        out["data.tokenizer"] = d.tokenizer
    for role in ("student", "teacher"):
        spec_ = getattr(cfg.model, role)
        pre: Any = getattr(spec_, "pretrained", None)
        if isinstance(pre, str) and (getattr(spec_, "kind", "") == "vit" or local_path(pre) is not None):
            out[f"model.{role}.pretrained"] = pre
    return out
