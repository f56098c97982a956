"""Output layers returning per-token negative log-likelihoods, with weight tying.

- ``FullSoftmax``: logits h W^T + b over the whole vocabulary (AWD-LSTM on WikiText-2).
- ``TiedAdaptiveSoftmax``: ``nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al., 2017, "Efficient
  softmax approximation for GPUs") whose head and tail clusters score words against rows of one
  shared output matrix, the (tied) embedding. This is the parametrisation of awd-lstm-lm's
  ``SplitCrossEntropyLoss`` (splitcross.py), used there for WikiText-103 with splits
  [2800, 20000, 76000]: the head scores the shortlist words with their own embedding rows plus one
  learnt vector per tail cluster; tail cluster c scores its words with their embedding rows; every
  word keeps a bias. Tail clusters thus have no down-projection (``div_value`` = 1, identity
  projection), so every word, head or tail, keeps its tied vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check_inputs(hidden: torch.Tensor, targets: torch.Tensor) -> None:
    if hidden.dim() != 2 or targets.dim() != 1 or hidden.size(0) != targets.size(0):
        raise ValueError(
            f"expected hidden [N, d] and targets [N], got {tuple(hidden.shape)} and "
            f"{tuple(targets.shape)}"
        )


class FullSoftmax(nn.Module):
    """Softmax over all words; ``weight`` [V, d] may be the embedding's (tying)."""

    def __init__(self, weight: nn.Parameter, bias: bool = True) -> None:
        super().__init__()
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(weight.size(0))) if bias else None

    def log_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [N, V] of hidden [N, d]."""
        return F.log_softmax(F.linear(hidden, self.weight, self.bias), dim=-1)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL [N] of targets [N] given hidden [N, d]."""
        _check_inputs(hidden, targets)
        logits = F.linear(hidden, self.weight, self.bias)  # [N, V]
        return F.cross_entropy(logits, targets, reduction="none")


class _RowsLinear(nn.Module):
    """Logits against rows [start, stop) of a shared matrix, then ``extra`` own rows."""

    def __init__(
        self, weight: nn.Parameter, start: int, stop: int, extra: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = weight  # shared: the same Parameter object as the embedding's (tying)
        self.start, self.stop = start, stop
        dim = weight.size(1)
        self.extra = nn.Parameter(torch.zeros(extra, dim)) if extra else None  # as splitcross.py
        self.bias = nn.Parameter(torch.zeros(stop - start + extra)) if bias else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = self.weight[self.start : self.stop]  # [stop - start, d]
        if self.extra is not None:
            rows = torch.cat([rows, self.extra])  # [stop - start + extra, d]
        return F.linear(hidden, rows, self.bias)


class TiedAdaptiveSoftmax(nn.AdaptiveLogSoftmaxWithLoss):
    """Adaptive softmax whose word vectors are rows of ``weight`` [V, d] (the embedding).

    Args:
        weight: the shared output matrix; the tied embedding, or the model's own decoder matrix.
        cutoffs: increasing cluster boundaries, e.g. [2800, 20000, 76000] for WikiText-103; ids
            must be sorted by frequency (they are, see ``tasks.lm.data``).
        bias: a bias per word and per cluster token.
    """

    def __init__(self, weight: nn.Parameter, cutoffs: Sequence[int], bias: bool = True) -> None:
        num_tokens, dim = weight.shape
        # The parent builds (and validates) the cluster layout; its own layers are replaced, so
        # they are allocated on the meta device and never materialised.
        super().__init__(
            dim, num_tokens, list(cutoffs), div_value=1.0, head_bias=bias, device="meta"
        )
        self.head = _RowsLinear(weight, 0, self.shortlist_size, self.n_clusters, bias)
        bounds = self.cutoffs  # [c_0, ..., c_k, V]
        self.tail = nn.ModuleList(
            _RowsLinear(weight, start, stop, 0, bias) for start, stop in zip(bounds, bounds[1:])
        )

    def reset_parameters(self) -> None:  # the parent's initialiser knows only its own layers
        for module in (self.head, *self.tail):
            for name, param in module.named_parameters(recurse=False):
                if name != "weight":
                    nn.init.zeros_(param)

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL [N] of targets [N] given hidden [N, d]."""
        _check_inputs(hidden, targets)
        return -super().forward(hidden, targets).output
