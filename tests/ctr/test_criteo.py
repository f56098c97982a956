"""Criteo preprocessing on small hand-made TSV files (tasks.ctr.criteo)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.ctr.criteo import CRITEO_FIELDS, EMPTY_INT, OOV_KEY, load_criteo
from tasks.ctr.data import SPLITS, split_assignment
from tests.ctr.files import criteo_line, write_lines

# I1 raw values and their buckets, by hand: v > 2 -> floor(ln(v)^2), v <= 2 -> v - 2
BUCKETS = {"": EMPTY_INT, "-1": -3, "0": -2, "1": -1, "2": 0, "3": 1, "10": 5, "100": 21}
I1_VALUES = list(BUCKETS)
N = 80


def c1_value(i: int) -> str:
    """C1 of line i: frequent, medium, empty, and values seen once."""
    if i % 2 == 0:
        return "aaaaaaaa"
    if i % 8 in (1, 3):
        return "0000abcd" if i % 8 == 1 else "FFFFFFFF"
    if i % 8 == 5:
        return "" if i % 16 == 5 else "12345678"
    return f"{i:08x}"  # i % 8 == 7: seen once


def rows() -> list[tuple[str, str, str]]:
    """(label, I1, C1) of each of the N lines."""
    return [(str(i % 3 % 2), I1_VALUES[i % len(I1_VALUES)], c1_value(i)) for i in range(N)]


@pytest.fixture
def tsv(tmp_path):
    lines = [
        criteo_line(label, {1: i1, 2: "5"}, {1: c1, 2: "deadbeef"}) for label, i1, c1 in rows()
    ]
    return write_lines(tmp_path / "data" / "train.tsv", lines)


def train_rows(seed: int) -> list[int]:
    return np.flatnonzero(split_assignment(N, seed) == 0).tolist()


def test_integer_buckets_by_hand(tsv, cache_dir):
    data = load_criteo(path=tsv, fields=["I1"], min_count=1, cache_dir=cache_dir)
    assert sorted(data.values["I1"][:-1].tolist()) == sorted(BUCKETS.values())
    assert data.values["I1"][-1] == OOV_KEY
    for split in SPLITS:
        rows_of_split = np.flatnonzero(split_assignment(N, 0) == SPLITS.index(split))
        keys = data.values["I1"][np.asarray(data.x[split][:, 0])]
        expected = [BUCKETS[rows()[r][1]] for r in rows_of_split]
        assert keys.tolist() == expected  # file order inside each split


def test_rare_values_by_training_count_go_to_oov(tsv, cache_dir):
    data = load_criteo(
        path=tsv, fields=["C1", "C2"], min_count=5, split_seed=3, cache_dir=cache_dir
    )
    train = train_rows(3)
    counts: dict[str, int] = {}
    for r in train:
        counts[rows()[r][2]] = counts.get(rows()[r][2], 0) + 1
    kept = {v for v, c in counts.items() if c >= 5}
    assert 0 < len(kept) < len(counts)  # the file has both kinds
    key = {"": -1} | {v: int(v, 16) for v in counts if v}
    expected_vocab = sorted(kept, key=lambda v: (-counts[v], key[v]))  # count desc, key asc
    assert data.values["C1"][:-1].tolist() == [key[v] for v in expected_vocab]
    oov = data.oov[0]
    assert oov == len(kept) and data.field_sizes.tolist() == [len(kept) + 1, 2]
    assert data.oov[1] == data.field_sizes[0] + 1  # C2: one value, then its OOV id
    for split in SPLITS:
        part = np.flatnonzero(split_assignment(N, 3) == SPLITS.index(split))
        for r, got in zip(part, np.asarray(data.x[split][:, 0])):
            value = rows()[r][2]
            assert got == (expected_vocab.index(value) if value in kept else oov)
    assert data.meta["rare_values"]["C1"] == len(counts) - len(kept)


def test_a_value_frequent_only_outside_training_is_oov(tmp_path, cache_dir):
    assignment = split_assignment(40, 0)
    lines = [
        criteo_line("1" if i % 2 else "0", cats={1: "cccccccc" if assignment[i] else "dddddddd"})
        for i in range(40)
    ]
    path = write_lines(tmp_path / "t.tsv", lines)
    data = load_criteo(path=path, fields=["C1"], min_count=1, cache_dir=cache_dir)
    assert data.values["C1"].tolist() == [0xDDDDDDDD, OOV_KEY]
    assert (np.asarray(data.x["valid"]) == data.oov[0]).all()
    assert (np.asarray(data.x["test"]) == data.oov[0]).all()


def test_labels_shared_ids_and_memmap(tsv, cache_dir):
    data = load_criteo(path=tsv, min_count=1, cache_dir=cache_dir)
    assert data.fields == CRITEO_FIELDS and data.num_fields == 39
    assert [data.rows(s) for s in SPLITS] == [64, 8, 8]
    labels = np.concatenate([np.asarray(data.y[s]) for s in SPLITS])
    assert labels.sum() == sum(int(r[0]) for r in rows())
    assert isinstance(data.x["train"], np.memmap) and data.x["train"].dtype == np.int32
    for c, name in enumerate(data.fields):  # each column lies in its own id range
        assert np.isin(np.asarray(data.x["train"][:, c]), data.field_ids(name)).all()
    assert data.num_items == int(data.field_sizes.sum())


def test_chunked_reading_gives_the_same_arrays(tsv, tmp_path):
    whole = load_criteo(path=tsv, min_count=2, cache_dir=tmp_path / "a")
    chunked = load_criteo(path=tsv, min_count=2, cache_dir=tmp_path / "b", block_bytes=300)
    for split in SPLITS:
        assert np.array_equal(whole.x[split], chunked.x[split])
        assert np.array_equal(whole.y[split], chunked.y[split])


def test_max_rows_and_cache_key(tsv, cache_dir):
    head = load_criteo(path=tsv, max_rows=40, min_count=1, cache_dir=cache_dir)
    assert sum(head.rows(s) for s in SPLITS) == 40
    full = load_criteo(path=tsv, min_count=1, cache_dir=cache_dir)
    assert full.path != head.path
    assert load_criteo(path=tsv, min_count=1, cache_dir=cache_dir).path == full.path
    assert len(list((cache_dir / "ctr").iterdir())) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("1\t2\t3", r"t.tsv, line 3: expected 40 columns separated by '\\t', found 3"),
        (criteo_line("x"), r"t.tsv, line 3: label 'x' is not an integer"),
        (criteo_line("2"), r"t.tsv, line 3: label '2' is not 0 or 1"),
        (criteo_line("1", ints={4: "1.5"}), r"t.tsv, line 3: I4 '1.5' is not an integer"),
        (criteo_line("1", cats={7: "xyz"}), r"t.tsv, line 3: C7 'xyz' is not 8 hex digits"),
        (criteo_line("1", cats={7: "1234567g"}), r"t.tsv, line 3: C7 '1234567g' is not 8 hex"),
        (criteo_line("0") + "\textra", r"t.tsv, line 3: expected 40 columns .* found 41"),
    ],
)
def test_malformed_lines_name_file_line_and_reason(tmp_path, cache_dir, bad, message):
    good = criteo_line("0", {1: "3"}, {1: "aaaaaaaa"})
    path = write_lines(tmp_path / "t.tsv", [good, good, bad, good])
    with pytest.raises(ValueError, match=message):
        load_criteo(path=path, cache_dir=cache_dir, block_bytes=64)


def test_missing_file_says_where_and_how(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError) as info:
        load_criteo(tmp_path, cache_dir=cache_dir)
    text = str(info.value)
    assert str(tmp_path / "criteo" / "train.txt") in text and "HARMLESS_DATA_DIR" in text


def test_real_sample(real_data, real_cache):
    path = "criteo-sample/criteo_head10000_train.tsv"
    data = load_criteo(real_data, path=path, min_count=2, cache_dir=real_cache)
    assert [data.rows(s) for s in SPLITS] == [8000, 1000, 1000]
    assert sum(int(np.asarray(data.y[s]).sum()) for s in SPLITS) == 2182
    assert data.num_items == 11447
    assert max(int(np.asarray(data.x[s]).max()) for s in SPLITS) < data.num_items
