"""Item frequencies and the frequency-based source/target split.

Transfer losses for item embeddings move information from the frequent items (the source
domain S) to the rare items (the target domain T). In practice S and T are chosen from item
frequencies alone (paper, Sections 2-3): the Pareto / 80-20 rule puts the top 20% most frequent
items in S and the rest in T (Gong et al. 2018; Li et al. 2020b), or a dataset-dependent
threshold does (Yin et al. 2020). This module counts items and builds that rough (S, T) pair;
:mod:`harmless.selection` then refines T with Eq. 3.

Counting, for a token stream x_1..x_N over a table of V items:

    c_i = #{p : x_p = i},   c in N^V  (int64)

and for CTR records R in N^{N x F} (one row per record, global value ids), the count of value i
is its number of occurrences over all records and fields.

Splitting, over a universe U (all items, or ``items``) minus ``exclude``, with the items of U
ordered by decreasing count and then increasing id (ties are broken by id, deterministically):

    top_fraction: S = the first round(value * |U|) items (value = 0.2: the 80/20 rule)
    top_k:        S = the first value items
    threshold:    S = {i in U : c_i >= value}

and T = U \\ S in every case.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

SPLIT_RULES = ("top_fraction", "threshold", "top_k")


# ----------------------------------------------------------------------------------------------
# Input checks shared with harmless.cooccur
# ----------------------------------------------------------------------------------------------


def check_num_items(num_items: int) -> int:
    """``num_items`` as a positive Python int (the size V of the item table)."""
    if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)):
        raise ValueError(f"num_items must be an int, got {num_items!r}")
    if num_items <= 0:
        raise ValueError(f"num_items must be positive, got {num_items}")
    return int(num_items)


def as_id_array(values: Any, name: str, ndim: int = 1) -> np.ndarray:
    """``values`` as an integer numpy array of rank ``ndim`` (no copy when already one).

    Raises ValueError naming the shape when the rank is wrong, or the dtype when it is not an
    integer type (bool included: a mask is not a list of ids).
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != ndim:
        expected = "a 1-D array [n]" if ndim == 1 else f"a {ndim}-D array"
        if ndim == 2:
            expected = "a 2-D array [num_records, num_fields]"
        raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    if array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.int64)  # np.asarray([]) is float64
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer item ids, got dtype {array.dtype}")
    return array


def check_id_range(ids: np.ndarray, num_items: int, name: str) -> None:
    """Raise ValueError naming the first offending id if any id is outside [0, num_items)."""
    if ids.size == 0:
        return
    low, high = ids.min(), ids.max()
    if low >= 0 and high < num_items:
        return
    bad = ids[(ids < 0) | (ids >= num_items)].flat[0]
    raise ValueError(
        f"{name} holds id {int(bad)}, out of range for an item table of size {num_items} "
        f"(valid ids are 0..{num_items - 1})"
    )


def iter_chunks(stream: Any) -> Iterator[np.ndarray]:
    """The chunks of a token stream: one 1-D array, or an iterable of 1-D arrays.

    A numpy array or torch tensor is one chunk; so is a list/tuple of plain integers. Any other
    iterable yields its items as chunks. Every chunk is checked to be a 1-D integer array.
    """
    if isinstance(stream, (np.ndarray, torch.Tensor)):
        yield as_id_array(stream, "stream")
        return
    if isinstance(stream, (list, tuple)) and (
        len(stream) == 0 or isinstance(stream[0], (int, np.integer))
    ):
        yield as_id_array(np.asarray(stream, dtype=np.int64), "stream")
        return
    for index, chunk in enumerate(stream):
        yield as_id_array(chunk, f"stream chunk {index}")


# ----------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------


def count_tokens(stream: np.ndarray | Iterable[np.ndarray], num_items: int) -> np.ndarray:
    """Item counts c_i = #{p : x_p = i} of a token stream, in one pass.

    Args:
        stream: a 1-D integer array [N] of item ids, or an iterable of such chunks.
        num_items: the size V of the item table; every id must lie in [0, V).

    Returns:
        int64 array [V].
    """
    num_items = check_num_items(num_items)
    counts = np.zeros(num_items, dtype=np.int64)
    for chunk in iter_chunks(stream):
        check_id_range(chunk, num_items, "stream")
        counts += np.bincount(chunk, minlength=num_items)
    return counts


def count_records(records: np.ndarray, num_items: int) -> np.ndarray:
    """Value counts of CTR records: c_i = number of (record, field) cells holding value i.

    Args:
        records: integer array [N, F] of global value ids, one row per record.
        num_items: the size V of the value table.

    Returns:
        int64 array [V].
    """
    num_items = check_num_items(num_items)
    records = as_id_array(records, "records", ndim=2)
    check_id_range(records, num_items, "records")
    return np.bincount(records.ravel(), minlength=num_items).astype(np.int64, copy=False)


# ----------------------------------------------------------------------------------------------
# Domains
# ----------------------------------------------------------------------------------------------


def _id_set(ids: Any, num_items: int, name: str) -> np.ndarray:
    """Sorted, duplicate-free, read-only int64 ids within [0, num_items)."""
    array = as_id_array(ids, name)
    check_id_range(array, num_items, name)
    result = np.unique(array.astype(np.int64, copy=False))
    result.setflags(write=False)
    return result


@dataclass(frozen=True)
class Domains:
    """A source domain S (frequent items) and a target domain T (rare items), disjoint.

    Attributes:
        source: sorted int64 array [|S|] of item ids.
        target: sorted int64 array [|T|] of item ids.
        num_items: the size V of the item table; items in neither domain are simply unused
            (e.g. padding, or other CTR fields).

    The id arrays are normalised (sorted, de-duplicated, read-only) on construction; overlapping
    domains or out-of-range ids raise ValueError.
    """

    source: np.ndarray
    target: np.ndarray
    num_items: int

    def __post_init__(self) -> None:
        num_items = check_num_items(self.num_items)
        source = _id_set(self.source, num_items, "source")
        target = _id_set(self.target, num_items, "target")
        overlap = np.intersect1d(source, target, assume_unique=True)
        if overlap.size:
            raise ValueError(
                f"source and target must be disjoint, {overlap.size} ids are in both "
                f"(first: {overlap[:5].tolist()})"
            )
        object.__setattr__(self, "num_items", num_items)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "target", target)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Domains):
            return NotImplemented
        return (
            self.num_items == other.num_items
            and np.array_equal(self.source, other.source)
            and np.array_equal(self.target, other.target)
        )

    def __hash__(self) -> int:
        return hash((self.num_items, self.source.tobytes(), self.target.tobytes()))

    def _mask(self, ids: np.ndarray) -> torch.Tensor:
        mask = torch.zeros(self.num_items, dtype=torch.bool)
        mask[torch.from_numpy(ids.copy())] = True
        return mask

    def source_mask(self) -> torch.Tensor:
        """Bool tensor [num_items], True on the source items."""
        return self._mask(self.source)

    def target_mask(self) -> torch.Tensor:
        """Bool tensor [num_items], True on the target items."""
        return self._mask(self.target)

    def with_target(self, ids: Any) -> Domains:
        """A copy with ``ids`` as the target domain (same source; must stay disjoint from it)."""
        return replace(self, target=ids)

    def summary(self) -> dict[str, int | float]:
        """Sizes of the domains: num_items, source, target, unused, target_fraction."""
        used = self.source.size + self.target.size
        return {
            "num_items": self.num_items,
            "source": int(self.source.size),
            "target": int(self.target.size),
            "unused": int(self.num_items - used),
            "target_fraction": float(self.target.size / used) if used else 0.0,
        }


def check_counts(counts: Any) -> np.ndarray:
    """``counts`` as a non-empty 1-D numeric numpy array [V] (ValueError naming the shape)."""
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(
            f"counts must be a non-empty 1-D array [num_items], got shape {counts.shape}"
        )
    if counts.dtype.kind not in "iuf":
        raise ValueError(f"counts must be numeric, got dtype {counts.dtype}")
    return counts


def frequency_order(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``ids`` reordered by decreasing count, ties by increasing id (deterministic)."""
    ids = np.sort(ids)
    # lexsort's last key is the primary one; it is stable, so equal counts keep id order.
    return ids[np.lexsort((ids, -counts[ids]))]


def _universe(counts: np.ndarray, items: Any, exclude: Any) -> np.ndarray:
    """Sorted ids of ``items`` (default: every item) minus ``exclude``."""
    num_items = counts.size
    if items is None:
        universe = np.arange(num_items, dtype=np.int64)
    else:
        universe = _id_set(items, num_items, "items")
    excluded = _id_set(exclude, num_items, "exclude")
    return np.setdiff1d(universe, excluded, assume_unique=True)


def _num_source(rule: str, value: float, ordered_counts: np.ndarray) -> int:
    """How many items of the frequency-ordered universe go to the source domain."""
    size = ordered_counts.size
    if rule == "top_fraction":
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"top_fraction needs value in [0, 1], got {value}")
        return min(size, int(math.floor(value * size + 0.5)))
    if rule == "top_k":
        if value < 0 or value != int(value):
            raise ValueError(f"top_k needs a non-negative integer value, got {value}")
        return min(size, int(value))
    # threshold: counts are non-increasing along the order, so S is a prefix.
    return int(np.count_nonzero(ordered_counts >= value))


def split_by_frequency(
    counts: np.ndarray,
    rule: str = "top_fraction",
    value: float = 0.2,
    items: Any = None,
    exclude: Any = (),
) -> Domains:
    """The rough frequency-based split of the paper: frequent items -> S, the rest -> T.

    Args:
        counts: int array [V] of item counts (``count_tokens`` / ``count_records``).
        rule: "top_fraction" (S = the top round(value * |U|) items; 0.2 is the 80/20 rule),
            "top_k" (S = the top ``value`` items) or "threshold" (S = {i : c_i >= value}).
        value: the rule's parameter.
        items: optional ids restricting the universe U (e.g. one CTR field's id range).
        exclude: ids in neither domain (e.g. padding).

    Returns:
        Domains with S and T = U \\ S; ties in count are broken by id (lower id first).
    """
    if rule not in SPLIT_RULES:
        raise ValueError(f"unknown split rule {rule!r}; allowed rules are {SPLIT_RULES}")
    counts = check_counts(counts)
    universe = _universe(counts, items, exclude)
    ordered = frequency_order(counts, universe)
    num_source = _num_source(rule, float(value), counts[ordered])
    domains = Domains(ordered[:num_source], ordered[num_source:], counts.size)
    logger.info("split_by_frequency(%s, %s): %s", rule, value, domains.summary())
    return domains
