"""Data-parallel runs under `torchrun`: process group, device per rank, DDP wrapping.

    torchrun --nproc-per-node 2 -m harmless.experiment.train task=... method=ours

DDP averages the main gradients during `loss.backward()`; the plug-in then combines them with the
transfer gradients, which every rank computes identically (same weights, same seeded sampling,
rows of the batch united across ranks, main loss averaged across ranks). So every rank applies
the same update and the replicas stay equal.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, backend: str | None = None) -> Distributed:
        """Join the process group that torchrun describes in the environment (if any)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
            dist.init_process_group(backend=backend)
        self = cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
        log.info("rank %d of %d (backend %s)", self.rank, self.world_size, dist.get_backend())
        return self

    def device(self, device: torch.device) -> torch.device:
        if device.type == "cuda" and self.world_size > 1:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, task) -> None:
        """Wrap the task's model in DDP (after the tables were taken from the bare model)."""
        if self.world_size > 1:
            ids = [self.local_rank] if next(task.model.parameters()).is_cuda else None
            task.model = DistributedDataParallel(task.model, device_ids=ids)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
