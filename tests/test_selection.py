"""Eq. 3, the selective target domain (harmless.selection)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import scipy.sparse as sp

from harmless.cooccur import top_k_anchors, window_cooccurrence
from harmless.domains import Domains, count_tokens, split_by_frequency
from harmless.selection import Selection, best_matches, select_target

# ---------------------------------------------------------------------------------------------
# A hand-made co-occurrence matrix (K = 2 anchors: items 0 and 1; item 6 is a source item that
# is not an anchor). Cosines against the anchor rows s_0 = (3, 4), s_1 = (0, 2):
#   s_2 = (4, 3): cos(s_2, s_0) = 24/25 = 0.96, cos(s_2, s_1) = 3/5  -> best 0.96 (item 0)
#   s_3 = (0, 5): cos(s_3, s_0) = 20/25 = 0.8,  cos(s_3, s_1) = 1    -> best 1.0  (item 1)
#   s_4 = (0, 0): a zero vector                                      -> best 0    (no match)
#   s_5 = (1, 0): cos(s_5, s_0) = 3/5 = 0.6,    cos(s_5, s_1) = 0    -> best 0.6  (item 0)
# and against the whole source {0, 1, 6} with s_6 = (2, 0): item 5 matches item 6 with cos 1.
# Sorted best similarities (anchors): 0, 0.6, 0.96, 1; eta (linear interpolation) is
#   q = 0.2: position 0.6 -> 0 + 0.6 * 0.6           = 0.36 -> drops 4
#   q = 0.5: position 1.5 -> 0.6 + 0.5 * (0.96 - 0.6) = 0.78 -> drops 4, 5
# ---------------------------------------------------------------------------------------------
HAND = np.array([[3, 4], [0, 2], [4, 3], [0, 5], [0, 0], [1, 0], [2, 0]])
HAND_DOMAINS = Domains(source=[0, 1, 6], target=[2, 3, 4, 5], num_items=7)
HAND_ANCHORS = np.array([0, 1])


def hand_cooc() -> sp.csr_matrix:
    cooc = sp.csr_matrix(HAND)
    cooc.anchors = HAND_ANCHORS
    return cooc


def test_cosines_and_eta_by_hand():
    selection = select_target(hand_cooc(), HAND_DOMAINS)
    assert selection.target.tolist() == [2, 3, 4, 5]
    np.testing.assert_allclose(selection.best_similarity, [0.96, 1.0, 0.0, 0.6], atol=1e-12)
    assert selection.best_match.tolist() == [0, 1, -1, 0]
    assert selection.eta == pytest.approx(0.36)
    assert selection.kept.tolist() == [2, 3, 5]
    assert selection.dropped.tolist() == [4]
    assert selection.quantile == 0.2 and selection.against == "anchors"

    half = select_target(hand_cooc(), HAND_DOMAINS, quantile=0.5)
    assert half.eta == pytest.approx(0.78)
    assert half.kept.tolist() == [2, 3] and half.dropped.tolist() == [4, 5]


def test_against_source_ranges_over_every_source_item():
    selection = select_target(hand_cooc(), HAND_DOMAINS, against="source")
    np.testing.assert_allclose(selection.best_similarity, [0.96, 1.0, 0.0, 1.0], atol=1e-12)
    assert selection.best_match.tolist() == [0, 1, -1, 6]
    # Tiles of one or two rows give the same answer as one tile.
    for chunk_size in (1, 2, 3):
        tiled = select_target(hand_cooc(), HAND_DOMAINS, against="source", chunk_size=chunk_size)
        np.testing.assert_array_equal(tiled.best_similarity, selection.best_similarity)
        np.testing.assert_array_equal(tiled.best_match, selection.best_match)


def test_explicit_anchors_dense_input_and_no_self_match(caplog):
    dense = select_target(HAND, HAND_DOMAINS, anchors=HAND_ANCHORS)
    np.testing.assert_allclose(dense.best_similarity, [0.96, 1.0, 0.0, 0.6], atol=1e-12)
    # An anchor that is itself a target item is not a candidate: item 3 must not match itself.
    with caplog.at_level(logging.WARNING, logger="harmless.selection"):
        selection = select_target(HAND, HAND_DOMAINS, anchors=[0, 1, 3])
    assert "not candidates" in caplog.text
    assert selection.best_match.tolist() == [0, 1, -1, 0]


def test_best_matches_agree_with_dense_float64_cosines():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (300, 40)) * rng.integers(1, 50, (300, 1))
    counts[rng.random(300) < 0.1] = 0  # some all-zero rows
    target = np.arange(100, 300)
    candidates = rng.permutation(100)
    best, match = best_matches(sp.csr_matrix(counts), target, candidates, chunk_size=16)

    norms = np.linalg.norm(counts, axis=1, keepdims=True)
    unit = np.divide(counts, norms, out=np.zeros(counts.shape), where=norms > 0)
    cosines = unit[target] @ unit[candidates].T
    np.testing.assert_allclose(best, cosines.max(axis=1), atol=1e-12)
    positive = best > 0
    assert (match[~positive] == -1).all()
    position = {int(c): k for k, c in enumerate(candidates)}
    columns = [position[m] for m in match[positive].tolist()]
    chosen = cosines[np.flatnonzero(positive), columns]
    np.testing.assert_allclose(chosen, best[positive], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Selection: explain, apply, save/load
# ---------------------------------------------------------------------------------------------


def test_explain_says_why():
    selection = select_target(hand_cooc(), HAND_DOMAINS)
    kept = selection.explain(2)
    assert "kept" in kept and "item 0" in kept and "0.9600" in kept and "0.3600" in kept
    assert "dropped" in selection.explain(4) and "no context" in selection.explain(4)
    half = select_target(hand_cooc(), HAND_DOMAINS, quantile=0.5)
    dropped = half.explain(5)
    assert "dropped" in dropped and "0.6000" in dropped and "< eta" in dropped
    assert "not in the rough target" in selection.explain(0)


def test_apply_replaces_the_target():
    selection = select_target(hand_cooc(), HAND_DOMAINS)
    refined = selection.apply(HAND_DOMAINS)
    assert refined.target.tolist() == [2, 3, 5]
    assert refined.source.tolist() == HAND_DOMAINS.source.tolist()
    with pytest.raises(ValueError, match="does not belong"):
        selection.apply(HAND_DOMAINS.with_target([4]))
    summary = selection.summary()
    assert summary["target"] == 4 and summary["kept"] == 3 and summary["dropped"] == 1
    assert summary["zero_similarity"] == 1 and summary["eta"] == pytest.approx(0.36)


def test_save_load_round_trip(tmp_path):
    selection = select_target(hand_cooc(), HAND_DOMAINS, quantile=0.5, against="source")
    path = tmp_path / "selection.npz"
    selection.save(path)
    selection.save(path)  # overwriting is atomic too
    assert os.listdir(tmp_path) == ["selection.npz"]  # no temporary file left behind
    loaded = Selection.load(path)
    for field in ("target", "best_similarity", "best_match"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(selection, field))
    assert (loaded.eta, loaded.quantile, loaded.against) == (selection.eta, 0.5, "source")
    assert loaded.kept.tolist() == selection.kept.tolist()


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_select_rejects_bad_input():
    with pytest.raises(ValueError, match="'anchors', 'source'"):
        select_target(hand_cooc(), HAND_DOMAINS, against="everything")
    with pytest.raises(ValueError, match=r"shape \(6, 2\).*num_items is 7"):
        select_target(sp.csr_matrix(HAND[:6]), HAND_DOMAINS, anchors=HAND_ANCHORS)
    with pytest.raises(ValueError, match=r"2-D.*shape \(7,\)"):
        select_target(HAND[:, 0], HAND_DOMAINS, anchors=HAND_ANCHORS)
    with pytest.raises(ValueError, match="quantile"):
        select_target(hand_cooc(), HAND_DOMAINS, quantile=1.2)
    with pytest.raises(ValueError, match="pass anchors="):
        select_target(sp.csr_matrix(HAND), HAND_DOMAINS)
    with pytest.raises(ValueError, match=r"id 9.*size 7"):
        select_target(HAND, HAND_DOMAINS, anchors=[0, 9])


def test_empty_target_before_or_after_selection():
    with pytest.raises(ValueError, match="target domain is empty.*smaller top_fraction"):
        select_target(hand_cooc(), HAND_DOMAINS.with_target([]))
    # Items 4 (zero row) only: nothing shares context with the anchors.
    with pytest.raises(ValueError, match="kept none of the 1 target items.*more anchors"):
        select_target(hand_cooc(), HAND_DOMAINS.with_target([4]))
    with pytest.raises(ValueError, match="no candidate"):
        select_target(hand_cooc(), Domains([], [2, 3], 7), against="source")


# ---------------------------------------------------------------------------------------------
# planted structure
# ---------------------------------------------------------------------------------------------


def planted_corpus(seed: int, num_head=60, num_alias=30, num_loner=30, length=60_000, times=20):
    """A long-tail stream with known answers.

    Head items 0..59 follow a Markov chain: each has two preferred successors (70/30), with a
    15% restart to a uniform item, so each head item has a distinctive neighbourhood.
    Aliases (rare, must be kept) replace ``times`` random occurrences of one head item each,
    so their contexts are samples of that item's contexts. Loners (rare, must be dropped) are
    inserted ``times`` times at random places, so their contexts are their own: a diffuse mix
    that resembles no head item's neighbourhood.

    Returns (stream, num_items, aliases, originals of the aliases, loners).
    """
    rng = np.random.default_rng(seed)
    head = np.arange(num_head)
    successors = np.array([rng.choice(np.delete(head, h), 2, replace=False) for h in head])
    restart = rng.random(length) < 0.15
    fresh = rng.integers(0, num_head, length)
    branch = (rng.random(length) < 0.3).astype(np.int64)
    stream = np.empty(length, dtype=np.int64)
    stream[0] = 0
    for p in range(1, length):
        stream[p] = fresh[p] if restart[p] else successors[stream[p - 1], branch[p]]
    aliases = num_head + np.arange(num_alias)
    originals = rng.choice(num_head, num_alias, replace=False)
    for alias, original in zip(aliases, originals):
        stream[rng.choice(np.flatnonzero(stream == original), times, replace=False)] = alias
    loners = num_head + num_alias + np.arange(num_loner)
    where = rng.choice(length + 1, loners.size * times, replace=False)
    stream = np.insert(stream, where, np.repeat(loners, times))
    return stream, num_head + num_alias + num_loner, aliases, originals, loners


@pytest.mark.parametrize("against", ["anchors", "source"])
def test_planted_aliases_are_kept_and_loners_dropped(against):
    stream, num_items, aliases, originals, loners = planted_corpus(seed=0)
    counts = count_tokens(stream, num_items)
    domains = split_by_frequency(counts, "top_k", 60)  # the head is the source
    assert domains.target.tolist() == list(range(60, 120))
    anchors = top_k_anchors(counts, 60)
    cooc = window_cooccurrence([stream[:12_345], stream[12_345:]], anchors, num_items)

    # Half of the rough target is planted noise: q = 0.5 should drop exactly the loners.
    selection = select_target(cooc, domains, quantile=0.5, against=against)
    kept = set(selection.kept.tolist())
    true_kept = kept & set(aliases.tolist())
    precision, recall = len(true_kept) / len(kept), len(true_kept) / len(aliases)
    assert precision >= 0.9, f"precision {precision:.2f}"
    assert recall >= 0.9, f"recall {recall:.2f}"
    # An alias's best match is the head item it stands for.
    matches = dict(zip(selection.target.tolist(), selection.best_match.tolist()))
    found = np.mean([matches[a] == o for a, o in zip(aliases.tolist(), originals.tolist())])
    assert found >= 0.9, f"only {found:.0%} of aliases matched their original"

    # The paper's q = 0.2 drops 20% of T; every dropped item should be a loner.
    default = select_target(cooc, domains, against=against)
    assert default.dropped.size == 12
    assert np.isin(default.dropped, loners).all()
