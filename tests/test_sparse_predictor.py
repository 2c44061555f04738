"""`model.predictor_attention: selected`: the predictor reads only the selected positions (model/selected.py)."""

from __future__ import annotations

import pytest
import torch

from rekd_core.config import CnnBackbone, TextBackbone, VisionBackbone, parse_config
from rekd_core.data.features import Inputs
from rekd_core.model.masks import relaxed_sample, straight_through
from rekd_core.model.models import RationaleModel

VIT = VisionBackbone(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2)
BERT = TextBackbone(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0)
VOCAB, MAX_LEN = 200, 16


def vit_model(attention: str = "full", seed: int = 0) -> RationaleModel:
    torch.manual_seed(seed)
    return RationaleModel(VIT, num_classes=5, with_generator=True, predictor_attention=attention).eval()


def bert_model(attention: str = "full", seed: int = 0, pooling: str = "cls") -> RationaleModel:
    torch.manual_seed(seed)
    spec = BERT.model_copy(update={"pooling": pooling})
    return RationaleModel(spec, num_classes=3, with_generator=True, vocab_size=VOCAB, max_len=MAX_LEN,
                          predictor_attention=attention).eval()


def vision_inputs(x: torch.Tensor) -> Inputs:
    return Inputs(x=x, attention=None, selectable=torch.ones(x.shape[0], 16), keep=None)


def text_inputs(ids: torch.Tensor, att: torch.Tensor) -> Inputs:
    """[CLS] at 0 and [SEP] at the last real token kept; the real tokens between them selectable."""
    special = torch.zeros_like(att, dtype=torch.float32)
    special[:, 0] = 1
    special[torch.arange(len(ids)), att.sum(1) - 1] = 1
    real = att.float()
    return Inputs(x=ids, attention=att, selectable=real * (1 - special), keep=real * special)


def vision_mask() -> torch.Tensor:
    m = torch.zeros(2, 16)
    m[0, [1, 5, 6]] = 1
    m[1, [10]] = 1
    return m


def test_default_is_the_papers_predictor_unchanged():
    """`full` (the default) is R = M ⊙ X over every position: written out here from the timm parts."""
    model, explicit = vit_model(), vit_model("full")
    assert model.predictor_attention == "full"
    x, m = torch.randn(2, 1, 16, 16), vision_mask()
    v = model.predictor.vit
    with torch.no_grad():
        h = v.patch_embed(x) * m.unsqueeze(-1)
        h = v.norm(v.blocks(v.norm_pre(v._pos_embed(h))))
        expected = model.classifier(h[:, 0])
        got = model.predict(vision_inputs(x), m)
    assert torch.equal(got, expected)
    assert torch.equal(explicit.predict(vision_inputs(x), m), got)


def test_vision_selected_is_full_attention_with_the_unselected_keys_masked_out():
    """Gathering the selected patches = attending over all of them with the unselected masked as keys."""
    model = vit_model("selected")
    x, m = torch.randn(2, 1, 16, 16), vision_mask()
    v = model.predictor.vit
    with torch.no_grad():
        h = v.norm_pre(v._pos_embed(v.patch_embed(x) * m.unsqueeze(-1)))
        keys = torch.cat([torch.ones(2, 1, dtype=torch.bool), m > 0], 1)[:, None, None, :]
        for blk in v.blocks:
            h = blk(h, attn_mask=keys)
        expected = model.classifier(v.norm(h)[:, 0])
        got = model.predict(vision_inputs(x), m)
    assert torch.allclose(got, expected, atol=1e-5)
    # and it is a different model from the paper's: the same weights read in full give other logits
    model.predictor_attention = "full"
    assert not torch.allclose(model.predict(vision_inputs(x), m), got, atol=1e-4)


def test_vision_unselected_patches_cannot_change_the_prediction():
    model = vit_model("selected")
    x, m = torch.randn(2, 1, 16, 16), vision_mask()
    other = torch.randn(2, 1, 16, 16) * 5
    cells = m.view(2, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    changed = x * cells + other * (1 - cells)  # every unselected patch replaced
    with torch.no_grad():
        a, b = model.predict(vision_inputs(x), m), model.predict(vision_inputs(changed), m)
    assert torch.allclose(a, b, atol=1e-5)


def test_text_unselected_tokens_and_their_number_cannot_change_the_prediction():
    """The same selected tokens at the same positions, with other unselected tokens and a longer text:
    identical under `selected`; under the paper's `full` the extra zeroed tokens are attended."""
    torch.manual_seed(1)
    ids = torch.randint(5, VOCAB, (2, 10))
    att = torch.ones_like(ids)
    att[1, 7:] = 0
    mask = torch.zeros(2, 10)
    mask[0, [2, 3, 6]] = 1
    mask[1, [4]] = 1
    long_ids = torch.cat([ids, torch.randint(5, VOCAB, (2, 6))], 1)
    long_ids[:, :10][mask == 0] = torch.randint(5, VOCAB, (int((mask == 0).sum()),))  # others changed
    long_att = torch.ones_like(long_ids)  # row 0: 16 real tokens instead of 10; row 1: 16 instead of 7
    # [CLS] kept at 0; [SEP] moves to the end of the longer text: keep it identical at position 0 only
    long_ids[:, 0] = ids[:, 0]
    long_mask = torch.cat([mask, torch.zeros(2, 6)], 1)
    for pooling in ("cls", "mean_kept"):
        model = bert_model("selected", pooling=pooling)
        with torch.no_grad():
            a = model.predict(Inputs(ids, att, att.float(), None), mask * att)
            b = model.predict(Inputs(long_ids, long_att, long_att.float(), None), long_mask)
        assert torch.allclose(a, b, atol=1e-5), pooling
        model.predictor_attention = "full"
        with torch.no_grad():
            a = model.predict(Inputs(ids, att, att.float(), None), mask * att)
            b = model.predict(Inputs(long_ids, long_att, long_att.float(), None), long_mask)
        assert not torch.allclose(a, b, atol=1e-4), pooling


def test_text_selected_keeps_the_specials_and_survives_an_empty_rationale():
    model = bert_model("selected")
    ids = torch.randint(5, VOCAB, (2, 12))
    att = torch.ones_like(ids)
    att[0, 9:] = 0
    inputs = text_inputs(ids, att)
    with torch.no_grad():
        empty = model.predict(inputs, torch.zeros(2, 12))
        # nothing selected and nothing kept (count_special: true): one content-free slot is read
        nothing = model.predict(Inputs(ids, att, att.float(), None), torch.zeros(2, 12))
        mean = bert_model("selected", pooling="mean").predict(Inputs(ids, att, att.float(), None), torch.zeros(2, 12))
    assert torch.isfinite(empty).all() and torch.isfinite(nothing).all() and torch.isfinite(mean).all()
    # [CLS] and [SEP] are read: changing a selectable token that is not selected changes nothing,
    # changing [SEP] does
    changed = ids.clone()
    changed[:, 3] = (changed[:, 3] + 1) % VOCAB
    sep = ids.clone()
    sep[1, 11] = (sep[1, 11] + 1) % VOCAB
    with torch.no_grad():
        assert torch.allclose(model.predict(text_inputs(changed, att), torch.zeros(2, 12)), empty, atol=1e-5)
        assert not torch.allclose(model.predict(text_inputs(sep, att), torch.zeros(2, 12))[1], empty[1], atol=1e-5)


def test_training_gradient_reaches_the_generator_through_the_selected_positions():
    model = vit_model("selected").train()
    x = torch.randn(4, 1, 16, 16)
    inputs = vision_inputs(x)
    z = model.generate(inputs)
    torch.manual_seed(3)
    m = straight_through(relaxed_sample(z, 0.5, -torch.log(-torch.log(torch.rand_like(z)))))
    m.retain_grad()
    model.predict(inputs, m).logsumexp(-1).sum().backward()
    assert model.selector.weight.grad is not None and model.selector.weight.grad.abs().sum() > 0
    assert m.grad is not None
    selected, unselected = m.grad[m.detach() > 0], m.grad[m.detach() == 0]
    assert selected.abs().sum() > 0
    assert torch.equal(unselected, torch.zeros_like(unselected))  # documented: no CE gradient there


def test_selected_needs_a_sequence_model_and_is_a_config_option():
    cnn = CnnBackbone(img_size=16, patch_size=4, in_chans=1, channels=4, depth=2)
    with pytest.raises(ValueError, match="ViT or BERT-like"):
        RationaleModel(cnn, num_classes=5, with_generator=True, predictor_attention="selected")
    cfg = parse_config({"model": {"predictor_attention": "selected"}})
    assert cfg.model.predictor_attention == "selected"
    assert parse_config({}).model.predictor_attention == "full"
