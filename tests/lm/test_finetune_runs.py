"""scripts/finetune_runs.py: the finetune stage chained onto finished LM runs."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml

from tests.experiment.helpers import ROOT, train_cli

sys.path.insert(0, str(ROOT / "scripts"))
import finetune_runs  # noqa: E402


def fake_run(folder, overrides, status="complete"):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "checkpoints").mkdir()
    torch.save({"model": {}}, folder / "checkpoints" / "best.pt")
    (folder / "result.json").write_text(json.dumps({"status": status}))
    return folder


def test_command_keeps_the_job_and_adds_the_finetune_stage(tmp_path):
    root = tmp_path / "runs" / "table1" / "paper"
    run = fake_run(
        root / "method=ours,seed=2",
        ["method=ours", "seed=2", "+experiment=table1", "profile=paper", "resume=True"],
    )
    fake_run(root / "method=baseline,seed=2", ["method=baseline"], status="running")
    assert finetune_runs.finished_runs([str(root)]) == [run]
    command = finetune_runs.finetune_command(run, ["hydra/launcher=slurm"])
    assert command[3:8] == ["-m", "method=ours", "seed=2", "+experiment=table1", "profile=paper"]
    assert "resume=True" not in command  # replaced by the finetune job's own resume=true
    assert "task.finetune=true" in command
    best = (run / "checkpoints" / "best.pt").resolve()
    assert f"task.init_checkpoint='{best}'" in command
    out = (tmp_path / "runs" / "table1" / "paper-finetune" / "method=ours,seed=2").resolve()
    assert f"run_dir='{out}'" in command
    assert command[-2:] == ["resume=true", "hydra/launcher=slurm"]


def test_a_run_without_its_checkpoint_is_reported(tmp_path, capsys):
    run = fake_run(tmp_path / "r" / "job", ["method=ours"])
    (run / "checkpoints" / "best.pt").unlink()
    assert finetune_runs.main(["--runs", str(tmp_path / "r"), "--dry-run"]) == 1
    assert "best.pt is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_chained_on_a_smoke_run(wt2_data_dir, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    # a whole (tiny) epoch, so that model selection writes best.pt
    args = ["-m", "+experiment=table1", "profile=smoke", "method=baseline", "seed=1"]
    args.append("train.max_steps=null")
    proc = train_cli(args, runs)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    monkeypatch.setenv("HARMLESS_RUNS_DIR", str(runs))
    assert finetune_runs.main(["--runs", str(runs / "table1" / "smoke")]) == 0
    tuned = runs / "table1" / "smoke-finetune" / "method=baseline,seed=1,train.max_steps=null"
    result = json.loads((tuned / "result.json").read_text())
    assert result["status"] == "complete" and result["experiment"] == "table1"
    config = yaml.safe_load((tuned / "config.yaml").read_text())
    assert config["task"]["finetune"] is True
    assert config["task"]["init_checkpoint"].endswith(
        "seed=1,train.max_steps=null/checkpoints/best.pt"
    )
