"""Ground-truth benchmarks: inputs where exactly one part carries the label, and that part is known.

A rationale can only be checked against the evidence where the evidence is known. Each benchmark
is built so that the label is carried by one part of the input at a random place, and everything
else is drawn *independently of the label*: the rest of the input cannot predict the label (its
mutual information with the label is zero by construction), so agreement with the known part is
a test of finding the evidence, not of matching an annotator's taste.

Vision (`fashion_mnist_clutter`, `mnist_5k_clutter`): the 28 x 28 item is placed at a uniformly
random position on a `canvas` x `canvas` black canvas, and `clutter` fragments (`fragment` x
`fragment` crops of other images of the same source split, chosen uniformly, never the item's own
image) are scattered off the item's box. The ground truth is the item's non-zero pixels; a patch
is evidence when at least `data.evidence_cover` of its pixels are (features.py). Test items and
their clutter come from the official test images, training ones from the training images.

Text (`rotten_tomatoes_needle`): a Rotten Tomatoes review snippet (fresh / rotten) is set at a
random sentence boundary inside `filler_words` words of consecutive sentences from the plot
synopsis of a random film. The ground truth is the snippet's characters. Synopses describe a
film without judging it, and the film is drawn at random, never the reviewed one (a film's own
synopsis would predict its reviews: good films collect fresh ones). Test reviews are set in
synopses of films held out from the training fillers.

Everything is a pure function of (source data, `data.benchmark` settings): the same seed gives the
same canvases and texts in every process. Images are rendered lazily, for the rows a run uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ITEM = 28  # Fashion-MNIST and MNIST items are 28 x 28
# rng stream tags: one per source split, so train and test draws never share a stream
TAG_TRAIN, TAG_TEST = 11, 12


@dataclass(frozen=True)
class ClutterParams:
    seed: int = 0
    canvas: int = 64
    clutter: int = 6
    fragment: int = 12

    def __post_init__(self) -> None:
        if self.canvas < ITEM:
            raise ValueError(f"canvas ({self.canvas}) must be at least the item's {ITEM} px")
        if not 1 <= self.fragment <= ITEM:
            raise ValueError(f"fragment ({self.fragment}) must be between 1 and {ITEM}")


class ClutterImages:
    """Translated-and-cluttered images over a source split, rendered on demand.

    Behaves as the uint8 (N, 1, canvas, canvas) array the data loader indexes (`x[idx]`);
    `evidence[idx]` gives the matching uint8 (n, canvas, canvas) ground-truth masks. Row i is a
    function of (params, tag, i) alone, whatever else is rendered with it.
    """

    def __init__(self, items: np.ndarray, params: ClutterParams, tag: int) -> None:
        if items.ndim != 4 or items.shape[1:] != (1, ITEM, ITEM):
            raise ValueError(f"items must be (N, 1, {ITEM}, {ITEM}) uint8, got {items.shape}")
        self.items = items
        self.params = params
        self.tag = tag
        self.evidence = _EvidenceView(self)
        self._memo: tuple[bytes, np.ndarray, np.ndarray] | None = None  # the last render, for .evidence

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        c = self.params.canvas
        return (len(self.items), 1, c, c)

    def __getitem__(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        return self.render(idx)[0]

    def render(self, idx: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(images (n, 1, C, C), evidence (n, C, C)) for source rows `idx`."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        key = idx.tobytes()
        if self._memo is not None and self._memo[0] == key:  # images, then their evidence: rendered once
            memo, self._memo = self._memo, None
            return memo[1], memo[2]
        c = self.params.canvas
        images = np.zeros((len(idx), 1, c, c), dtype=np.uint8)
        evidence = np.zeros((len(idx), c, c), dtype=np.uint8)
        for out_row, i in enumerate(idx.tolist()):
            self._render_one(int(i), images[out_row, 0], evidence[out_row])
        self._memo = (key, images.copy(), evidence.copy())  # copies: the caller owns what it is given
        return images, evidence

    def _render_one(self, i: int, canvas: np.ndarray, evidence: np.ndarray) -> None:
        p = self.params
        n = len(self.items)
        rng = np.random.default_rng([p.seed, self.tag, i])
        top, left = (int(v) for v in rng.integers(0, p.canvas - ITEM + 1, size=2))
        f = p.fragment
        for _ in range(p.clutter):
            src = int(rng.integers(0, n - 1)) if n > 1 else i
            if n > 1 and src >= i:  # uniform over the other images: never a piece of the item itself
                src += 1
            if src == i:
                break
            lo, hi = min(3, ITEM - f), max(ITEM - f - 3, min(3, ITEM - f))
            fr, fc = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            piece = self.items[src, 0, fr:fr + f, fc:fc + f]
            spot = _free_spot(rng, p.canvas, f, (top, left))
            if spot is None:
                continue
            r, c = spot
            np.maximum(canvas[r:r + f, c:c + f], piece, out=canvas[r:r + f, c:c + f])
        item = self.items[i, 0]
        canvas[top:top + ITEM, left:left + ITEM] = item
        evidence[top:top + ITEM, left:left + ITEM] = item > 0


class _EvidenceView:
    """`images.evidence[idx]`: the ground-truth masks of the rows `images[idx]` renders."""

    def __init__(self, images: ClutterImages) -> None:
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        return self._images.render(idx)[1]


def _free_spot(rng: np.random.Generator, canvas: int, size: int, item: tuple[int, int]) -> tuple[int, int] | None:
    """A random top-left corner for a `size` square that does not touch the item's box, or None."""
    top, left = item
    for _ in range(64):
        r, c = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
        if r + size <= top or r >= top + ITEM or c + size <= left or c >= left + ITEM:
            return r, c
    return None


# --- text: a review snippet among synopsis sentences ----------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


@dataclass(frozen=True)
class NeedleParams:
    seed: int = 0
    filler_words: int = 30


def synopsis_sentences(plots: Sequence[str]) -> list[list[str]]:
    """Each synopsis as its list of sentences (whitespace collapsed; an empty synopsis gives [])."""
    out = []
    for text in plots:
        flat = " ".join(str(text).split())
        out.append([s.strip() for s in _SENTENCE_END.split(flat) if s.strip()])
    return out


def hide_in_filler(snippets: Sequence[str], films: Sequence[str], synopses: Sequence[Sequence[str]],
                   synopsis_films: Sequence[str], params: NeedleParams,
                   tag: int) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Each snippet set at a random sentence boundary among consecutive synopsis sentences of
    films other than the one it reviews (`films[i]`; `synopsis_films[j]` names synopsis j).

    Returns the texts and, per text, the snippet's [start, end) character span.
    """
    if len(set(synopsis_films)) < 2:
        raise ValueError("need synopses of at least two films to use as filler")
    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for i, snippet in enumerate(snippets):
        rng = np.random.default_rng([params.seed, tag, i])
        filler = _filler(rng, synopses, synopsis_films, films[i], params.filler_words)
        cut = int(rng.integers(0, len(filler) + 1))
        before, after = " ".join(filler[:cut]), " ".join(filler[cut:])
        snippet = " ".join(str(snippet).split())
        start = len(before) + (1 if before else 0)
        text = " ".join(part for part in (before, snippet, after) if part)
        texts.append(text)
        spans.append([(start, start + len(snippet))])
    return texts, spans


def _filler(rng: np.random.Generator, synopses: Sequence[Sequence[str]], synopsis_films: Sequence[str],
            film: str, words: int) -> list[str]:
    """Consecutive sentences of random synopses (never of `film`) until at least `words` words (a
    synopsis that runs out continues with another one)."""
    out: list[str] = []
    count = 0
    while count < words:
        j = int(rng.integers(0, len(synopses)))
        if synopsis_films[j] == film:
            continue
        sentences = synopses[j]
        start = int(rng.integers(0, len(sentences)))
        for sentence in sentences[start:]:
            out.append(sentence)
            count += len(sentence.split())
            if count >= words:
                break
    return out
