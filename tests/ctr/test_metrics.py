"""CTR metrics against scikit-learn and by hand (tasks.ctr.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from tasks.ctr.metrics import auc, batch_mean_auc, ctr_metrics, logloss, subset_auc


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    logits = rng.normal(size=500) + labels
    return labels, logits


def test_global_auc_and_logloss_match_sklearn(scored):
    labels, logits = scored
    assert auc(labels, logits) == pytest.approx(roc_auc_score(labels, logits))
    probs = 1 / (1 + np.exp(-logits))
    assert logloss(labels, logits) == pytest.approx(log_loss(labels, probs), rel=1e-9)
    # far in the tails, where sigmoid rounds to 0 or 1, the loss stays exact
    assert logloss(np.array([1, 0]), np.array([-800.0, 800.0])) == pytest.approx(800.0)


def test_auc_by_hand_and_single_class():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_pep_protocol_is_the_mean_of_batch_aucs(scored):
    labels, logits = scored
    order = np.random.default_rng(1).permutation(500)
    expected = np.mean(
        [
            roc_auc_score(labels[order][i : i + 100], logits[order][i : i + 100])
            for i in range(0, 500, 100)
        ]
    )
    assert batch_mean_auc(labels, logits, 100, order) == pytest.approx(expected)
    # a one-class batch is skipped
    assert batch_mean_auc([0, 1, 1, 1], [0.2, 0.9, 0.1, 0.3], 2) == pytest.approx(1.0)


def test_head_and_tail_auc_are_subset_aucs(scored):
    labels, logits = scored
    head = np.arange(500) % 3 == 0
    tail = ~head
    out = ctr_metrics(labels, logits, head=head, tail=tail)
    assert set(out) == {"auc", "logloss", "auc_head", "auc_tail"}
    assert out["auc_head"] == pytest.approx(roc_auc_score(labels[head], logits[head]))
    assert out["auc_tail"] == pytest.approx(subset_auc(labels, logits, tail))
    assert math.isnan(subset_auc(labels, logits, np.zeros(500, bool)))
    assert "auc_pep" in ctr_metrics(labels, logits, pep_order=np.arange(500))
