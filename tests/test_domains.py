"""Counting, the frequency split and co-occurrence counts (harmless.domains, harmless.cooccur)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harmless import cooccur
from harmless.cooccur import (
    record_cooccurrence,
    top_k_anchors,
    window_cooccurrence,
)
from harmless.domains import Domains, count_records, count_tokens, split_by_frequency

# Hand-made counts for the split tests. Order by (count desc, id asc):
# 1 (9), 3 (9), 7 (7), 0 (5), 9 (4), 5 (3), 6 (3), 8 (2), 4 (1), 2 (0).
COUNTS = np.array([5, 9, 0, 9, 1, 3, 3, 7, 2, 4])


def ids(values) -> list[int]:
    return np.asarray(values).tolist()


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------


def test_count_tokens_array_chunks_and_tensor_agree():
    stream = np.array([0, 3, 3, 1, 0, 3])
    expected = [2, 1, 0, 3, 0]
    assert ids(count_tokens(stream, 5)) == expected
    assert ids(count_tokens([stream[:2], stream[2:2], stream[2:]], 5)) == expected
    assert ids(count_tokens(iter([stream[:1], stream[1:]]), 5)) == expected
    assert ids(count_tokens(torch.tensor(stream), 5)) == expected
    assert ids(count_tokens([0, 3, 3, 1, 0, 3], 5)) == expected
    assert count_tokens(stream, 5).dtype == np.int64


def test_count_records_counts_every_cell():
    records = np.array([[0, 5, 2], [2, 2, 7]])
    counts = count_records(records, 8)
    assert ids(counts) == [1, 0, 3, 0, 0, 1, 0, 1]
    assert counts.dtype == np.int64


def test_count_rejects_bad_input():
    with pytest.raises(ValueError, match=r"id 12.*size 10"):
        count_tokens(np.array([1, 12, 3]), 10)
    with pytest.raises(ValueError, match=r"id -1.*size 10"):
        count_tokens([np.array([1]), np.array([-1])], 10)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        count_tokens(np.zeros((2, 2), dtype=np.int64), 10)
    with pytest.raises(ValueError, match="dtype float64"):
        count_tokens(np.array([1.0, 2.0]), 10)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        count_records(np.array([1, 2, 3]), 10)
    with pytest.raises(ValueError, match=r"id 10.*size 10"):
        count_records(np.array([[1, 10]]), 10)
    with pytest.raises(ValueError, match="num_items"):
        count_tokens(np.array([0]), 0)


# ---------------------------------------------------------------------------------------------
# the split
# ---------------------------------------------------------------------------------------------


def test_top_fraction_is_the_80_20_rule_by_default():
    domains = split_by_frequency(COUNTS)
    assert ids(domains.source) == [1, 3]  # round(0.2 * 10) = 2 items
    assert ids(domains.target) == [0, 2, 4, 5, 6, 7, 8, 9]
    assert domains.num_items == 10
    # round(0.25 * 10) = round(2.5) = 3 (halves round up)
    assert ids(split_by_frequency(COUNTS, "top_fraction", 0.25).source) == [1, 3, 7]


def test_top_k_breaks_ties_by_id():
    assert ids(split_by_frequency(COUNTS, "top_k", 5).source) == [0, 1, 3, 7, 9]
    # 5 and 6 both have count 3: the lower id wins the last source slot.
    assert ids(split_by_frequency(COUNTS, "top_k", 6).source) == [0, 1, 3, 5, 7, 9]
    assert ids(split_by_frequency(COUNTS, "top_k", 1).source) == [1]  # 1 and 3 tie at 9
    assert split_by_frequency(COUNTS, "top_k", 50).target.size == 0


def test_threshold_rule():
    domains = split_by_frequency(COUNTS, "threshold", 3)
    assert ids(domains.source) == [0, 1, 3, 5, 6, 7, 9]
    assert ids(domains.target) == [2, 4, 8]


def test_items_restrict_the_universe_and_exclude_removes_ids():
    field = split_by_frequency(COUNTS, "top_k", 1, items=[0, 2, 4, 6, 8])
    assert ids(field.source) == [0]
    assert ids(field.target) == [2, 4, 6, 8]
    padded = split_by_frequency(COUNTS, "top_k", 1, exclude=[1])
    assert ids(padded.source) == [3]
    assert 1 not in padded.target and padded.summary()["unused"] == 1


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match="top_fraction.*threshold.*top_k"):
        split_by_frequency(COUNTS, "pareto")
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        split_by_frequency(COUNTS.reshape(2, 5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        split_by_frequency(COUNTS, "top_fraction", 1.5)
    with pytest.raises(ValueError, match="integer"):
        split_by_frequency(COUNTS, "top_k", 2.5)
    with pytest.raises(ValueError, match=r"id 10.*size 10"):
        split_by_frequency(COUNTS, items=[0, 10])


# ---------------------------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------------------------


def test_domains_normalise_and_validate():
    domains = Domains(source=[3, 1, 1], target=np.array([5, 0]), num_items=6)
    assert ids(domains.source) == [1, 3] and ids(domains.target) == [0, 5]
    assert domains.source.dtype == np.int64 and not domains.source.flags.writeable
    assert domains.source_mask().tolist() == [False, True, False, True, False, False]
    assert domains.target_mask().tolist() == [True, False, False, False, False, True]
    assert domains.summary() == {
        "num_items": 6,
        "source": 2,
        "target": 2,
        "unused": 2,
        "target_fraction": 0.5,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        domains.num_items = 7
    with pytest.raises(ValueError, match="disjoint"):
        Domains([1, 2], [2, 3], 6)
    with pytest.raises(ValueError, match=r"id 6.*size 6"):
        Domains([1], [6], 6)


def test_with_target_copies_and_compares_by_value():
    domains = Domains([1, 3], [0, 5], 6)
    smaller = domains.with_target([5])
    assert ids(smaller.target) == [5] and ids(domains.target) == [0, 5]
    assert smaller == Domains(np.array([3, 1]), [5], 6)
    assert hash(smaller) == hash(Domains([1, 3], [5], 6))
    assert smaller != domains
    with pytest.raises(ValueError, match="disjoint"):
        domains.with_target([1])


# ---------------------------------------------------------------------------------------------
# anchors and co-occurrence
# ---------------------------------------------------------------------------------------------


def test_top_k_anchors_most_frequent_first():
    assert ids(top_k_anchors(COUNTS, 4)) == [1, 3, 7, 0]
    assert ids(top_k_anchors(COUNTS, 3, items=[0, 2, 4, 6])) == [0, 6, 4]
    assert ids(top_k_anchors(COUNTS, 100)) == [1, 3, 7, 0, 9, 5, 6, 8, 4]  # not 2: count 0
    with pytest.raises(ValueError, match="positive"):
        top_k_anchors(COUNTS, 0)


# Stream 0 1 2 0 3 with anchors [0, 2] (columns 0, 1), window 3 (two tokens each side):
#   anchor 0 @0 sees 1 @1, 2 @2;  anchor 2 @2 sees 0 @0, 1 @1, 0 @3, 3 @4;
#   anchor 0 @3 sees 1 @1, 2 @2, 3 @4.  The two 0s are 3 apart: outside the window.
TINY_STREAM = np.array([0, 1, 2, 0, 3])
TINY_ANCHORS = np.array([0, 2])
TINY_WINDOW3 = [[0, 2], [2, 1], [2, 0], [1, 1]]
#   window 2 (adjacent only): 0 @0 sees 1; 2 @2 sees 1, 0; 0 @3 sees 2, 3.
TINY_WINDOW2 = [[0, 1], [1, 1], [1, 0], [1, 0]]
#   window 4 adds distance 3: 0 @0 <-> 0 @3 (twice, once from each side), 2 @2 <-> nothing new
#   (positions -1 and 5 do not exist), 1 @1 <-> 3 @4 (no anchor).
TINY_WINDOW4 = [[2, 2], [2, 1], [2, 0], [1, 1]]


@pytest.mark.parametrize(
    ("window", "expected"), [(2, TINY_WINDOW2), (3, TINY_WINDOW3), (4, TINY_WINDOW4)]
)
def test_window_cooccurrence_by_hand(window, expected):
    cooc = window_cooccurrence(TINY_STREAM, TINY_ANCHORS, 4, window)
    assert cooc.shape == (4, 2) and cooc.dtype == np.int64
    assert cooc.toarray().tolist() == expected
    assert ids(cooc.anchors) == [0, 2]


@pytest.mark.parametrize(
    "chunks",
    [
        [[0, 1], [2], [0, 3]],
        [[0], [1], [2], [0], [3]],
        [[], [0, 1, 2, 0], [], [3]],
        [[0, 1, 2], [0, 3]],
    ],
)
def test_window_cooccurrence_counts_pairs_across_chunk_boundaries(chunks):
    cooc = window_cooccurrence([np.array(c, dtype=np.int64) for c in chunks], TINY_ANCHORS, 4)
    assert cooc.toarray().tolist() == TINY_WINDOW3
    # ... and across internal blocks of a single array
    one_block = window_cooccurrence(TINY_STREAM, TINY_ANCHORS, 4, block_tokens=1)
    assert one_block.toarray().tolist() == TINY_WINDOW3


def test_record_cooccurrence_by_hand():
    # record 0: value 0 sees anchors 5 (col 1) and 2 (col 0); 2 sees 5; 5 sees 2.
    # record 1: the two 2s see each other (distinct fields); 7 sees both.
    records = np.array([[0, 5, 2], [2, 2, 7]])
    cooc = record_cooccurrence(records, np.array([2, 5]), 8)
    expected = np.zeros((8, 2), dtype=np.int64)
    expected[0] = [1, 1]
    expected[2] = [2, 1]
    expected[5] = [1, 0]
    expected[7] = [2, 0]
    assert cooc.toarray().tolist() == expected.tolist()


def brute_window(stream, anchors, num_items, window):
    column = {int(a): j for j, a in enumerate(anchors)}
    result = np.zeros((num_items, len(anchors)), dtype=np.int64)
    for p in range(len(stream)):
        for q in range(max(0, p - window + 1), min(len(stream), p + window)):
            if q != p and int(stream[q]) in column:
                result[stream[p], column[int(stream[q])]] += 1
    return result


def brute_records(records, anchors, num_items):
    column = {int(a): j for j, a in enumerate(anchors)}
    result = np.zeros((num_items, len(anchors)), dtype=np.int64)
    for record in records:
        for f, value in enumerate(record):
            for g, other in enumerate(record):
                if f != g and int(other) in column:
                    result[value, column[int(other)]] += 1
    return result


def test_cooccurrence_matches_brute_force(monkeypatch):
    # A tiny sort buffer forces many partial sums (the CSR-addition path).
    monkeypatch.setattr(cooccur._PairCounter, "capacity", 7)
    rng = np.random.default_rng(0)
    for _ in range(20):
        num_items = int(rng.integers(3, 25))
        stream = rng.integers(0, num_items, int(rng.integers(0, 150)))
        anchors = rng.choice(num_items, int(rng.integers(1, num_items + 1)), replace=False)
        window = int(rng.integers(2, 6))
        chunks = np.split(stream, np.sort(rng.integers(0, stream.size + 1, 3)))
        cooc = window_cooccurrence(chunks, anchors, num_items, window, block_tokens=5)
        assert (cooc.toarray() == brute_window(stream, anchors, num_items, window)).all()
        records = rng.integers(0, num_items, (int(rng.integers(0, 30)), int(rng.integers(1, 5))))
        cooc = record_cooccurrence(records, anchors, num_items, block_records=4)
        assert (cooc.toarray() == brute_records(records, anchors, num_items)).all()


def test_cooccurrence_rejects_bad_input():
    with pytest.raises(ValueError, match=r"id 9.*size 4"):
        window_cooccurrence(np.array([0, 9]), TINY_ANCHORS, 4)
    with pytest.raises(ValueError, match=r"id 4.*size 4"):
        window_cooccurrence(TINY_STREAM, np.array([0, 4]), 4)
    with pytest.raises(ValueError, match=r"shape \(1, 5\)"):
        window_cooccurrence(TINY_STREAM[None], TINY_ANCHORS, 4)
    with pytest.raises(ValueError, match="window"):
        window_cooccurrence(TINY_STREAM, TINY_ANCHORS, 4, window=1)
    with pytest.raises(ValueError, match="duplicate"):
        window_cooccurrence(TINY_STREAM, np.array([0, 0]), 4)
    with pytest.raises(ValueError, match="empty"):
        window_cooccurrence(TINY_STREAM, np.array([], dtype=np.int64), 4)
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        record_cooccurrence(TINY_STREAM, TINY_ANCHORS, 4)
    with pytest.raises(ValueError, match=r"id 7.*size 4"):
        record_cooccurrence(np.array([[0, 7]]), TINY_ANCHORS, 4)
