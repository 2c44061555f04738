"""The ground-truth benchmarks: deterministic, split-faithful, and fair (the label is carried by
the evidence alone: a classifier that sees everything but the evidence is at chance)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from rekd_core.config import BenchmarkConfig, VisionBackbone
from rekd_core.data.benchmarks import ITEM, ClutterImages, ClutterParams
from rekd_core.data.features import VisionFeaturizer
from rekd_core.data.load import load_dataset
from rekd_core.data.registry import DATASETS


def _find_item(canvas: np.ndarray, item: np.ndarray) -> tuple[int, int] | None:
    """Where `item` sits in `canvas`, by exhaustive search."""
    size = canvas.shape[0] - ITEM + 1
    for r in range(size):
        for c in range(size):
            if np.array_equal(canvas[r:r + ITEM, c:c + ITEM], item):
                return r, c
    return None


def test_clutter_places_each_item_whole_with_its_pixels_as_the_evidence_and_clutter_off_it():
    rng = np.random.default_rng(0)
    items = rng.integers(1, 256, size=(12, 1, ITEM, ITEM), dtype=np.uint8)
    items[:, :, :4] = 0  # some background inside the item's box: not evidence
    imgs = ClutterImages(items, ClutterParams(seed=3, canvas=48, clutter=5, fragment=8), tag=11)
    x, ev = imgs.render(np.arange(12))
    assert x.shape == (12, 1, 48, 48) and ev.shape == (12, 48, 48)
    for i in range(12):
        spot = _find_item(x[i, 0], items[i, 0])
        assert spot is not None, f"item {i} not found whole on its canvas"
        r, c = spot
        box = np.zeros((48, 48), dtype=bool)
        box[r:r + ITEM, c:c + ITEM] = True
        assert np.array_equal(ev[i] > 0, box & (x[i, 0] > 0)), "evidence = the item's non-zero pixels"
        assert (x[i, 0][~box] > 0).any(), "clutter outside the item's box"
    # row i depends on (seed, tag, i) alone: rendered alone or with others, the same pixels
    assert np.array_equal(imgs[np.array([7])][0], x[7])
    assert np.array_equal(imgs.evidence[np.array([3, 7])], ev[[3, 7]])
    other = ClutterImages(items, ClutterParams(seed=4, canvas=48, clutter=5, fragment=8), tag=11)
    assert not np.array_equal(other[np.arange(12)], x)


def test_a_clutter_fragment_never_comes_from_the_item_itself():
    # every item is a different constant grey: a fragment's value names its source image
    items = np.stack([np.full((1, ITEM, ITEM), 10 * (i + 1), dtype=np.uint8) for i in range(20)])
    x, ev = ClutterImages(items, ClutterParams(seed=0, canvas=64, clutter=8, fragment=10), tag=12).render(np.arange(20))
    for i in range(20):
        outside = x[i, 0][ev[i] == 0]
        assert 10 * (i + 1) not in set(outside.tolist())


def test_benchmarks_are_registered_with_ground_truth():
    for name in ("fashion_mnist_clutter", "mnist_5k_clutter", "rotten_tomatoes_needle"):
        assert DATASETS[name].ground_truth
    assert not DATASETS["fashion_mnist"].ground_truth


@pytest.fixture(scope="module")
def fm_clutter():
    return load_dataset("fashion_mnist_clutter", max_train=3000, max_eval=1000)


def test_fashion_clutter_keeps_the_official_test_images_and_is_deterministic(fm_clutter):
    source = load_dataset("fashion_mnist", max_train=3000, max_eval=1000)
    assert torch.equal(fm_clutter.test.y, source.test.y) and torch.equal(fm_clutter.train.y, source.train.y)
    for i in range(3):  # each test canvas holds the same official test image as plain fashion_mnist's test split
        assert _find_item(fm_clutter.test.x[i, 0].numpy(), source.test.x[i, 0].numpy()) is not None
        assert _find_item(fm_clutter.train.x[i, 0].numpy(), source.train.x[i, 0].numpy()) is not None
    again = load_dataset("fashion_mnist_clutter", max_train=3000, max_eval=1000)
    assert torch.equal(again.dev.x, fm_clutter.dev.x) and torch.equal(again.dev.evidence.pixels,
                                                                      fm_clutter.dev.evidence.pixels)
    moved = load_dataset("fashion_mnist_clutter", max_eval=50, benchmark=BenchmarkConfig(seed=1, canvas=56))
    assert moved.test.x.shape[-1] == 56
    assert not torch.equal(moved.test.x[:5, :, :56, :56], fm_clutter.test.x[:5, :, :56, :56])
    assert fm_clutter.test.evidence.n_known == len(fm_clutter.test)


def test_mnist_clutter_tests_on_the_same_digits_as_mnist_5k():
    plain, cl = load_dataset("mnist_5k"), load_dataset("mnist_5k_clutter")
    assert torch.equal(plain.test.y, cl.test.y) and len(plain.train) == len(cl.train)
    for i in range(3):
        assert _find_item(cl.test.x[i, 0].numpy(), plain.test.x[i, 0].numpy()) is not None


def _shift_invariant(x: torch.Tensor) -> np.ndarray:
    """|2-D Fourier transform|, low frequencies: the same wherever on the canvas a shape sits."""
    spec = torch.fft.rfft2(x[:, 0].float() / 255.0).abs()
    return torch.cat([spec[:, :12, :12], spec[:, -11:, :12]], 1).flatten(1).log1p().numpy()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_clutter_alone_does_not_predict_the_label(fm_clutter):
    """Erase the evidence (the item's pixels): what is left, the clutter, must be at chance; the
    same classifier on the whole canvas learns the label (the check can fail)."""
    def erased(split):
        return split.x * (split.evidence.pixels[:, None] == 0)

    tr, te = fm_clutter.train, fm_clutter.test
    chance = float(np.bincount(te.y.numpy()).max()) / len(te)
    def score(train_x: torch.Tensor, test_x: torch.Tensor) -> float:
        clf = LogisticRegression(max_iter=500, C=0.1).fit(_shift_invariant(train_x), tr.y.numpy())
        return clf.score(_shift_invariant(test_x), te.y.numpy())

    clutter_only, whole = score(erased(tr), erased(te)), score(tr.x, te.x)
    assert clutter_only < chance + 0.04, (clutter_only, chance)
    assert whole > chance + 0.15, (whole, chance)


def test_evidence_patches_follow_the_patch_grid(fm_clutter):
    feat = VisionFeaturizer(VisionBackbone(img_size=64, patch_size=8, in_chans=1), evidence_cover=0.25)
    t = feat.evidence_targets(fm_clutter.dev.evidence.pixels[:200])
    cover = fm_clutter.dev.evidence.pixels[:200].float().reshape(200, 8, 8, 8, 8).permute(0, 1, 3, 2, 4).mean((-1, -2))
    assert torch.equal(t, (cover.flatten(1) >= 0.25).float())
    share = float(t.mean())
    assert 0.08 < share < 0.25  # the item covers a minority of the 64 patches
    coarse = VisionFeaturizer(VisionBackbone(img_size=64, patch_size=16, in_chans=1)).evidence_targets(
        fm_clutter.dev.evidence.pixels[:200])
    assert coarse.shape == (200, 16)  # any patch size the config picks


@pytest.fixture(scope="module")
def needle():
    return load_dataset("rotten_tomatoes_needle")


def test_needle_spans_hold_exactly_the_review_and_test_reviews_are_rotten_tomatoes_test(needle):
    plain = load_dataset("rotten_tomatoes")
    assert torch.equal(plain.test.y, needle.test.y)
    for split, source in ((needle.test, plain.test), (needle.train, plain.train)):
        for i in range(0, len(split), 97):
            (s, e), = split.evidence.spans[i]
            assert split.x[i][s:e] == " ".join(source.x[i].split())
            assert len(split.x[i]) > e - s  # there is filler around it


def _sentences(texts: list[str], spans: list) -> set[str]:
    out = set()
    for t, ((s, e),) in zip(texts, spans):
        out |= {p.strip() for p in re.split(r"(?<=[.!?])\s+", t[:s] + " " + t[e:]) if len(p.strip()) > 20}
    return out


def test_needle_test_fillers_come_from_films_held_out_of_training(needle):
    assert not _sentences(needle.test.x, needle.test.evidence.spans) & _sentences(needle.train.x,
                                                                                   needle.train.evidence.spans)


def test_the_filler_alone_does_not_predict_the_label(needle):
    """Bag of words on the text without the review: at the majority rate; on the review alone: above it."""
    def parts(split, keep_review: bool) -> list[str]:
        out = []
        for t, ((s, e),) in zip(split.x, split.evidence.spans):
            out.append(t[s:e] if keep_review else t[:s] + " " + t[e:])
        return out

    tr, te = needle.train, needle.test
    chance = float(np.bincount(te.y.numpy()).max()) / len(te)

    def score(keep_review: bool) -> float:
        vec = CountVectorizer(min_df=2)
        clf = LogisticRegression(max_iter=500, C=0.5).fit(vec.fit_transform(parts(tr, keep_review)), tr.y.numpy())
        return clf.score(vec.transform(parts(te, keep_review)), te.y.numpy())

    filler_only, review_only = score(False), score(True)
    assert filler_only < chance + 0.03, (filler_only, chance)
    assert review_only > chance + 0.08, (review_only, chance)
