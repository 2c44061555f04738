"""A dataset in memory: the raw source arrays a loader returns (`Raw`, built-in or user data), and
the split bundle training reads (`DatasetBundle` of `Split`s), each with its ground truth
(`RawEvidence`, `Evidence`) where the dataset has it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from .registry import Modality


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


def images_of(x: torch.Tensor | list[str]) -> torch.Tensor:
    """A vision split's x: its uint8 (N, C, H, W) images (TypeError for a text split's strings)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected the images of a vision split, got a {type(x).__name__}")
    return x


def texts_of(x: torch.Tensor | list[str]) -> list[str]:
    """A text split's x: its strings (TypeError for a vision split's image tensor)."""
    if isinstance(x, torch.Tensor):
        raise TypeError("expected the texts of a text split, got a tensor")
    return x


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


class LazyRows(Protocol):
    """Rows rendered on demand that index like a numpy array (benchmarks.ClutterImages)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, idx: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Raw:
    """Official splits as numpy arrays; ``test_*`` is None without an official test."""

    class_names: tuple[str, ...]
    train_x: np.ndarray | LazyRows  # uint8 (N, C, H, W) or object array of str
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray | LazyRows | None = None
    test_y: np.ndarray | None = None
    # An official dev split (user data with a split column or dev/ folder); None: carved from train.
    dev_x: np.ndarray | LazyRows | None = None
    dev_y: np.ndarray | None = None
    # Per-example source names (image files relative to the folder), for inspection only.
    train_ids: np.ndarray | None = None
    test_ids: np.ndarray | None = None
    dev_ids: np.ndarray | None = None
    # Ground-truth rationales, indexed like the x arrays (None: the dataset has none).
    train_evidence: RawEvidence | None = None
    test_evidence: RawEvidence | None = None
    dev_evidence: RawEvidence | None = None


def freeze(*arrays: Any) -> None:
    """Make the numpy arrays among `arrays` read-only: raw sources are cached and shared."""
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def text_array(texts: Sequence[str]) -> np.ndarray:
    """Texts as a numpy object array of str (what `Raw` holds for text)."""
    arr = np.empty(len(texts), dtype=object)
    arr[:] = [str(t) for t in texts]
    return arr
