"""Stratified, seeded splits of a raw source into train / dev / test rows.

  * ``test``  - the official test set; for datasets without one, a stratified
    10% carve-out with a fixed seed (so it never depends on ``split_seed``).
  * ``dev``   - a stratified ``dev_fraction`` of the (official) train set,
    seeded by ``split_seed``.
  * ``train`` - the rest, optionally stratified-subsampled to ``max_train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .raw import LazyRows, Raw, RawEvidence, Split
from .registry import Modality

# Fixed seeds so that carved test sets and eval subsamples are identical for
# every split_seed (results across seeds are then comparable on one test set).
TEST_SPLIT_SEED = 12345
TEST_FRACTION = 0.1
EVAL_SUBSAMPLE_SEED = 12345

# Stream tags decorrelate the random draws made from the same base seed.
_TAG_TEST, _TAG_DEV, _TAG_TRAIN_SUB, _TAG_DEV_SUB, _TAG_TEST_SUB = range(5)


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), tag])


def fixed_test_rng() -> np.random.Generator:
    """The draws that carve a test set out of a source without one (fixed: never split_seed's)."""
    return _rng(TEST_SPLIT_SEED, _TAG_TEST)


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


def make_split(x: Any, y: np.ndarray, evidence: RawEvidence | None, idx: np.ndarray, modality: Modality) -> Split:
    # Fancy indexing always copies, so bundles never share writable memory.
    xs = x[idx]
    x_out: torch.Tensor | list[str] = (xs.tolist() if modality == "text"
                                       else torch.from_numpy(np.ascontiguousarray(xs)))
    return Split(x=x_out, y=torch.from_numpy(y[idx]), evidence=None if evidence is None else evidence.take(idx))


def check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 0):
        raise ValueError(f"{name} must be None or a non-negative int, got {value!r}")


@dataclass(frozen=True)
class Source:
    """Where one split's rows come from: the source arrays and the row indices into them."""

    x: Any
    y: np.ndarray
    ids: np.ndarray | None
    evidence: RawEvidence | None
    idx: np.ndarray


def plan_splits(raw: Raw, dev_fraction: float, split_seed: int, max_train: int | None,
                max_eval: int | None) -> dict[str, Source]:
    """split -> its source arrays and row indices."""
    pool_x, pool_y, pool_ids, pool_ev = raw.train_x, raw.train_y, raw.train_ids, raw.train_evidence
    test_x: np.ndarray | LazyRows | None  # None only with test_y
    dev_x: np.ndarray | LazyRows | None
    if raw.test_y is None:
        # No official test set: carve one with a fixed seed, independent of split_seed.
        pool_idx, test_idx = _carve(pool_y, TEST_FRACTION, fixed_test_rng())
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
    return {"train": Source(pool_x, pool_y, pool_ids, pool_ev, train_idx),
            "dev": Source(dev_x, dev_y, dev_ids, dev_ev, dev_idx),
            "test": Source(test_x, test_y, test_ids, test_ev, test_idx)}


def official_test(raw: Raw) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) rows of a source without an official test: the same carve `plan_splits` makes, so
    a benchmark built on it tests on exactly the source's test examples."""
    return _carve(raw.train_y, TEST_FRACTION, fixed_test_rng())
