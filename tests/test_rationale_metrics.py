"""Plausibility, input dependence, the fixed-mask baseline and the mask-only probe, against
values computed by hand; and the warnings drawn from them."""

from __future__ import annotations

import pytest
import torch

from rekd_core.analysis.rationale_metrics import (
    fixed_mask,
    input_dependence,
    iou_f1,
    jaccard_distance,
    mask_probe,
    per_example_plausibility,
    plausibility,
)
from rekd_core.analysis.verdicts import CODE, CONSTANT, rationale_warnings
from rekd_core.config import VisionBackbone
from rekd_core.data.features import Prepared, VisionFeaturizer
from rekd_core.data.raw import Evidence
from rekd_core.model.masks import hard_mask
from rekd_core.train.evaluate import evaluate

T = torch.tensor


def test_plausibility_by_hand():
    mask = T([[1, 1, 0, 0], [0, 0, 0, 0]])
    target = T([[1, 0, 1, 0], [1, 0, 0, 0]])
    out = plausibility(mask, target, torch.ones(2, 4))
    # example 1: |M∩T| = 1, |M| = 2, |T| = 2 -> P 1/2, R 1/2, F1 1/2, IoU 1/3; example 2 empty -> all 0
    assert out["n"] == 2
    assert out["precision"] == pytest.approx(0.25) and out["recall"] == pytest.approx(0.25)
    assert out["f1"] == pytest.approx(0.25) and out["iou"] == pytest.approx(1 / 6)
    # random positions at the same size: precision |T|/|V| = (2/4 + 1/4)/2, recall |M|/|V| = (2/4 + 0)/2,
    # F1 2|M||T| / (|V|(|M|+|T|)) = (2*2*2/16 + 0)/2
    assert out["random"] == pytest.approx({"precision": 0.375, "recall": 0.25, "f1": 0.25})
    assert out["evidence_fraction"] == pytest.approx(0.375)


def test_plausibility_counts_only_valid_positions_and_known_examples():
    mask = T([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    target = T([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]])
    valid = T([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])  # position 2 of example 1 is padding
    known = T([True, True, False])
    out = plausibility(mask, target, valid, known)
    assert out["n"] == 2 and out["precision"] == 1.0 and out["recall"] == 1.0 and out["iou"] == 1.0
    per = per_example_plausibility(mask, target, valid, known)
    assert per == {"precision": [1.0, 1.0, None], "recall": [1.0, 1.0, None]}
    assert plausibility(mask, target, valid, T([False, False, False])) is None
    assert plausibility(mask, torch.zeros(3, 4), valid) is None  # nothing to find anywhere


def test_iou_f1_matches_spans_at_half_overlap():
    mask = T([[0, 1, 1, 1, 0, 0, 1, 0]])
    target = T([[0, 1, 1, 0, 0, 0, 0, 0]])
    # predicted spans [1,4) and [6,7); gold [1,3): IoU 2/3 matches, the other does not -> P 1/2, R 1
    assert iou_f1(mask, target) == pytest.approx(2 / 3)
    assert iou_f1(T([[1, 1, 1, 1, 0, 0, 0, 0]]), target) == pytest.approx(1.0)  # IoU exactly 0.5 matches
    assert iou_f1(T([[1, 1, 1, 1, 1, 0, 0, 0]]), target) == 0.0  # IoU 0.4 does not
    assert plausibility(mask, target, torch.ones(1, 8), spans=True)["iou_f1"] == pytest.approx(2 / 3)


def test_input_dependence_by_hand():
    masks = T([[1, 0], [1, 0], [0, 1], [1, 0]])
    dep = input_dependence(masks, torch.ones(4, 2), target=T([[1, 0], [0, 1], [0, 1], [1, 0]]))
    assert dep["distinct"] == 2 and dep["distinct_share"] == 0.5
    assert dep["fixed_mask"] == [1, 0] and dep["fixed_share"] == 0.75 and dep["fixed_size"] == 1
    # three identical pairs (distance 0) and three disjoint pairs (distance 1)
    assert dep["jaccard_distance"] == pytest.approx(0.5)
    # the fixed mask [1, 0] on every input lands on the evidence for examples 1 and 4 only
    assert dep["fixed_plausibility"]["precision"] == pytest.approx(0.5)


def test_jaccard_distance_and_fixed_mask_edge_cases():
    assert jaccard_distance(torch.zeros(3, 4)) == 0.0  # empty masks are all the same mask
    assert jaccard_distance(T([[1, 1, 0, 0], [0, 1, 1, 0]])) == pytest.approx(1 - 1 / 3)
    mask, share = fixed_mask(T([[0, 1], [1, 0]]))
    assert mask.tolist() == [0, 1] and share == 0.5  # a tie goes to the lexicographically first


def test_probe_reads_a_mask_that_encodes_the_label_and_not_one_that_does_not():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    code = torch.nn.functional.one_hot(y, 8).float()  # position k selected <=> class k: a covert channel
    out = mask_probe(code, y, 4)
    assert out["accuracy"] == 1.0 and out["chance"] == 0.25 and out["n"] == 400 and out["folds"] == 5
    noise = (torch.rand(400, 8, generator=g) < 0.3).float()  # positions drawn independently of the label
    out = mask_probe(noise, y, 4)
    assert abs(out["accuracy"] - out["chance"]) < 0.08
    assert mask_probe(code[:6], y[:6], 4) is None  # too few examples for 5 folds


def test_probe_chance_is_the_majority_rate():
    y = torch.tensor([0] * 70 + [1] * 30)
    out = mask_probe(torch.zeros(100, 3), y, 2)  # a constant mask can only learn the majority
    assert out["chance"] == 0.7 and out["accuracy"] == pytest.approx(0.7)


class _HalfModel(torch.nn.Module):
    """A rationale model small enough to reason about, on 8 x 8 images with 2 px patches (a 4 x 4
    grid): the generator keeps the brightest patch; the predictor says class 0 when what it is
    given lies in the left half of the image, class 1 for the right half."""

    with_generator = True
    LEFT = torch.tensor([float(i % 4 < 2) for i in range(16)])

    def generate(self, inputs):
        patches = torch.nn.functional.adaptive_avg_pool2d(inputs.x, (4, 4)).flatten(1)
        z1 = (patches == patches.amax(1, keepdim=True)).float() * 2 - 1
        return torch.stack([-z1, z1], -1)

    def select(self, z, selectable):
        return hard_mask(z)

    def predict(self, inputs, mask):
        return torch.stack([mask @ self.LEFT, mask @ (1 - self.LEFT)], -1) * 5.0


def _bright_patch_data(classes: list[int]) -> tuple[VisionFeaturizer, Prepared]:
    """One bright patch per image, in the left half for class 0, the right half for class 1,
    cycling through the half's 8 patches; the ground truth is that patch."""
    feat = VisionFeaturizer(VisionBackbone(img_size=8, patch_size=2, in_chans=1))
    x = torch.zeros(len(classes), 1, 8, 8, dtype=torch.uint8)
    seen = [0, 0]
    for i, k in enumerate(classes):
        j = seen[k] % 8
        seen[k] += 1
        r, c = j // 2, 2 * k + j % 2
        x[i, 0, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = 255
    ev = Evidence(known=torch.ones(len(classes), dtype=torch.bool), pixels=(x[:, 0] > 0).to(torch.uint8))
    return feat, feat.prepare(x, torch.tensor(classes), torch.device("cpu"), evidence=ev)


def test_evaluate_scores_an_input_dependent_rationale_and_its_fixed_mask_baseline():
    classes = [0, 1] * 20 + [0] * 10  # 30 of class 0 (its 8 patches 4, 4, 4, 4, 4, 4, 3, 3 times), 20 of class 1
    feat, data = _bright_patch_data(classes)
    metrics, cat = evaluate(_HalfModel(), feat, data, num_classes=2, faithfulness=False)
    assert metrics["accuracy"] == 1.0
    assert metrics["plausibility"]["precision"] == 1.0 and metrics["plausibility"]["recall"] == 1.0
    assert metrics["plausibility"]["random"]["precision"] == pytest.approx(1 / 16)
    dep = metrics["input_dependence"]
    assert dep["distinct"] == 16 and dep["distinct_share"] == pytest.approx(0.32)
    # the most frequent mask is one left-half patch, chosen 4 times in 50
    assert sum(dep["fixed_mask"]) == 1 and _HalfModel.LEFT[dep["fixed_mask"].index(1)] == 1
    assert dep["fixed_share"] == pytest.approx(0.08)
    # that patch for every input: the predictor says class 0 for all, right on the 30 of 50 in class 0
    assert dep["fixed_accuracy"] == pytest.approx(0.6)
    # the mask says the class (left or right): the probe reads it, as it reads the ground-truth
    # masks, so it is not flagged as a code beyond what the evidence itself shows
    assert metrics["probe"]["accuracy"] == 1.0 and metrics["probe"]["gt_accuracy"] == 1.0
    assert metrics["probe"]["chance"] == pytest.approx(0.6)
    assert metrics["warnings"] == []
    assert cat["pl_precision"].tolist() == [1.0] * 50


def test_evaluate_warns_when_the_rationale_is_one_fixed_mask():
    class Constant(_HalfModel):
        def generate(self, inputs):
            z1 = (torch.arange(16) == 0).float().expand(inputs.x.shape[0], 16) * 2 - 1
            return torch.stack([-z1, z1], -1)

    feat, data = _bright_patch_data([0, 1] * 20)
    metrics, _ = evaluate(Constant(), feat, data, num_classes=2, faithfulness=False)
    assert metrics["input_dependence"]["distinct"] == 1 and metrics["input_dependence"]["fixed_share"] == 1.0
    assert [w["code"] for w in metrics["warnings"]] == ["constant_rationale"]
    assert metrics["warnings"][0]["message"] == CONSTANT


def test_warnings_thresholds():
    ok = {"accuracy": 0.8, "input_dependence": {"distinct_share": 0.5, "distinct": 50, "n": 100,
                                                 "fixed_accuracy": 0.3},
          "probe": {"accuracy": 0.3, "chance": 0.1}}
    assert rationale_warnings(ok) == []
    few = {**ok, "input_dependence": {**ok["input_dependence"], "distinct_share": 0.09}}
    assert [w["code"] for w in rationale_warnings(few)] == ["constant_rationale"]
    near = {**ok, "input_dependence": {**ok["input_dependence"], "fixed_accuracy": 0.785}}
    assert [w["code"] for w in rationale_warnings(near)] == ["constant_rationale"]
    code = {**ok, "probe": {"accuracy": 0.6, "chance": 0.1}}  # more than halfway from 10 % to 100 %
    warned = rationale_warnings(code)
    assert [w["code"] for w in warned] == ["mask_code"] and warned[0]["message"] == CODE
    assert rationale_warnings({**ok, "probe": {"accuracy": 0.54, "chance": 0.1}}) == []
    # a mask that says no more than the evidence's own shape is not flagged
    shape = {**ok, "probe": {"accuracy": 0.6, "chance": 0.1, "gt_accuracy": 0.58}}
    assert rationale_warnings(shape) == []
    assert rationale_warnings({"accuracy": 0.9}) == []  # a CLS run has nothing to judge
