"""A synthetic long-tail task whose transfer target is deliberately wrong, to check harmlessness.

300 items with Zipf frequencies, each with its own class; a bag-of-one classifier; the transfer
loss pulls every rare embedding to one point, which would make the rare items indistinguishable.
`train_long_tail` returns the final frequency-weighted main loss of one plug-in mode, so modes
(and optimizers) can be compared: tests/test_harmlessness.py asserts the SGD case,
benchmarks/harmlessness.py prints the whole grid.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from harmless.losses.base import TransferLoss
from harmless.plugin import HarmlessTransfer

V, D, C, BATCH, STEPS, LR = 300, 8, 5, 64, 500, 2.0


class PullToPoint(TransferLoss):
    """l = 1/2 mean_i ||e_i - c||^2 over target rows; d l / d e_i = (e_i - c) / n_t."""

    uses_source = False

    def __init__(self, point: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("point", point)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (target - self.point).square().sum(dim=1).mean()


def train_long_tail(mode: str, lam: float = 0.0, optimizer: str = "sgd", lr: float = LR) -> float:
    """Train with one plug-in mode; return the frequency-weighted main loss over all items."""
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    gen = torch.Generator().manual_seed(0)
    freq = 1.0 / torch.arange(1, V + 1).double() ** 1.1
    freq /= freq.sum()
    labels = torch.randint(0, C, (V,), generator=gen)
    torch.manual_seed(0)
    emb, head = nn.Embedding(V, D), nn.Linear(D, C)
    params = [*emb.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    domains = SimpleNamespace(source=np.arange(V // 5), target=np.arange(V // 5, V))
    wrong = PullToPoint(torch.full((D,), 3.0))
    plugin = HarmlessTransfer(emb, wrong, domains, mode=mode, lam=lam)
    for _ in range(STEPS):
        ids = torch.multinomial(freq, BATCH, replacement=True, generator=gen)
        loss = nn.functional.cross_entropy(head(emb(ids)), labels[ids])
        opt.zero_grad()
        plugin.backward(loss, ids)
        opt.step()
    with torch.no_grad():
        per_item = nn.functional.cross_entropy(head(emb.weight), labels, reduction="none")
    return float((per_item.double() * freq).sum())
