"""scripts/ctr_value_counts.py: the per-value training counts behind Figure 3."""

from __future__ import annotations

import sys

import numpy as np

from tasks.ctr.movielens import load_movielens
from tests.experiment.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import ctr_value_counts  # noqa: E402


def test_counts_match_the_training_split(ml_dir, cache_dir, tmp_path):
    out = tmp_path / "zip.npy"
    assert (
        ctr_value_counts.main(
            [
                "movielens1m",
                "zip",
                "--out",
                str(out),
                "--data-dir",
                str(ml_dir),
                "--cache-dir",
                str(cache_dir),
            ]
        )
        == 0
    )
    counts = np.load(out)
    data = load_movielens(ml_dir, cache_dir=cache_dir)
    column = np.asarray(data.x["train"][:, data.column("zip")])
    assert counts.shape == (len(data.values["zip"]),)
    assert counts.sum() == len(column)
    for local, n in enumerate(counts):
        assert n == int((column == data.offsets[data.column("zip")] + local).sum())


def test_an_unknown_field_is_a_clear_error(ml_dir, cache_dir, tmp_path, capsys):
    code = ctr_value_counts.main(
        [
            "movielens1m",
            "zipcode",
            "--out",
            str(tmp_path / "x.npy"),
            "--data-dir",
            str(ml_dir),
            "--cache-dir",
            str(cache_dir),
        ]
    )
    assert code == 1
    assert "unknown field 'zipcode'" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()
