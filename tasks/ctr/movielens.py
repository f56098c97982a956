"""MovieLens-1M as CTR records, following PEP (Liu et al. 2021) and the paper's Section 5.3.

Source files (GroupLens ml-1m, `::`-separated): ratings.dat `user::movie::rating::timestamp`,
users.dat `user::gender::age::occupation::zip`, movies.dat `movie::title::genres` (Latin-1).

- Ratings of 3 are dropped; label = 1 if rating > 3 else 0.
- Fields (any subset, in the order given): timestamp (seconds since the first rating of the
  file, bucketed as floor(log(v)^2) as PEP does), gender, age, occupation, zip (the raw zip code
  string: 3,439 values), year (release year parsed from the title's trailing "(YYYY)") and genres
  (the movie's genre combination, order-free). User and movie ids are not features.
- Each field's values are numbered in sorted order over the rows kept (there is no OOV id).
- A random 80/10/10 split by `split_seed`; rows keep file order inside each split.

A ratings file without timestamps (`user::movie::rating`, e.g. a local copy whose timestamps are
incomplete) can be chosen with `ratings_file`; asking it for the timestamp field is an error:
timestamps are never filled in.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np

from tasks.ctr import rawtext
from tasks.ctr.cache import atomic_dir, digest, file_stamp, resolve_cache_dir
from tasks.ctr.data import (
    FORMAT_VERSION,
    SPLITS,
    CTRData,
    bucket_integers,
    check_fields,
    require_file,
    resolve_data_dir,
    save_arrays,
    split_assignment,
    split_facts,
    write_meta,
)

log = logging.getLogger(__name__)

FOLDER = "movielens-1m"
COMPLETE_RATINGS = "ratings_no_timestamp.dat"  # every rating, no timestamps (a partial copy)
ML_FIELDS = ("timestamp", "gender", "age", "occupation", "zip", "year", "genres")
USER_FIELDS = ("gender", "age", "occupation", "zip")
MOVIE_FIELDS = ("year", "genres")
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _split_lines(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a small `::` file, checking the column count."""
    rows = []
    with open(path, encoding="latin-1", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("::")
            if len(parts) != columns:
                raise ValueError(
                    f"{path}, line {number}: expected {columns} '::'-separated columns, "
                    f"found {len(parts)}"
                )
            rows.append((number, parts))
    return rows


def _as_int(path: Path, number: int, text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}, line {number}: {name} {text!r} is not an integer") from None


def _check_unique(path: Path, ids: np.ndarray, numbers: list[int], name: str) -> None:
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        row = order[dup[0] + 1]
        raise ValueError(f"{path}, line {numbers[row]}: duplicate {name} {ids[row]}")


def read_users(path: Path) -> dict[str, np.ndarray]:
    """users.dat as sorted arrays: id, gender, age, occupation, zip."""
    rows = _split_lines(path, 5)
    numbers = [n for n, _ in rows]
    ids = np.array([_as_int(path, n, p[0], "user id") for n, p in rows], dtype=np.int64)
    _check_unique(path, ids, numbers, "user id")
    table = {
        "id": ids,
        "gender": np.array([p[1] for _, p in rows], dtype=str),
        "age": np.array([_as_int(path, n, p[2], "age") for n, p in rows], dtype=np.int64),
        "occupation": np.array(
            [_as_int(path, n, p[3], "occupation") for n, p in rows], dtype=np.int64
        ),
        "zip": np.array([p[4] for _, p in rows], dtype=str),
    }
    order = np.argsort(ids)
    return {k: v[order] for k, v in table.items()}


def read_movies(path: Path) -> dict[str, np.ndarray]:
    """movies.dat as sorted arrays: id, year (from the title), genres (sorted, '|'-joined)."""
    rows = _split_lines(path, 3)
    numbers = [n for n, _ in rows]
    ids = np.array([_as_int(path, n, p[0], "movie id") for n, p in rows], dtype=np.int64)
    _check_unique(path, ids, numbers, "movie id")
    years = []
    for number, parts in rows:
        match = _YEAR.search(parts[1])
        if match is None:
            raise ValueError(
                f"{path}, line {number}: title {parts[1]!r} does not end with a year '(YYYY)'"
            )
        years.append(int(match.group(1)))
    genres = ["|".join(sorted(set(p[2].split("|")))) for _, p in rows]
    order = np.argsort(ids)
    table = {
        "id": ids,
        "year": np.array(years, dtype=np.int64),
        "genres": np.array(genres, dtype=str),
    }
    return {k: v[order] for k, v in table.items()}


def _ratings_columns(path: Path) -> int:
    """3 (user::movie::rating) or 4 (with timestamp), from the file's first line."""
    with open(path, "rb") as handle:
        first = handle.readline().rstrip(b"\r\n")
    pieces = first.split(b"::")
    if len(pieces) not in (3, 4):
        raise ValueError(
            f"{path}, line 1: expected user::movie::rating[::timestamp], found {len(pieces)} "
            "'::'-separated columns"
        )
    return len(pieces)


def read_ratings(path: Path, columns: int, max_rows: int | None) -> dict[str, np.ndarray]:
    """ratings as int64 arrays user, movie, rating (+ timestamp), vectorised block by block."""
    names = ("user", "movie", "rating", "timestamp")[:columns]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for first_line, data in rawtext.iter_blocks(path, max_lines=max_rows):
        block = rawtext.split_block(path, first_line, data, ":", columns, doubled=True)
        gaps = block.ends[:, 1::2] - block.starts[:, 1::2]  # the ':' between '::' pairs
        if gaps.any():
            row = int(np.argmax(gaps.any(axis=1)))
            raise block.error(row, "columns must be separated by '::'")
        values, _ = rawtext.parse_int(block, [2 * k for k in range(columns)], list(names))
        for k, name in enumerate(names):
            parts[name].append(values[:, k])
        rating = parts["rating"][-1]
        bad = (rating < 1) | (rating > 5)
        if bad.any():
            row = int(np.argmax(bad))
            raise block.error(row, f"rating {rating[row]} is not in 1..5")
    return {
        name: np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        for name, chunks in parts.items()
    }


def _lookup(
    ids: np.ndarray, table_ids: np.ndarray, path: Path, what: str, source: str
) -> np.ndarray:
    """Row index into a sorted id table; ValueError naming the first id missing from it."""
    pos = np.minimum(np.searchsorted(table_ids, ids), max(table_ids.size - 1, 0))
    missing = table_ids[pos] != ids if table_ids.size else np.ones(ids.size, bool)
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(f"{path}, line {row + 1}: {what} {ids[row]} is not in {source}")
    return pos


def _encode(table: np.ndarray, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values in use, local id of every row) of the rows' values table[index].

    Values are numbered on the small table (users or movies) and then restricted to the values
    the rows use, which avoids sorting strings row by row.
    """
    vocab, codes = np.unique(table, return_inverse=True)
    codes = codes.reshape(-1) if index is None else codes.reshape(-1)[index]
    used = np.bincount(codes, minlength=vocab.size) > 0
    remap = np.cumsum(used) - 1
    return vocab[used], remap[codes]


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))


def _check_timestamps_complete(root: Path, ratings_path: Path, rows: int) -> None:
    """A timestamped ratings file must hold every event of the folder's complete ratings file
    (when one is there): events left out for lack of a timestamp are not missing at random, and
    training on the rest would leak the label through the timestamp field."""
    complete = root / COMPLETE_RATINGS
    if complete == ratings_path or not complete.is_file():
        return
    total = _count_lines(complete)
    if rows < total:
        raise ValueError(
            f"{ratings_path} has timestamps for only {rows:,} of the {total:,} ratings in "
            f"{complete.name}, but the 'timestamp' field was asked for. Incomplete timestamps "
            "would leak the label; use GroupLens's complete ratings.dat (python -m "
            "tasks.ctr.download movielens1m), or leave 'timestamp' out of fields."
        )


def _build(root: Path, ratings_path: Path, fields: tuple[str, ...], split_seed: int, max_rows):
    columns = _ratings_columns(ratings_path)
    if "timestamp" in fields and columns < 4:
        raise ValueError(
            f"{ratings_path} has no timestamps (user::movie::rating lines), but the 'timestamp' "
            "field was asked for. Use the official four-column ratings.dat, or leave "
            "'timestamp' out of fields; timestamps are never filled in."
        )
    users = read_users(root / "users.dat")
    movies = read_movies(root / "movies.dat")
    ratings = read_ratings(ratings_path, columns, max_rows)
    if "timestamp" in fields and max_rows is None:
        _check_timestamps_complete(root, ratings_path, int(ratings["rating"].size))
    user_row = _lookup(ratings["user"], users["id"], ratings_path, "user id", "users.dat")
    movie_row = _lookup(ratings["movie"], movies["id"], ratings_path, "movie id", "movies.dat")
    keep = ratings["rating"] != 3
    labels = (ratings["rating"][keep] > 3).astype(np.uint8)
    raw = {}  # field -> (table of values, row index into it, or None: one value per row)
    if "timestamp" in fields:
        stamps = ratings["timestamp"]  # relative to the first rating of the file, as PEP
        raw["timestamp"] = (bucket_integers(stamps - stamps.min())[keep], None)
    for name in USER_FIELDS:
        raw[name] = (users[name], user_row[keep])
    for name in MOVIE_FIELDS:
        raw[name] = (movies[name], movie_row[keep])
    x = np.empty((labels.size, len(fields)), dtype=np.int32)
    values, sizes, offset = {}, [], 0
    for col, name in enumerate(fields):
        vocab, local = _encode(*raw[name])
        x[:, col] = local + offset
        values[name], offset = vocab, offset + vocab.size
        sizes.append(int(vocab.size))
    assignment = split_assignment(labels.size, split_seed)
    splits = {s: (x[assignment == k], labels[assignment == k]) for k, s in enumerate(SPLITS)}
    facts = {"rows_read": int(keep.size), "rows_kept": int(labels.size), "columns": columns}
    return splits, values, sizes, facts


def load_movielens(
    data_dir: str | Path | None = None,
    *,
    fields: tuple[str, ...] | list[str] = ML_FIELDS,
    ratings_file: str = "ratings.dat",
    split_seed: int = 0,
    cache_dir: str | Path | None = None,
    max_rows: int | None = None,
) -> CTRData:
    """MovieLens-1M records (cached per fields + split seed + files + max_rows).

    Args:
        data_dir: folder holding `movielens-1m/` (default: $HARMLESS_DATA_DIR).
        fields: names from ML_FIELDS, in column order.
        ratings_file: ratings file inside `movielens-1m/` (3 or 4 `::` columns).
        split_seed: seed of the random 80/10/10 split.
        cache_dir: cache root (default ~/.cache/harmless).
        max_rows: read only the first `max_rows` lines of the ratings file (smoke runs).
    """
    fields = check_fields(fields, ML_FIELDS, "movielens1m")
    root = resolve_data_dir(data_dir) / FOLDER
    hint = ""
    if ratings_file == "ratings.dat" and (root / "ratings_no_timestamp.dat").is_file():
        hint = (
            " This folder has ratings_no_timestamp.dat: pass ratings_file="
            "'ratings_no_timestamp.dat' and leave 'timestamp' out of fields to use it."
        )
    ratings_path = require_file(root / ratings_file, "MovieLens-1M ratings", hint)
    sources = [ratings_path, require_file(root / "users.dat", "MovieLens-1M users.dat")]
    sources.append(require_file(root / "movies.dat", "MovieLens-1M movies.dat"))
    key = {
        "version": FORMAT_VERSION,
        "dataset": "movielens1m",
        "fields": fields,
        "split_seed": split_seed,
        "max_rows": max_rows,
        "sources": [file_stamp(p) for p in sources],
    }
    path = resolve_cache_dir(cache_dir) / "ctr" / f"movielens1m-{digest(key)}"
    if (path / "meta.json").is_file():
        return CTRData.load(path)
    start = time.perf_counter()
    splits, values, sizes, facts = _build(root, ratings_path, fields, split_seed, max_rows)
    seconds = time.perf_counter() - start
    meta = {
        "dataset": "movielens1m",
        "fields": list(fields),
        "field_sizes": sizes,
        "oov_local": [None] * len(fields),
        "splits": split_facts({s: y for s, (_, y) in splits.items()}),
        "preprocess_seconds": round(seconds, 3),
        "key": key,
        **facts,
    }
    with atomic_dir(path) as tmp:
        for split, (x, y) in splits.items():
            save_arrays(tmp, split, x, y)
        write_meta(tmp, meta, values)
    log.info(
        "MovieLens-1M: %d ratings read, %d kept (3s dropped), values per field %s, %.1f s -> %s",
        facts["rows_read"],
        facts["rows_kept"],
        dict(zip(fields, sizes)),
        seconds,
        path,
    )
    return CTRData.load(path)
