"""Corpus reading, the frequency-sorted vocabulary, the cache, batchify and variable BPTT."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

import tasks.lm.data as lm_data
from tasks.lm.data import (
    batchify,
    bptt_batches,
    build_vocabulary,
    eval_batches,
    get_batch,
    load_corpus,
    sample_seq_len,
)
from tasks.lm.download import compare_expected, download_wikitext

TOY_ITOS = ("<eos>", "the", "=", "sat", "on", ".", "A", "cat", "mat", "dog", "<unk>")


def test_vocabulary_is_sorted_by_frequency_ties_by_first_appearance():
    vocab = build_vocabulary([["b", "a", "b", "<eos>"], ["c", "a", "b", "<eos>"], ["d", "<eos>"]])
    assert vocab.itos == ("b", "<eos>", "a", "c", "d")  # 3, 3, 2, 1, 1: ties keep first use
    assert vocab.counts.tolist() == [3, 3, 2, 1, 1]
    assert vocab.stoi == {"b": 0, "<eos>": 1, "a": 2, "c": 3, "d": 4}


def test_toy_corpus_encoding(toy_data_dir, tmp_path):
    corpus = load_corpus("toy", toy_data_dir, tmp_path / "cache")
    assert corpus.vocab.itos == TOY_ITOS
    assert corpus.vocab.counts.tolist() == [5, 4, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    lines = [[2, 6, 2, 0], [0], [1, 7, 3, 4, 1, 8, 5, 0], [1, 9, 3, 4, 1, 10, 5, 0], [0]]
    assert corpus.train.tolist() == [i for line in lines for i in line]
    assert corpus.valid.tolist() == [1, 7, 3, 5, 0, 1, 9, 10, 5, 0]
    assert corpus.summary() == {
        "vocab_size": 11,
        "train_tokens": 22,
        "valid_tokens": 10,
        "test_tokens": 8,
    }
    assert corpus.train.dtype == np.int32


def test_cache_is_reused_and_kept_out_of_the_working_dir(toy_data_dir, tmp_path, monkeypatch):
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    first = load_corpus("toy", toy_data_dir, cache)
    (directory,) = (cache / "lm").iterdir()
    assert sorted(p.name for p in directory.iterdir()) == [
        "counts.npy",
        "meta.json",
        "test.npy",
        "train.npy",
        "valid.npy",
        "vocab.json",
    ]
    assert os.listdir(work) == []  # nothing written to the working directory

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(lm_data, "encode_corpus", fail)
    second = load_corpus("toy", toy_data_dir, cache)
    assert second.vocab.itos == first.vocab.itos
    np.testing.assert_array_equal(second.train, first.train)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("wikitext-2", tmp_path, tmp_path / "cache")
    message = str(err.value)
    assert str(tmp_path / "wikitext-2") in message
    assert "wiki.train.tokens" in message and "download=True" in message


def test_no_data_dir_names_the_variable(monkeypatch):
    monkeypatch.delenv("HARMLESS_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="HARMLESS_DATA_DIR"):
        load_corpus("wikitext-2")


def test_empty_file_and_unknown_words_are_errors(toy_data_dir, tmp_path):
    folder = toy_data_dir / "toy"
    (folder / "wiki.test.tokens").write_text(" \n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no tokens"):
        load_corpus("toy", toy_data_dir, tmp_path / "c1")
    (folder / "wiki.test.tokens").write_text(" the zebra . \n", encoding="utf-8")
    with pytest.raises(ValueError, match="zebra"):
        load_corpus("toy", toy_data_dir, tmp_path / "c2")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets installed")
def test_download_without_datasets_explains(tmp_path):
    with pytest.raises(ImportError, match="datasets"):
        download_wikitext("wikitext-2", tmp_path)


def test_compare_expected():
    assert compare_expected("wikitext-2", 33_278, {"train": 2_088_628}) == []
    problems = compare_expected("wikitext-2", 33_000, {"valid": 1})
    assert len(problems) == 2 and "33,278" in problems[0] and "217,646" in problems[1]
    assert compare_expected("toy", 3, {"train": 1}) == []


def test_wikitext2_sizes(wt2_corpus):
    assert wt2_corpus.summary() == {
        "vocab_size": 33_278,
        "train_tokens": 2_088_628,
        "valid_tokens": 217_646,
        "test_tokens": 245_569,
    }
    counts = wt2_corpus.vocab.counts
    assert np.all(np.diff(counts) <= 0) and counts.sum() == 2_088_628
    assert wt2_corpus.vocab.itos[:3] == ("the", ",", ".")
    assert wt2_corpus.vocab.stoi["<eos>"] == 8 and counts[8] == 36_718  # one per line


# ----------------------------------------------------------------------------- batching


def test_batchify_exact():
    source = batchify(np.arange(26, dtype=np.int32), 3)
    expected = torch.stack([torch.arange(8), torch.arange(8, 16), torch.arange(16, 24)], 1)
    assert expected[:2].tolist() == [[0, 8, 16], [1, 9, 17]]
    assert source.dtype == torch.int64
    torch.testing.assert_close(source, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(2, 13\)"):
        batchify(torch.zeros(2, 13), 3)
    with pytest.raises(ValueError, match="columns"):
        batchify(np.arange(2), 3)


def test_get_batch_and_fixed_length_bptt_exact():
    source = batchify(torch.arange(26), 3)  # [8, 3]
    inputs, targets = get_batch(source, 6, 5)  # only one row left with a target
    assert inputs.tolist() == [[6, 14, 22]] and targets.tolist() == [[7, 15, 23]]
    generator = torch.Generator().manual_seed(0)
    batches = list(bptt_batches(source, 3, generator, p_full=1.0, std=0.0, min_len=1))
    # awd-lstm-lm's loop runs while i < rows - 2, so row 6 (target row 7) is left out
    assert [(i.tolist(), t.tolist(), n) for i, t, n in batches] == [
        ([[0, 8, 16], [1, 9, 17], [2, 10, 18]], [[1, 9, 17], [2, 10, 18], [3, 11, 19]], 3),
        ([[3, 11, 19], [4, 12, 20], [5, 13, 21]], [[4, 12, 20], [5, 13, 21], [6, 14, 22]], 3),
    ]
    batches = list(bptt_batches(source, 4, generator, p_full=1.0, std=0.0, min_len=1))
    assert [(i[:, 0].tolist(), t[:, 0].tolist(), n) for i, t, n in batches] == [
        ([0, 1, 2, 3], [1, 2, 3, 4], 4),
        ([4, 5, 6], [5, 6, 7], 4),  # cut at the end; the lr scale still uses the sampled 4
    ]
    chunks = list(eval_batches(source, 5))
    assert [i[:, 0].tolist() for i, _ in chunks] == [[0, 1, 2, 3, 4], [5, 6]]
    assert [t[:, 0].tolist() for _, t in chunks] == [[1, 2, 3, 4, 5], [6, 7]]


def test_sample_seq_len_follows_the_awd_rule_from_the_generator_only():
    generator = torch.Generator().manual_seed(123)
    replay = torch.Generator().manual_seed(123)
    global_state = torch.get_rng_state()
    draws = [sample_seq_len(70, generator, max_len=80) for _ in range(2000)]
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is untouched
    for seq_len in draws:
        uniform = torch.rand((), generator=replay).item()
        normal = torch.randn((), generator=replay).item()
        base = 70 if uniform < 0.95 else 35.0
        assert seq_len == min(80, max(5, int(base + 5 * normal)))
    halves = sum(d < 52 for d in draws) / len(draws)
    assert 0.03 < halves < 0.07 and max(draws) == 80
    assert min(sample_seq_len(2, generator) for _ in range(50)) == 5  # the minimum length


def test_bptt_epoch_covers_the_stream_with_random_lengths():
    source = batchify(torch.arange(3000), 4)  # [750, 4]
    generator = torch.Generator().manual_seed(0)
    batches = list(bptt_batches(source, 70, generator))
    again = list(bptt_batches(source, 70, torch.Generator().manual_seed(0)))
    assert [n for *_, n in batches] == [n for *_, n in again]
    covered = torch.cat([i for i, *_ in batches])
    torch.testing.assert_close(covered, source[: covered.size(0)], rtol=0, atol=0)
    assert covered.size(0) >= source.size(0) - 2
    assert len({n for *_, n in batches}) > 3
