"""Loading a dataset as training reads it: a registry name (builtin.py) or user data (userdata.py),
split into train / dev / test (splits.py), and summarised for `rekd data inspect` and the API."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ..config import DataConfig
from .builtin import bench_params, load_raw
from .raw import DatasetBundle
from .registry import DATASETS, DatasetUnavailable
from .spec import DatasetError, check_spec, check_task, parse_spec
from .splits import check_limit, make_split, plan_splits
from .userdata import LoadOptions, check_split_sizes, load_user_raw, options_for

logger = logging.getLogger(__name__)


def load_dataset(name: str, *, dev_fraction: float = 0.1, split_seed: int = 0,
                 max_train: int | None = None, max_eval: int | None = None,
                 root: str | None = None, options: Any = None, benchmark: Any = None) -> DatasetBundle:
    """Load ``name`` with stratified, seeded train/dev splits and a fixed test split.

    ``name`` is a registry name or a user-data spec (``folder:/abs/dir``, ``csv:/abs/file.csv``,
    ``jsonl:/abs/file.jsonl``, ``hf:<id>[:<config>]``; see rekd_core.data.userdata). User data reads
    its columns and image size from ``options`` (a ``userdata.LoadOptions``), else from the
    options a parsed ExperimentConfig attaches to its ``data.dataset``, else the defaults.
    ``root`` overrides the source location: the folder holding the IDX .gz files
    (fashion_mnist) or the CSV (rotten_tomatoes, tweets), the torchvision root
    (cifar*), or the HF cache_dir (imdb, hf:); mnist_5k and digits ignore it.
    ``benchmark`` (a ``config.BenchmarkConfig``; None: its defaults) shapes the ground-truth
    benchmarks (``DatasetInfo.ground_truth``) and is ignored by every other dataset.
    Raises ``ValueError`` for unknown names or bad arguments (``spec.DatasetError``, naming
    the file, row and column, for malformed user data) and ``DatasetUnavailable`` when the
    source is missing.
    """
    return load_with_ids(name, dev_fraction=dev_fraction, split_seed=split_seed, max_train=max_train,
                         max_eval=max_eval, root=root, options=options, benchmark=benchmark)[0]


def load_with_ids(name: str, *, dev_fraction: float = 0.1, split_seed: int = 0,
                  max_train: int | None = None, max_eval: int | None = None, root: str | None = None,
                  options: Any = None, benchmark: Any = None) -> tuple[DatasetBundle, dict[str, list[str] | None]]:
    """`load_dataset`, with each split's per-example source names (image files, table rows; None
    for the registry's datasets)."""
    user = parse_spec(name)
    if user is None and name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; allowed names: {', '.join(DATASETS)}")
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    check_limit("max_train", max_train)
    check_limit("max_eval", max_eval)
    start = time.perf_counter()
    if user is not None:
        loaded = load_user_raw(user, options if options is not None else LoadOptions(),
                               None if root is None else str(root))
        raw, modality, label = loaded.raw, loaded.modality, loaded.label
    else:
        bench = bench_params(benchmark) if DATASETS[name].ground_truth else None
        raw = load_raw(name, None if root is None else str(root), bench)
        modality, label = DATASETS[name].modality, name

    plan = plan_splits(raw, dev_fraction, split_seed, max_train, max_eval)
    if user is not None:
        check_split_sizes(label, {k: len(v.idx) for k, v in plan.items()})
    splits = {k: make_split(v.x, v.y, v.evidence, v.idx, modality) for k, v in plan.items()}
    ids = {k: (None if v.ids is None else [str(i) for i in v.ids[v.idx]]) for k, v in plan.items()}
    bundle = DatasetBundle(name=label, modality=modality, class_names=list(raw.class_names), **splits)
    logger.info("Loaded %s: train=%d dev=%d test=%d (split_seed=%d) in %.2fs", label,
                len(bundle.train), len(bundle.dev), len(bundle.test), split_seed,
                time.perf_counter() - start)
    return bundle, ids


def load_for_config(cfg: Any) -> DatasetBundle:
    """The dataset an ExperimentConfig trains on (registry name or user data, with its columns
    and the student's image size and channels)."""
    d = cfg.data
    return load_dataset(d.dataset, dev_fraction=d.dev_fraction, split_seed=d.split_seed, max_train=d.max_train,
                        max_eval=d.max_eval, root=d.root, options=options_for(cfg), benchmark=d.benchmark)


def inspect_dataset(data_cfg: DataConfig, task: str, *, image_size: int | None = None,
                    in_chans: int | None = None, examples: int = 5) -> dict[str, Any]:
    """Load the dataset as training would and summarise it; DatasetError says what is wrong.

    Returns {"kind", "name", "modality", "class_names", "counts": {split: n},
    "per_class": {class: {split: n}}, "examples": [{"split", "label", "text" | "file"}],
    "ground_truth": {split: examples that carry a ground-truth rationale}, "seconds"}.
    """
    spec = data_cfg.dataset
    check_spec(spec)
    check_task(spec, task)
    parsed = parse_spec(spec)
    options = LoadOptions(text_column=data_cfg.text_column, label_column=data_cfg.label_column,
                          split_column=data_cfg.split_column, image_column=data_cfg.image_column,
                          rationale_column=data_cfg.rationale_column, image_size=image_size or 224,
                          in_chans=in_chans or 3, task=task)
    start = time.perf_counter()
    try:
        bundle, ids = load_with_ids(spec, dev_fraction=data_cfg.dev_fraction, split_seed=data_cfg.split_seed,
                                    max_train=data_cfg.max_train, max_eval=data_cfg.max_eval, root=data_cfg.root,
                                    options=options)
    except DatasetUnavailable as err:
        raise DatasetError(str(err)) from None
    seconds = time.perf_counter() - start
    if bundle.modality != task:
        raise DatasetError(f"data.dataset {spec!r} holds {bundle.modality} data but task is {task!r}")
    splits = {"train": bundle.train, "dev": bundle.dev, "test": bundle.test}
    per_class = {c: {s: 0 for s in splits} for c in bundle.class_names}
    for s, part in splits.items():
        for k, n in Counter(part.y.tolist()).items():
            per_class[bundle.class_names[k]][s] = n
    shown = []
    for s, part in splits.items():
        for i in _spread(len(part), examples if s == "train" else max(1, examples // 3)):
            row: dict[str, Any] = {"split": s, "label": bundle.class_names[int(part.y[i])]}
            if bundle.modality == "text":
                t = str(part.x[i])  # a text split's x is its list of strings
                row["text"] = t if len(t) <= 200 else t[:199] + "…"
            split_ids = ids[s]
            if split_ids is not None:
                row["source"] = split_ids[i]
            shown.append(row)
    return {"kind": parsed.kind if parsed else "registry", "name": bundle.name, "modality": bundle.modality,
            "class_names": list(bundle.class_names), "counts": {s: len(p) for s, p in splits.items()},
            "per_class": per_class, "examples": shown, "ground_truth": {s: _n_known(p) for s, p in splits.items()},
            "seconds": round(seconds, 3)}


def _n_known(part: Any) -> int:
    return 0 if part.evidence is None else part.evidence.n_known


def _spread(n: int, k: int) -> Iterator[int]:
    """k indices spread over range(n): examples from every class of a class-sorted split."""
    if n <= k:
        yield from range(n)
        return
    for j in range(k):
        yield j * n // k
