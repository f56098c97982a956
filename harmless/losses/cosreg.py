"""CosReg: the mean pairwise cosine similarity of the target rows.

Source: Gao, He, Tan, Qin, Wang, Liu (2019), "Representation Degeneration Problem in Training
Natural Language Generation Models" (ICLR). Their regulariser pushes word embeddings apart on the
sphere; the harmless-transfer paper (Sec. 5.1) reads it as a transfer loss whose source domain is
the uniform distribution on the sphere, so it looks at the target rows only.

For target rows e_1..e_n (n >= 2) the loss is

    CosReg(e) = 1 / (n (n - 1)) * sum_{i != j} cos(e_i, e_j),   cos(a, b) = a.b / (|a| |b|).

It is computed in O(n d) time and memory, exactly, with no n x n matrix: with the normalised rows
u_i = e_i / max(|e_i|, eps) and their sum s = sum_i u_i,

    sum_{i != j} u_i.u_j = |s|^2 - sum_i |u_i|^2.

The eps guard maps a zero row to u_i = 0 (it contributes cos = 0 to every pair) instead of NaN.
The second sum is taken over the actual normalised rows, not assumed to equal n, so the identity
stays exact with zero rows. With one row there is no pair and the loss is 0 (kept in the graph).
"""

from __future__ import annotations

import logging

import torch

from harmless.losses.base import TransferLoss, check_rows

logger = logging.getLogger(__name__)


def mean_pairwise_cosine(rows: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean cosine over ordered distinct pairs of `rows` [n, d], in O(n d); 0 when n < 2."""
    n = rows.shape[0]
    if n < 2:
        return rows.sum() * 0.0
    norms = rows.norm(dim=1, keepdim=True).clamp_min(eps)  # [n, 1]
    unit = rows / norms  # [n, d]
    total = unit.sum(dim=0)  # [d]
    off_diagonal = total.pow(2).sum() - unit.pow(2).sum()
    return off_diagonal / (n * (n - 1))


class CosReg(TransferLoss):
    """Gao et al. (2019) cosine regulariser on the target rows; the source rows are ignored."""

    uses_source = False

    def __init__(self, dim: int | None = None, eps: float = 1e-8) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.dim = dim
        self.eps = eps

    def forward(self, source: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Mean pairwise cosine of `target` [nt, d]; `source` may be None and is not read."""
        check_rows("target", target, self.dim)
        return mean_pairwise_cosine(target, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"
