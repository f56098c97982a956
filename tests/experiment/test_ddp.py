"""Two CPU processes on gloo: after several lexico steps the replicas are still equal."""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from harmless.experiment.distributed import Distributed
from harmless.experiment.loop import TrainConfig, Trainer, unwrap
from harmless.experiment.method import MethodConfig, build_domains, build_plugin
from harmless.experiment.sinks import MetricLogger
from harmless.experiment.train import seed_everything
from harmless.losses import FRAGE
from tasks.toy.task import BagClassifier, ToyTask


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, out: str, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    dist = Distributed.from_env("gloo")
    seed_everything(1)
    cpu = torch.device("cpu")
    task = ToyTask(model=partial(BagClassifier, dim=8), train_size=512, eval_size=64)
    task.setup(cpu, 1)
    initial = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    tables = task.tables()
    method = MethodConfig(name="ours", mode="lexico", select=True)
    domains, _ = build_domains(tables, method)
    dist.wrap(task)
    plugin = build_plugin(tables, domains, method, FRAGE, list(task.parameters()), 1, cpu)
    cfg = TrainConfig(max_epochs=1, max_steps=6, progress=False, clip=1.0)
    optimizer = partial(torch.optim.Adam, lr=1e-2)
    trainer = Trainer(task, plugin, optimizer, cfg, None, MetricLogger([]), cpu, 1, rank, world)
    trainer.fit()
    final = {n: p.detach().clone() for n, p in unwrap(task.model).named_parameters()}
    torch.save({"initial": initial, "final": final}, Path(out) / f"rank{rank}.pt")
    dist.close()


@pytest.mark.slow
def test_replicas_stay_equal_under_ddp(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path), _free_port()), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][name]), name
        assert not torch.equal(value, ranks[0]["initial"][name]), f"{name} did not train"
