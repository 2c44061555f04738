"""The method's math against hand computations: masks, KL terms, length loss, tau schedule."""

import math

import pytest
import torch

from rekd_core.model import losses
from rekd_core.model.masks import gumbel_noise, hard_mask, relaxed_sample, straight_through
from rekd_core.train.schedule import tau_at


def test_straight_through_forward_is_exactly_binary_and_backward_reaches_generator():
    torch.manual_seed(0)
    z = torch.randn(4, 9, 2, requires_grad=True)
    g = gumbel_noise(z.shape, generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
    s = relaxed_sample(z, 0.7, g)
    m = straight_through(s)
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    # forward value equals the hard one-hot argmax exactly, not to within an ulp
    assert torch.equal(m.detach(), (s[..., 1] > s[..., 0]).float())
    w = torch.randn(4, 9)
    (m * w).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    # the gradient is that of the soft keep-probability
    z2 = z.detach().clone().requires_grad_(True)
    (relaxed_sample(z2, 0.7, g)[..., 1] * w).sum().backward()
    assert torch.allclose(z.grad, z2.grad)


def test_eval_mask_is_deterministic_argmax():
    z = torch.tensor([[[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]])
    assert hard_mask(z).tolist() == [[1.0, 0.0, 0.0]]


def test_gumbel_noise_statistics():
    g = gumbel_noise((200_000,), generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert abs(g.mean().item() - 0.5772) < 0.01  # Euler–Mascheroni constant
    assert abs(g.var().item() - math.pi ** 2 / 6) < 0.03


def test_kl_direction_and_value_by_hand():
    p = torch.tensor([[0.8, 0.2]])
    q = torch.tensor([[0.5, 0.5]])
    by_hand = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert losses.kl_categorical(p, q).item() == pytest.approx(by_hand, rel=1e-6)
    reverse = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    assert losses.kl_categorical(q, p).item() == pytest.approx(reverse, rel=1e-6)
    assert by_hand != pytest.approx(reverse)


def test_rationale_kd_sums_positions_and_averages_examples():
    st = torch.tensor([[[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]]])  # teacher, 1 example, 3 positions
    ss = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])
    valid = torch.tensor([[1.0, 1.0, 0.0]])  # third position does not count
    expect = 0.8 * math.log(1.6) + 0.2 * math.log(0.4) + 0.0
    assert losses.rationale_kd(st, ss, valid).item() == pytest.approx(expect, rel=1e-6)
    two = losses.rationale_kd(st.repeat(2, 1, 1), ss.repeat(2, 1, 1), valid.repeat(2, 1))
    assert two.item() == pytest.approx(expect, rel=1e-6)


def test_prediction_kd_uses_temperature_on_both_sides():
    qt = torch.tensor([[2.0, 0.0]])
    qs = torch.tensor([[0.0, 1.0]])
    tau = 2.0
    pt = torch.softmax(qt / tau, -1)[0]
    ps = torch.softmax(qs / tau, -1)[0]
    expect = sum(pt[i] * math.log(pt[i] / ps[i]) for i in range(2))
    assert losses.prediction_kd(qt, qs, tau).item() == pytest.approx(float(expect), rel=1e-6)


def test_rekd_mix_weights():
    l_re, kd_r, kd_y = torch.tensor(2.0), torch.tensor(3.0), torch.tensor(0.5)
    out = losses.rekd_loss(l_re, kd_r, kd_y, tau=2.0, alpha=0.25, lambda_R=0.5)
    kd = 0.5 * 3.0 + 4.0 * 0.5
    assert out["kd"].item() == pytest.approx(kd)
    assert out["total"].item() == pytest.approx(0.25 * 2.0 + 0.75 * kd)
    only_r = losses.rekd_loss(l_re, kd_r, None, tau=2.0, alpha=0.0, lambda_R=0.5)
    assert only_r["total"].item() == pytest.approx(1.5)


def test_selection_loss_per_example_vs_batch_mean():
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    valid = torch.ones(2, 4)
    # L p = 4 * 0.25 = 1: per example (3-1)^2=4 and (0-1)^2=1 -> mean 2.5
    assert losses.selection_loss(m, valid, 0.25, "per_example").item() == pytest.approx(2.5)
    # batch mean count 1.5 against 1 -> 0.25
    assert losses.selection_loss(m, valid, 0.25, "batch_mean").item() == pytest.approx(0.25)
    # only counted positions count, against their own length
    valid2 = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    got = losses.selection_loss(m, valid2, 0.5, "per_example").item()
    assert got == pytest.approx(((2 - 1) ** 2 + (0 - 2) ** 2) / 2)
    with pytest.raises(ValueError, match="length_penalty"):
        losses.selection_loss(m, valid, 0.25, "nope")


def test_re_loss_combines_ce_and_length_penalty():
    q = torch.tensor([[2.0, 0.0]])
    y = torch.tensor([0])
    m = torch.tensor([[1.0, 1.0]])
    out = losses.re_loss(q, y, m, torch.ones(1, 2), lambda_select=0.1, p_target=0.5)
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert out["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert out["re"].item() == pytest.approx(ce + 0.1 * 1.0, rel=1e-6)


def test_tau_schedule_endpoints_and_cadence():
    kw = dict(total_steps=1001, tau0=5.0, tau_final=0.1, update_every=100)
    assert tau_at(0, **kw) == pytest.approx(5.0)
    assert tau_at(1000, **kw) == pytest.approx(0.1)  # last step lands on tau_final
    # constant within a cadence window, changes at its edge
    assert tau_at(99, **kw) == tau_at(0, **kw)
    assert tau_at(100, **kw) < tau_at(99, **kw)
    assert tau_at(150, **kw) == tau_at(100, **kw)
    # exponential: equal ratios between successive updates
    r1 = tau_at(200, **kw) / tau_at(100, **kw)
    r2 = tau_at(300, **kw) / tau_at(200, **kw)
    assert r1 == pytest.approx(r2)
    assert tau_at(100, **kw) == pytest.approx(5.0 * math.exp(-math.log(50) / 1000 * 100))
    # monotone non-increasing over the run
    taus = [tau_at(k, **kw) for k in range(1001)]
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    # a run shorter than one update period keeps tau0
    assert tau_at(49, total_steps=50, tau0=5.0, tau_final=0.1, update_every=100) == 5.0
