"""Coefficients that combine the main and transfer gradients.

Three ways to update an embedding row e_i from its main gradient g_m,i = d l_main / d e_i and its
transfer gradient g_t,i = d l_transfer / d e_i:

- fixed (Eq. 1 of the paper): mu_i = g_m,i + lambda g_t,i with one constant lambda;
- global dynamic barrier (Eq. 5-7, Gong et al. 2021): mu = g_t + lambda g_m with one lambda for
  every parameter, lambda = max((phi - <g_t, g_m>) / ||g_m||^2, 0),
  phi = alpha * min(||g_m||^2, l_main);
- item-wise dynamic barrier (Algorithm 1): the same closed form row by row,
  lambda_i = max((phi_i - <g_t,i, g_m,i>) / ||g_m,i||^2, 0),
  phi_i = alpha * min(||g_m,i||^2, l_main).

The barrier guarantees <g_m,i, mu_i> >= phi_i >= 0 on every row that has a main gradient, so to
first order a step along -mu never increases the main loss: the transfer is harmless. A row whose
main gradient is zero gets lambda_i = 0 (never NaN or inf): its update is the transfer gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_pair(g_main: torch.Tensor, g_transfer: torch.Tensor) -> None:
    if g_main.dim() != 2:
        raise ValueError(f"g_main must have shape [n, d], got shape {tuple(g_main.shape)}")
    if g_transfer.shape != g_main.shape:
        raise ValueError(
            f"g_transfer must have the shape of g_main {tuple(g_main.shape)}, "
            f"got shape {tuple(g_transfer.shape)}"
        )


def _loss_value(main_loss: torch.Tensor | float) -> torch.Tensor | float:
    """The main loss as a detached scalar; it must be finite and non-negative (phi >= 0)."""
    value = main_loss.detach() if isinstance(main_loss, torch.Tensor) else float(main_loss)
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise ValueError(f"main_loss must be a scalar, got shape {tuple(value.shape)}")
    scalar = float(value)
    if not (scalar >= 0.0 and scalar < float("inf")):
        raise ValueError(
            f"main_loss must be finite and >= 0 for the barrier phi = alpha * min(||g||^2, loss), "
            f"got {scalar}"
        )
    return value.reshape(()) if isinstance(value, torch.Tensor) else value


def itemwise_lambda(
    g_main: torch.Tensor,
    g_transfer: torch.Tensor,
    main_loss: torch.Tensor | float,
    alpha: float = 2.0,
) -> torch.Tensor:
    """Algorithm 1's coefficient for each row: lambda of shape [n] from gradients of shape [n, d].

    lambda_i = max((phi_i - <g_t,i, g_m,i>) / ||g_m,i||^2, 0),
    phi_i = alpha * min(||g_m,i||^2, main_loss), and lambda_i = 0 where g_m,i = 0.
    Computed in float32 (or float64 when the inputs are), whatever the inputs' precision.
    """
    _check_pair(g_main, g_transfer)
    dtype = torch.float64 if g_main.dtype == torch.float64 else torch.float32
    g_m, g_t = g_main.to(dtype), g_transfer.to(dtype)
    # Squared norms and inner products, one per row: [n].
    return lambda_from_products(g_m.square().sum(dim=1), (g_t * g_m).sum(dim=1), main_loss, alpha)


def lambda_from_products(
    sq_norm: torch.Tensor,
    inner: torch.Tensor,
    main_loss: torch.Tensor | float,
    alpha: float = 2.0,
) -> torch.Tensor:
    """Algorithm 1's lambda from ||g_m,i||^2 and <g_t,i, g_m,i> (both of shape [n]).

    The plug-in calls this directly: it gets the squared norms without materialising g_t for
    rows that have none (their inner product is 0).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    loss = _loss_value(main_loss)
    loss_t = torch.as_tensor(loss, dtype=sq_norm.dtype, device=sq_norm.device)
    phi = alpha * torch.minimum(sq_norm, loss_t)
    # Rows without a main gradient get lambda = 0; the safe divisor keeps them finite.
    has_main = sq_norm > 0
    safe = torch.where(has_main, sq_norm, torch.ones_like(sq_norm))
    lam = ((phi - inner) / safe).clamp_min(0.0)
    return torch.where(has_main, lam, torch.zeros_like(lam))


def global_lambda(
    g_main: Sequence[torch.Tensor] | torch.Tensor,
    g_transfer: Sequence[torch.Tensor] | torch.Tensor,
    main_loss: torch.Tensor | float,
    alpha: float = 2.0,
) -> torch.Tensor:
    """Eq. 7: one coefficient for all parameters, from lists of matching gradient tensors.

    lambda = max((phi - <g_t, g_m>) / ||g_m||^2, 0), phi = alpha * min(||g_m||^2, main_loss),
    where the norms and the inner product run over every tensor in the lists (a parameter without
    a transfer gradient contributes to ||g_m||^2 only). Returns a 0-dim float tensor; 0 when the
    whole main gradient is zero.
    """
    mains = [g_main] if isinstance(g_main, torch.Tensor) else list(g_main)
    transfers = [g_transfer] if isinstance(g_transfer, torch.Tensor) else list(g_transfer)
    if len(mains) != len(transfers) or not mains:
        raise ValueError(
            f"global_lambda needs matching non-empty lists, got {len(mains)} main and "
            f"{len(transfers)} transfer gradients"
        )
    loss = _loss_value(main_loss)
    sq_norm = torch.zeros((), dtype=torch.float64, device=mains[0].device)
    inner = torch.zeros_like(sq_norm)
    for g_m, g_t in zip(mains, transfers, strict=True):
        if g_t.shape != g_m.shape:
            raise ValueError(
                f"gradient shapes differ: main {tuple(g_m.shape)}, transfer {tuple(g_t.shape)}"
            )
        sq_norm = sq_norm + g_m.double().square().sum()
        inner = inner + (g_t.double() * g_m.double()).sum()
    if sq_norm == 0:
        return torch.zeros((), dtype=torch.float32, device=sq_norm.device)
    phi = alpha * torch.minimum(sq_norm, torch.as_tensor(loss, dtype=torch.float64))
    return ((phi - inner) / sq_norm).clamp_min(0.0).float()


def combine_itemwise(
    g_main: torch.Tensor, g_transfer: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """mu_i = g_t,i + lambda_i g_m,i for every row (Eq. 6 row by row): [n, d]."""
    _check_pair(g_main, g_transfer)
    if lam.dim() == 0:
        return g_transfer + lam * g_main
    if lam.shape != g_main.shape[:1]:
        raise ValueError(f"lambda must have shape [{g_main.shape[0]}], got {tuple(lam.shape)}")
    return g_transfer + lam.unsqueeze(1) * g_main


def combine_fixed(g_main: torch.Tensor, g_transfer: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 1's gradient, mu_i = g_m,i + lambda g_t,i with a fixed lambda: [n, d]."""
    _check_pair(g_main, g_transfer)
    return g_main + lam * g_transfer
