"""MMD: squared maximum mean discrepancy with a multi-bandwidth RBF kernel.

Source: Gretton, Borgwardt, Rasch, Schoelkopf, Smola (2012), "A Kernel Two-Sample Test" (JMLR),
Eq. 3 (unbiased) and Eq. 5 (biased); the multi-bandwidth sum follows Long et al. (2015), "Learning
Transferable Features with Deep Adaptation Networks". The harmless-transfer paper lists MMD
(Chen et al., 2020) among the discrepancies `Dist` of its Eq. 2.

Kernel, summed over bandwidths sigma_1..sigma_B:

    k(a, b) = sum_b exp(-|a - b|^2 / (2 sigma_b^2)).

For source rows x_1..x_m and target rows y_1..y_n:

    unbiased:  1/(m(m-1)) sum_{i!=j} k(x_i,x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i,y_j)
               - 2/(mn) sum_{i,j} k(x_i,y_j)
    biased:    1/m^2 sum_{i,j} k(x_i,x_j) + 1/n^2 sum_{i,j} k(y_i,y_j) - 2/(mn) sum_{i,j} k(x_i,y_j)

The biased value is >= 0 and exactly 0 for identical samples; the unbiased one has expectation
MMD^2 and can be negative when the distributions agree. The unbiased estimator needs two rows per
domain; with fewer, that call falls back to the biased one (logged as a warning).

Bandwidths: given explicitly (`bandwidths`), or by the median heuristic: sigma_b = multiplier_b *
median_{i<j} |z_i - z_j| over the distinct pairs of the pooled rows z = x u y (the lower median,
as `torch.median` defines it), computed without gradient, with default multipliers
(0.25, 0.5, 1, 2, 4). A zero median (all rows equal) is replaced by 1.

Memory is O((m + n)^2); `max_rows` caps each domain by sampling rows without replacement with the
module's own `torch.Generator` (seeded by `seed`), so the global RNG is never consumed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from harmless.losses.base import TransferLoss, check_rows

logger = logging.getLogger(__name__)

DEFAULT_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances [na, nb] between rows of a [na, d] and b [nb, d]."""
    sq = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return sq.clamp_min(0.0)


def self_squared_distances(a: torch.Tensor) -> torch.Tensor:
    """Pairwise squared distances [n, n] within a [n, d], with an exact zero diagonal."""
    off_diagonal = 1.0 - torch.eye(a.shape[0], device=a.device, dtype=a.dtype)
    return squared_distances(a, a) * off_diagonal


def median_bandwidth(pooled: torch.Tensor) -> torch.Tensor:
    """Lower median of the distances over distinct pairs of `pooled` [N, d] (no gradient)."""
    with torch.no_grad():
        n = pooled.shape[0]
        if n < 2:
            return pooled.new_tensor(1.0)
        rows, cols = torch.triu_indices(n, n, offset=1, device=pooled.device)
        dist = self_squared_distances(pooled)[rows, cols].sqrt()
        median = dist.median()
        return torch.where(median > 0, median, torch.ones_like(median))


def rbf_sum(sq_dist: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Multi-bandwidth kernel matrix: sum_b exp(-sq_dist / (2 sigma_b^2)); sigmas [B]."""
    gammas = 1.0 / (2.0 * sigmas.pow(2))  # [B]
    kernel = torch.zeros_like(sq_dist)
    for gamma in gammas:  # a loop, not a [.., B] tensor: keeps memory at one matrix
        kernel = kernel + torch.exp(-gamma * sq_dist)
    return kernel


def mmd_squared(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor, unbiased: bool):
    """MMD^2 from the kernel blocks k_xx [m, m], k_yy [n, n], k_xy [m, n]."""
    m, n = k_xx.shape[0], k_yy.shape[0]
    cross = 2.0 * k_xy.mean()
    if not unbiased:
        return k_xx.mean() + k_yy.mean() - cross
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - cross


class MMD(TransferLoss):
    """Squared MMD between source and target rows, multi-bandwidth RBF kernel.

    Args:
        dim: expected row width (None: any width, but source and target must agree).
        bandwidths: explicit sigmas; when None, the median heuristic times `multipliers`.
        multipliers: factors on the median distance (used only when `bandwidths` is None).
        unbiased: the unbiased estimator (default) or the biased V-statistic.
        max_rows: cap on the rows of each domain, sampled with the module's generator.
        seed: seed of that generator.
    """

    def __init__(
        self,
        dim: int | None = None,
        bandwidths: Sequence[float] | None = None,
        multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
        unbiased: bool = True,
        max_rows: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._check_config(bandwidths, multipliers, max_rows)
        self.dim = dim
        self.bandwidths = None if bandwidths is None else tuple(float(b) for b in bandwidths)
        self.multipliers = tuple(float(m) for m in multipliers)
        self.unbiased = unbiased
        self.max_rows = max_rows
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._warned_fallback = False

    @staticmethod
    def _check_config(bandwidths, multipliers, max_rows) -> None:
        if bandwidths is not None and (len(bandwidths) == 0 or min(bandwidths) <= 0):
            raise ValueError(f"bandwidths must be a non-empty list of positives, got {bandwidths}")
        if len(multipliers) == 0 or min(multipliers) <= 0:
            raise ValueError(
                f"multipliers must be a non-empty list of positives, got {multipliers}"
            )
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"max_rows must be >= 2 or None, got {max_rows}")

    def _subsample(self, rows: torch.Tensor) -> torch.Tensor:
        """At most `max_rows` rows of `rows` [n, d], drawn without replacement."""
        if self.max_rows is None or rows.shape[0] <= self.max_rows:
            return rows
        index = torch.randperm(rows.shape[0], generator=self.generator)[: self.max_rows]
        return rows[index.to(rows.device)]

    def _sigmas(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bandwidths [B] on the rows' device and dtype."""
        if self.bandwidths is not None:
            return source.new_tensor(self.bandwidths)
        median = median_bandwidth(torch.cat([source.detach(), target.detach()]))
        return median * source.new_tensor(self.multipliers)

    def _use_unbiased(self, source: torch.Tensor, target: torch.Tensor) -> bool:
        if not self.unbiased or min(source.shape[0], target.shape[0]) >= 2:
            return self.unbiased
        if not self._warned_fallback:
            logger.warning(
                "unbiased MMD needs >= 2 rows per domain (source %s, target %s): using the "
                "biased estimator for such calls",
                tuple(source.shape),
                tuple(target.shape),
            )
            self._warned_fallback = True
        return False

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared MMD between `source` [ns, d] and `target` [nt, d] (a scalar)."""
        check_rows("source", source, self.dim)
        check_rows("target", target, source.shape[1])
        source, target = self._subsample(source), self._subsample(target)
        sigmas = self._sigmas(source, target)
        k_xx = rbf_sum(self_squared_distances(source), sigmas)
        k_yy = rbf_sum(self_squared_distances(target), sigmas)
        k_xy = rbf_sum(squared_distances(source, target), sigmas)
        return mmd_squared(k_xx, k_yy, k_xy, self._use_unbiased(source, target))

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        """The subsampling generator's state, so a restored run draws the same rows."""
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        bands = self.bandwidths if self.bandwidths is not None else f"median x {self.multipliers}"
        return (
            f"dim={self.dim}, bandwidths={bands}, unbiased={self.unbiased}, "
            f"max_rows={self.max_rows}, seed={self.seed}"
        )
