"""Language-modelling benchmarks, each a ratio against a baseline measured in the same run.

    HARMLESS_DATA_DIR=../shared/data python benchmarks/bench_lm.py

1. Training tokens per second of the CPU-profile AWD-LSTM on WikiText-2 with FRAGE + lexico
   (Algorithm 1 on the selected target) against the same FRAGE transfer without lexico (fixed
   lambda, Eq. 1) and against plain training (goal: lexico at most 3% slower).
2. The weight-dropped LSTM layer (DropConnect computed functionally each forward) against a plain
   `nn.LSTM` of the same size, forward + backward (goal: at most 1.3x).
3. A QRNN layer against an LSTM layer of the same size, forward + backward.
Steps of the compared variants alternate (A, B, A, B, ...) and medians are reported, so drift on
a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from harmless.experiment.method import MethodConfig, build_domains, build_plugin
from harmless.losses import FRAGE
from tasks.lm.awd_lstm import AWDLSTM, WeightDropLSTM
from tasks.lm.qrnn import QRNNLayer
from tasks.lm.task import LMTask

CPU_MODEL = dict(
    emsize=128,
    nhid=256,
    nlayers=2,
    dropout=0.2,
    dropouth=0.1,
    dropouti=0.2,
    dropoute=0.05,
    wdrop=0.2,
)


def alternate(fns: dict[str, Callable[[], None]], steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def lm_step(mode: str) -> Callable[[], None]:
    """One training step of the CPU-profile LM task with the given plug-in mode."""
    torch.manual_seed(0)
    task = LMTask(
        model=partial(AWDLSTM, **CPU_MODEL),
        dataset="wikitext-2",
        batch_size=20,
        bptt=35,
        max_train_tokens=105_000,
        max_eval_tokens=1_000,
    )
    cpu = torch.device("cpu")
    task.setup(cpu, 0)
    tables = task.tables()
    method = MethodConfig(name=mode, mode=mode, select=mode == "lexico")
    domains = {} if mode == "none" else build_domains(tables, method)[0]
    plugin = build_plugin(tables, domains, method, FRAGE, list(task.parameters()), 0, cpu)
    optimizer = torch.optim.SGD(task.parameters(), lr=30.0)
    batches = iter(task.train_batches(0, torch.Generator().manual_seed(0)))

    def step() -> None:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(task.train_batches(1, torch.Generator().manual_seed(1)))
            batch = next(batches)
        out = task.train_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        plugin.backward(out.loss, out.ids)
        nn.utils.clip_grad_norm_(task.parameters(), 0.25)
        optimizer.step()

    return step


def layer_step(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    hidden = layer.init_hidden(x.shape[1]) if hasattr(layer, "init_hidden") else None

    def step() -> None:
        layer.train()
        out = layer(x) if hidden is None else layer(x, hidden)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--size", type=int, default=400, help="layer width for 2 and 3")
    args = parser.parse_args()

    modes = ("none", "fixed", "lexico")
    times = alternate({m: lm_step(m) for m in modes}, args.steps, args.warmup)
    tokens = 20 * 35  # tokens per step at the mean BPTT length (every mode sees the same lengths)
    print(
        "1. AWD-LSTM (CPU profile), WikiText-2, FRAGE: plain, fixed lambda, ours (select + lexico)"
    )
    for mode, seconds in times.items():
        print(f"   {mode:<7} {1e3 * seconds:8.1f} ms/step  ~{tokens / seconds:8.0f} tokens/s")
    print(f"   lexico / fixed step time: {times['lexico'] / times['fixed']:.3f}")
    print(f"   lexico / plain step time: {times['lexico'] / times['none']:.3f}")

    size = args.size
    x = torch.randn(70, 20, size)
    layers = {
        "nn.LSTM": nn.LSTM(size, size),
        "WeightDropLSTM(0.5)": WeightDropLSTM(size, size, wdrop=0.5),
        "QRNN(window 2)": QRNNLayer(size, size, window=2),
    }
    times = alternate({k: layer_step(v, x) for k, v in layers.items()}, args.steps, args.warmup)
    base = times["nn.LSTM"]
    print(f"2./3. one layer, {size} -> {size}, input [70, 20, {size}], forward + backward")
    for name, seconds in times.items():
        print(f"   {name:<20} {1e3 * seconds:8.1f} ms  x nn.LSTM {seconds / base:6.3f}")


if __name__ == "__main__":
    main()
