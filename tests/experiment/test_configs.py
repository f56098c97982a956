"""Config smoke tests: every experiment file composes and runs; bad values stop at start."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hydra.errors import ConfigCompositionException

from harmless.experiment.train import run
from tests.experiment.helpers import CONFIGS, compose_job

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


def _jobs(cfg) -> list[list[str]]:
    """Every swept value at least once (seed excluded): one job per method with the other swept
    parameters at their first value, then one job per further value of each other parameter."""
    params = {
        k: [v.strip() for v in str(vals).split(",")]
        for k, vals in (cfg.hydra.sweeper.get("params") or {}).items()
        if k != "seed"
    }
    params.setdefault("method", ["baseline"])
    first = {k: v[0] for k, v in params.items()}
    jobs = [{**first, "method": m} for m in params["method"]]
    jobs += [{**first, k: v} for k, vals in params.items() if k != "method" for v in vals[1:]]
    return [[f"{k}={v}" for k, v in job.items()] for job in jobs]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_in_the_smoke_profile(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("HARMLESS_CACHE_DIR", str(tmp_path / "cache"))
    base = [f"+experiment={experiment}", "profile=smoke"]
    for i, overrides in enumerate(_jobs(compose_job(base, tmp_path / "probe"))):
        run_dir = tmp_path / f"job{i}"
        result = run(compose_job(base + overrides, run_dir))
        assert result["status"] == "complete", overrides
        assert result["steps"] >= 1
        monitored = [v for k, v in result["metrics"].items() if k.startswith("valid/")]
        assert monitored and math.isfinite(monitored[0]), (overrides, result["metrics"])
        assert (run_dir / "result.json").is_file()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_sweeps_into_its_own_folder(experiment, tmp_path):
    # runs/<experiment_name>/<profile>/<overrides>: two files with one name would share job
    # folders, and the second sweep would skip the first one's finished jobs as its own.
    cfg = compose_job([f"+experiment={experiment}", "profile=smoke"], tmp_path)
    assert cfg.experiment_name == experiment


def test_wikitext103_cpu_profile_is_a_reduced_qrnn(tmp_path):
    cfg = compose_job(["+experiment=table1_wt103", "profile=cpu"], tmp_path)
    assert (cfg.model.nhid, cfg.model.nlayers, cfg.train.max_epochs) == (512, 2, 2)
    assert cfg.task.max_train_tokens == 1_000_000 and list(cfg.scheduler.milestones) == [1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method.mode=lexicon", "method.mode='lexicon' is not allowed; choose one of: none, fixed"),
        ("method.scope=everything", "method.scope='everything' is not allowed; choose one of"),
        ("train.amp=fp8", "train.amp='fp8' is not allowed"),
        ("+method.unknown_knob=3", "unknown method key(s) ['unknown_knob']; allowed:"),
        ("threads=0", "threads must be a positive int or null, got 0"),
    ],
)
def test_bad_values_stop_at_start_naming_the_allowed_set(override, message, tmp_path):
    cfg = compose_job(["profile=smoke", "method=ours", "transfer=frage", override], tmp_path)
    with pytest.raises(
        ValueError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        run(cfg)
    assert not (tmp_path / "result.json").exists()


def test_unknown_group_option_names_the_available_ones(tmp_path):
    with pytest.raises(ConfigCompositionException) as err:
        compose_job(["method=lexicon"], tmp_path)
    text = str(err.value.__cause__ or err.value)
    assert "lexicon" in text and "ours" in text and "baseline" in text


def test_threads_sets_torch_threads_for_the_job(tmp_path):
    before = torch.get_num_threads()
    try:
        run(compose_job(["profile=smoke", "method=baseline", "threads=1"], tmp_path))
        meta = json.loads((tmp_path / "meta.json").read_text())
        assert meta["env"]["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_scheduler_divides_the_learning_rate_at_its_milestone(tmp_path):
    overrides = ["profile=smoke", "scheduler=multistep", "scheduler.milestones=[1]"]
    overrides += ["train.max_epochs=2", "train.max_steps=null", "optimizer.lr=0.02"]
    run(compose_job(overrides, tmp_path))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["epoch"]: r["train/lr"] for r in records if "train/lr" in r}
    assert lrs[0] == pytest.approx(0.02) and lrs[1] == pytest.approx(0.002), lrs


def test_run_directory_contents(tmp_path):
    overrides = ["profile=smoke", "method=ours", "transfer=frage", "seed=3", "train.max_steps=null"]
    cfg = compose_job(overrides, tmp_path)
    run(cfg)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert set(meta["git"]) == {"commit", "dirty"}
    assert meta["env"]["torch"].startswith("2.")
    assert (tmp_path / "config.yaml").read_text().count("seed: 3") == 1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("step" in r and "epoch" in r for r in records)
    assert any("lexico/lambda_mean" in r for r in records)
    assert any("valid/loss" in r for r in records)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["choices"]["method"] == "ours" and result["seed"] == 3
    assert {"valid/loss", "test/loss", "test/acc"} <= set(result["metrics"])
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    # A second run with the same directory is skipped: the result is read back, not recomputed.
    assert run(cfg)["metrics"] == result["metrics"]
