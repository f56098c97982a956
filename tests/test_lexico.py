"""Algorithm 1 and Eq. 5-7: hand-worked cases and properties on a bank of inputs."""

from __future__ import annotations

import pytest
import torch

from harmless.lexico import combine_fixed, combine_itemwise, global_lambda, itemwise_lambda

G_MAIN = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
G_TRANSFER = torch.tensor([[1.0, 1.0], [0.0, -1.0], [3.0, 3.0]])


def test_itemwise_lambda_by_hand_small_loss():
    # L = 0.5, alpha = 2.
    # row 0: ||g||^2 = 1, phi = 2 * min(1, 0.5) = 1, <g_t, g_m> = 1 -> max((1 - 1) / 1, 0) = 0
    # row 1: ||g||^2 = 4, phi = 2 * min(4, 0.5) = 1, <g_t, g_m> = -2 -> (1 + 2) / 4 = 0.75
    # row 2: no main gradient -> 0
    lam = itemwise_lambda(G_MAIN, G_TRANSFER, 0.5, alpha=2.0)
    assert torch.equal(lam, torch.tensor([0.0, 0.75, 0.0]))


def test_itemwise_lambda_by_hand_large_loss():
    # L = 10: row 0: phi = 2 * 1 = 2 -> (2 - 1) / 1 = 1; row 1: phi = 2 * 4 = 8 -> (8 + 2) / 4 = 2.5
    lam = itemwise_lambda(G_MAIN, G_TRANSFER, torch.tensor(10.0))
    assert torch.equal(lam, torch.tensor([1.0, 2.5, 0.0]))
    # The update: mu_i = g_t,i + lambda_i g_m,i.
    mu = combine_itemwise(G_MAIN, G_TRANSFER, lam)
    assert torch.equal(mu, torch.tensor([[2.0, 1.0], [0.0, 4.0], [3.0, 3.0]]))


def test_global_lambda_by_hand():
    # ||g_m||^2 = 1 + 4 = 5, <g_t, g_m> = 1 - 2 = -1, L = 10 -> phi = 2 * 5 = 10 -> 11 / 5 = 2.2
    lam = global_lambda([G_MAIN[:2]], [G_TRANSFER[:2]], 10.0)
    assert lam.item() == pytest.approx(2.2)
    # A parameter with a main gradient only adds to the norm: ||g||^2 = 5 + 9, phi = 20, -> 21/14
    extra = torch.tensor([3.0])
    lam = global_lambda([G_MAIN[:2], extra], [G_TRANSFER[:2], torch.zeros(1)], 10.0)
    assert lam.item() == pytest.approx(21 / 14)
    assert global_lambda([torch.zeros(2, 2)], [torch.ones(2, 2)], 1.0).item() == 0.0


def test_fixed_combination_by_hand():
    mu = combine_fixed(G_MAIN, G_TRANSFER, 0.5)
    assert torch.equal(mu, torch.tensor([[1.5, 0.5], [0.0, 1.5], [1.5, 1.5]]))


def _check_properties(g_m, g_t, loss, alpha):
    lam = itemwise_lambda(g_m, g_t, loss, alpha)
    assert lam.shape == (g_m.shape[0],)
    assert torch.isfinite(lam).all() and (lam >= 0).all()
    sq = g_m.double().square().sum(1)
    inner = (g_t.double() * g_m.double()).sum(1)
    phi = alpha * torch.minimum(sq, torch.tensor(float(loss), dtype=torch.float64))
    has_main = sq > 0
    # Rows without a main gradient get lambda = 0.
    assert (lam[~has_main] == 0).all()
    # The barrier <g_m, mu> >= phi holds on every row with a main gradient ...
    mu_inner = inner + lam.double() * sq
    tol = 1e-4 * (phi.abs() + inner.abs() + 1e-30)
    assert (mu_inner[has_main] >= phi[has_main] - tol[has_main]).all()
    # ... and lambda is the smallest such coefficient: positive only where the barrier is tight.
    tight = lam > 0
    assert ((mu_inner - phi).abs()[tight] <= tol[tight]).all()
    # Where the two gradients already agree enough, nothing changes: lambda = 0.
    assert (lam[has_main & (inner >= phi)] == 0).all()
    return lam, sq, phi


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_itemwise_properties_on_bank(bank, alpha):
    for _, g_m, g_t, loss in bank:
        _check_properties(g_m, g_t, loss, alpha)


def test_no_transfer_gradient_rescales_main_by_alpha(bank):
    # With g_t = 0, lambda_i = alpha * min(||g||^2, L) / ||g||^2: alpha whenever ||g||^2 <= L.
    for _, g_m, _, loss in bank:
        lam = itemwise_lambda(g_m, torch.zeros_like(g_m), loss, 2.0)
        sq = g_m.double().square().sum(1)
        expected = torch.where(sq > 0, 2.0 * torch.clamp(loss / sq, max=1.0), 0.0)
        assert torch.allclose(lam.double(), expected, rtol=1e-5)


def test_global_lambda_barrier_on_bank(bank):
    for _, g_m, g_t, loss in bank:
        lam = global_lambda(g_m, g_t, loss).double()
        sq, inner = g_m.double().square().sum(), (g_m.double() * g_t.double()).sum()
        assert torch.isfinite(lam) and lam >= 0
        if sq > 0:
            phi = 2.0 * min(sq.item(), loss)
            assert inner + lam * sq >= phi - 1e-4 * (abs(phi) + abs(inner.item()) + 1e-30)


def test_low_precision_inputs_combine_in_float32():
    g_m = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.bfloat16)
    g_t = torch.tensor([[0.5, -0.5], [1.0, 1.0]], dtype=torch.bfloat16)
    lam = itemwise_lambda(g_m, g_t, 1.0)
    assert lam.dtype == torch.float32
    assert torch.allclose(lam, itemwise_lambda(g_m.float(), g_t.float(), 1.0))


@pytest.mark.parametrize(
    ("g_m", "g_t", "match"),
    [
        (torch.zeros(3), torch.zeros(3), r"g_main must have shape \[n, d\], got shape \(3,\)"),
        (torch.zeros(3, 2), torch.zeros(2, 2), r"got shape \(2, 2\)"),
    ],
)
def test_bad_shapes_raise(g_m, g_t, match):
    with pytest.raises(ValueError, match=match):
        itemwise_lambda(g_m, g_t, 1.0)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -1.0])
def test_bad_main_loss_raises(loss):
    with pytest.raises(ValueError, match="main_loss must be finite and >= 0"):
        itemwise_lambda(torch.ones(2, 2), torch.ones(2, 2), loss)
