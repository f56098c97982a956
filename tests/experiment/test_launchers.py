"""The cluster path (submitit, run here with its local executor) and the W&B sink (offline)."""

from __future__ import annotations

import json

import pytest

from harmless.experiment.train import run
from tests.experiment.helpers import compose_job, train_cli


@pytest.mark.slow
def test_submitit_launcher_runs_jobs(tmp_path):
    # hydra/launcher=local is submitit's local executor: the code path of hydra/launcher=slurm.
    runs = tmp_path / "runs"
    args = [
        "-m",
        "task=toy",
        "profile=smoke",
        "method=baseline",
        "seed=1,2",
        "hydra/launcher=local",
    ]
    proc = train_cli(args, runs)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    results = sorted((runs / "default" / "smoke").glob("*/result.json"))
    assert [json.loads(p.read_text())["seed"] for p in results] == [1, 2]


def test_slurm_launcher_config_is_complete(tmp_path):
    cfg = compose_job(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu"
    for key in ("gpus_per_node", "cpus_per_task", "timeout_min", "array_parallelism", "mem_gb"):
        assert launcher[key] is not None, key


@pytest.mark.slow
def test_wandb_offline_logs_beside_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = ["profile=smoke", "method=ours", "transfer=frage", "logger=wandb"]
    result = run(compose_job(overrides, tmp_path))
    assert result["status"] == "complete"
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert any(offline[0].glob("*.wandb"))
