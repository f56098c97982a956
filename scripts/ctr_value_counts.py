"""Save the training-split counts of one CTR field's values (the input of Figure 3).

    python scripts/ctr_value_counts.py movielens1m zip --out results/figures/ml1m_zip_counts.npy \
        --ratings-file ratings_no_timestamp.dat --fields gender age occupation zip year genres
    python scripts/ctr_value_counts.py criteo C3 --out results/figures/criteo_c3_counts.npy \
        --criteo-path criteo-sample/criteo_head10000_train.tsv --min-count 2

Reads the data the way the CTR task does (HARMLESS_DATA_DIR, or --data-dir; the preprocessed
cache is built on first use) and writes an int64 array with one count per value of the field, in
the field's id order (the out-of-vocabulary value included where the field has one).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from harmless.atomic import atomic_open
from tasks.ctr.data import load_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["movielens1m", "criteo"])
    parser.add_argument("field", help="a field name, e.g. zip (MovieLens-1M) or C3 (Criteo)")
    parser.add_argument("--out", required=True, help="the .npy file to write")
    parser.add_argument("--data-dir", default=None, help="default: $HARMLESS_DATA_DIR")
    parser.add_argument("--cache-dir", default=None, help="default: ~/.cache/harmless")
    parser.add_argument("--fields", nargs="+", default=None, help="fields to load (default all)")
    parser.add_argument("--ratings-file", default=None, help="MovieLens-1M ratings file")
    parser.add_argument("--criteo-path", default=None, help="Criteo TSV under the data dir")
    parser.add_argument("--min-count", type=int, default=None, help="Criteo's rare threshold")
    parser.add_argument("--max-rows", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = {"max_rows": args.max_rows}
    if args.fields:
        options["fields"] = args.fields
    if args.min_count is not None:
        options["min_count"] = args.min_count
    if args.ratings_file:
        options["ratings_file"] = args.ratings_file
    if args.criteo_path:
        options["path"] = args.criteo_path
    try:
        data = load_dataset(args.dataset, args.data_dir, args.cache_dir, **options)
        ids = data.field_ids(args.field)
    except (OSError, ValueError, KeyError) as err:
        print(err, file=sys.stderr)
        return 1
    column = np.asarray(data.x["train"][:, data.column(args.field)]).astype(np.int64)
    counts = np.bincount(column - int(ids[0]), minlength=len(ids)).astype(np.int64)
    out = Path(args.out)
    with atomic_open(out) as handle:
        np.save(handle, counts)
    logging.info(
        "%s/%s: %d values, %d training rows -> %s",
        args.dataset,
        args.field,
        len(counts),
        int(counts.sum()),
        out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
