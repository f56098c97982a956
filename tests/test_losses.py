"""Transfer losses: hand-computed values, gradient routing, FRAGE's discriminator, validation."""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch

from harmless.losses import (
    FRAGE,
    MMD,
    CosReg,
    MomentMatching,
    TransferLoss,
    build_transfer_loss,
)
from harmless.losses.cosreg import mean_pairwise_cosine


def softplus(z: float) -> float:
    return math.log1p(math.exp(z))


def rows(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- CosReg


def test_cosreg_hand_value():
    # e1 = (1, 0), e2 = (0, 2), e3 = (1, 1); unit rows (1, 0), (0, 1), (1, 1)/sqrt(2).
    # cos12 = 0, cos13 = 1/sqrt(2), cos23 = 1/sqrt(2); each unordered pair counted twice:
    # sum_{i != j} = 2 * (0 + 2/sqrt(2)) = 2 sqrt(2); n (n - 1) = 6 -> sqrt(2) / 3 = 0.4714.
    target = rows((1.0, 0.0), (0.0, 2.0), (1.0, 1.0))
    value = CosReg()(None, target)
    assert value.item() == pytest.approx(math.sqrt(2) / 3, abs=1e-12)


def test_cosreg_two_rows_hand_value():
    # (3, 4) and (-3, -4) are opposite: cos = -1 for both ordered pairs -> mean -1.
    assert CosReg()(None, rows((3.0, 4.0), (-3.0, -4.0))).item() == pytest.approx(-1.0)


def brute_force_cosine(target: torch.Tensor) -> float:
    n, total = target.shape[0], 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                a, b = target[i], target[j]
                total += float(a @ b / (a.norm() * b.norm()))
    return total / (n * (n - 1))


@pytest.mark.parametrize("n, d", [(2, 3), (7, 5), (30, 16)])
def test_cosreg_matches_double_loop(n, d):
    gen = torch.Generator().manual_seed(n * 100 + d)
    target = torch.randn(n, d, generator=gen, dtype=torch.float64) + 0.3
    fast = CosReg(dim=d)(torch.zeros(1, d), target).item()
    assert fast == pytest.approx(brute_force_cosine(target), abs=1e-10)


def test_cosreg_zero_row_is_finite_and_counts_as_orthogonal():
    # rows (1, 0), (0, 0), (1, 0): only the pair (1, 3) has cos 1, counted twice -> 2 / 6 = 1/3.
    target = rows((1.0, 0.0), (0.0, 0.0), (1.0, 0.0)).requires_grad_()
    value = CosReg()(None, target)
    value.backward()
    assert value.item() == pytest.approx(1 / 3)
    assert torch.isfinite(target.grad).all()


def test_cosreg_single_row_is_zero_and_in_graph():
    target = torch.ones(1, 4, requires_grad=True)
    value = CosReg()(None, target)
    value.backward()
    assert value.item() == 0.0 and torch.equal(target.grad, torch.zeros(1, 4))


def test_cosreg_ignores_source():
    source = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(5, 3, requires_grad=True)
    loss = CosReg()
    assert loss.uses_source is False
    loss(source, target).backward()
    assert source.grad is None and target.grad.abs().sum() > 0
    assert mean_pairwise_cosine(target).item() == pytest.approx(loss(None, target).item())


# ---------------------------------------------------------------- MMD

# source x = {0, 2}, target y = {1, 3} in d = 1, one bandwidth sigma = 1: k(a, b) = exp(-(a-b)^2/2)
# k_xx: diag 1, off-diagonal exp(-4/2) = e^-2; k_yy the same; k_xy: |0-1|, |0-3|, |2-1|, |2-3|
# = 1, 3, 1, 1 -> exp(-1/2) three times and exp(-9/2) once.
X, Y = rows((0.0,), (2.0,)), rows((1.0,), (3.0,))
E = math.exp
CROSS = (3 * E(-0.5) + E(-4.5)) / 4


def test_mmd_biased_hand_value():
    # biased: mean k_xx + mean k_yy - 2 mean k_xy = 2 * (2 + 2 e^-2) / 4 - 2 * CROSS
    expected = 2 * (2 + 2 * E(-2)) / 4 - 2 * CROSS
    value = MMD(bandwidths=[1.0], unbiased=False)(X, Y)
    assert value.item() == pytest.approx(expected, abs=1e-12)


def test_mmd_unbiased_hand_value():
    # unbiased: off-diagonal means e^-2 (x) and e^-2 (y), minus 2 * CROSS
    expected = E(-2) + E(-2) - 2 * CROSS
    value = MMD(bandwidths=[1.0])(X, Y)
    assert value.item() == pytest.approx(expected, abs=1e-12)


def test_mmd_multi_bandwidth_is_sum_of_kernels():
    # sigma = 2 gives k = exp(-(a-b)^2 / 8): off-diagonal e^-0.5, cross (3 e^-1/8 + e^-9/8) / 4
    sigma2 = E(-0.5) + E(-0.5) - 2 * (3 * E(-1 / 8) + E(-9 / 8)) / 4
    sigma1 = E(-2) + E(-2) - 2 * CROSS
    value = MMD(bandwidths=[1.0, 2.0])(X, Y)
    assert value.item() == pytest.approx(sigma1 + sigma2, abs=1e-12)


def test_mmd_median_heuristic_hand_value():
    # pooled {0, 2, 1, 3}: distances 2, 1, 3, 1, 1, 2 -> sorted 1 1 1 2 2 3, lower median 1;
    # with multipliers (1, 2) the bandwidths are (1, 2), as in the explicit test above.
    explicit = MMD(bandwidths=[1.0, 2.0])(X, Y)
    median = MMD(multipliers=[1.0, 2.0])(X, Y)
    assert median.item() == pytest.approx(explicit.item(), abs=1e-12)


def test_mmd_biased_zero_for_identical_samples():
    sample = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    assert MMD(unbiased=False)(sample, sample.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_mmd_unbiased_sign():
    # identical, distinct rows: 2/(n(n-1)) sum_{i!=j} k - 2/n^2 sum_{i,j} k < 0, since the cross
    # term also counts the diagonal k(x, x) = B, the largest kernel value.
    gen = torch.Generator().manual_seed(2)
    sample = torch.randn(20, 6, generator=gen)
    assert MMD()(sample, sample.clone()).item() < 0
    # well-separated clouds: clearly positive
    far = torch.randn(20, 6, generator=gen) + 10.0
    assert MMD(bandwidths=[1.0, 4.0])(sample, far).item() > 1.0


def test_mmd_unbiased_falls_back_to_biased_with_one_row(caplog):
    with caplog.at_level(logging.WARNING, logger="harmless.losses.mmd"):
        value = MMD(bandwidths=[1.0])(X, rows((1.0,)))
    # biased with y = {1}: (2 + 2 e^-2) / 4 + 1 - 2 e^-1/2
    assert value.item() == pytest.approx((2 + 2 * E(-2)) / 4 + 1 - 2 * E(-0.5), abs=1e-12)
    assert "biased" in caplog.text


def test_mmd_max_rows_uses_own_generator():
    gen = torch.Generator().manual_seed(3)
    source, target = torch.randn(50, 4, generator=gen), torch.randn(60, 4, generator=gen) + 1
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = MMD(max_rows=10, seed=7)(source, target)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.allclose(first, MMD(max_rows=10, seed=7)(source, target))
    assert not torch.allclose(first, MMD(max_rows=10, seed=8)(source, target))


def test_mmd_generator_state_round_trip():
    source, target = torch.randn(30, 3), torch.randn(30, 3)
    loss = MMD(max_rows=5, seed=0)
    loss(source, target)
    restored = MMD(max_rows=5, seed=99)
    restored.load_state_dict(loss.state_dict())
    assert torch.equal(loss(source, target), restored(source, target))


# ---------------------------------------------------------------- moments


def test_moments_covariance_hand_value():
    # source (0,0), (2,2): mean (1,1); deviations +-(1,1) -> Cov_s = [[1,1],[1,1]]
    # target (1,0), (1,2): mean (1,1); deviations +-(0,1) -> Cov_t = [[0,0],[0,1]]
    # mean term 0; Cov_s - Cov_t = [[1,1],[1,0]] -> Frobenius^2 = 3
    source, target = rows((0.0, 0.0), (2.0, 2.0)), rows((1.0, 0.0), (1.0, 2.0))
    assert MomentMatching()(source, target).item() == pytest.approx(3.0)


def test_moments_mean_term_and_weights_hand_value():
    # target shifted by (1,1): (2,1), (2,3): mean (2,2) -> |(1,1) - (2,2)|^2 = 2;
    # covariance as in the test above: 3
    # weights 2 and 0.5: 2 * 2 + 0.5 * 3 = 5.5
    source, target = rows((0.0, 0.0), (2.0, 2.0)), rows((2.0, 1.0), (2.0, 3.0))
    assert MomentMatching()(source, target).item() == pytest.approx(5.0)
    weighted = MomentMatching(mean_weight=2.0, second_weight=0.5)(source, target)
    assert weighted.item() == pytest.approx(5.5)


def test_moments_variance_hand_value():
    # per-dimension variances: source (1, 1), target (0, 1) -> |(1, 0)|^2 = 1; means equal
    source, target = rows((0.0, 0.0), (2.0, 2.0)), rows((1.0, 0.0), (1.0, 2.0))
    assert MomentMatching(second_moment="variance")(source, target).item() == pytest.approx(1.0)


def test_moments_single_row_domains():
    # one row each: covariances 0, loss = |(1,2) - (0,0)|^2 = 5
    assert MomentMatching()(rows((1.0, 2.0)), rows((0.0, 0.0))).item() == pytest.approx(5.0)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "loss", [MMD(bandwidths=[1.0, 3.0]), MMD(), MomentMatching(), MomentMatching(None, "variance")]
)
def test_gradients_reach_target_and_source_when_asked(loss):
    gen = torch.Generator().manual_seed(4)
    base_s, base_t = torch.randn(6, 3, generator=gen), torch.randn(5, 3, generator=gen) + 0.5
    source, target = base_s.clone(), base_t.clone().requires_grad_()
    loss(source, target).backward()
    assert source.grad is None and target.grad.abs().sum() > 0
    source, target = base_s.clone().requires_grad_(), base_t.clone().requires_grad_()
    loss(source, target).backward()
    assert source.grad.abs().sum() > 0 and target.grad.abs().sum() > 0


# ---------------------------------------------------------------- FRAGE


def frage_with_weights(weight, bias, **kwargs) -> FRAGE:
    loss = FRAGE(dim=len(weight), **kwargs).double()
    with torch.no_grad():
        loss.discriminator.weight.copy_(torch.tensor([weight]))
        loss.discriminator.bias.fill_(bias)
    return loss


def test_frage_hand_values():
    # D(x) = x_1 (w = (1, 0), b = 0). source (2, 0) -> logit 2; target (-1,0), (0.5,0), (-2,0)
    # -> logits -1, 0.5, -2.
    # L_D = 1/2 softplus(-2) + 1/2 * mean(softplus(-1), softplus(0.5), softplus(-2))
    # L_E = mean(softplus(1), softplus(-0.5), softplus(2))
    # balanced accuracy: source 1/1 correct; target 2/3 (0.5 > 0 is called "source") -> 5/6
    loss = frage_with_weights([1.0, 0.0], 0.0, optimizer="sgd", lr=0.1)
    source = rows((2.0, 0.0))
    target = rows((-1.0, 0.0), (0.5, 0.0), (-2.0, 0.0))
    expected_e = (softplus(1.0) + softplus(-0.5) + softplus(2.0)) / 3
    assert loss(source, target).item() == pytest.approx(expected_e, abs=1e-12)
    stats = loss.auxiliary_step(source, target)
    expected_d = 0.5 * softplus(-2.0) + 0.5 * (softplus(-1.0) + softplus(0.5) + softplus(-2.0)) / 3
    assert stats["disc_loss"] == pytest.approx(expected_d, abs=1e-12)
    assert stats["disc_acc"] == pytest.approx(5 / 6)


def test_frage_sgd_step_hand_value():
    # one source row s = (1, 0) labelled 1, one target row t = (0, 1) labelled 0, D = 0 at start.
    # dL_D/dlogit: source 1/2 (sigma(0) - 1) = -1/4, target 1/2 sigma(0) = 1/4.
    # grad w = -1/4 s + 1/4 t = (-1/4, 1/4); grad b = -1/4 + 1/4 = 0.
    # SGD lr 0.4: w = (0, 0) - 0.4 * (-1/4, 1/4) = (0.1, -0.1), b = 0.
    loss = frage_with_weights([0.0, 0.0], 0.0, optimizer="sgd", lr=0.4)
    loss.auxiliary_step(rows((1.0, 0.0)), rows((0.0, 1.0)))
    assert torch.allclose(loss.discriminator.weight, rows((0.1, -0.1)))
    assert loss.discriminator.bias.item() == pytest.approx(0.0)


@pytest.mark.parametrize("hidden", [None, 16])
def test_frage_discriminator_separates_clouds(hidden):
    gen = torch.Generator().manual_seed(5)
    source = torch.randn(64, 8, generator=gen) + 2.0
    target = torch.randn(48, 8, generator=gen) - 2.0
    loss = FRAGE(dim=8, hidden=hidden, lr=0.05, seed=0)
    for _ in range(40):
        stats = loss.auxiliary_step(source, target)
    assert stats["disc_acc"] > 0.95
    assert loss.auxiliary_step(source, target)["disc_loss"] < 0.1


def test_frage_forward_touches_only_target():
    loss = FRAGE(dim=4, hidden=8)
    loss.auxiliary_step(torch.randn(5, 4), torch.randn(6, 4))
    params = list(loss.discriminator.parameters())
    assert all(p.grad is None for p in params)
    before = [p.detach().clone() for p in params]
    source = torch.randn(5, 4, requires_grad=True)
    target = torch.randn(6, 4, requires_grad=True)
    loss(source, target).backward()
    assert all(p.grad is None for p in params)
    assert all(torch.equal(a, p) for a, p in zip(before, params))
    assert source.grad is None and target.grad.abs().sum() > 0


def test_frage_adversarial_gradient_moves_target_towards_source_label():
    # D(x) = x_1: minimising softplus(-x_1) raises x_1, so the gradient on x_1 is negative
    loss = frage_with_weights([1.0, 0.0], 0.0)
    target = rows((-1.0, 3.0)).requires_grad_()
    loss(None, target).backward()
    assert target.grad[0, 0] < 0 and target.grad[0, 1] == 0


def test_frage_seed_determinism_and_global_rng_untouched():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b = FRAGE(dim=6, hidden=5, seed=11), FRAGE(dim=6, hidden=5, seed=11)
    a.auxiliary_step(torch.ones(3, 6), torch.zeros(2, 6))
    assert torch.equal(torch.get_rng_state(), before)
    c = FRAGE(dim=6, hidden=5, seed=12)
    b_params, c_params = list(b.discriminator.parameters()), list(c.discriminator.parameters())
    fresh = FRAGE(dim=6, hidden=5, seed=11)
    assert all(torch.equal(p, q) for p, q in zip(b_params, fresh.discriminator.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(b_params, c_params))


def test_frage_state_dict_round_trip_restores_optimizer():
    gen = torch.Generator().manual_seed(6)
    source, target = torch.randn(10, 4, generator=gen) + 1, torch.randn(12, 4, generator=gen)
    trained = FRAGE(dim=4, hidden=3, lr=0.01, seed=1)
    for _ in range(3):
        trained.auxiliary_step(source, target)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    restored = FRAGE(dim=4, hidden=3, lr=0.01, seed=2)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.steps == 3
    state_a, state_b = trained.optimizer.state_dict(), restored.optimizer.state_dict()
    for key, slots in state_a["state"].items():
        for name, value in slots.items():
            assert torch.equal(value, state_b["state"][key][name])
    # identical continuation: the next step gives the same weights
    trained.auxiliary_step(source, target)
    restored.auxiliary_step(source, target)
    for p, q in zip(trained.discriminator.parameters(), restored.discriminator.parameters()):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- factory and validation


@pytest.mark.parametrize(
    "name, cls",
    [("frage", FRAGE), ("adversarial", FRAGE), ("cosreg", CosReg), ("mmd", MMD)]
    + [("moments", MomentMatching), ("MMD", MMD)],
)
def test_factory_builds_each_loss(name, cls):
    loss = build_transfer_loss(name, dim=4)
    assert isinstance(loss, cls) and isinstance(loss, TransferLoss)
    value = loss(torch.randn(3, 4), torch.randn(3, 4))
    assert value.dim() == 0 and torch.isfinite(value)


def test_factory_passes_kwargs_and_rejects_unknown_name():
    assert build_transfer_loss("frage", 4, hidden=7, lr=0.5).optimizer.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="allowed.*cosreg"):
        build_transfer_loss("wasserstein", 4)


BAD_ROWS = [
    (torch.zeros(4), r"shape \[n, d\].*\(4,\)"),
    (torch.zeros(0, 4), r"empty.*\(0, 4\)"),
    (torch.zeros(3, 5), r"width 5.*\(3, 5\)"),
    (torch.zeros(3, 4, dtype=torch.long), "floating-point"),
]


@pytest.mark.parametrize("bad, message", BAD_ROWS)
@pytest.mark.parametrize("name", ["frage", "cosreg", "mmd", "moments"])
def test_bad_target_shapes_raise(name, bad, message):
    with pytest.raises(ValueError, match=message):
        build_transfer_loss(name, dim=4)(torch.zeros(3, 4), bad)


@pytest.mark.parametrize("bad, message", BAD_ROWS)
@pytest.mark.parametrize("name", ["frage", "mmd", "moments"])
def test_bad_source_shapes_raise(name, bad, message):
    with pytest.raises(ValueError, match=message):
        build_transfer_loss(name, dim=4)(bad, torch.zeros(3, 4))


def test_frage_auxiliary_step_validates_rows():
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        FRAGE(dim=4).auxiliary_step(torch.zeros(3, 5), torch.zeros(3, 4))


def test_source_target_width_mismatch_without_dim():
    with pytest.raises(ValueError, match=r"target has width 3.*\(2, 3\)"):
        MMD()(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"target has width 3"):
        MomentMatching()(torch.zeros(2, 4), torch.zeros(2, 3))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: MMD(bandwidths=[]),
        lambda: MMD(multipliers=[0.0]),
        lambda: MMD(max_rows=1),
        lambda: MomentMatching(second_moment="skew"),
        lambda: FRAGE(dim=4, optimizer="rmsprop"),
        lambda: FRAGE(dim=4, hidden=0),
        lambda: CosReg(eps=0.0),
    ],
)
def test_bad_configs_raise(factory):
    with pytest.raises(ValueError):
        factory()
