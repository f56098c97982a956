"""DeepFM training throughput on MovieLens-1M: plain, +T (fixed), ours (select + lexico), and
DeepCTR-Torch's DeepFM on the same data, batch and sizes, measured in one run.

    python benchmarks/bench_ctr.py                     # HARMLESS_DATA_DIR must hold movielens-1m
    python benchmarks/bench_ctr.py --batches 100 --rounds 5 --threads 1
    python benchmarks/bench_ctr.py --attention         # FieldAttention vs nn.MultiheadAttention

Our modes run the real pipeline: CTRTask's batches and loss, the plug-in as the trainer builds it
(FRAGE discriminator on the zip-code rows, selection for ours), the optimizer step, and the task's
after_step (EMA of the weights). Modes take turns in blocks of `--batches` batches for `--rounds`
rounds, so drift on a shared machine hits every mode alike; each mode's throughput is its median
block. DeepCTR-Torch (`pip install -r requirements/bench.txt`) trains through its own `fit`
(DataLoader, per-batch loss bookkeeping) on the same rows: one SparseFeat of width 32 per field,
DNN [100, 100] with batch norm, Adam lr 1e-3, its default L2 of 1e-5 on the embeddings; its
first block also pays for its model's warm-up. Goals from the issue: ours at most 10% slower than
plain; plain at least 2x DeepCTR-Torch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import statistics
import time

import numpy as np
import torch

from harmless.experiment.method import MethodConfig, build_domains, build_plugin
from harmless.losses import FRAGE
from tasks.ctr.data import resolve_data_dir
from tasks.ctr.models import DeepFM
from tasks.ctr.movielens import ML_FIELDS
from tasks.ctr.task import CTRTask

log = logging.getLogger("bench_ctr")
METHODS = {
    "plain": MethodConfig(name="baseline"),
    "+T": MethodConfig(name="fixed", mode="fixed", lam=1e-2),
    "ours": MethodConfig(name="ours", mode="lexico", select=True, against="source"),
}


def make_task(data_dir: str | None) -> CTRTask:
    """DeepFM on MovieLens-1M with PEP's sizes; the local copy's six fields when it has them."""
    root = resolve_data_dir(data_dir)
    local = (root / "movielens-1m" / "ratings_no_timestamp.dat").is_file()
    fields = [f for f in ML_FIELDS if f != "timestamp"] if local else list(ML_FIELDS)
    return CTRTask(
        model=functools.partial(DeepFM, embed_dim=32, mlp=[100, 100]),
        dataset="movielens1m",
        data_dir=data_dir,
        ratings_file="ratings_no_timestamp.dat" if local else "ratings.dat",
        fields=fields,
        ema_decay=0.999,
    )


def ours_runner(mode: str, data_dir: str | None, seed: int):
    """A function that trains on the next `n` batches of an endless stream; returns rows seen."""
    task = make_task(data_dir)
    task.setup(torch.device("cpu"), seed)
    cfg = METHODS[mode]
    tables = task.tables()
    domains, _ = build_domains(tables, cfg)
    transfer = functools.partial(FRAGE, hidden=None, optimizer="adam", lr=1e-3)
    params = list(task.parameters())
    plugin = build_plugin(tables, domains, cfg, transfer, params, seed, torch.device("cpu"))
    optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(seed)

    def batches():
        epoch = 0
        while True:
            yield from task.train_batches(epoch, generator)
            epoch += 1

    stream = batches()

    def run(n: int) -> int:
        rows = 0
        for _ in range(n):
            out = task.train_loss(next(stream))
            optimizer.zero_grad(set_to_none=True)
            plugin.backward(out.loss, out.ids)
            optimizer.step()
            task.after_step()
            rows += out.num_examples
        return rows

    return run, task


def deepctr_runner(task: CTRTask, seed: int):
    """DeepCTR-Torch's DeepFM, trained by its own fit() on consecutive slices of the rows."""
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import DeepFM as DeepCTRDeepFM

    data = task.data
    x = np.asarray(data.x["train"]).astype(np.int64)
    y = np.asarray(data.y["train"]).astype(np.float32)
    columns, inputs = [], {}
    for i, name in enumerate(data.fields):
        ids = data.field_ids(name)
        columns.append(SparseFeat(name, vocabulary_size=len(ids), embedding_dim=32))
        inputs[name] = x[:, i] - int(ids[0])  # local ids 0..n-1 (a field's ids are contiguous)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model = DeepCTRDeepFM(
            columns, columns, dnn_hidden_units=(100, 100), dnn_use_bn=True, task="binary", seed=seed
        )
    model.compile("adam", "binary_crossentropy")
    position = [0]

    def run(n: int) -> int:
        start = position[0] % (len(y) - n * 1024)
        rows = slice(start, start + n * 1024)
        with contextlib.redirect_stdout(io.StringIO()):  # fit() prints even with verbose=0
            model.fit({k: v[rows] for k, v in inputs.items()}, y[rows], batch_size=1024, verbose=0)
        position[0] += n * 1024
        return n * 1024

    return run


def attention_ratio(rounds: int, steps: int = 50) -> None:
    """AutoInt's attention layer (CPU profile: 6 fields, width 32, 2 heads, batch 1024), forward
    and backward, FieldAttention against nn.MultiheadAttention with the same parameters."""
    from tasks.ctr.models import FieldAttention

    reference = torch.nn.MultiheadAttention(32, 2, batch_first=True)
    ours = FieldAttention(32, 2)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1024, 6, 32, requires_grad=True)
    layers = {
        "nn.MultiheadAttention": lambda: reference(x, x, x, need_weights=False)[0],
        "FieldAttention": lambda: ours(x),
    }
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(rounds):
        for name, layer in layers.items():
            layer().sum().backward()  # warm-up
            start = time.perf_counter()
            for _ in range(steps):
                layer().sum().backward()
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    base = statistics.median(times["nn.MultiheadAttention"])
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"{name:<22} {ms:>7.2f} ms fwd+bwd {ms / base:>6.3f}x nn.MultiheadAttention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $HARMLESS_DATA_DIR")
    parser.add_argument("--batches", type=int, default=100, help="batches of 1024 per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-deepctr", action="store_true", help="skip DeepCTR-Torch")
    parser.add_argument("--attention", action="store_true", help="time the attention layer only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    if args.attention:
        attention_ratio(args.rounds)
        return
    runners, task = {}, None
    for mode in METHODS:
        runners[mode], task = ours_runner(mode, args.data_dir, seed=0)
    if not args.no_deepctr:
        try:
            runners["DeepCTR-Torch"] = deepctr_runner(task, seed=0)
        except ImportError:
            log.warning("deepctr-torch is not installed: pip install -r requirements/bench.txt")
    for run in runners.values():  # warm-up
        run(5)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            rows = run(args.batches)
            rates[name].append(rows / (time.perf_counter() - start))
    median = {name: statistics.median(r) for name, r in rates.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1024, "
        f"{args.rounds} rounds x {args.batches} batches"
    )
    print(f"{'method':<14} {'samples/s':>10} {'x plain':>8}")
    for name, rate in median.items():
        print(f"{name:<14} {rate:>10.0f} {rate / median['plain']:>8.3f}")
    if "DeepCTR-Torch" in median:
        print(f"plain / DeepCTR-Torch: {median['plain'] / median['DeepCTR-Torch']:.2f}x")


if __name__ == "__main__":
    main()
