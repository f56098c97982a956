"""Perplexity from per-token NLL, and its split by the training frequency of the target."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tasks.lm.metrics import PerplexityMeter, head_mask, perplexity


def test_perplexity_of_a_hand_made_distribution():
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
    nll = -probs.log()
    assert math.isclose(perplexity(nll.sum().item(), 4), 2 ** (9 / 4), rel_tol=1e-12)
    meter = PerplexityMeter()
    meter.update(nll[:3], torch.tensor([0, 1, 2]))
    meter.update(nll[3:], torch.tensor([3]))
    result = meter.result()
    assert math.isclose(result["ppl"], 2 ** (9 / 4), rel_tol=1e-12)
    assert math.isclose(result["loss"], 9 / 4 * math.log(2), rel_tol=1e-12)
    assert result["tokens"] == 4 and "ppl_head" not in result
    uniform = PerplexityMeter()
    nll_7 = torch.full((2, 5), math.log(7.0), dtype=torch.float64)
    uniform.update(nll_7, torch.zeros(2, 5, dtype=torch.long))
    assert math.isclose(uniform.result()["ppl"], 7.0, rel_tol=1e-12)
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_head_mask_top_fraction_ties_by_id():
    counts = np.array([10, 8, 6, 4, 2, 1, 1, 1, 1, 1])
    assert head_mask(counts, 0.2).nonzero().flatten().tolist() == [0, 1]
    assert head_mask(np.array([3, 1, 3, 3]), 0.5).nonzero().flatten().tolist() == [0, 2]
    assert head_mask(np.array([1, 5, 5, 2]), 0.5).nonzero().flatten().tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        head_mask(np.ones((2, 2)), 0.2)


def test_head_tail_perplexity():
    is_head = head_mask(np.array([10, 8, 6, 4, 2, 1, 1, 1, 1, 1]), 0.2)  # head = {0, 1}
    targets = torch.tensor([[0, 5], [1, 7], [9, 2]])
    nll = torch.tensor(
        [[math.log(2), math.log(8)], [math.log(4), math.log(8)], [math.log(8), math.log(8)]],
        dtype=torch.float64,
    )
    meter = PerplexityMeter(is_head)
    meter.update(nll, targets)
    result = meter.result()
    assert math.isclose(result["ppl_head"], math.sqrt(8), rel_tol=1e-12)  # exp(mean(log 2, log 4))
    assert math.isclose(result["ppl_tail"], 8.0, rel_tol=1e-12)
    assert math.isclose(result["ppl"], (2 * 4 * 8**4) ** (1 / 6), rel_tol=1e-12)
    assert (result["tokens_head"], result["tokens_tail"]) == (2, 4)
    only_head = PerplexityMeter(is_head)
    only_head.update(torch.ones(2), torch.tensor([0, 1]))
    assert math.isnan(only_head.result()["ppl_tail"])
    with pytest.raises(ValueError, match="one shape"):
        meter.update(nll, targets[:2])
    with pytest.raises(ValueError, match="no tokens"):
        PerplexityMeter().result()
