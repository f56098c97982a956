"""Selective target domain (Eq. 3 of "Harmless Transfer Learning for Item Embeddings").

Section 3.1 of the paper refines the rough, frequency-based target domain T: a rare item is only
worth transferring to if some frequent item resembles it. With s_i the co-occurrence vector of
item i (:mod:`harmless.cooccur`, counts against the top-K anchors),

    T'_eta = T ∩ {i : max_{j in C} cos(s_i, s_j) >= eta},                              (Eq. 3)
    cos(u, v) = <u, v> / (||u|| ||v||),  and cos(u, v) = 0 when u = 0 or v = 0,

where the candidates C are the frequent items: the anchors (default, as in the paper's
experiments) or the whole source domain S. The threshold follows the experiments ("rank the
similarity and filter 20% items in the rare items"):

    b_i = max_{j in C} cos(s_i, s_j)   for i in T,
    eta = the q-quantile of {b_i : i in T}  (q = 0.2, linear interpolation, ``np.quantile``),

so about a fraction q of T is dropped. An item whose best similarity is 0 shares no context
with any candidate; it is never kept, even when eta = 0 (more than q of T has no shared
context), because it "finds no similar high-frequency items". An item is never its own match:
candidates that are themselves in T are left out.

The maximum is computed tile by tile ([chunk_size target rows] x [chunk_size candidates]), so
memory stays bounded for any |T| and |C|.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from harmless.atomic import atomic_open
from harmless.domains import Domains, as_id_array, check_id_range

logger = logging.getLogger(__name__)

AGAINST = ("anchors", "source")


@dataclass(eq=False)
class Selection:
    """The outcome of Eq. 3 on a rough target domain.

    Attributes:
        target: int64 [n], the rough target ids T (sorted).
        best_similarity: float64 [n], b_i = max_j cos(s_i, s_j) for each target item.
        best_match: int64 [n], the item id of the most similar candidate, -1 when b_i = 0.
        eta: the threshold; target items with b_i >= eta (and b_i > 0) are kept.
        quantile: the quantile q of {b_i} that gave eta.
        against: "anchors" or "source", the candidates j ranged over.
    """

    target: np.ndarray
    best_similarity: np.ndarray
    best_match: np.ndarray
    eta: float
    quantile: float
    against: str

    @property
    def kept_mask(self) -> np.ndarray:
        """Bool [n] over ``target``: True where the item stays in T'."""
        return (self.best_similarity >= self.eta) & (self.best_similarity > 0)

    @property
    def kept(self) -> np.ndarray:
        """The selective target domain T'_eta (sorted int64 ids)."""
        return self.target[self.kept_mask]

    @property
    def dropped(self) -> np.ndarray:
        """The rough target items removed by Eq. 3 (sorted int64 ids)."""
        return self.target[~self.kept_mask]

    def apply(self, domains: Domains) -> Domains:
        """``domains`` with its target replaced by ``kept`` (which must be part of it)."""
        outside = np.setdiff1d(self.kept, domains.target)
        if outside.size:
            raise ValueError(
                f"this selection does not belong to these domains: {outside.size} kept items "
                f"are not in their target (first: {outside[:5].tolist()})"
            )
        return domains.with_target(self.kept)

    def summary(self) -> dict[str, Any]:
        """Sizes, threshold and similarity statistics, for logging."""
        sims = self.best_similarity
        return {
            "against": self.against,
            "quantile": self.quantile,
            "eta": self.eta,
            "target": int(self.target.size),
            "kept": int(self.kept.size),
            "dropped": int(self.dropped.size),
            "zero_similarity": int(np.count_nonzero(sims == 0)),
            "similarity_min": float(sims.min()) if sims.size else float("nan"),
            "similarity_median": float(np.median(sims)) if sims.size else float("nan"),
            "similarity_max": float(sims.max()) if sims.size else float("nan"),
        }

    def explain(self, item_id: int) -> str:
        """Why ``item_id`` was kept or dropped: its best match, similarity and eta."""
        item_id = int(item_id)
        where = np.searchsorted(self.target, item_id)
        if where >= self.target.size or self.target[where] != item_id:
            return (
                f"item {item_id} is not in the rough target domain ({self.target.size} items), "
                f"so Eq. 3 does not apply to it"
            )
        similarity = float(self.best_similarity[where])
        match = int(self.best_match[where])
        candidate = "anchor" if self.against == "anchors" else "source item"
        rule = f"eta = {self.eta:.4f}, the {self.quantile:g}-quantile of the target similarities"
        if similarity == 0:
            return (
                f"item {item_id} dropped: its co-occurrence vector shares no context with any "
                f"{candidate} (best similarity 0; {rule})"
            )
        verdict, sign = ("kept", ">=") if self.kept_mask[where] else ("dropped", "<")
        return (
            f"item {item_id} {verdict}: its most similar {candidate} is item {match}, with cosine "
            f"similarity {similarity:.4f} {sign} {rule}"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz file atomically (a temporary file in the same folder, then os.replace)."""
        with atomic_open(path, "wb") as file:
            np.savez(
                file,
                target=self.target,
                best_similarity=self.best_similarity,
                best_match=self.best_match,
                eta=np.float64(self.eta),
                quantile=np.float64(self.quantile),
                against=np.str_(self.against),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Selection:
        """Read a Selection written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                target=data["target"].astype(np.int64),
                best_similarity=data["best_similarity"].astype(np.float64),
                best_match=data["best_match"].astype(np.int64),
                eta=float(data["eta"]),
                quantile=float(data["quantile"]),
                against=str(data["against"]),
            )


def _unit_rows(cooc: sp.csr_matrix, ids: np.ndarray) -> sp.csr_matrix:
    """Rows ``ids`` of ``cooc`` scaled to unit L2 norm: float64 CSR [len(ids), K].

    All-zero rows stay zero, so every cosine they take part in is 0.
    """
    rows = sp.csr_matrix(cooc[ids], dtype=np.float64, copy=True)
    norms = np.sqrt(np.asarray(rows.power(2).sum(axis=1), dtype=np.float64).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    rows.data *= np.repeat(scale, np.diff(rows.indptr))
    return rows


def _tile_cosines(rows: sp.csr_matrix, tile: torch.Tensor) -> torch.Tensor:
    """float32 [t, c] = rows [t, K] (unit, CSR float32) @ tile [K, c] (unit candidates, dense).

    Computed as a weighted embedding bag, out_r = sum_{k : u_rk != 0} u_rk * tile[k, :]: the cost
    is ~ nnz(rows) * c (not t * K * c) and torch runs it multi-threaded.
    """
    indices = torch.from_numpy(rows.indices.astype(np.int64))
    offsets = torch.from_numpy(rows.indptr[:-1].astype(np.int64))
    weights = torch.from_numpy(rows.data)
    return F.embedding_bag(indices, tile, offsets, mode="sum", per_sample_weights=weights)


def _exact_cosines(rows: sp.csr_matrix, tile: np.ndarray, column: np.ndarray) -> np.ndarray:
    """float64 [t]: <u_r, tile[:, column_r]> for unit CSR rows u [t, K] and a dense tile [K, c].

    Costs O(nnz of the rows): only the entries where u_r is non-zero are gathered.
    """
    row_of_entry = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    products = rows.data * tile[rows.indices, column[row_of_entry]]
    return np.bincount(row_of_entry, weights=products, minlength=rows.shape[0])


def best_matches(
    cooc: sp.csr_matrix,
    target: np.ndarray,
    candidates: np.ndarray,
    chunk_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """For each target item i: b_i = max_{j in candidates} cos(s_i, s_j) and the argmax j.

    The search runs over tiles of [chunk_size targets] x [chunk_size candidates] (memory: the
    unit-normalised target rows, a dense [K, chunk_size] candidate block and a
    [chunk_size, chunk_size] block of cosines; never [n, m] or [V, K] dense). Each
    tile's argmax is found in float32 and its cosine recomputed exactly in float64, so
    best_similarity is exact (up to float64 rounding); near-ties closer than float32 precision
    (~1e-7) may pick either candidate.

    Args:
        cooc: CSR [V, K] co-occurrence counts.
        target: int64 [n] item ids.
        candidates: int64 [m] item ids (anchors or source).
        chunk_size: rows per tile.

    Returns:
        (best_similarity float64 [n], best_match int64 [n] item ids); best_match is -1 where
        b_i = 0. Ties keep the earlier candidate.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    target_rows = _unit_rows(cooc, target)
    target_rows32 = target_rows.astype(np.float32)
    best = np.zeros(target.size, dtype=np.float64)
    index = np.full(target.size, -1, dtype=np.int64)  # position in `candidates`
    for c0 in range(0, candidates.size, chunk_size):
        candidate_rows = _unit_rows(cooc, candidates[c0 : c0 + chunk_size])
        tile = np.ascontiguousarray(candidate_rows.toarray().T)  # [K, c] float64
        tile32 = torch.from_numpy(tile.astype(np.float32))
        for t0 in range(0, target.size, chunk_size):
            t1 = min(t0 + chunk_size, target.size)
            column = _tile_cosines(target_rows32[t0:t1], tile32).argmax(dim=1).numpy()  # [t]
            value = _exact_cosines(target_rows[t0:t1], tile, column)
            better = value > best[t0:t1]
            best[t0:t1][better] = value[better]
            index[t0:t1][better] = c0 + column[better]
    np.clip(best, 0.0, 1.0, out=best)  # rounding can give 1 + 1e-16
    match = np.where(index >= 0, candidates[np.maximum(index, 0)], -1)
    return best, match


def _candidates(cooc: sp.csr_matrix, domains: Domains, against: str, anchors: Any) -> np.ndarray:
    """The candidate ids j of Eq. 3: the anchors (minus target items) or the source domain."""
    if against == "source":
        candidates = domains.source
    else:
        if anchors is None:
            anchors = getattr(cooc, "anchors", None)
        if anchors is None:
            raise ValueError(
                "against='anchors' needs the anchor ids: pass anchors=... (the ids used to build "
                "cooc, e.g. top_k_anchors(counts, k))"
            )
        anchors = as_id_array(anchors, "anchors").astype(np.int64)
        check_id_range(anchors, domains.num_items, "anchors")
        in_target = np.isin(anchors, domains.target)
        if in_target.any():
            logger.warning(
                "%d anchors are target items; they are not candidates (no item matches itself)",
                int(in_target.sum()),
            )
        candidates = anchors[~in_target]
    if candidates.size == 0:
        raise ValueError(
            f"no candidate frequent items to compare with (against={against!r}): "
            f"use a non-empty source domain or anchors outside the target"
        )
    return candidates


def _check_inputs(cooc: Any, domains: Domains, quantile: float, against: str) -> sp.csr_matrix:
    if against not in AGAINST:
        raise ValueError(f"unknown against={against!r}; allowed values are {AGAINST}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    if getattr(cooc, "ndim", 2) != 2:
        raise ValueError(f"cooc must be a 2-D matrix [num_items, K], got shape {cooc.shape}")
    anchors = getattr(cooc, "anchors", None)
    cooc = sp.csr_matrix(cooc)
    if cooc.nnz and cooc.data.min() < 0:
        raise ValueError("cooc must hold non-negative co-occurrence counts")
    if cooc.shape[0] != domains.num_items:
        raise ValueError(
            f"cooc must have one row per item: shape {cooc.shape} but domains.num_items is "
            f"{domains.num_items}"
        )
    if domains.target.size == 0:
        raise ValueError(
            "the target domain is empty; split with a larger target (e.g. a smaller top_fraction "
            "value) before selecting"
        )
    cooc.anchors = anchors
    return cooc


def select_target(
    cooc: sp.csr_matrix,
    domains: Domains,
    quantile: float = 0.2,
    against: str = "anchors",
    anchors: Any = None,
    chunk_size: int = 4096,
) -> Selection:
    """Eq. 3: keep the rough target items whose best cosine similarity to a frequent item >= eta.

    Args:
        cooc: [num_items, K] co-occurrence counts (``window_cooccurrence`` or
            ``record_cooccurrence``), any scipy sparse matrix or dense array.
        domains: the rough split (``split_by_frequency``).
        quantile: q; eta is the q-quantile of the target items' best similarities, so about a
            fraction q of the target is dropped (0.2 in the paper).
        against: "anchors" (j over the anchors, the paper's setting) or "source" (j over the
            whole source domain, tiled by ``chunk_size``).
        anchors: int [K] anchor ids, the items whose rows of ``cooc`` are the candidates;
            defaults to ``cooc.anchors`` as set by the cooccur functions.
        chunk_size: tile size bounding the memory of the similarity computation.

    Returns:
        Selection; ``selection.apply(domains)`` gives the refined Domains.
    """
    cooc = _check_inputs(cooc, domains, float(quantile), against)
    candidates = _candidates(cooc, domains, against, anchors)
    best, match = best_matches(cooc, domains.target, candidates, chunk_size)
    eta = float(np.quantile(best, quantile))
    selection = Selection(domains.target.copy(), best, match, eta, float(quantile), against)
    if selection.kept.size == 0:
        raise ValueError(
            f"Eq. 3 kept none of the {domains.target.size} target items: none shares any "
            f"co-occurrence with the {candidates.size} {against} candidates (all similarities "
            f"are 0). Use more anchors (top_k_anchors(counts, k=...)), a wider window, "
            f"against='source', or skip target selection for this data"
        )
    logger.info("select_target: %s", selection.summary())
    return selection
