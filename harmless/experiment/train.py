"""The one entry point: `python -m harmless.experiment.train` (console script `harmless-train`).

    harmless-train task=toy method=ours transfer=frage            # one job
    harmless-train -m +experiment=table6 profile=cpu              # one table's sweep
    harmless-train -m +experiment=table6 hydra/launcher=slurm     # the same on a SLURM cluster

Each job writes its run directory (see `harmless.experiment.rundir`); a job whose result.json
exists is skipped unless `force=true`, and `resume=true` continues from the last checkpoint.
"""

from __future__ import annotations

import logging
import random
import shutil
import traceback
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harmless.experiment.distributed import Distributed
from harmless.experiment.loop import TrainConfig, Trainer
from harmless.experiment.method import MethodConfig, build_domains, build_plugin
from harmless.experiment.rundir import RunDir, environment_info, git_info
from harmless.experiment.sinks import JsonlSink, MetricLogger, WandbSink

log = logging.getLogger("harmless.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (third-party code may use the legacy global state)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device=cpu or auto")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads for this job (None keeps torch's default)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int or null, got {threads!r}")
    torch.set_num_threads(threads)


def typed(cls: type, section: DictConfig, name: str) -> Any:
    """Build a validated config dataclass; unknown keys name the allowed ones."""
    values = OmegaConf.to_container(section, resolve=True) or {}
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown {name} key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
    return cls(**values)


def job_identity(cfg: DictConfig) -> dict[str, Any]:
    """What places this job in a table: the group choices, the seed and the recorded params."""
    choices = {}
    if HydraConfig.initialized():
        runtime = HydraConfig.get().runtime.choices
        choices = {k: v for k, v in runtime.items() if not k.startswith("hydra/") and v}
    params = {key: OmegaConf.select(cfg, key) for key in cfg.get("cell_params", [])}
    return {"choices": choices, "params": params, "seed": cfg.seed, "profile": cfg.profile_name}


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved job config without Hydra's own node."""
    values = OmegaConf.to_container(cfg, resolve=False)
    values.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(values), resolve=True)


def run_dir_path(cfg: DictConfig) -> Path:
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    return Path(HydraConfig.get().runtime.output_dir)


def build_logger(cfg: DictConfig, run: RunDir, identity: dict, resume_step: int | None):
    sinks: list[Any] = [JsonlSink(run.metrics_path, resume_step)]
    if cfg.logger.name == "wandb":
        tags = [
            f"task:{identity['choices'].get('task')}",
            f"seed:{cfg.seed}",
            f"profile:{cfg.profile_name}",
            f"dataset:{cfg.logger.get('dataset') or identity['choices'].get('task')}",
        ]
        sinks.append(
            WandbSink(
                project=cfg.logger.project,
                entity=cfg.logger.get("entity"),
                mode=cfg.logger.get("mode"),
                config={**job_config(cfg), "identity": identity},
                run_dir=run.path,
                group=cfg.experiment_name,
                job_type=identity["choices"].get("method"),
                tags=tags,
                name=run.path.name,
            )
        )
    elif cfg.logger.name != "local":
        raise ValueError(f"logger.name={cfg.logger.name!r}; choose local or wandb")
    return MetricLogger(sinks)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one job described by a composed config; returns its result.

    A job that fails leaves `failed.json` (the traceback) in its run directory and re-raises, so a
    sweep's launcher records the failure while the other jobs' results stay intact.
    """
    dist = Distributed.from_env(cfg.get("dist_backend"))
    run_dir = RunDir(run_dir_path(cfg))
    identity = job_identity(cfg)
    if run_dir.has_result() and not cfg.force:
        log.info("skipping %s: result.json exists (force=true reruns it)", run_dir.path)
        return run_dir.read_result()
    try:
        result = _run_job(cfg, run_dir, identity, dist)
    except BaseException:
        if dist.rank == 0:
            run_dir.write_json("failed.json", {"traceback": traceback.format_exc(), **identity})
        raise
    finally:
        dist.close()
    return result


def _run_job(cfg: DictConfig, run: RunDir, identity: dict, dist: Distributed) -> dict[str, Any]:
    method = typed(MethodConfig, cfg.method, "method")
    train_cfg = typed(TrainConfig, cfg.train, "train")
    device = dist.device(resolve_device(cfg.device))
    set_threads(cfg.get("threads"))
    if not cfg.resume and run.checkpoints.exists() and dist.rank == 0:
        log.warning("starting afresh in %s (resume=false): removing old checkpoints", run.path)
        shutil.rmtree(run.checkpoints)
    dist.barrier()

    # Data and model first, seeded alike for every method: methods within a seed are paired.
    seed_everything(cfg.seed)
    task = instantiate(cfg.task, model=instantiate(cfg.model))
    task.setup(device, cfg.seed)
    tables = task.tables()
    domains, report = ({}, {}) if method.mode == "none" else build_domains(tables, method, run.path)
    dist.wrap(task)
    transfer = instantiate(cfg.transfer) if cfg.get("transfer") else None
    plugin = build_plugin(
        tables, domains, method, transfer, list(task.parameters()), cfg.seed, device
    )
    scheduler = cfg.get("scheduler")  # configs/scheduler/none.yaml is empty: a constant lr
    trainer = Trainer(
        task,
        plugin,
        instantiate(cfg.optimizer),
        train_cfg,
        run,
        None,
        device,
        cfg.seed,
        dist.rank,
        dist.world_size,
        scheduler_factory=instantiate(scheduler) if scheduler else None,
    )
    resumed = cfg.resume and trainer.resume()
    logger = build_logger(cfg, run, identity, trainer.step if resumed else None)
    trainer.logger = logger
    if dist.rank == 0:
        run.write_config(OmegaConf.to_yaml(job_config(cfg)))
        meta = {"git": git_info(), "env": environment_info(device), "task": task.describe()}
        run.write_meta({**meta, "domains": report, "identity": identity, "world": dist.world_size})
    try:
        metrics = trainer.fit()
        if dist.rank == 0:
            logger.summary(metrics)
    finally:
        logger.close()
    result = {
        **identity,
        "experiment": cfg.experiment_name,
        "status": "complete",
        "metrics": metrics,
        "best_epoch": trainer.best["epoch"],
        "best_step": trainer.best["step"],
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "wall_time_s": trainer.train_time,
        "git": git_info(),
        "run_dir": str(run.path),
    }
    if dist.rank == 0:
        run.write_result(result)
        (run.path / "failed.json").unlink(missing_ok=True)
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
        log.info("done %s: %s -> %s", identity["choices"].get("method"), shown, run.path)
    return result


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    result = run(cfg)
    monitor = [v for k, v in result["metrics"].items() if k.startswith("valid/")]
    return monitor[0] if monitor else None


if __name__ == "__main__":
    main()
