"""Benchmark of the target-selection pipeline on a WikiText-103-sized synthetic stream.

Stages timed (generation of the stream excluded):

1. count:   c = count_tokens(stream, V)
2. split:   80/20 rule, split_by_frequency(c, "top_fraction", 0.2)
3. anchors: top_k_anchors(c, 1000)
4. cooc:    window-3 co-occurrence against the anchors, window_cooccurrence(stream, anchors, V)
5. select:  Eq. 3, select_target(cooc, domains, quantile=0.2)

The stream has WikiText-103's size by default (~100M tokens, ~267K types), with token ranks
drawn from a Zipf law p(r) ∝ r^-s (s = 1 by default) and ranks mapped to ids by a random
permutation (ids carry no frequency order). It is generated chunk by chunk, twice (counting and
co-occurrence are two passes over it), with the same seeds; the time spent generating is
measured and subtracted from each stage. Goal on a 2-core machine: under 2 minutes in total and
under 4 GB peak RSS.

    python benchmarks/bench_selection.py                      # full size
    python benchmarks/bench_selection.py --tokens 1e7 --types 50000
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from collections.abc import Iterator

import numpy as np
import psutil

from harmless.cooccur import top_k_anchors, window_cooccurrence
from harmless.domains import count_tokens, split_by_frequency
from harmless.selection import select_target

logger = logging.getLogger("bench_selection")


class ZipfStream:
    """Iterable over chunks [chunk_tokens] of int32 ids with p(rank r) ∝ r^-exponent.

    Iterating twice yields the same stream. ``generation_seconds`` accumulates the time spent
    generating, so that callers can subtract it.
    """

    def __init__(
        self, num_tokens: int, num_types: int, exponent: float, chunk_tokens: int, seed: int
    ) -> None:
        self.num_tokens = num_tokens
        self.chunk_tokens = chunk_tokens
        self.seed = seed
        weights = np.arange(1, num_types + 1, dtype=np.float64) ** -exponent
        self.cdf = np.cumsum(weights / weights.sum())
        self.ids_of_rank = np.random.default_rng(seed).permutation(num_types).astype(np.int32)
        self.generation_seconds = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed + 1)
        for start in range(0, self.num_tokens, self.chunk_tokens):
            began = time.perf_counter()
            size = min(self.chunk_tokens, self.num_tokens - start)
            ranks = np.searchsorted(self.cdf, rng.random(size))
            np.minimum(ranks, self.cdf.size - 1, out=ranks)
            chunk = self.ids_of_rank[ranks]
            del ranks
            self.generation_seconds += time.perf_counter() - began
            yield chunk


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=float, default=103_227_021, help="stream length N")
    parser.add_argument("--types", type=float, default=267_735, help="vocabulary size V")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent s")
    parser.add_argument("--anchors", type=int, default=1000, help="number K of anchors")
    parser.add_argument("--window", type=int, default=3, help="co-occurrence window")
    parser.add_argument("--quantile", type=float, default=0.2, help="eta's quantile q")
    parser.add_argument(
        "--against", choices=("anchors", "source"), default="anchors", help="Eq. 3 candidates"
    )
    parser.add_argument("--chunk-tokens", type=float, default=1e7, help="tokens per chunk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    num_types = int(args.types)
    stream = ZipfStream(int(args.tokens), num_types, args.zipf, int(args.chunk_tokens), args.seed)
    seconds: dict[str, float] = {}

    def timed(stage: str, function, *arguments, **keywords):
        generated = stream.generation_seconds
        began = time.perf_counter()
        result = function(*arguments, **keywords)
        elapsed = time.perf_counter() - began - (stream.generation_seconds - generated)
        seconds[stage] = elapsed
        logger.info(
            "%-8s %7.2f s   rss %7.0f MiB   peak %7.0f MiB",
            stage,
            elapsed,
            rss_mib(),
            peak_rss_mib(),
        )
        return result

    logger.info("stream: %d tokens, %d types, zipf %.2f", stream.num_tokens, num_types, args.zipf)
    counts = timed("count", count_tokens, stream, num_types)
    domains = timed("split", split_by_frequency, counts, "top_fraction", 0.2)
    anchors = timed("anchors", top_k_anchors, counts, args.anchors)
    cooc = timed("cooc", window_cooccurrence, stream, anchors, num_types, args.window)
    selection = timed("select", select_target, cooc, domains, args.quantile, args.against, anchors)

    total = sum(seconds.values())
    print(
        f"tokens {stream.num_tokens:,}  types {num_types:,}  anchors {anchors.size}  "
        f"window {args.window}  cooc nnz {cooc.nnz:,}"
    )
    print(f"domains {domains.summary()}")
    print(f"selection {selection.summary()}")
    for stage, value in seconds.items():
        print(f"{stage:>8}: {value:7.2f} s")
    print(
        f"{'total':>8}: {total:7.2f} s (stream generation excluded: "
        f"{stream.generation_seconds:.1f} s)"
    )
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    return {**seconds, "total": total, "peak_rss_mib": peak_rss_mib()}


if __name__ == "__main__":
    main()
