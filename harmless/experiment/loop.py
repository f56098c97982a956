"""The one training loop every task without its own engine shares (LM and CTR use it).

Per step: the task's forward pass gives the main loss and the batch's ids; the plug-in replaces
`loss.backward()` and writes the method's combined gradients; then clipping (on the combined
gradient), the optimizer step and the task's after-step hook. Per epoch: validation (under the
task's evaluation weights), model selection on the monitored metric, early stopping, the task's
epoch hook (NT-ASGD), and a checkpoint. A killed job resumes from its last checkpoint and ends with
the same metrics as an uninterrupted one (batch order is a function of seed and epoch alone).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from harmless.experiment.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from harmless.experiment.rundir import RunDir
from harmless.experiment.sinks import MetricLogger
from harmless.experiment.task import Task
from harmless.plugin import HarmlessTransfer

log = logging.getLogger(__name__)

AMP_MODES = ("off", "bf16", "fp16")


@dataclass
class TrainConfig:
    """The training axis (the profile sets most of it)."""

    max_epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (a budget)
    eval_every: int = 1  # validate every N epochs
    test_every: int | None = None  # also log test metrics every N epochs (learning curves)
    patience: int | None = None  # early stopping: validations without improvement
    clip: float | None = None  # max gradient norm, applied to the combined gradient
    checkpoint_every: int | None = None  # steps between checkpoints (and at each epoch end)
    log_every: int = 50  # steps between train-metric records
    amp: str = "off"  # off, bf16 (autocast) or fp16 (autocast + GradScaler, CUDA)
    select_best: bool = True  # report test metrics of the best validation checkpoint
    progress: bool = True  # progress bars with rate and ETA

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"train.amp={self.amp!r} is not allowed; choose one of {AMP_MODES}")
        if self.max_epochs < 1 or self.eval_every < 1 or self.log_every < 1:
            raise ValueError("train.max_epochs, eval_every and log_every must be >= 1")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


class Trainer:
    """Runs one job: train, validate, select, test. Rank zero alone writes files and logs."""

    def __init__(
        self,
        task: Task,
        plugin: HarmlessTransfer,
        optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        cfg: TrainConfig,
        run: RunDir | None,
        logger: MetricLogger,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        scheduler_factory: Callable[[torch.optim.Optimizer], Any] | None = None,
    ) -> None:
        self.task, self.plugin, self.cfg, self.run, self.logger = task, plugin, cfg, run, logger
        self.device, self.seed, self.rank, self.world_size = device, seed, rank, world_size
        self.optimizer = optimizer_factory(task.parameters())
        # An epoch-wise learning-rate schedule (e.g. the QRNN's lr / 10 at epoch 12).
        self.scheduler = scheduler_factory(self.optimizer) if scheduler_factory else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        self.step = 0
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch already trained
        self.best: dict[str, Any] = {"value": None, "epoch": None, "step": None}
        self.bad_evals = 0
        self.examples = 0
        self.train_time = 0.0
        self.stop_requested = False

    def request_stop(self) -> None:
        """Ask the loop to stop after this epoch (a task's finetune stage uses it)."""
        self.stop_requested = True

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": unwrap(self.task.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_class": type(self.optimizer).__name__,
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "plugin": self.plugin.state_dict(),
            "task": self.task.state_dict(),
            "loop": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "best": dict(self.best),
                "bad_evals": self.bad_evals,
                "examples": self.examples,
                "train_time": self.train_time,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.task.model).load_state_dict(state["model"])
        self.task.load_state_dict(state["task"])
        self.task.on_resume(self)  # may swap the optimizer class (NT-ASGD) before its state
        if type(self.optimizer).__name__ != state["optimizer_class"]:
            raise RuntimeError(
                f"checkpoint optimizer is {state['optimizer_class']} but the task rebuilt "
                f"{type(self.optimizer).__name__}: its on_resume hook must restore the switch"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.plugin.load_state_dict(state["plugin"])
        loop = state["loop"]
        self.step, self.epoch, self.batch_in_epoch = (
            loop["step"],
            loop["epoch"],
            loop["batch_in_epoch"],
        )
        self.best, self.bad_evals = dict(loop["best"]), loop["bad_evals"]
        self.examples, self.train_time = loop["examples"], loop["train_time"]
        set_rng_state(state["rng"])

    def save(self) -> None:
        if self.run is not None and self.rank == 0:
            save_checkpoint(self.run.last_checkpoint, self.state_dict())

    def resume(self) -> bool:
        """Continue from the last checkpoint if there is one; returns whether it did."""
        if self.run is None or not self.run.last_checkpoint.is_file():
            return False
        self.load_state_dict(load_checkpoint(self.run.last_checkpoint, self.device))
        log.info(
            "resumed at step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch_in_epoch
        )
        return True

    # ----------------------------------------------------------------------------- training

    def fit(self) -> dict[str, float]:
        """Train to the epoch or step budget (or early stop), then evaluate; returns metrics."""
        while self.epoch < self.cfg.max_epochs and not self._budget_spent():
            self._train_epoch()
            if self.batch_in_epoch:  # stopped mid-epoch by the step budget
                break
            if not self._end_of_epoch():
                break
        return self._final_metrics()

    def _budget_spent(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    def _epoch_batches(self) -> tuple[Iterable[Any], int | None]:
        """This epoch's batches for this rank, from a generator seeded by (seed, epoch)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        batches = self.task.train_batches(self.epoch, generator)
        total = len(batches) if hasattr(batches, "__len__") else None
        if self.world_size > 1:
            batches = itertools.islice(batches, self.rank, None, self.world_size)
            total = None if total is None else len(range(self.rank, total, self.world_size))
        skip = self.batch_in_epoch
        batches = itertools.islice(batches, skip, None)
        return batches, None if total is None else total - skip

    def _train_epoch(self) -> None:
        batches, total = self._epoch_batches()
        bar = tqdm(
            batches,
            total=total,
            desc=f"epoch {self.epoch + 1}/{self.cfg.max_epochs}",
            disable=not self.cfg.progress or self.rank != 0,
            mininterval=2.0,
            leave=False,
            dynamic_ncols=True,
        )
        window: dict[str, list[float]] = defaultdict(list)
        start = time.perf_counter()
        for batch in bar:
            stats = self._train_step(batch)
            for key, value in stats.items():
                window[key].append(value)
            self.step += 1
            self.batch_in_epoch += 1
            if self.step % self.cfg.log_every == 0:
                self._log_train(window, time.perf_counter() - start)
                bar.set_postfix(loss=f"{sum(window['train/loss']) / len(window['train/loss']):.4f}")
                window.clear()
            if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.train_time += time.perf_counter() - start
                start = time.perf_counter()
                self.save()
            if self._budget_spent():
                break
        else:
            self.batch_in_epoch = 0
        bar.close()
        self.train_time += time.perf_counter() - start

    def _train_step(self, batch: Any) -> dict[str, float]:
        self.task.model.train()
        with self._autocast():
            out = self.task.train_loss(batch)
        value = out.loss.detach().float()
        if out.loss.numel() != 1 or not torch.isfinite(value):
            raise FloatingPointError(
                f"non-finite training loss {value.tolist()} at step {self.step} (epoch "
                f"{self.epoch + 1}); metrics {out.metrics}. Lower the learning rate or check the "
                "input data; resume=true restarts from the last checkpoint"
            )
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.scaler if self.scaler.is_enabled() else None
        diagnostics = self.plugin.backward(out.loss, out.ids, scaler=scaler)
        if self.cfg.clip:
            if scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip)
        self._optimizer_step(out.lr_scale)
        self.task.after_step()
        self.examples += out.num_examples
        stats = {"train/loss": float(value), "train/lr": self.optimizer.param_groups[0]["lr"]}
        stats.update({f"train/{k}": float(v) for k, v in out.metrics.items()})
        stats.update({f"lexico/{k}": float(v) for k, v in diagnostics.items()})
        return stats

    def _optimizer_step(self, lr_scale: float) -> None:
        base = [group["lr"] for group in self.optimizer.param_groups]
        if lr_scale != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] * lr_scale
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        for group, lr in zip(self.optimizer.param_groups, base, strict=True):
            group["lr"] = lr

    def _autocast(self):
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _log_train(self, window: dict[str, list[float]], elapsed: float) -> None:
        record = {key: sum(values) / len(values) for key, values in window.items() if values}
        if elapsed > 0:
            record["train/examples_per_s"] = self.examples / max(self.train_time + elapsed, 1e-9)
        if self.rank == 0:
            self.logger.log(record, self.step, self.epoch)

    # ----------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.task.model.eval()
        with self.task.eval_weights():
            metrics = self.task.evaluate(split)
        return {f"{split}/{k}": float(v) for k, v in metrics.items()}

    def _improved(self, value: float) -> bool:
        best = self.best["value"]
        if best is None:
            return True
        return value < best if self.task.monitor_mode == "min" else value > best

    def _end_of_epoch(self) -> bool:
        """Validate, select, maybe stop; returns False when training should stop."""
        self.epoch += 1
        if self.scheduler is not None:
            self.scheduler.step()
        keep_going = True
        if self.epoch % self.cfg.eval_every == 0 or self.epoch == self.cfg.max_epochs:
            metrics = self.evaluate("valid")
            if self.cfg.test_every and self.epoch % self.cfg.test_every == 0:
                metrics.update(self.evaluate("test"))
            metrics.update({f"transfer/{k}": v for k, v in self.plugin.transfer_value().items()})
            value = metrics[f"valid/{self.task.monitor}"]
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"valid/{self.task.monitor} is {value} at epoch {self.epoch}"
                )
            if self._improved(value):
                self.best = {"value": value, "epoch": self.epoch, "step": self.step}
                self.bad_evals = 0
                self._save_best()
            else:
                self.bad_evals += 1
            if self.rank == 0:
                self.logger.log(metrics, self.step, self.epoch)
                log.info(
                    "epoch %d step %d %s (best %.4f at epoch %s)",
                    self.epoch,
                    self.step,
                    _fmt(metrics),
                    self.best["value"],
                    self.best["epoch"],
                )
            self.task.on_epoch_end(self.epoch, metrics, self)
            if self.cfg.patience is not None and self.bad_evals >= self.cfg.patience:
                log.info("early stop: no improvement in %d validations", self.bad_evals)
                keep_going = False
            if self.stop_requested:
                log.info("stop requested by the task at epoch %d", self.epoch)
                keep_going = False
        self.save()
        return keep_going

    def _save_best(self) -> None:
        if self.run is None or self.rank != 0 or not self.cfg.select_best:
            return
        with self.task.eval_weights():
            state = {k: v.detach().clone() for k, v in unwrap(self.task.model).state_dict().items()}
        save_checkpoint(self.run.best_checkpoint, {"model": state, "epoch": self.epoch})

    def _final_metrics(self) -> dict[str, float]:
        """Valid and test metrics of the selected model (the best validation checkpoint)."""
        use_best = (
            self.cfg.select_best and self.run is not None and self.run.best_checkpoint.is_file()
        )
        if use_best:
            best = load_checkpoint(self.run.best_checkpoint, self.device)
            unwrap(self.task.model).load_state_dict(best["model"])
            self.task.model.eval()
            with torch.no_grad():
                metrics = {f"valid/{k}": float(v) for k, v in self.task.evaluate("valid").items()}
                metrics.update(
                    {f"test/{k}": float(v) for k, v in self.task.evaluate("test").items()}
                )
        else:
            metrics = {**self.evaluate("valid"), **self.evaluate("test")}
        metrics.update({f"transfer/{k}": v for k, v in self.plugin.transfer_value().items()})
        if self.train_time > 0:
            metrics["train/examples_per_s"] = self.examples / self.train_time
        return metrics


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "/" in k)
