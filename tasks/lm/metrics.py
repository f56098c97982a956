"""Perplexity, overall and split by the training frequency of the target word.

perplexity = exp(sum of per-token NLL / number of tokens). The paper's Table 3 reports it apart
for frequent ("head") and rare ("tail") words of WikiText-103; here the head is the top
``head_fraction`` (0.2, the 80/20 rule of the source domain) of the vocabulary by training count,
ties by lower id, and a token belongs to the head when its target word does. Every number is
computed from per-token NLL tensors, summed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from harmless.domains import check_counts, frequency_order


def perplexity(nll_sum: float, num_tokens: int) -> float:
    """exp(nll_sum / num_tokens); ValueError without tokens."""
    if num_tokens <= 0:
        raise ValueError(f"perplexity needs at least one token, got {num_tokens}")
    return math.exp(nll_sum / num_tokens)


def head_mask(counts: np.ndarray, head_fraction: float = 0.2) -> torch.Tensor:
    """bool [V]: True for the round(head_fraction * V) most frequent ids (ties: lower id)."""
    counts = check_counts(counts)
    if not 0.0 <= head_fraction <= 1.0:
        raise ValueError(f"head_fraction must be in [0, 1], got {head_fraction}")
    num_head = int(math.floor(head_fraction * counts.size + 0.5))
    order = frequency_order(counts, np.arange(counts.size))
    mask = torch.zeros(counts.size, dtype=torch.bool)
    mask[torch.from_numpy(order[:num_head])] = True
    return mask


class PerplexityMeter:
    """Accumulates per-token NLL; ``result()`` gives loss, ppl, ppl_head and ppl_tail.

    Args:
        is_head: bool [V] from ``head_mask``; None skips the head/tail split.
    """

    def __init__(self, is_head: torch.Tensor | None = None) -> None:
        self.is_head = is_head
        self._sums: torch.Tensor | None = None  # float64 [4]: nll, tokens, head nll, head tokens

    def update(self, nll: torch.Tensor, targets: torch.Tensor) -> None:
        """nll and targets of one batch, any shape, same shape."""
        if nll.shape != targets.shape:
            raise ValueError(
                f"nll and targets must have one shape, got {tuple(nll.shape)}, "
                f"{tuple(targets.shape)}"
            )
        nll = nll.detach().double().reshape(-1)  # [N]
        sums = [nll.sum(), nll.new_tensor(float(nll.numel()))]
        if self.is_head is not None:
            self.is_head = self.is_head.to(targets.device)
            head = self.is_head[targets.reshape(-1)]  # [N] bool
            sums += [nll[head].sum(), head.sum().double()]
        else:
            sums += [nll.new_zeros(()), nll.new_zeros(())]
        step = torch.stack(sums)
        self._sums = step if self._sums is None else self._sums + step

    def result(self) -> dict[str, float]:
        if self._sums is None:
            raise ValueError("no tokens were added")
        total, count, head, num_head = self._sums.tolist()
        loss = total / count
        out = {"loss": loss, "ppl": math.exp(loss), "tokens": int(count)}
        if self.is_head is not None:
            tail, num_tail = total - head, count - num_head
            out["ppl_head"] = math.exp(head / num_head) if num_head else math.nan
            out["ppl_tail"] = math.exp(tail / num_tail) if num_tail else math.nan
            out["tokens_head"], out["tokens_tail"] = int(num_head), int(num_tail)
        return out
