"""Compose the project's real configs the way `harmless-train` does, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def compose_job(overrides: list[str], run_dir: Path) -> DictConfig:
    """The composed config of one job, with Hydra's runtime choices set as in a real run."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
        cfg.train.progress = False
    return cfg


def train_cli(args: list[str], runs_dir: Path, timeout: int = 300, **popen) -> subprocess.Popen:
    """Start `python -m harmless.experiment.train ARGS` with runs under `runs_dir`."""
    env = {**os.environ, "HARMLESS_RUNS_DIR": str(runs_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "harmless.experiment.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
