"""scripts/archive_runs.py: finished runs' records copied into results/, without checkpoints."""

from __future__ import annotations

import json
import sys

import pytest

from harmless.experiment.tables import collect_runs
from tests.experiment.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import archive_runs  # noqa: E402


def _job(folder, seed, finished=True):
    folder.mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"x" * 100)
    (folder / "config.yaml").write_text(f"seed: {seed}\n")
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "valid/auc": 0.7}) + "\n")
    if finished:
        result = {"seed": seed, "status": "complete", "choices": {"method": "ours"}}
        (folder / "result.json").write_text(json.dumps({**result, "metrics": {"test/auc": 0.8}}))


def test_archive_keeps_finished_records_and_no_checkpoints(tmp_path):
    root = tmp_path / "runs" / "table6" / "cpu"
    _job(root / "method=ours,seed=1", 1)
    _job(root / "method=ours,seed=2", 2, finished=False)
    dest = tmp_path / "results" / "runs"
    copied = archive_runs.archive(root, dest)
    assert [p.name for p in copied] == ["method=ours,seed=1"]
    out = dest / "table6" / "cpu" / "method=ours,seed=1"
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.jsonl", "result.json"]
    frame = collect_runs(dest / "table6" / "cpu").frame
    assert list(frame["seed"]) == [1] and list(frame["test/auc"]) == [0.8]


def test_archive_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder of runs"):
        archive_runs.archive(tmp_path / "nowhere", tmp_path / "out")
