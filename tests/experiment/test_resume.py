"""A job killed mid-run resumes from its last checkpoint and ends exactly like an uninterrupted one;
a failing job in a sweep leaves the other jobs' results intact."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.experiment.helpers import train_cli

ARGS = [
    "task=toy",
    "method=ours",
    "transfer=frage",
    "profile=cpu",
    "train.max_epochs=12",
    "train.checkpoint_every=20",
    "train.progress=false",
    "task.train_size=2000",
]
CLOCK_KEYS = ("train/examples_per_s",)


def _run_args(run_dir: Path) -> list[str]:
    return [*ARGS, f"run_dir={run_dir}", f"hydra.run.dir={run_dir}"]


def _records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in CLOCK_KEYS} for x in lines]


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k not in CLOCK_KEYS}


@pytest.mark.slow
def test_killed_job_resumes_to_the_same_metrics(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = train_cli(_run_args(whole), tmp_path / "runs")
    assert proc.wait(timeout=300) == 0, proc.stdout.read()

    proc = train_cli(_run_args(killed), tmp_path / "runs")
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "result.json").exists(), "the job finished before it could be killed"

    proc = train_cli([*_run_args(killed), "resume=true"], tmp_path / "runs")
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert "resumed at step" in output
    assert _metrics(killed) == _metrics(whole)
    assert _records(killed) == _records(whole)


@pytest.mark.slow
def test_a_failing_job_leaves_the_others_results(tmp_path):
    runs = tmp_path / "runs"
    # "fixed" without a transfer loss fails at start; "baseline" after it must still finish.
    args = ["-m", "task=toy", "profile=smoke", "transfer=none", "method=fixed,baseline"]
    proc = train_cli(args, runs)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    jobs = {p.name.split(",")[0]: p for p in (runs / "default" / "smoke").iterdir() if p.is_dir()}
    assert (jobs["method=baseline"] / "result.json").is_file(), output
    assert not (jobs["method=fixed"] / "result.json").exists()
    failure = json.loads((jobs["method=fixed"] / "failed.json").read_text())
    assert "needs a transfer loss" in failure["traceback"]
    # Re-running the sweep skips the finished job.
    proc = train_cli(args, runs)
    assert "skipping" in proc.communicate(timeout=300)[0]
