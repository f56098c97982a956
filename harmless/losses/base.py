"""The contract every transfer loss follows.

A transfer loss measures how far the embedding rows of the target domain (rare items) are from
those of the source domain (frequent items). It sees rows, never the table or the network: the
plug-in (`harmless.plugin.HarmlessTransfer`) gathers the rows, and takes the gradient of the loss
with respect to the target rows alone, so no backward pass runs through the network.
"""

from __future__ import annotations

import torch
from torch import nn


def check_rows(name: str, rows: torch.Tensor, dim: int | None = None) -> None:
    """Raise a ValueError naming the shape when `rows` is not a [n, d] float matrix with n >= 1."""
    if rows.dim() != 2:
        raise ValueError(f"{name} must have shape [n, d], got shape {tuple(rows.shape)}")
    if rows.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(rows.shape)}): the domain has no rows")
    if dim is not None and rows.shape[1] != dim:
        raise ValueError(
            f"{name} has width {rows.shape[1]}, expected {dim} (shape {tuple(rows.shape)})"
        )
    if not rows.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {rows.dtype}")


class TransferLoss(nn.Module):
    """Base class: `forward(source [ns, d], target [nt, d]) -> scalar loss`.

    Subclasses set `uses_source = False` when the loss reads the target rows alone (CosReg), and
    override `auxiliary_step` when they own parameters trained by their own optimizer (the FRAGE
    discriminator): the plug-in calls it once per training step, on detached rows, before it
    evaluates `forward` for the embedding side.
    """

    uses_source: bool = True

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def auxiliary_step(self, source: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One update of the loss's own parameters; returns diagnostics (empty by default)."""
        return {}
