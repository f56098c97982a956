"""scripts/run_diagnostics.py: late-training means of logged diagnostics, grouped over seeds."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.experiment.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import run_diagnostics  # noqa: E402


def _run(folder, method, seed, accs):
    folder.mkdir(parents=True)
    records = [{"step": i, "lexico/disc_acc": a} for i, a in enumerate(accs)]
    records.insert(1, {"step": 0, "valid/auc": 0.8})  # an evaluation record, without the metric
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = {"seed": seed, "status": "complete", "choices": {"method": method}, "metrics": {}}
    (folder / "result.json").write_text(json.dumps(result))


def test_late_means_grouped_by_method(tmp_path):
    _run(tmp_path / "a", "ours", 1, [0.9, 0.5, 0.6])
    _run(tmp_path / "b", "ours", 2, [0.9, 0.7, 0.8])
    _run(tmp_path / "c", "fixed", 1, [0.55])
    table = run_diagnostics.diagnostics([tmp_path], ["choices.method"], ["lexico/disc_acc"], 2)
    rows = {r["choices.method"]: r for _, r in table.iterrows()}
    assert rows["ours"]["lexico/disc_acc mean"] == pytest.approx((0.55 + 0.75) / 2)
    assert rows["ours"]["lexico/disc_acc std"] == pytest.approx(0.2 / math.sqrt(2))
    assert rows["ours"]["n"] == 2 and rows["fixed"]["n"] == 1
    assert rows["fixed"]["lexico/disc_acc mean"] == pytest.approx(0.55)
    text = run_diagnostics.to_markdown(table, ["choices.method"], ["lexico/disc_acc"], 2)
    assert "| ours | 0.650 ± 0.141 | 2 |" in text


def test_a_metric_never_logged_is_missing_and_a_bad_line_is_named(tmp_path):
    _run(tmp_path / "a", "ours", 1, [0.5])
    table = run_diagnostics.diagnostics([tmp_path], ["choices.method"], ["lexico/lambda_mean"], 5)
    assert math.isnan(table.iloc[0]["lexico/lambda_mean mean"])
    with (tmp_path / "a" / "metrics.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:3: not a JSON"):
        run_diagnostics.diagnostics([tmp_path], ["choices.method"], ["lexico/disc_acc"], 5)


def test_unknown_group_key_is_named(tmp_path):
    _run(tmp_path / "a", "ours", 1, [0.5])
    with pytest.raises(ValueError, match="not run fields"):
        run_diagnostics.diagnostics([tmp_path], ["choices.model"], ["lexico/disc_acc"], 5)
