"""Co-occurrence vectors of items against the K most frequent "anchor" items.

Section 3.1 of the paper ("Harmless Transfer Learning for Item Embeddings") characterises each
item i by its co-appearance vector s_i = [s_ij]_j, where s_ij counts how often items i and j
co-appear. Following the experiments, j ranges over the top-K frequent items (K = 1000), the
anchors a_1..a_K:

- token streams (language modelling, NMT, NER): the "tri-gram co-occurrence matrix
  (co-occurrence counts with window size 3)",

      s_ij = #{(p, q) : 0 < |p - q| <= window - 1, x_p = i, x_q = a_j},

  i.e. ordered position pairs inside one window; window = 3 looks two tokens to each side.
  Pairs (p, q) and (q, p) are both counted, so s_ij counts a symmetric relation from i's side.
- CTR records: "for each typical item, we count the times this item co-occurred with one of
  the top 1K items in one record",

      s_ij = #{(r, f, g) : f != g, R_rf = i, R_rg = a_j},

  over records r and distinct fields f, g of the record.

Both return a scipy CSR matrix S of shape [num_items, K] with int64 counts. They never build a
dense V x V or V x K matrix: each block of the input is turned into integer pair keys
key = i * K + j, sorted (numpy's SIMD sort) and run-length encoded into a sparse block, and the
blocks are summed with scipy's C++ CSR addition. Memory is bounded by the input block, the
sort buffer (``_PairCounter.capacity`` keys: 256 MiB of int32 keys, int64 when V * K >= 2^31)
and a few copies of the non-zeros of S (12 bytes each). On a WikiText-103-sized stream
(103M tokens, 267K types, K = 1000) this is ~12 s and ~1.5 GB on 2 cores
(benchmarks/bench_selection.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from harmless.domains import (
    as_id_array,
    check_counts,
    check_id_range,
    check_num_items,
    frequency_order,
    iter_chunks,
)

logger = logging.getLogger(__name__)

_INT32_MAX = np.iinfo(np.int32).max


def top_k_anchors(counts: np.ndarray, k: int = 1000, items: Any = None) -> np.ndarray:
    """The ``k`` most frequent items, most frequent first (ties: lower id first).

    Args:
        counts: array [V] of item counts.
        k: the number K of anchors.
        items: optional ids restricting the candidates (e.g. one CTR field).

    Returns:
        int64 array [min(k, #items with a positive count)]. Items never seen (count 0) are not
        anchors: their co-occurrence column would be all zero.
    """
    counts = check_counts(counts)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if items is None:
        candidates = np.flatnonzero(counts > 0)
    else:
        candidates = np.unique(as_id_array(items, "items").astype(np.int64))
        check_id_range(candidates, counts.size, "items")
        candidates = candidates[counts[candidates] > 0]
    anchors = frequency_order(counts, candidates)[:k].astype(np.int64)
    if anchors.size < k:
        logger.warning(
            "only %d items have a positive count; using %d anchors, not %d",
            anchors.size,
            anchors.size,
            k,
        )
    return anchors


def _check_anchors(anchors: Any, num_items: int) -> np.ndarray:
    """Anchor ids as an int64 array [K]: non-empty, in range, without duplicates."""
    anchors = as_id_array(anchors, "anchors").astype(np.int64)
    if anchors.size == 0:
        raise ValueError("anchors must not be empty; use top_k_anchors(counts, k) to pick them")
    check_id_range(anchors, num_items, "anchors")
    if np.unique(anchors).size != anchors.size:
        raise ValueError("anchors must not contain duplicate ids")
    return anchors


def _anchor_lookup(anchors: np.ndarray, num_items: int) -> np.ndarray:
    """int32 array [V]: j where item i is anchor a_j, -1 for every other item."""
    lookup = np.full(num_items, -1, dtype=np.int32)
    lookup[anchors] = np.arange(anchors.size, dtype=np.int32)
    return lookup


class _PairCounter:
    """Counts of (row, col) pairs in [R, K], fed as integer keys row * K + col.

    Keys are copied into one reusable buffer of ``capacity`` keys; when it is full they are
    sorted in place and run-length encoded into a canonical CSR block, which is added to the
    running total (scipy's C++ CSR addition). Reusing the buffer avoids re-faulting fresh pages.
    """

    capacity = 1 << 26  # keys per sort: 256 MiB of int32 keys

    def __init__(self, num_rows: int, num_cols: int) -> None:
        self.num_rows = num_rows
        self.num_cols = num_cols
        self.key_dtype = np.int32 if num_rows * num_cols <= _INT32_MAX else np.int64
        self._buffer = np.empty(0, dtype=self.key_dtype)  # allocated on first use
        self._size = 0
        self._total: sp.csr_matrix | None = None

    def add(self, keys: np.ndarray) -> None:
        if self._size + keys.size > self.capacity:
            self._flush()
        if keys.size > self.capacity:
            self._merge(self._block_from_keys(keys))
            return
        if self._buffer.size < self.capacity:
            self._buffer = np.empty(self.capacity, dtype=self.key_dtype)
        self._buffer[self._size : self._size + keys.size] = keys
        self._size += keys.size

    def _flush(self) -> None:
        if self._size:
            self._merge(self._block_from_keys(self._buffer[: self._size]))
            self._size = 0

    def _merge(self, block: sp.csr_matrix) -> None:
        self._total = block if self._total is None else self._total + block

    def _block_from_keys(self, keys: np.ndarray) -> sp.csr_matrix:
        """CSR [R, K] of the multiplicities of ``keys`` (sorted in place)."""
        keys.sort()
        # Run boundaries of the sorted keys: bounds[r] .. bounds[r + 1] is the r-th run.
        is_bound = np.ones(keys.size + 1, dtype=bool)
        np.not_equal(keys[1:], keys[:-1], out=is_bound[1:-1])
        bounds = np.flatnonzero(is_bound)
        del is_bound
        counts = bounds[1:] - bounds[:-1]
        keys = keys[bounds[:-1]]
        row_starts = np.arange(self.num_rows + 1, dtype=np.int64) * self.num_cols
        indptr = np.searchsorted(keys, row_starts.astype(keys.dtype, copy=False))
        indices = (keys % self.num_cols).astype(np.int32, copy=False)
        block = sp.csr_matrix(
            (counts, indices, indptr), shape=(self.num_rows, self.num_cols), copy=False
        )
        block.has_canonical_format = True  # keys were sorted and unique: rows, then columns
        return block

    def result(self) -> sp.csr_matrix:
        self._flush()
        if self._total is None:
            return sp.csr_matrix((self.num_rows, self.num_cols), dtype=np.int64)
        return self._total


def _ids_dtype(num_items: int) -> type:
    return np.int32 if num_items <= _INT32_MAX else np.int64


def _window_keys(
    tokens: np.ndarray,
    fresh_from: int,
    lookup: np.ndarray,
    num_anchors: int,
    span: int,
    key_dtype: type,
) -> np.ndarray:
    """Pair keys x_t * K + j for every anchor position s (x_s = a_j) and 0 < |t - s| <= span.

    Only pairs whose later position max(s, t) >= fresh_from are emitted: positions before
    ``fresh_from`` are the carried-over tail of the previous block, whose pairs were emitted
    then. Every ordered pair of positions in the stream is therefore counted exactly once.
    """
    anchor_at = lookup[tokens]  # [L], j or -1
    positions = np.flatnonzero(anchor_at >= 0)  # anchor positions s, sorted
    columns = anchor_at[positions].astype(key_dtype)
    del anchor_at
    parts = []
    for offset in (*range(-span, 0), *range(1, span + 1)):
        first = max(-offset, fresh_from - max(offset, 0), 0)  # t >= 0 and max(s, t) fresh
        stop = tokens.size - max(offset, 0)  # t < L
        lo, hi = np.searchsorted(positions, (first, stop))
        keys = tokens[positions[lo:hi] + offset].astype(key_dtype)
        keys *= key_dtype(num_anchors)
        keys += columns[lo:hi]
        parts.append(keys)
    return np.concatenate(parts)


def window_cooccurrence(
    stream: np.ndarray | Iterable[np.ndarray],
    anchors: np.ndarray,
    num_items: int,
    window: int = 3,
    *,
    block_tokens: int = 1 << 21,
) -> sp.csr_matrix:
    """Windowed co-occurrence counts s_ij = #{(p, q) : 0 < |p - q| < window, x_p = i, x_q = a_j}.

    Args:
        stream: 1-D integer array [N] of item ids, or an iterable of such chunks; pairs that
            straddle chunk boundaries are counted like any other.
        anchors: int array [K] of anchor ids (``top_k_anchors``); column j is anchor a_j.
        num_items: the size V of the item table.
        window: n-gram window size; 3 is the paper's tri-gram setting (two tokens each side).
        block_tokens: tokens processed at once (bounds the working memory, ~24 bytes each).

    Returns:
        CSR int64 [V, K]. It also carries the anchor ids as ``.anchors`` so that
        ``select_target`` can find the anchors' own rows.
    """
    num_items = check_num_items(num_items)
    anchors = _check_anchors(anchors, num_items)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window must be an int >= 2 (2 = adjacent tokens), got {window!r}")
    span = int(window) - 1
    lookup = _anchor_lookup(anchors, num_items)
    counter = _PairCounter(num_items, anchors.size)
    ids_dtype = _ids_dtype(num_items)
    tail = np.empty(0, dtype=ids_dtype)  # the last `span` tokens seen so far
    num_tokens = 0
    for chunk in iter_chunks(stream):
        check_id_range(chunk, num_items, "stream")
        for start in range(0, chunk.size, block_tokens):
            block = chunk[start : start + block_tokens].astype(ids_dtype, copy=False)
            tokens = np.concatenate((tail, block))
            counter.add(
                _window_keys(tokens, tail.size, lookup, anchors.size, span, counter.key_dtype)
            )
            tail = tokens[-span:].copy()
            num_tokens += block.size
    cooc = counter.result()
    cooc.anchors = anchors
    logger.info(
        "window_cooccurrence: %d tokens, window %d, %d anchors -> %d non-zeros",
        num_tokens,
        window,
        anchors.size,
        cooc.nnz,
    )
    return cooc


def _record_keys(
    records: np.ndarray, lookup: np.ndarray, num_anchors: int, key_dtype: type
) -> np.ndarray:
    """Pair keys R_rf * K + j for every anchor cell (r, g) (R_rg = a_j) and field f != g."""
    anchor_at = lookup[records]  # [n, F]
    rows, fields = np.nonzero(anchor_at >= 0)
    columns = anchor_at[rows, fields].astype(key_dtype)
    parts = []
    for field in range(records.shape[1]):
        other = fields != field
        keys = records[rows[other], field].astype(key_dtype)
        keys *= key_dtype(num_anchors)
        keys += columns[other]
        parts.append(keys)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=key_dtype)


def record_cooccurrence(
    records: np.ndarray,
    anchors: np.ndarray,
    num_items: int,
    *,
    block_records: int = 1 << 18,
) -> sp.csr_matrix:
    """In-record co-occurrence counts s_ij = #{(r, f, g) : f != g, R_rf = i, R_rg = a_j}.

    Args:
        records: integer array [N, F] of global value ids, one row per CTR record.
        anchors: int array [K] of anchor ids; column j is anchor a_j.
        num_items: the size V of the value table.
        block_records: records processed at once (bounds the working memory).

    Returns:
        CSR int64 [V, K], carrying the anchor ids as ``.anchors``.
    """
    num_items = check_num_items(num_items)
    records = as_id_array(records, "records", ndim=2)
    check_id_range(records, num_items, "records")
    anchors = _check_anchors(anchors, num_items)
    lookup = _anchor_lookup(anchors, num_items)
    counter = _PairCounter(num_items, anchors.size)
    ids_dtype = _ids_dtype(num_items)
    for start in range(0, records.shape[0], block_records):
        block = records[start : start + block_records].astype(ids_dtype, copy=False)
        counter.add(_record_keys(block, lookup, anchors.size, counter.key_dtype))
    cooc = counter.result()
    cooc.anchors = anchors
    logger.info(
        "record_cooccurrence: %d records x %d fields, %d anchors -> %d non-zeros",
        records.shape[0],
        records.shape[1],
        anchors.size,
        cooc.nnz,
    )
    return cooc
