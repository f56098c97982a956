"""The interface between a task family and the shared run layer.

A task owns its data, its model and its metrics; the run layer owns everything else: the training
loop, the method (which transfer loss, selection, the plug-in's mode), the optimizer, logging,
checkpoints and results. Tasks are chosen by `_target_` in config, so the run layer never imports
a task by name.

The loop calls, in order:

    task.setup(device, seed)                       # build data and model (seeded)
    task.tables()                                  # embedding tables the method applies to
    for epoch ...:
        for batch in task.train_batches(epoch, generator):
            out = task.train_loss(batch)           # forward pass: main loss and the batch's ids
            plugin.backward(out.loss, out.ids)     # the method's combination
            clip, optimizer.step(), task.after_step()
        task.evaluate("valid") -> {"loss": .., "auc": ..}   # logged as valid/<name>
        task.on_epoch_end(epoch, metrics, loop)   # e.g. NT-ASGD switches the optimizer
    task.evaluate("test")
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


@dataclass
class TableInfo:
    """An embedding table with what the method needs to build its domains.

    Attributes:
        weight: the [num_rows, dim] parameter the transfer acts on.
        counts: training frequency of each row (length num_rows).
        cooccurrence: anchors -> sparse [num_rows, len(anchors)] co-occurrence counts (window
            counts for token streams, same-record counts for CTR records).
        items: the row ids that take part in the split (default: all rows); a CTR field that
            shares one table with other fields lists its own id range here.
        exclude: row ids never in either domain (padding, <unk>, out-of-vocabulary rows).
    """

    weight: nn.Parameter
    counts: np.ndarray
    cooccurrence: Callable[[np.ndarray], sp.csr_matrix]
    items: np.ndarray | None = None
    exclude: tuple[int, ...] = ()


@dataclass
class StepOutput:
    """What one training batch gives the loop: the main loss, ids per table, extra metrics."""

    loss: torch.Tensor
    ids: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    num_examples: int = 0  # examples or tokens in the batch, for the throughput counter
    lr_scale: float = 1.0  # the loop scales every group's lr by this for this step (AWD-LSTM's
    # variable-length BPTT rescales lr by seq_len / bptt)


class Task(abc.ABC):
    """Base class of every task. Subclasses are built by Hydra from `task` configs."""

    #: the validation metric that early stopping and model selection watch, and its direction
    monitor: str = "loss"
    monitor_mode: str = "min"
    model: nn.Module

    @abc.abstractmethod
    def setup(self, device: torch.device, seed: int) -> None:
        """Load (or build and cache) the data, and build the model on `device`."""

    @abc.abstractmethod
    def tables(self) -> dict[str, TableInfo]:
        """The embedding tables the method may apply transfer to, by name."""

    @abc.abstractmethod
    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterable[Any]:
        """One epoch of training batches; shuffle with `generator` alone (paired seeds)."""

    @abc.abstractmethod
    def train_loss(self, batch: Any) -> StepOutput:
        """Forward pass on one batch in training mode."""

    @abc.abstractmethod
    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on `split` ("valid" or "test") in evaluation mode, names without the split."""

    def parameters(self) -> Iterable[nn.Parameter]:
        """Parameters the optimizer trains (default: all the model's)."""
        return self.model.parameters()

    def after_step(self) -> None:
        """Called after each optimizer step (weight averaging, say)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], loop: Any) -> None:
        """Called after each validation; may change `loop.optimizer` (NT-ASGD, say)."""

    def on_resume(self, loop: Any) -> None:
        """Called on resume after `load_state_dict`, before the optimizer's state is loaded:
        a task that replaced `loop.optimizer` during training (NT-ASGD) replaces it again here."""

    @contextlib.contextmanager
    def eval_weights(self) -> Iterator[None]:
        """Context in which evaluation runs (swap in averaged or EMA weights, say)."""
        yield

    def state_dict(self) -> dict[str, Any]:
        """Task state beyond the model's (averaged weights, switch flags) for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def describe(self) -> dict[str, Any]:
        """Facts worth recording in the run directory (dataset sizes, parameter counts)."""
        return {}
