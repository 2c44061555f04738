"""explain() on both modalities: the mask is what the predictor saw, positions map back."""

import numpy as np
import pytest
import torch
from PIL import Image

from rekd_core.analysis.explain import explain, load_run
from rekd_core.data.features import Inputs
from rekd_core.data.load import load_dataset


def test_explain_image(teacher_runs):
    run = teacher_runs["vision"]
    img = load_dataset("fashion_mnist", max_eval=4).test.x[0, 0].numpy()  # (28, 28) uint8
    ex = explain(run, Image.fromarray(img))
    assert ex.modality == "vision" and ex.label in ex.probabilities
    assert sum(ex.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert len(ex.mask) == len(ex.selection_prob) == len(ex.positions) == 16  # 4x4 grid of 7 px patches
    assert set(ex.mask) <= {0, 1}
    assert all(0.0 <= p <= 1.0 for p in ex.selection_prob)
    # the mask is the deterministic argmax: keep exactly where the keep probability wins
    assert ex.mask == [int(p > 0.5) for p in ex.selection_prob]
    assert ex.positions[5]["box"] == [7, 7, 14, 14]
    assert ex.selected_fraction == pytest.approx(sum(ex.mask) / 16)
    masked = ex.masked_input
    assert masked.shape == img.shape
    for pos, m in zip(ex.positions, ex.mask):
        x0, y0, x1, y1 = pos["box"]
        if m:
            assert np.array_equal(masked[y0:y1, x0:x1], img[y0:y1, x0:x1])
        else:
            assert not masked[y0:y1, x0:x1].any()
    # deterministic: the same input gives the same explanation; an array works like a PIL image
    again = explain(run, img)
    assert again.mask == ex.mask and again.probabilities == ex.probabilities
    # color input on a gray run, at another size, still works (converted and resized)
    rgb = np.stack([img] * 3, -1).repeat(2, 0).repeat(2, 1)
    big = explain(run, rgb)
    assert big.positions[5]["box"] == [14, 14, 28, 28]


def test_explanation_is_faithful_prediction_uses_only_the_mask(teacher_runs):
    """Changing unselected patches does not change the prediction (the predictor never saw them)."""
    run = teacher_runs["vision"]
    loaded = load_run(run)
    img = load_dataset("fashion_mnist", max_eval=4).test.x[1, 0].numpy()
    ex = explain(loaded, img)
    noisy = img.copy()
    rng = np.random.default_rng(0)
    for pos, m in zip(ex.positions, ex.mask):
        if not m:
            x0, y0, x1, y1 = pos["box"]
            noisy[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0))
    # the generator reads the whole input, so feed the original mask to the predictor directly
    feat = loaded.featurizer
    x = feat.pixels(torch.from_numpy(noisy)[None, None])
    inputs = Inputs(x=x, attention=None, selectable=torch.ones(1, 16), keep=None)
    with torch.no_grad():
        q = loaded.model.predict(inputs, torch.tensor([ex.mask], dtype=torch.float32))
    probs = torch.softmax(q, -1)[0].tolist()
    assert probs == pytest.approx(list(ex.probabilities.values()), abs=1e-5)


def test_explain_text_maps_tokens_to_character_spans(teacher_runs):
    run = teacher_runs["text"]
    text = "A gorgeous, witty film; the ending drags though."
    ex = explain(run, text)
    assert ex.modality == "text" and set(ex.probabilities) == {"rotten", "fresh"}
    toks = [p for p in ex.positions if p["selectable"]]
    assert toks and all(text[p["span"][0]:p["span"][1]].lower() == p["token"].removeprefix("##") for p in toks)
    specials = [p for p in ex.positions if not p["selectable"]]
    assert [p["token"] for p in specials] == ["[CLS]", "[SEP]"]
    assert all(m == 0 for p, m in zip(ex.positions, ex.mask) if not p["selectable"])  # specials are not counted
    kept = [text[p["span"][0]:p["span"][1]] for p, m in zip(ex.positions, ex.mask) if m]
    for word in kept:
        assert word in ex.masked_input
    assert ex.selected_fraction == pytest.approx(sum(ex.mask) / len(toks))


def test_modality_mismatch_is_refused(teacher_runs):
    with pytest.raises(ValueError, match="explains images"):
        explain(teacher_runs["vision"], "some text")
    with pytest.raises(ValueError, match="explains texts"):
        explain(teacher_runs["text"], np.zeros((28, 28), np.uint8))


def test_distilled_run_explains_teacher_too(tmp_path, teacher_runs):
    from conftest import tiny_vision
    from rekd_core.config import parse_config
    from rekd_core.train.trainer import train

    cfg = tiny_vision("rekd", max_steps=2, eval_every=2, checkpoint_every=2)
    cfg["model"]["teacher_run"] = str(teacher_runs["vision"])
    train(parse_config(cfg), tmp_path / "s")
    ex = explain(tmp_path / "s", np.zeros((28, 28), np.uint8))
    assert ex.teacher is not None and len(ex.teacher.mask) == len(ex.mask)
    d = ex.to_dict(compact=True)
    assert "teacher" in d and "selected_positions" in d


# --- the input's ground truth ------------------------------------------------------------------
def test_rationale_spans_mark_every_exact_occurrence_and_name_a_missing_one():
    from rekd_core.analysis.explain import rationale_spans

    text = "Witty and warm; witty, warm, and wise."
    assert rationale_spans(text, "witty\n\n  warm ") == [(10, 14), (16, 21), (23, 27)]
    assert rationale_spans(text, ["Witty and"]) == [(0, 9)]
    assert rationale_spans(text, "") == []
    with pytest.raises(ValueError, match=r"^rationale: line 2, 'cold', is not in the text"):
        rationale_spans(text, "warm\ncold")
    with pytest.raises(ValueError) as err:
        rationale_spans(text, "x" * 500)
    assert len(str(err.value)) < 160 and "…" in str(err.value)  # a bounded excerpt


def test_evidence_pixels_binarise_and_resize_to_the_image():
    from rekd_core.analysis.explain import evidence_pixels

    mask = np.zeros((4, 4, 3), np.uint8)
    mask[:2, :2, 1] = 3  # any non-zero channel is evidence
    px = evidence_pixels(mask, 8, 8)
    assert px.shape == (1, 8, 8) and px.dtype == torch.uint8
    assert px[0, :4, :4].all() and int(px.sum()) == 16
    assert evidence_pixels(np.ones((8, 8), bool), 8, 8).sum() == 64


def test_explain_scores_the_rationale_against_given_evidence(teacher_runs):
    from rekd_core.analysis.rationale_metrics import per_example_plausibility

    img = load_dataset("fashion_mnist", max_eval=4).test.x[0, 0].numpy()
    mask = np.zeros((28, 28), np.uint8)
    mask[:14, :14] = 255  # the top-left 2 x 2 patches of the 4 x 4 grid
    ex = explain(teacher_runs["vision"], img, evidence=mask)
    assert ex.evidence == [1 if r < 2 and c < 2 else 0 for r in range(4) for c in range(4)]
    want = per_example_plausibility(torch.tensor([ex.mask], dtype=torch.float32),
                                    torch.tensor([ex.evidence], dtype=torch.float32), torch.ones(1, 16))
    assert ex.plausibility == {"precision": want["precision"][0], "recall": want["recall"][0]}
    assert isinstance(ex.warnings, list) and explain(teacher_runs["vision"], img).evidence is None
    text = "A gorgeous, witty film; the ending drags though."
    ex = explain(teacher_runs["text"], text, evidence="witty film")
    assert [text[slice(*p["span"])] for p, e in zip(ex.positions, ex.evidence) if e] == ["witty", "film"]
    assert set(ex.plausibility) == {"precision", "recall"}  # 2 evidence tokens: always scored
    with pytest.raises(ValueError, match="^evidence: a mask image"):
        explain(teacher_runs["text"], text, evidence=mask)
    with pytest.raises(ValueError, match="^evidence: highlighted text"):
        explain(teacher_runs["vision"], img, evidence=["witty"])


def test_the_api_sizes_the_model_cache_from_its_setting(teacher_runs, monkeypatch):
    import rekd_core.analysis.explain as ex
    from backend.main import create_app
    from service.settings import get_settings

    monkeypatch.setenv("REKD_EXPLAIN_CACHE_SIZE", "1")
    get_settings.cache_clear()
    try:
        create_app()
        assert ex._load.cache_info().maxsize == 1
        first = load_run(teacher_runs["vision"])
        assert load_run(teacher_runs["vision"]) is first  # kept loaded
        load_run(teacher_runs["text"])  # one model at a time: the first is dropped
        assert load_run(teacher_runs["vision"]) is not first
        with pytest.raises(ValueError, match="at least 1"):
            ex.set_model_cache_size(0)
    finally:
        get_settings.cache_clear()
        ex.set_model_cache_size(get_settings().explain_cache_size)
