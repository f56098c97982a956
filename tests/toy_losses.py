"""Small transfer losses for the plug-in's tests, simple enough to differentiate by hand."""

from __future__ import annotations

import torch

from harmless.losses.base import TransferLoss


class PullToPoint(TransferLoss):
    """l = 1/2 mean_i ||e_i - c||^2 over target rows; d l / d e_i = (e_i - c) / n_t."""

    uses_source = False

    def __init__(self, point: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("point", point)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (target - self.point).square().sum(dim=1).mean()


class MeanMatch(TransferLoss):
    """l = ||mean(source) - mean(target)||^2."""

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (source.mean(dim=0) - target.mean(dim=0)).square().sum()
