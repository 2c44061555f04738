"""Tests for rekd_core.data: registry, loaders and splits (offline, CPU, fast)."""

from __future__ import annotations

import hashlib
import pickle
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from rekd_core.data import builtin, registry, splits
from rekd_core.data.load import load_dataset
from rekd_core.data.raw import DatasetBundle, Split
from rekd_core.data.registry import DATASETS, DatasetUnavailable

ALL_NAMES = {"cifar10", "cifar100_coarse", "cifar100_fine", "imdb", "fashion_mnist",
             "mnist_5k", "digits", "rotten_tomatoes", "tweets",
             "fashion_mnist_clutter", "mnist_5k_clutter", "rotten_tomatoes_needle"}


def _image_keys(split: Split) -> Counter:
    """Multiset of (image bytes hash, label) so splits can be compared as a partition."""
    x = split.x.numpy()
    return Counter((hashlib.sha1(img.tobytes()).hexdigest(), int(lbl))
                   for img, lbl in zip(x, split.y.tolist()))


def _proportions(y: torch.Tensor, k: int) -> np.ndarray:
    return np.bincount(y.numpy(), minlength=k) / len(y)


def _check_split_types(b: DatasetBundle) -> None:
    for s in (b.train, b.dev, b.test):
        assert s.y.dtype == torch.int64 and s.y.ndim == 1
        assert len(s) == len(s.y) == len(s.x)
        if b.modality == "vision":
            assert isinstance(s.x, torch.Tensor) and s.x.dtype == torch.uint8 and s.x.ndim == 4
        else:
            assert isinstance(s.x, list) and all(isinstance(t, str) for t in s.x)
    assert b.num_classes == len(b.class_names) == DATASETS[b.name].num_classes


# ---------------------------------------------------------------- registry


def test_registry_names_and_infos():
    assert set(DATASETS) == ALL_NAMES
    for name, info in DATASETS.items():
        assert info.name == name
        assert info.modality in ("vision", "text")
        assert info.how_to_get and "\n" not in info.description


def test_unknown_name_lists_allowed_names():
    with pytest.raises(ValueError) as exc:
        load_dataset("nope")
    for name in ALL_NAMES:
        assert name in str(exc.value)


@pytest.mark.parametrize("kwargs", [{"dev_fraction": 1.0}, {"dev_fraction": -0.1},
                                    {"max_train": -1}, {"max_eval": 1.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        load_dataset("digits", **kwargs)


# ---------------------------------------------------------------- splitting helpers


def test_stratified_subset_exact_and_deterministic():
    y = np.repeat(np.arange(3), [50, 30, 20])
    idx = splits.stratified_subset(y, 10, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [5, 3, 2]
    assert len(set(idx.tolist())) == 10
    idx2 = splits.stratified_subset(y, 10, np.random.default_rng(0))
    assert np.array_equal(idx, idx2)
    assert len(splits.stratified_subset(y, 0, np.random.default_rng(0))) == 0
    assert np.array_equal(splits.stratified_subset(y, 100, np.random.default_rng(0)), np.arange(100))


def test_allocate_sums_and_caps():
    counts = np.array([7, 1, 1, 1])
    for n in range(0, 11):
        alloc = splits._allocate(counts, n)
        assert alloc.sum() == n and np.all(alloc <= counts) and np.all(alloc >= 0)


def test_cifar100_coarse_table():
    table = registry.CIFAR100_FINE_TO_COARSE
    assert len(table) == 100 and len(registry.CIFAR100_FINE_CLASSES) == 100
    assert Counter(table) == {c: 5 for c in range(20)}
    assert len(registry.CIFAR100_COARSE_CLASSES) == 20
    fine = registry.CIFAR100_FINE_CLASSES
    coarse = registry.CIFAR100_COARSE_CLASSES
    for f, c in [("apple", "fruit_and_vegetables"), ("whale", "aquatic_mammals"),
                 ("tractor", "vehicles_2"), ("bus", "vehicles_1"), ("worm", "non-insect_invertebrates")]:
        assert coarse[table[fine.index(f)]] == c


# ---------------------------------------------------------------- fashion_mnist


@pytest.fixture(scope="module")
def fashion0() -> DatasetBundle:
    return load_dataset("fashion_mnist", split_seed=0)


def test_fashion_sizes_and_types(fashion0):
    b = fashion0
    _check_split_types(b)
    assert b.modality == "vision" and b.num_classes == 10
    assert len(b.train) + len(b.dev) == 60000 and len(b.test) == 10000
    assert len(b.dev) == 6000
    assert tuple(b.train.x.shape[1:]) == (1, 28, 28)
    assert b.class_names[0] == "T-shirt/top" and b.class_names[9] == "Ankle boot"
    assert np.all(np.bincount(b.test.y.numpy()) == 1000)


def test_fashion_stratified(fashion0):
    p_train = _proportions(fashion0.train.y, 10)
    p_dev = _proportions(fashion0.dev.y, 10)
    assert np.max(np.abs(p_train - p_dev)) < 0.01


def test_fashion_train_dev_partition_official_train(fashion0):
    raw = builtin.load_raw("fashion_mnist", None)
    official = Counter((hashlib.sha1(img.tobytes()).hexdigest(), int(lbl))
                       for img, lbl in zip(raw.train_x, raw.train_y))
    assert _image_keys(fashion0.train) + _image_keys(fashion0.dev) == official
    # Disjoint apart from images that are duplicated inside the official train set.
    dups = {k for k, v in official.items() if v > 1}
    shared = set(_image_keys(fashion0.train)) & set(_image_keys(fashion0.dev))
    assert shared <= dups


def test_fashion_seed_determinism(fashion0):
    again = load_dataset("fashion_mnist", split_seed=0)
    assert torch.equal(again.dev.x, fashion0.dev.x) and torch.equal(again.dev.y, fashion0.dev.y)
    assert torch.equal(again.train.y, fashion0.train.y)
    other = load_dataset("fashion_mnist", split_seed=1)
    assert _image_keys(other.dev) != _image_keys(fashion0.dev)
    assert torch.equal(other.test.x, fashion0.test.x)


def test_bundles_do_not_share_mutable_state(fashion0):
    before = fashion0.dev.x[:5].clone()
    scratch = load_dataset("fashion_mnist", split_seed=0)
    scratch.dev.x[:5].fill_(7)
    assert torch.equal(fashion0.dev.x[:5], before)
    assert torch.equal(load_dataset("fashion_mnist", split_seed=0).dev.x[:5], before)
    texts = load_dataset("tweets")
    texts.train.x.clear()
    assert len(load_dataset("tweets").train.x) > 0


def test_fashion_missing_source():
    with pytest.raises(DatasetUnavailable) as exc:
        load_dataset("fashion_mnist", root="/nonexistent")
    assert "apt-get install -y dataset-fashion-mnist" in str(exc.value)


def test_fashion_max_train_max_eval():
    b = load_dataset("fashion_mnist", max_train=1000, max_eval=200, split_seed=3)
    assert (len(b.train), len(b.dev), len(b.test)) == (1000, 200, 200)
    for s in (b.train, b.dev, b.test):
        assert np.all(np.bincount(s.y.numpy(), minlength=10) == len(s) // 10)
    b2 = load_dataset("fashion_mnist", max_train=1000, max_eval=200, split_seed=4)
    assert torch.equal(b.test.x, b2.test.x)  # eval subsample uses a fixed seed


# ---------------------------------------------------------------- small offline sets


def test_rotten_tomatoes():
    b0 = load_dataset("rotten_tomatoes", split_seed=0)
    b1 = load_dataset("rotten_tomatoes", split_seed=1)
    _check_split_types(b0)
    assert b0.class_names == ["rotten", "fresh"] and b0.modality == "text"
    y = torch.cat([b0.train.y, b0.dev.y, b0.test.y])
    assert len(y) == 12752
    assert np.bincount(y.numpy()).tolist() == [5384, 7368]
    assert len(b0.test) == 1275
    assert b0.test.x == b1.test.x and torch.equal(b0.test.y, b1.test.y)
    assert b0.dev.x != b1.dev.x
    texts = b0.train.x + b0.dev.x + b0.test.x
    assert len(set(texts)) == len(texts)  # deduplicated, and splits are disjoint
    b = load_dataset("rotten_tomatoes", max_train=100, max_eval=50)
    assert (len(b.train), len(b.dev), len(b.test)) == (100, 50, 50)
    assert np.bincount(b.train.y.numpy()).tolist() == [42, 58]  # 100 * (5384, 7368) / 12752


def test_tweets():
    b = load_dataset("tweets")
    _check_split_types(b)
    assert b.class_names == ["negative", "neutral", "positive"]
    y = torch.cat([b.train.y, b.dev.y, b.test.y])
    assert len(y) == 38158
    assert np.bincount(y.numpy()).tolist() == [16186, 15018, 6954]
    p_train, p_test = _proportions(b.train.y, 3), _proportions(b.test.y, 3)
    assert np.max(np.abs(p_train - p_test)) < 0.01


def test_digits():
    b = load_dataset("digits")
    _check_split_types(b)
    assert tuple(b.train.x.shape[1:]) == (1, 8, 8)
    y = torch.cat([b.train.y, b.dev.y, b.test.y])
    assert len(y) == 1797
    assert np.bincount(y.numpy()).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert int(b.train.x.max()) == 255 and int(b.train.x.min()) == 0
    assert len(b.test) == 180


def test_mnist_5k():
    b = load_dataset("mnist_5k", split_seed=2)
    _check_split_types(b)
    assert tuple(b.train.x.shape[1:]) == (1, 28, 28)
    assert (len(b.train), len(b.dev), len(b.test)) == (4050, 450, 500)
    for s, per_class in ((b.train, 405), (b.dev, 45), (b.test, 50)):
        assert np.bincount(s.y.numpy()).tolist() == [per_class] * 10
    assert _image_keys(b.test) == _image_keys(load_dataset("mnist_5k", split_seed=7).test)


# ---------------------------------------------------------------- network-backed sets


def test_imdb_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DatasetUnavailable) as exc:
        load_dataset("imdb")
    assert "pip install datasets" in str(exc.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100_fine", "cifar100_coarse"])
def test_cifar_missing_without_download(name, tmp_path, monkeypatch):
    monkeypatch.delenv(registry.ALLOW_DOWNLOAD_ENV, raising=False)
    with pytest.raises(DatasetUnavailable) as exc:
        load_dataset(name, root=str(tmp_path))
    msg = str(exc.value)
    assert registry.ALLOW_DOWNLOAD_ENV in msg and f"'{name}'" in msg


def test_cifar_download_failure_is_unavailable(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setenv(registry.ALLOW_DOWNLOAD_ENV, "1")
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_network)
    with pytest.raises(DatasetUnavailable, match="download"):
        load_dataset("cifar10", root=str(tmp_path))


def _write_fake_cifar100(root, n_train_per_class=2, n_test_per_class=1):
    folder = root / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for fname, per in (("train", n_train_per_class), ("test", n_test_per_class)):
        labels = [i % 100 for i in range(100 * per)]
        pix = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / fname, "wb") as f:
            pickle.dump({"data": pix, "fine_labels": labels}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": list(registry.CIFAR100_FINE_CLASSES),
                     "coarse_label_names": list(registry.CIFAR100_COARSE_CLASSES)}, f)
    return folder


def test_cifar100_from_local_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    _write_fake_cifar100(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake md5s
    fine = load_dataset("cifar100_fine", root=str(tmp_path))
    coarse = load_dataset("cifar100_coarse", root=str(tmp_path))
    _check_split_types(fine)
    _check_split_types(coarse)
    assert tuple(fine.train.x.shape[1:]) == (3, 32, 32)
    assert (len(fine.train) + len(fine.dev), len(fine.test)) == (200, 100)
    # Same images in both views; labels differ only by the fine->coarse table.
    table = torch.tensor(registry.CIFAR100_FINE_TO_COARSE)
    assert torch.equal(fine.test.x, coarse.test.x)
    assert torch.equal(table[fine.test.y], coarse.test.y)
    assert np.bincount(coarse.test.y.numpy()).tolist() == [5] * 20
    # (N, H, W, C) -> (N, C, H, W): pixel [c, h, w] == raw flat [c*1024 + h*32 + w].
    with open(tmp_path / "cifar-100-python" / "test", "rb") as f:
        raw = pickle.load(f)["data"]
    assert torch.equal(fine.test.x, torch.from_numpy(raw.reshape(-1, 3, 32, 32)))
