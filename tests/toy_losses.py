"""Small transfer losses for the plug-in's tests, simple enough to differentiate by hand."""

from __future__ import annotations

import torch

from harmless.losses.base import TransferLoss
from harmless.synthetic import PullToPoint

__all__ = ["MeanMatch", "PullToPoint"]


class MeanMatch(TransferLoss):
    """l = ||mean(source) - mean(target)||^2."""

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (source.mean(dim=0) - target.mean(dim=0)).square().sum()
