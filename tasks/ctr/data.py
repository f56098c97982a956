"""CTR datasets as global-id records: the shared container, splits, bucketing and the loaders.

Every field's values get ids in one shared id space: field f owns the ids
offsets[f] .. offsets[f] + field_sizes[f] - 1, so one embedding table serves all fields (as in
PEP, Liu et al. 2021, and torchfm). A dataset is a folder in the cache holding, per split,
`<split>_x.npy` (int32 [rows, fields] global ids) and `<split>_y.npy` (uint8 [rows] labels),
read back as memory maps, plus `values.npz` (the raw value behind each id) and `meta.json`.

Loaders: :func:`tasks.ctr.movielens.load_movielens` and :func:`tasks.ctr.criteo.load_criteo`;
:func:`load_dataset` picks one by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1)  # train, valid; test gets the rest (PEP's random 80/10/10 split)
DATASETS = ("movielens1m", "criteo")
FORMAT_VERSION = 1  # bump when the preprocessing changes, to invalidate old caches


@dataclass
class CTRData:
    """Preprocessed CTR records of one dataset (see the module docstring for the layout).

    Attributes:
        dataset: "movielens1m" or "criteo".
        fields: field names, in column order.
        field_sizes: int64 [F], number of values (ids) of each field, OOV id included.
        oov: per field, the global id of its out-of-vocabulary value, or None (no OOV id).
        x: split -> int32 [rows, F] global ids (memory-mapped).
        y: split -> uint8 [rows] labels (memory-mapped).
        values: field -> array [field_size] of the raw value behind each local id (the OOV id's
            entry is a placeholder).
        path: the cache folder.
        meta: facts recorded at preprocessing time (rows, positives, timing, key).
    """

    dataset: str
    fields: tuple[str, ...]
    field_sizes: np.ndarray
    oov: tuple[int | None, ...]
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    values: dict[str, np.ndarray] = field(repr=False)
    path: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def offsets(self) -> np.ndarray:
        """int64 [F]: the global id of each field's first value."""
        return np.concatenate(([0], np.cumsum(self.field_sizes)[:-1])).astype(np.int64)

    @property
    def num_items(self) -> int:
        return int(self.field_sizes.sum())

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    def column(self, name: str) -> int:
        if name not in self.fields:
            raise KeyError(f"unknown field {name!r}; this dataset has {list(self.fields)}")
        return self.fields.index(name)

    def field_ids(self, name: str) -> np.ndarray:
        """int64 [field_size]: the global ids of field `name`."""
        col = self.column(name)
        start = int(self.offsets[col])
        return np.arange(start, start + int(self.field_sizes[col]), dtype=np.int64)

    def rows(self, split: str) -> int:
        return int(self.y[split].shape[0])

    @classmethod
    def load(cls, path: Path) -> CTRData:
        """Open a cache folder written by :func:`save_arrays` + :func:`write_meta`."""
        meta = json.loads((path / "meta.json").read_text())
        x = {s: np.load(path / f"{s}_x.npy", mmap_mode="r") for s in SPLITS}
        y = {s: np.load(path / f"{s}_y.npy", mmap_mode="r") for s in SPLITS}
        with np.load(path / "values.npz") as archive:
            values = {name: archive[name] for name in meta["fields"]}
        sizes = np.asarray(meta["field_sizes"], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        oov = tuple(
            None if local is None else int(offsets[i] + local)
            for i, local in enumerate(meta["oov_local"])
        )
        return cls(meta["dataset"], tuple(meta["fields"]), sizes, oov, x, y, values, path, meta)


def split_assignment(num_rows: int, seed: int) -> np.ndarray:
    """uint8 [num_rows]: 0 train, 1 valid, 2 test, a random 80/10/10 split seeded by `seed`.

    The sizes are exactly int(0.8 n), int(0.1 n) and the rest, as PEP's random_split. NOTE: PEP
    (torch random_split) also stores each split in random order; here rows keep file order
    inside each split (so the Criteo cache is written sequentially); batches are shuffled anyway
    and PEP's per-batch evaluation protocol gets its random order in tasks.ctr.task.
    """
    n_train = int(num_rows * SPLIT_FRACTIONS[0])
    n_valid = int(num_rows * SPLIT_FRACTIONS[1])
    sizes = (n_train, n_valid, num_rows - n_train - n_valid)
    assignment = np.repeat(np.arange(3, dtype=np.uint8), sizes)
    np.random.default_rng(seed).shuffle(assignment)
    return assignment


def bucket_integers(values: np.ndarray) -> np.ndarray:
    """PEP's (and the Criteo winners') discretisation of counts, vectorised.

    v > 2 -> floor(log(v)^2) (>= 1); v <= 2 -> v - 2 (<= 0), so every value up to 2 is its own
    bucket and never collides with the logarithmic ones.
    """
    values = np.asarray(values, dtype=np.int64)
    logs = np.log(np.maximum(values, 3).astype(np.float64))
    return np.where(values > 2, np.floor(logs * logs).astype(np.int64), values - 2)


def check_fields(fields: Any, allowed: tuple[str, ...], dataset: str) -> tuple[str, ...]:
    if isinstance(fields, str):
        fields = [fields]
    fields = tuple(fields)
    unknown = [f for f in fields if f not in allowed]
    if not fields or unknown or len(set(fields)) != len(fields):
        raise ValueError(
            f"fields for {dataset} must be distinct names from {list(allowed)}, got {list(fields)}"
        )
    return fields


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """`data_dir`, else $HARMLESS_DATA_DIR; FileNotFoundError saying how to set it."""
    if data_dir is None:
        data_dir = os.environ.get("HARMLESS_DATA_DIR")
    if data_dir is None:
        raise FileNotFoundError(
            "no data directory: pass data_dir=... or set HARMLESS_DATA_DIR to the folder that "
            "holds movielens-1m/ and criteo/ (python -m tasks.ctr.download can fill it)"
        )
    return Path(data_dir).expanduser()


def require_file(path: Path, what: str, hint: str = "") -> Path:
    """`path` if it is a file, else FileNotFoundError naming where it looked and the fixes."""
    if path.is_file():
        return path
    raise FileNotFoundError(
        f"{what} not found: looked for {path}. Set HARMLESS_DATA_DIR (or pass data_dir=) to the "
        f"folder that holds it, or fetch it with `python -m tasks.ctr.download`.{hint}"
    )


def save_arrays(folder: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    np.save(folder / f"{split}_x.npy", np.ascontiguousarray(x, dtype=np.int32))
    np.save(folder / f"{split}_y.npy", np.ascontiguousarray(y, dtype=np.uint8))


def write_meta(folder: Path, meta: dict[str, Any], values: dict[str, np.ndarray]) -> None:
    np.savez(folder / "values.npz", **values)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")


def split_facts(y: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Rows and positive share of each split."""
    return {
        s: {"rows": int(y[s].shape[0]), "positive": float(np.mean(y[s])) if y[s].size else 0.0}
        for s in SPLITS
    }


def load_dataset(
    dataset: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> CTRData:
    """Load (building and caching on first use) `dataset` ("movielens1m" or "criteo").

    `options` go to the loader: fields, split_seed, max_rows, and ratings_file (MovieLens) or
    path / min_count (Criteo).
    """
    if dataset == "movielens1m":
        from tasks.ctr.movielens import load_movielens

        return load_movielens(data_dir, cache_dir=cache_dir, **options)
    if dataset == "criteo":
        from tasks.ctr.criteo import load_criteo

        return load_criteo(data_dir, cache_dir=cache_dir, **options)
    raise ValueError(f"unknown CTR dataset {dataset!r}; allowed: {list(DATASETS)}")
