"""Moment matching: distance between the first two moments of the source and target rows.

Source: the moment-matching discrepancy the harmless-transfer paper cites for `Dist` in its Eq. 2,
Peng, Bai, Xia, Huang, Saenko, Wang (2019), "Moment Matching for Multi-Source Domain Adaptation"
(ICCV). Peng et al. match per-dimension raw moments E[x^k]; this module matches the mean and
the centred second moment instead, whose covariance form is the CORAL distance of Sun and Saenko
(2016), "Deep CORAL", without its 1/(4 d^2) scale.

For source rows x_1..x_m and target rows y_1..y_n (width d):

    loss = w_mean * |mu_x - mu_y|^2 + w_second * |C_x - C_y|_F^2,

    mu_x = (1/m) sum_i x_i,   C_x = (1/m) sum_i (x_i - mu_x)(x_i - mu_x)^T   (d x d),

with the population (1/m) covariance, so one row per domain is allowed (its covariance is 0).
With `second_moment="variance"` the second term compares the per-dimension variances instead,
|diag(C_x) - diag(C_y)|^2, in O(n d) rather than O(n d^2) time and O(d^2) memory.
"""

from __future__ import annotations

import logging

import torch

from harmless.losses.base import TransferLoss, check_rows

logger = logging.getLogger(__name__)

SECOND_MOMENTS = ("covariance", "variance")


def covariance(rows: torch.Tensor) -> torch.Tensor:
    """Population covariance [d, d] of `rows` [n, d]."""
    centred = rows - rows.mean(dim=0, keepdim=True)
    return centred.T @ centred / rows.shape[0]


def variance(rows: torch.Tensor) -> torch.Tensor:
    """Population per-dimension variance [d] of `rows` [n, d]."""
    return rows.var(dim=0, correction=0)


class MomentMatching(TransferLoss):
    """Squared distance between means plus squared distance between second moments.

    Args:
        dim: expected row width (None: any width, but source and target must agree).
        second_moment: "covariance" (Frobenius distance of d x d covariances, default) or
            "variance" (Euclidean distance of the per-dimension variances).
        mean_weight: weight of the mean term.
        second_weight: weight of the second-moment term.
    """

    def __init__(
        self,
        dim: int | None = None,
        second_moment: str = "covariance",
        mean_weight: float = 1.0,
        second_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if second_moment not in SECOND_MOMENTS:
            raise ValueError(
                f"second_moment must be one of {SECOND_MOMENTS}, got {second_moment!r}"
            )
        if mean_weight < 0 or second_weight < 0:
            raise ValueError(f"weights must be >= 0, got {mean_weight}, {second_weight}")
        self.dim = dim
        self.second_moment = second_moment
        self.mean_weight = mean_weight
        self.second_weight = second_weight

    def _second(self, rows: torch.Tensor) -> torch.Tensor:
        return covariance(rows) if self.second_moment == "covariance" else variance(rows)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted moment distance between `source` [ns, d] and `target` [nt, d]."""
        check_rows("source", source, self.dim)
        check_rows("target", target, source.shape[1])
        mean_term = (source.mean(dim=0) - target.mean(dim=0)).pow(2).sum()
        second_term = (self._second(source) - self._second(target)).pow(2).sum()
        return self.mean_weight * mean_term + self.second_weight * second_term

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, second_moment={self.second_moment!r}, "
            f"mean_weight={self.mean_weight}, second_weight={self.second_weight}"
        )
