"""Step time and peak memory of the plug-in's modes against plain training, measured in one run.

    python benchmarks/bench_step.py            # both shapes
    python benchmarks/bench_step.py --shape lm --steps 20

Shapes:
- lm: a 33,278 x 400 embedding tied to the softmax, a 3-layer LSTM (400-1150-1150-400),
  batch 20 x 35 tokens, SGD; FRAGE transfer on the batch's rare words.
- ctr: DeepFM (tasks.ctr.models) over 6 fields of 3,000 values each, batch 1024, Adam;
  FRAGE on every field.
Times are medians over steps taken round-robin (plain, fixed, lexico, plain, ...) so drift hits
every mode alike; peak memory is each mode's peak RSS in a fresh process, minus plain's.
Goals from the issue: lexico adds at most 3% (LM) and 10% (CTR) to the step.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import resource
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from harmless.losses import FRAGE
from harmless.plugin import HarmlessTransfer

log = logging.getLogger("bench_step")
MODES = ("none", "fixed", "lexico")


class TiedLSTM(nn.Module):
    """Embedding -> 3-layer LSTM -> softmax over the tied embedding (AWD-LSTM's shape)."""

    def __init__(self, vocab: int = 33_278, emb: int = 400, hidden: int = 1150) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        sizes = [emb, hidden, hidden, emb]
        self.layers = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1]) for i in range(3))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # [T, B, E]
        for layer in self.layers:
            x, _ = layer(x)
        return x @ self.embedding.weight.T  # [T, B, V]


def lm_case(seed: int):
    torch.manual_seed(seed)
    model = TiedLSTM()
    vocab = model.embedding.num_embeddings
    freq = 1.0 / torch.arange(1, vocab + 1).double()
    batches = [torch.multinomial(freq, 36 * 20, replacement=True).view(36, 20) for _ in range(4)]
    domains = SimpleNamespace(source=np.arange(vocab // 5), target=np.arange(vocab // 5, vocab))

    def loss_fn(batch):
        logits = model(batch[:-1])
        return nn.functional.cross_entropy(logits.flatten(0, 1), batch[1:].flatten()), batch[:-1]

    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    return model, batches, domains, loss_fn, optimizer, 0.25


def ctr_case(seed: int):
    from tasks.ctr.models import DeepFM

    torch.manual_seed(seed)
    fields, per_field = 6, 3000
    model = DeepFM(num_items=fields * per_field, num_fields=fields, embed_dim=32, mlp=[100, 100])
    offsets = torch.arange(fields) * per_field
    freq = 1.0 / torch.arange(1, per_field + 1).double()
    batches = []
    for _ in range(4):
        ids = torch.multinomial(freq, 1024 * fields, replacement=True).view(1024, fields)
        batches.append((ids + offsets, torch.randint(0, 2, (1024,)).float()))
    rows = np.arange(fields * per_field) % per_field
    domains = SimpleNamespace(
        source=np.flatnonzero(rows < per_field // 5), target=np.flatnonzero(rows >= per_field // 5)
    )

    def loss_fn(batch):
        ids, labels = batch
        return nn.functional.binary_cross_entropy_with_logits(model(ids), labels), ids

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, batches, domains, loss_fn, optimizer, None


CASES = {"lm": lm_case, "ctr": ctr_case}


def make_step(shape: str, mode: str, seed: int = 0):
    model, batches, domains, loss_fn, optimizer, clip = CASES[shape](seed)
    table = model.embedding
    transfer = FRAGE(dim=table.embedding_dim, seed=seed)
    plugin = HarmlessTransfer(table, transfer, domains, mode=mode, lam=1e-2)
    counter = iter(range(10**9))

    def step() -> None:
        loss, ids = loss_fn(batches[next(counter) % len(batches)])
        optimizer.zero_grad(set_to_none=True)
        plugin.backward(loss, ids)
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    return step


def time_modes(shape: str, steps: int, warmup: int) -> dict[str, float]:
    step_fns = {mode: make_step(shape, mode) for mode in MODES}
    for fn in step_fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(steps):
        for mode, fn in step_fns.items():
            start = time.perf_counter()
            fn()
            times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}


def _peak_rss_child(shape: str, mode: str, steps: int, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    fn = make_step(shape, mode)
    for _ in range(steps):
        fn()
    queue.put(_peak_rss_mib())


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Unlike getrusage's ru_maxrss, it does not inherit the
    parent's peak across fork + exec, so each child measures its own mode alone."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(shape: str, steps: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    peaks = {}
    for mode in MODES:
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_rss_child, args=(shape, mode, steps, queue))
        proc.start()
        peaks[mode] = queue.get()
        proc.join()
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=[*CASES, "all"], default="all")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--memory-steps", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shapes = list(CASES) if args.shape == "all" else [args.shape]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'shape':<5} {'mode':<7} {'step ms':>9} {'x plain':>8} {'peak MiB':>9} {'+MiB':>7}")
    for shape in shapes:
        times = time_modes(shape, args.steps, args.warmup)
        peaks = peak_memory(shape, args.memory_steps)
        for mode in MODES:
            print(
                f"{shape:<5} {mode:<7} {1e3 * times[mode]:>9.1f} "
                f"{times[mode] / times['none']:>8.3f} {peaks[mode]:>9.0f} "
                f"{peaks[mode] - peaks['none']:>+7.0f}"
            )


if __name__ == "__main__":
    main()
