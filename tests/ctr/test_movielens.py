"""MovieLens-1M preprocessing on small hand-made files (tasks.ctr.movielens)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.ctr.data import SPLITS, CTRData, split_assignment
from tasks.ctr.movielens import ML_FIELDS, load_movielens
from tests.ctr.files import RATINGS, write_lines, write_movielens

ACC = "Animation|Children's|Comedy"
ACT = "Action|Crime|Thriller"
# the kept rows of RATINGS (the 3 dropped), decoded by hand:
# (timestamp bucket, gender, age, occupation, zip, year, genres, label); timestamps are seconds
# since the first rating (1000): 0 -> -2, 2 -> 0, 3 -> floor(ln(3)^2) = 1, 10 -> floor(5.30) = 5,
# 100 -> floor(21.21) = 21, 99000 -> floor(132.32) = 132
EXPECTED = [
    (-2, "F", 1, 10, "48067", 1995, ACC, 1),
    (0, "M", 56, 16, "70072", 1995, ACC, 0),
    (5, "M", 56, 16, "70072", 1977, ACC, 1),
    (21, "M", 25, 15, "55117", 1995, ACT, 0),
    (132, "M", 25, 15, "55117", 1977, ACC, 1),
    (1, "F", 1, 10, "48067", 1977, ACC, 1),
    (-2, "M", 56, 16, "70072", 1995, ACT, 1),
]


def decode(data: CTRData) -> list[tuple]:
    """Every row of every split as (raw value per field..., label), file order per split."""
    rows = []
    for split in SPLITS:
        x, y = np.asarray(data.x[split]), np.asarray(data.y[split])
        columns = [
            data.values[f][x[:, c] - data.offsets[c]].tolist() for c, f in enumerate(data.fields)
        ]
        rows += [(*values, int(label)) for *values, label in zip(*columns, y.tolist())]
    return rows


def test_rows_labels_and_every_field_by_hand(ml_dir, cache_dir):
    data = load_movielens(ml_dir, cache_dir=cache_dir)
    assert data.fields == ML_FIELDS
    assert sorted(decode(data)) == sorted(EXPECTED)
    assert data.meta["rows_read"] == len(RATINGS) and data.meta["rows_kept"] == 7
    # genres is the combination, order-free: movies 1 and 3 share it
    assert data.values["genres"].tolist() == [ACT, ACC]
    assert data.field_sizes.tolist() == [6, 2, 3, 3, 3, 2, 2]
    assert data.oov == (None,) * 7


def test_global_ids_are_field_offsets(ml_dir, cache_dir):
    data = load_movielens(ml_dir, cache_dir=cache_dir)
    assert data.offsets.tolist() == [0, 6, 8, 11, 14, 17, 19] and data.num_items == 21
    for c, name in enumerate(data.fields):
        ids = np.concatenate([np.asarray(data.x[s][:, c]) for s in SPLITS])
        assert np.isin(ids, data.field_ids(name)).all()


def test_field_selection_and_order(ml_dir, cache_dir):
    data = load_movielens(ml_dir, fields=["zip", "gender"], cache_dir=cache_dir)
    assert data.fields == ("zip", "gender") and data.num_fields == 2
    assert data.field_sizes.tolist() == [3, 2]
    expected = sorted((row[4], row[1], row[7]) for row in EXPECTED)
    assert sorted(decode(data)) == expected
    with pytest.raises(ValueError, match="fields for movielens1m"):
        load_movielens(ml_dir, fields=["zip", "user"], cache_dir=cache_dir)


def test_split_is_80_10_10_by_seed(tmp_path, cache_dir):
    ratings = [f"{1 + i % 3}::{1 + i % 2}::{5 if i % 4 else 1}::{1000 + i}" for i in range(200)]
    root = write_movielens(tmp_path / "d", ratings=ratings)
    a = load_movielens(root, split_seed=1, cache_dir=cache_dir)
    assert [a.rows(s) for s in SPLITS] == [160, 20, 20]
    b = load_movielens(root, split_seed=2, cache_dir=cache_dir)
    assert b.path != a.path
    assert not np.array_equal(np.asarray(a.x["test"]), np.asarray(b.x["test"]))
    assignment = split_assignment(200, 1)
    assert np.bincount(assignment).tolist() == [160, 20, 20]


def test_cache_is_reused_and_written_atomically(ml_dir, cache_dir):
    first = load_movielens(ml_dir, cache_dir=cache_dir)
    again = load_movielens(ml_dir, cache_dir=cache_dir)
    assert again.path == first.path and again.meta == first.meta
    assert isinstance(again.x["train"], np.memmap)
    entries = list((cache_dir / "ctr").iterdir())
    assert entries == [first.path]  # no temporary folder left behind
    assert first.path.is_relative_to(cache_dir)


def test_timestamp_needs_a_file_with_timestamps(tmp_path, cache_dir):
    no_time = [line.rsplit("::", 1)[0] for line in RATINGS]
    root = write_movielens(tmp_path / "d", ratings=no_time, name="ratings_no_timestamp.dat")
    with pytest.raises(ValueError, match="has no timestamps.*never filled in"):
        load_movielens(root, ratings_file="ratings_no_timestamp.dat", cache_dir=cache_dir)
    fields = [f for f in ML_FIELDS if f != "timestamp"]
    data = load_movielens(
        root, fields=fields, ratings_file="ratings_no_timestamp.dat", cache_dir=cache_dir
    )
    assert sorted(decode(data)) == sorted(row[1:] for row in EXPECTED)


def test_timestamps_missing_for_some_ratings_are_an_error(tmp_path, cache_dir):
    # A four-column file that leaves out the events whose timestamp is unknown, beside the
    # complete three-column file: asking for timestamps names both counts; without them, fine.
    root = write_movielens(tmp_path / "d", ratings=RATINGS[:-2], name="partial.dat")
    no_time = [line.rsplit("::", 1)[0] for line in RATINGS]
    write_lines(root / "movielens-1m" / "ratings_no_timestamp.dat", no_time)
    with pytest.raises(ValueError, match=f"only {len(RATINGS) - 2} of the {len(RATINGS)} ratings"):
        load_movielens(root, ratings_file="partial.dat", cache_dir=cache_dir)
    fields = [f for f in ML_FIELDS if f != "timestamp"]
    assert load_movielens(root, fields=fields, ratings_file="partial.dat", cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2::1::4::1000::7", r"ratings.dat, line 3: expected 4 columns .*'::', found 5"),
        ("2::1", r"ratings.dat, line 3: expected 4 columns separated by '::', found 2"),
        ("2::1::x::1000", r"ratings.dat, line 3: rating 'x' is not an integer"),
        ("2::1::7::1000", r"ratings.dat, line 3: rating 7 is not in 1..5"),
        ("2:1::4::1000:", r"ratings.dat, line 3: columns must be separated by '::'"),
        ("9::1::4::1000", r"ratings.dat, line 3: user id 9 is not in users.dat"),
        ("2::8::4::1000", r"ratings.dat, line 3: movie id 8 is not in movies.dat"),
        ("", r"ratings.dat, line 3: .*an empty line"),
    ],
)
def test_malformed_ratings_name_file_line_and_reason(tmp_path, cache_dir, line, message):
    ratings = RATINGS[:2] + [line] + RATINGS[3:]
    root = write_movielens(tmp_path / "d", ratings=ratings)
    with pytest.raises(ValueError, match=message):
        load_movielens(root, cache_dir=cache_dir)


def test_malformed_users_and_movies(tmp_path, cache_dir):
    root = write_movielens(tmp_path / "a", users=["1::F::1::10::48067", "2::M::56::16"])
    with pytest.raises(ValueError, match=r"users.dat, line 2: expected 5"):
        load_movielens(root, cache_dir=cache_dir)
    root = write_movielens(
        tmp_path / "b", movies=["1::Toy Story::Comedy", "2::Heat (1995)::Action"]
    )
    with pytest.raises(ValueError, match=r"movies.dat, line 1: title 'Toy Story' does not end"):
        load_movielens(root, cache_dir=cache_dir)


def test_movies_file_is_latin1(tmp_path, cache_dir):
    movies = ["1::Misérables, Les (1995)::Drama", "2::Heat (1995)::Action", "3::X (1977)::Drama"]
    root = write_movielens(tmp_path / "d", movies=movies)
    assert write_lines(root / "movielens-1m" / "movies.dat", movies).read_bytes().count(b"\xe9")
    data = load_movielens(root, fields=["year", "genres"], cache_dir=cache_dir)
    assert data.values["year"].tolist() == [1977, 1995]


def test_missing_file_says_where_and_how(tmp_path, cache_dir):
    root = write_movielens(tmp_path / "d", name="ratings_no_timestamp.dat")
    with pytest.raises(FileNotFoundError) as info:
        load_movielens(root, cache_dir=cache_dir)
    text = str(info.value)
    assert str(root / "movielens-1m" / "ratings.dat") in text
    assert "HARMLESS_DATA_DIR" in text and "tasks.ctr.download" in text
    assert "ratings_file='ratings_no_timestamp.dat'" in text


def test_data_dir_from_environment(ml_dir, cache_dir, monkeypatch):
    monkeypatch.setenv("HARMLESS_DATA_DIR", str(ml_dir))
    assert load_movielens(cache_dir=cache_dir).rows("train") == 5
    monkeypatch.delenv("HARMLESS_DATA_DIR")
    with pytest.raises(FileNotFoundError, match="HARMLESS_DATA_DIR"):
        load_movielens(cache_dir=cache_dir)


def test_max_rows_reads_the_head_of_the_file(ml_dir, cache_dir):
    data = load_movielens(ml_dir, max_rows=4, cache_dir=cache_dir)
    assert data.meta["rows_read"] == 4 and sorted(decode(data)) == sorted(EXPECTED[:3])
