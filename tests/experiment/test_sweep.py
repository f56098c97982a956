"""A multirun of 2 methods x 2 seeds on the toy task, then its table built from the run files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.experiment.helpers import ROOT, train_cli


@pytest.mark.slow
def test_multirun_produces_a_table(tmp_path):
    runs = tmp_path / "runs"
    args = ["-m", "+experiment=toy", "profile=smoke", "method=baseline,ours", "seed=1,2"]
    proc = train_cli(args, runs)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    jobs = sorted(p.name for p in (runs / "toy" / "smoke").iterdir() if p.is_dir())
    assert jobs == [f"method={m},seed={s}" for m in ("baseline", "ours") for s in (1, 2)]

    out = tmp_path / "table"
    cmd = [
        sys.executable,
        "scripts/make_table.py",
        "--spec",
        "results/specs/toy.yaml",
        "--runs",
        str(runs / "toy" / "smoke"),
        "--seeds",
        "1",
        "2",
        "--out",
        str(out),
    ]
    table = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert table.returncode == 0, table.stderr
    markdown = out.with_suffix(".md").read_text()
    assert "make_table.py" in markdown  # stamped with its command
    csv = out.with_suffix(".csv").read_text()
    assert csv.count("missing") >= 1  # "fixed" was not run: shown as missing, never invented
    assert "n=2" in markdown  # ours - baseline paired over both seeds
