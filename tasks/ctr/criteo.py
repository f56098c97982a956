"""Criteo (Kaggle Display Advertising Challenge layout) as CTR records, following PEP.

Input: tab-separated lines `label, I1..I13 (integer counts), C1..C26 (32-bit hashed categoricals
as 8 hex digits)`, empty fields for missing values, no header (Kaggle's train.txt, 45,840,617
lines, or any head of it).

- Integer fields are bucketed as floor(log(v)^2) for v > 2, every v <= 2 its own bucket
  (:func:`tasks.ctr.data.bucket_integers`); an empty field is its own value.
- A value seen fewer than `min_count` times in the TRAINING split (10 in PEP) is mapped to its
  field's out-of-vocabulary id, as are values never seen in training. NOTE: PEP applies the
  threshold to the integer buckets too and counts over the whole file; here it applies to every
  field (as PEP) but counts the training split only, so nothing of valid/test leaks into the
  vocabulary.
- Each field's kept values are numbered by decreasing training count (ties: smaller key first),
  and the OOV id comes last; every field has one, used or not.
- A random 80/10/10 split by `split_seed`; rows keep file order inside each split.

The file is streamed in blocks (bounded memory) three times: count the lines, count values of the
training rows, then map and write ids straight into memory-mapped .npy files in the cache, so the
full 45M-row file never has to fit in RAM.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

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
    split_assignment,
    split_facts,
    write_meta,
)

log = logging.getLogger(__name__)

INT_FIELDS = tuple(f"I{i}" for i in range(1, 14))
CAT_FIELDS = tuple(f"C{i}" for i in range(1, 27))
CRITEO_FIELDS = INT_FIELDS + CAT_FIELDS
COLUMNS = 1 + len(CRITEO_FIELDS)
EMPTY_INT = np.iinfo(np.int64).min  # key of an empty integer field (empty categoricals: -1)
OOV_KEY = np.iinfo(np.int64).max  # placeholder raw value of the OOV id in values.npz


class _ValueCounts:
    """Counts of int64 keys over many blocks: sorted distinct keys with their counts.

    Each block's (keys, counts) waits in a list; the list is merged into the running total once
    it is as large as the total (amortised O(n log n) whatever the number of blocks).
    """

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, keys: np.ndarray) -> None:
        unique, counts = np.unique(keys, return_counts=True)
        self._pending.append((unique, counts))
        self._pending_size += unique.size
        if self._pending_size >= max(self.keys.size, 1 << 16):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self.keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self.counts, *(c for _, c in self._pending)])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(inverse.reshape(-1), weights=counts).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._merge()
        return self.keys, self.counts


class _Vocabulary:
    """One field's kept keys -> local ids (by decreasing count), everything else -> OOV."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, min_count: int) -> None:
        kept = counts >= min_count
        self.sorted_keys = keys[kept]  # ascending (from np.unique)
        kept_counts = counts[kept]
        order = np.lexsort((self.sorted_keys, -kept_counts))  # by count desc, then key asc
        self.local = np.empty(order.size, dtype=np.int64)
        self.local[order] = np.arange(order.size)
        self.values = np.append(self.sorted_keys[order], OOV_KEY)  # local id -> raw key
        self.oov = int(order.size)
        self.rare_values = int((~kept).sum())

    @property
    def size(self) -> int:
        return self.oov + 1

    def map(self, keys: np.ndarray) -> np.ndarray:
        if self.sorted_keys.size == 0:
            return np.full(keys.shape, self.oov, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), self.sorted_keys.size - 1)
        hit = self.sorted_keys[pos] == keys
        return np.where(hit, self.local[pos], self.oov)


def _parse(block: rawtext.Block, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint8 [rows], keys int64 [rows, len(columns)]) of one block."""
    labels, _ = rawtext.parse_int(block, [0], ["label"])
    labels = labels[:, 0]
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise block.error(row, f"label {block.text(row, 0)!r} is not 0 or 1")
    keys = np.empty((block.rows, len(columns)), dtype=np.int64)
    ints = [k for k, col in enumerate(columns) if col <= len(INT_FIELDS)]
    cats = [k for k, col in enumerate(columns) if col > len(INT_FIELDS)]
    if ints:
        cols = [columns[k] for k in ints]
        names = [CRITEO_FIELDS[c - 1] for c in cols]
        values, empty = rawtext.parse_int(block, cols, names, allow_empty=True)
        keys[:, ints] = np.where(empty, EMPTY_INT, bucket_integers(values))
    if cats:
        cols = [columns[k] for k in cats]
        keys[:, cats] = rawtext.parse_hex32(block, cols, [CRITEO_FIELDS[c - 1] for c in cols])
    return labels.astype(np.uint8), keys


def _blocks(path: Path, max_rows: int | None, block_bytes: int, desc: str):
    """Parsed-ready blocks of the file, with a byte progress bar for long files."""
    total = os.path.getsize(path)
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
        for first_line, data in rawtext.iter_blocks(path, block_bytes, max_rows):
            yield rawtext.split_block(path, first_line, data, "\t", COLUMNS)
            bar.update(data.size)


def _count_rows(path: Path, max_rows: int | None, block_bytes: int) -> int:
    if max_rows is None:
        return rawtext.count_lines(path, block_bytes)
    rows = 0
    for _, data in rawtext.iter_blocks(path, block_bytes, max_rows):
        rows += int(np.count_nonzero(data == 10)) + (data[-1] != 10)
    return rows


def _open_split_arrays(folder: Path, sizes: list[int], num_fields: int):
    """Writable .npy memory maps [rows, F] int32 and [rows] uint8 for each split."""
    arrays = {}
    for split, rows in zip(SPLITS, sizes):
        if rows == 0:  # a zero-length file cannot be memory-mapped
            np.save(folder / f"{split}_x.npy", np.zeros((0, num_fields), np.int32))
            np.save(folder / f"{split}_y.npy", np.zeros(0, np.uint8))
            continue
        x = np.lib.format.open_memmap(
            folder / f"{split}_x.npy", mode="w+", dtype=np.int32, shape=(rows, num_fields)
        )
        y = np.lib.format.open_memmap(
            folder / f"{split}_y.npy", mode="w+", dtype=np.uint8, shape=(rows,)
        )
        arrays[split] = (x, y)
    return arrays


def _build(folder, path, fields, split_seed, min_count, max_rows, block_bytes):
    columns = [CRITEO_FIELDS.index(f) + 1 for f in fields]
    num_rows = _count_rows(path, max_rows, block_bytes)
    assignment = split_assignment(num_rows, split_seed)
    counters = [_ValueCounts() for _ in fields]
    row = 0
    for block in _blocks(path, max_rows, block_bytes, "criteo: counting values"):
        _, keys = _parse(block, columns)
        train = assignment[row : row + block.rows] == 0
        row += block.rows
        for k, counter in enumerate(counters):
            counter.add(keys[train, k])
    vocabs = [_Vocabulary(*c.result(), min_count) for c in counters]
    sizes = np.array([v.size for v in vocabs], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    split_rows = [int((assignment == k).sum()) for k in range(len(SPLITS))]
    arrays = _open_split_arrays(folder, split_rows, len(fields))
    cursor = dict.fromkeys(SPLITS, 0)
    row = 0
    for block in _blocks(path, max_rows, block_bytes, "criteo: writing ids"):
        labels, keys = _parse(block, columns)
        ids = np.empty(keys.shape, dtype=np.int32)
        for k, vocab in enumerate(vocabs):
            ids[:, k] = vocab.map(keys[:, k]) + offsets[k]
        part = assignment[row : row + block.rows]
        row += block.rows
        for k, split in enumerate(SPLITS):
            take = part == k
            n, start = int(take.sum()), cursor[split]
            if n:
                arrays[split][0][start : start + n] = ids[take]
                arrays[split][1][start : start + n] = labels[take]
            cursor[split] = start + n
    labels = {}
    for split, (x, y) in arrays.items():
        x.flush()
        y.flush()
        labels[split] = y
    for split in SPLITS:
        labels.setdefault(split, np.zeros(0, np.uint8))
    values = {f: v.values for f, v in zip(fields, vocabs)}
    facts = {
        "rows_read": num_rows,
        "splits": split_facts(labels),
        "rare_values": {f: v.rare_values for f, v in zip(fields, vocabs)},
    }
    del arrays, labels
    return values, sizes.tolist(), [v.oov for v in vocabs], facts


def load_criteo(
    data_dir: str | Path | None = None,
    *,
    path: str | Path = "criteo/train.txt",
    fields: tuple[str, ...] | list[str] = CRITEO_FIELDS,
    split_seed: int = 0,
    min_count: int = 10,
    cache_dir: str | Path | None = None,
    max_rows: int | None = None,
    block_bytes: int = 1 << 26,
) -> CTRData:
    """Criteo records (cached per file + fields + split seed + min_count + max_rows).

    Args:
        data_dir: the data folder (default: $HARMLESS_DATA_DIR); `path` is relative to it.
        path: the Kaggle-layout TSV (default `criteo/train.txt`, as the download helper writes).
        fields: names from CRITEO_FIELDS (I1..I13, C1..C26), in column order.
        split_seed: seed of the random 80/10/10 split.
        min_count: values seen fewer times in the training split go to the field's OOV id.
        cache_dir: cache root (default ~/.cache/harmless).
        max_rows: read only the first `max_rows` lines (smoke runs).
        block_bytes: bytes read per block (bounds the working memory: about 25x this).
    """
    fields = check_fields(fields, CRITEO_FIELDS, "criteo")
    source = Path(path).expanduser()
    if not source.is_absolute():
        source = resolve_data_dir(data_dir) / source
    source = require_file(source, "Criteo TSV (Kaggle train.txt layout)")
    key = {
        "version": FORMAT_VERSION,
        "dataset": "criteo",
        "fields": fields,
        "split_seed": split_seed,
        "min_count": min_count,
        "max_rows": max_rows,
        "sources": [file_stamp(source)],
    }
    folder = resolve_cache_dir(cache_dir) / "ctr" / f"criteo-{digest(key)}"
    if (folder / "meta.json").is_file():
        return CTRData.load(folder)
    start = time.perf_counter()
    with atomic_dir(folder) as tmp:
        values, sizes, oov, facts = _build(
            tmp, source, fields, split_seed, min_count, max_rows, block_bytes
        )
        seconds = time.perf_counter() - start
        meta = {
            "dataset": "criteo",
            "fields": list(fields),
            "field_sizes": sizes,
            "oov_local": oov,
            "preprocess_seconds": round(seconds, 3),
            "key": key,
            **facts,
        }
        write_meta(tmp, meta, values)
    log.info(
        "Criteo: %d rows, %d values in %d fields (min_count %d), %.1f s -> %s",
        facts["rows_read"],
        sum(sizes),
        len(fields),
        min_count,
        seconds,
        folder,
    )
    return CTRData.load(folder)
