"""CTR metrics: global AUC and log loss, PEP's per-batch AUC, AUC on head and tail rows.

- Global test AUC over all rows (sklearn.metrics.roc_auc_score) and the mean log loss, computed
  from logits (log(1 + e^z) - y z, exact where sigmoid would round to 0 or 1).
- PEP's protocol (Liu et al. 2021, utils/evaluate.py): the mean of the AUCs of consecutive
  batches of 1024 rows. NOTE: PEP's test loader keeps its (random-split) order; here the order is
  a fixed random permutation given by the caller, and a batch holding one class only (whose AUC
  is undefined; sklearn raises) is skipped.
- Head / tail AUC: the global AUC restricted to rows whose value of the transferred field is a
  frequent (source-domain) or a rare (target-domain) value. NaN when a subset is empty or has a
  single class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN when the labels hold one class only."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy of sigmoid(logits) against labels in {0, 1}."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.size == 0:
        return float("nan")
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def batch_mean_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    batch_size: int = 1024,
    order: np.ndarray | None = None,
) -> float:
    """PEP's test AUC: the mean AUC of consecutive batches (in `order`, if given)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if order is not None:
        labels, scores = labels[order], scores[order]
    values = []
    for start in range(0, labels.size, batch_size):
        value = auc(labels[start : start + batch_size], scores[start : start + batch_size])
        if not np.isnan(value):
            values.append(value)
    return float(np.mean(values)) if values else float("nan")


def subset_auc(labels: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> float:
    """AUC over the rows selected by the bool mask `rows`."""
    return auc(np.asarray(labels)[rows], np.asarray(scores)[rows])


def ctr_metrics(
    labels: np.ndarray,
    logits: np.ndarray,
    head: np.ndarray | None = None,
    tail: np.ndarray | None = None,
    pep_order: np.ndarray | None = None,
    pep_batch: int = 1024,
) -> dict[str, float]:
    """{"auc", "logloss"} + {"auc_head", "auc_tail"} given bool row masks, + "auc_pep" given
    the row order of PEP's protocol."""
    out = {"auc": auc(labels, logits), "logloss": logloss(labels, logits)}
    if head is not None:
        out["auc_head"] = subset_auc(labels, logits, head)
    if tail is not None:
        out["auc_tail"] = subset_auc(labels, logits, tail)
    if pep_order is not None:
        out["auc_pep"] = batch_mean_auc(labels, logits, pep_batch, pep_order)
    return out
